#!/usr/bin/env bash
# Check images/operator/Dockerfile's Python steps where there is no Docker engine: build the
# same wheels from the same context (what .dockerignore lets through), install them offline
# into a fresh venv the way the runtime stage does, trim it the same way, and run the
# operator's entry points. What it cannot check: the base image, USER, the layers.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
PYTHON="${PYTHON:-python3.11}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

log() { printf '[image-check] %s\n' "$*" >&2; }

# The build context: the allow-list in .dockerignore.
mkdir -p "$WORK/ctx"
cp "$ROOT/pyproject.toml" "$ROOT/requirements.lock" "$ROOT/README.md" "$WORK/ctx/"
tar -C "$ROOT" --exclude='*.egg-info' --exclude='__pycache__' --exclude='*.pyc' -cf - operator |
  tar -C "$WORK/ctx" -xf -

log "build stage: wheels"
"$PYTHON" -m venv "$WORK/build"
(
  cd "$WORK/ctx"
  "$WORK/build/bin/pip" wheel --quiet --no-deps --wheel-dir "$WORK/wheels" .
  "$WORK/build/bin/pip" wheel --quiet --wheel-dir "$WORK/wheels" \
    --constraint requirements.lock "$WORK"/wheels/kdag-*.whl
)

log "runtime stage: offline install, trim, smoke test"
"$PYTHON" -m venv "$WORK/runtime"
# shellcheck disable=SC1091
source "$WORK/runtime/bin/activate"
pip install --quiet --no-index --find-links="$WORK/wheels" "$WORK"/wheels/kdag-*.whl
rm -rf "$(python -c 'import kubernetes, os; print(os.path.dirname(kubernetes.__file__))')/aio"
pip uninstall --quiet --yes pip setuptools wheel 2>/dev/null || true
python -c 'import kdag.operator.main, kdag.cli.main'
kdag-operator --help >/dev/null
kubectl-kdag --help >/dev/null

# Nothing installed may be unpinned: every distribution is in requirements.lock.
python - "$ROOT/requirements.lock" <<'EOF'
import re
import sys
from importlib import metadata

norm = lambda name: re.sub(r"[-_.]+", "-", name).lower()
locked = {}
for line in open(sys.argv[1]):
    if "==" in line:
        name, version = line.strip().split("==")
        locked[norm(name)] = version
bad = [
    f"{d.metadata['Name']}=={d.version}"
    for d in metadata.distributions()
    if norm(d.metadata["Name"]) != "kdag" and locked.get(norm(d.metadata["Name"])) != d.version
]
if bad:
    sys.exit(f"installed but not pinned in requirements.lock: {', '.join(sorted(bad))}")
EOF

log "ok: $(du -sh "$WORK/runtime/lib" | cut -f1) of Python packages; wheels: $(ls "$WORK/wheels" | wc -l)"
