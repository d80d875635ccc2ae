#!/bin/sh
# The krew archive's kubectl-kdag and kubectl_complete-kdag (the same file under both
# names): run the plugin, or its completion, with python3 and the dependencies built for
# its Python version in ./lib/X.Y (compiled ones, such as pydantic-core, are built per
# version). krew links the executable into ~/.krew/bin: the archive is found through it.
set -eu
here=$(dirname "$(readlink -f "$0")")
version=$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null) || version=none
if [ ! -d "$here/lib/$version" ]; then
  echo "error: kubectl kdag needs python3 on PATH of a version it was built for" \
    "($(ls "$here/lib" | tr '\n' ' ' | sed 's/ $//'); python3 is $version)" >&2
  exit 1
fi
case $(basename "$0") in
  kubectl_complete-kdag) module=kdag.cli.completion ;;
  *) module=kdag.cli.main ;;
esac
PYTHONPATH="$here/lib/$version${PYTHONPATH:+:$PYTHONPATH}" exec python3 -m "$module" "$@"
