#!/usr/bin/env bash
# Build the operator image, images/operator/Dockerfile, from the repository root.
#
#   hack/build-image.sh [--archive FILE]     (or: make image [IMAGE=...] [IMAGE_ARCHIVE=FILE])
#   buildah $(hack/build-image.sh --buildah-flags) images     (the storage the buildah path uses)
#
# With a Docker engine that answers `docker info`, this is `docker build`. Without one (the
# development and CI machines have only the Docker client), it builds the same Dockerfile with
# Debian's buildah (installed when missing, like hack/ensure-prometheus.sh installs prometheus):
# `--isolation chroot`, so no container runtime or daemon is needed, and the overlay storage
# driver where the kernel allows it, vfs otherwise. docker.io is not reachable from those
# machines, so python:3.11-slim cannot be pulled: buildah builds on a local stand-in for it, a
# Debian bookworm minbase with Debian's Python 3.11 and pip in /usr/local (as in
# python:3.11-slim), made once by debootstrap from this machine's Debian mirror and cached in
# ~/.cache/kdag/image-base/. The image lands in buildah's storage (`buildah images`);
# --archive also writes it as a docker-archive tarball, for `kind load image-archive`.
#
# Both paths label the image with OCI annotations (org.opencontainers.image.*): the Dockerfile's
# title, description and licenses, and, with `--label`, its version (kdag.__version__, the one
# version), revision (the git commit; "-dirty" when what goes into the image differs from it),
# source (pyproject.toml's Source URL) and created (now, or $SOURCE_DATE_EPOCH).
#
# Environment: IMAGE (default kdag-operator:<version>); KDAG_IMAGE_BUILDER=docker|buildah to force
# one; KDAG_BUILDAH_DRIVER=overlay|vfs to force a storage driver; KDAG_DEBIAN_MIRROR to use
# another mirror for the base.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
VERSION="$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' "$ROOT/operator/kdag/__init__.py")"
IMAGE="${IMAGE:-kdag-operator:${VERSION:-latest}}"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/kdag"
ARCHIVE=""
PRINT_FLAGS=""

log() { printf '[build-image] %s\n' "$*" >&2; }
die() {
  log "$*"
  exit 1
}

while [[ $# -gt 0 ]]; do
  case "$1" in
    --archive)
      ARCHIVE="$(realpath -m "${2:?--archive needs a file}")"
      shift 2
      ;;
    --buildah-flags)
      PRINT_FLAGS=1
      shift
      ;;
    *) die "unknown argument: $1 (usage: hack/build-image.sh [--archive FILE | --buildah-flags])" ;;
  esac
done

# --- the labels' values ---------------------------------------------------------------------
[[ -n "$VERSION" ]] || die "no __version__ = \"...\" line in operator/kdag/__init__.py"
# What goes into the image (.dockerignore): a change to it makes the revision "<commit>-dirty".
CONTEXT_PATHS=(pyproject.toml requirements.lock README.md operator)
if REVISION="$(git -C "$ROOT" rev-parse HEAD 2>/dev/null)"; then
  if [[ -n "$(git -C "$ROOT" status --porcelain -- "${CONTEXT_PATHS[@]}")" ]]; then
    REVISION="$REVISION-dirty"
  fi
else
  REVISION=""
  log "not a git checkout: the image gets no revision label"
fi
SOURCE="$(awk '/^\[/ { urls = ($0 == "[project.urls]") }
  urls && $1 == "Source" { gsub(/"/, "", $3); print $3 }' "$ROOT/pyproject.toml")"
[[ -n "$SOURCE" ]] || die "no Source URL in pyproject.toml's [project.urls]"
if [[ -n "${SOURCE_DATE_EPOCH:-}" ]]; then
  CREATED="$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)"
else
  CREATED="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
fi
OCI=org.opencontainers.image
LABEL_ARGS=(
  --label "$OCI.version=$VERSION" --label "$OCI.source=$SOURCE" --label "$OCI.created=$CREATED"
)
[[ -z "$REVISION" ]] || LABEL_ARGS+=(--label "$OCI.revision=$REVISION")

START=$SECONDS
BUILDER="${KDAG_IMAGE_BUILDER:-}"
[[ -z "$PRINT_FLAGS" ]] || BUILDER=buildah
if [[ -z "$BUILDER" ]]; then
  if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
    BUILDER=docker
  else
    BUILDER=buildah
  fi
fi

if [[ "$BUILDER" == docker ]]; then
  log "docker build -t $IMAGE (version $VERSION, revision ${REVISION:-none})"
  DOCKER_BUILDKIT=1 docker build "${LABEL_ARGS[@]}" -f "$ROOT/images/operator/Dockerfile" \
    -t "$IMAGE" "$ROOT"
  if [[ -n "$ARCHIVE" ]]; then
    docker save -o "$ARCHIVE" "$IMAGE"
  fi
  log "built $IMAGE with docker in $((SECONDS - START))s"
  exit 0
fi
[[ "$BUILDER" == buildah ]] || die "KDAG_IMAGE_BUILDER must be docker or buildah, not '$BUILDER'"

# --- buildah and debootstrap, from Debian's packages -------------------------------------
if ! command -v buildah >/dev/null 2>&1 || ! command -v debootstrap >/dev/null 2>&1; then
  if [[ $(id -u) -ne 0 ]]; then
    die "buildah or debootstrap is missing: run 'sudo apt-get install -y buildah debootstrap'"
  fi
  log "apt-get install buildah debootstrap"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  # --no-install-recommends: no runc/crun (chroot isolation needs none) and no fuse-overlayfs
  # (the kernel's overlay is used, or vfs).
  apt-get install -y -qq --no-install-recommends buildah debootstrap >/dev/null
fi
# Rootless buildah would need subordinate uid ranges and debootstrap needs root anyway.
[[ $(id -u) -eq 0 ]] || die "the buildah path runs as root (debootstrap and chroot isolation)"

# --- storage: overlay when a container can be mounted with it, else vfs ------------------
storage_args() { # driver -> the global buildah flags for it
  if [[ "$1" == overlay ]]; then
    echo "--storage-driver=overlay"
  else
    # A storage root is tied to one driver: vfs gets its own.
    echo "--storage-driver=vfs --root=/var/lib/containers/storage-vfs"
  fi
}
DRIVER="${KDAG_BUILDAH_DRIVER:-}"
if [[ -z "$DRIVER" ]]; then
  DRIVER=vfs
  # shellcheck disable=SC2046
  if probe=$(buildah $(storage_args overlay) from --quiet scratch 2>/dev/null); then
    # shellcheck disable=SC2046
    if buildah $(storage_args overlay) mount "$probe" >/dev/null 2>&1; then
      DRIVER=overlay
    fi
    # shellcheck disable=SC2046
    buildah $(storage_args overlay) rm "$probe" >/dev/null 2>&1 || true
  fi
fi
read -r -a STORAGE <<<"$(storage_args "$DRIVER")"
bh() { buildah "${STORAGE[@]}" "$@"; }
if [[ -n "$PRINT_FLAGS" ]]; then
  echo "${STORAGE[*]}"
  exit 0
fi
log "buildah $(buildah version --json 2>/dev/null | sed -n 's/.*"version": "\(.*\)".*/\1/p'), storage driver $DRIVER"

# --- the base: a local stand-in for python:3.11-slim --------------------------------------
# Everything that decides the base's contents is in RECIPE: change it and a new base is made
# under a new name; the old one stays cached until removed.
SUITE=bookworm
BASE_PACKAGES="python3,python-is-python3,python3-pip-whl,python3-setuptools-whl,python3-wheel-whl,ca-certificates,netbase"
RECIPE="recipe-2 $SUITE minbase $BASE_PACKAGES pip-to-usr-local purge-whl no-externally-managed no-doc-locale"
KEY="$(printf '%s' "$RECIPE" | sha256sum | cut -c1-12)"
BASE="localhost/kdag-python-base:3.11-$SUITE-$KEY"
BASE_DIR="$CACHE/image-base/python3.11-$SUITE-$KEY"

debian_mirror() { # the Debian mirror this machine's apt uses (deb822 or one-line sources)
  local uri
  uri="$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null |
    awk '$1 == "URIs:" { for (i = 2; i <= NF; i++) if ($i ~ /\/debian\/?$/) { print $i; exit } }')"
  if [[ -z "$uri" ]]; then
    uri="$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
      awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /\/debian\/?$/) { print $i; exit } }')"
  fi
  echo "${uri:-http://deb.debian.org/debian}"
}

make_rootfs() { # -> $BASE_DIR/rootfs.tar, built once
  local mirror tmp
  mirror="${KDAG_DEBIAN_MIRROR:-$(debian_mirror)}"
  tmp="$(mktemp -d "$CACHE/image-base/.rootfs.XXXXXX")"
  # shellcheck disable=SC2064
  trap "rm -rf '$tmp'" EXIT
  log "debootstrap --variant=minbase $SUITE from $mirror (once; cached in $BASE_DIR)"
  debootstrap --variant=minbase --include="$BASE_PACKAGES" "$SUITE" "$tmp/root" "$mirror" \
    >"$tmp/debootstrap.log" 2>&1 || {
    tail -20 "$tmp/debootstrap.log" >&2
    die "debootstrap failed (log above)"
  }
  # python:3.11-slim's pip, setuptools and wheel live in /usr/local and pip may manage them;
  # do the same with Debian's wheels (pip run from its own wheel installs pip), then drop the
  # wheels' packages and the PEP 668 marker, which says "use apt" and would stop that pip.
  rm -f "$tmp"/root/usr/lib/python3*/EXTERNALLY-MANAGED
  chroot "$tmp/root" /usr/bin/env -i PATH=/usr/local/bin:/usr/bin:/bin /bin/sh -c 'set -- /usr/share/python-wheels/pip-*.whl
    python3 "$1/pip" install --quiet --no-index --no-cache-dir --no-warn-script-location \
      --find-links /usr/share/python-wheels pip setuptools wheel'
  chroot "$tmp/root" dpkg --purge python3-pip-whl python3-setuptools-whl python3-wheel-whl \
    >/dev/null
  chroot "$tmp/root" dpkg-query -W >"$tmp/packages.txt"
  chroot "$tmp/root" python3 -m pip list --format=freeze >>"$tmp/packages.txt" 2>/dev/null
  chroot "$tmp/root" apt-get clean
  # What a container image does not carry: apt's lists, the host's resolver and hostname
  # (the runtime provides them), documentation and translations, debootstrap's device nodes.
  # The standard library's .pyc files stay: the operator's root filesystem is read-only.
  rm -rf "$tmp"/root/var/lib/apt/lists/* "$tmp"/root/var/cache/apt/* "$tmp"/root/var/log/* \
    "$tmp"/root/usr/share/man/* "$tmp"/root/usr/share/info/* "$tmp"/root/usr/share/doc/* \
    "$tmp"/root/usr/share/locale/* \
    "$tmp"/root/etc/resolv.conf "$tmp"/root/etc/hostname "$tmp"/root/dev/* "$tmp"/root/tmp/*
  tar -C "$tmp/root" --numeric-owner -cf "$tmp/rootfs.tar" .
  mv "$tmp/rootfs.tar" "$tmp/packages.txt" "$BASE_DIR/"
  rm -rf "$tmp"
  trap - EXIT
}

if ! bh inspect --type image "$BASE" >/dev/null 2>&1; then
  mkdir -p "$BASE_DIR"
  exec 9>"$CACHE/image-base/build.lock"
  flock 9
  if ! bh inspect --type image "$BASE" >/dev/null 2>&1; then
    [[ -f "$BASE_DIR/rootfs.tar" ]] || make_rootfs
    log "import $BASE_DIR/rootfs.tar as $BASE"
    ctr="$(bh from --quiet scratch)"
    bh add --quiet "$ctr" "$BASE_DIR/rootfs.tar" / >/dev/null
    # python:3.11-slim's configuration, where it matters to the Dockerfile.
    bh config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
      --env LANG=C.UTF-8 --cmd python3 --label org.opencontainers.image.description="$RECIPE" \
      "$ctr"
    bh commit --quiet --rm "$ctr" "$BASE" >/dev/null
  fi
  exec 9>&-
fi
log "base $BASE"

# --- the image ------------------------------------------------------------------------------
# The build stage downloads from PyPI. Lend it the host's CA bundle, where it has Debian's,
# and point pip at it: a host behind a TLS-inspecting proxy trusts the proxy only there (the
# base's bundle is Debian's stock one). Bind mounts exist only while a RUN step runs: nothing
# of them is left in the image, and they do not change the layer cache's keys.
VOLUMES=()
HOST_CA=/etc/ssl/certs/ca-certificates.crt
PIP_CONF="$(mktemp)"
BUILD_LOG="$(mktemp)"
trap 'rm -f "$PIP_CONF" "$BUILD_LOG"' EXIT
if [[ -f "$HOST_CA" ]]; then
  printf '[global]\ncert = %s\n' "$HOST_CA" >"$PIP_CONF"
  chmod 644 "$PIP_CONF"
  VOLUMES=(--volume "$HOST_CA:$HOST_CA:ro" --volume "$PIP_CONF:/etc/pip.conf:ro")
fi
# What .dockerignore lets into the context, hashed: see KDAG_CONTEXT_DIGEST in the Dockerfile.
DIGEST="$(cd "$ROOT" && find "${CONTEXT_PATHS[@]}" \
  \( -name __pycache__ -o -name '*.egg-info' \) -prune -o -type f ! -name '*.pyc' -print0 |
  LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)"
OLD_ID="$(bh inspect --type image --format '{{.FromImageID}}' "$IMAGE" 2>/dev/null || true)"
log "buildah build -t $IMAGE (isolation chroot, context $DIGEST, revision ${REVISION:-none})"
# --layers: unchanged steps come from buildah's layer cache on the next build.
build() {
  bh build --quiet --isolation chroot --force-rm "${VOLUMES[@]}" \
    --build-arg PYTHON_IMAGE="$BASE" --build-arg KDAG_CONTEXT_DIGEST="$DIGEST" "${LABEL_ARGS[@]}" \
    -f "$ROOT/images/operator/Dockerfile" -t "$IMAGE" "$@" "$ROOT" 2>&1 | tee "$BUILD_LOG" >&2
}
if ! build --layers; then
  # buildah 1.28 cannot bind-mount a stage it took whole from the layer cache into a RUN that
  # it does run: that happens when the final image was removed but the builder stage's layers
  # were not. It says "couldn't find .../merged/wheels on host to bind mount", or mounts an
  # empty directory, where pip finds no kdag wheel. Build it all anew.
  grep -qE "on host to bind mount into container|/wheels/kdag-\*\.whl' looks like a filename" \
    "$BUILD_LOG" || die "buildah build failed"
  log "buildah could not mount the cached build stage: building again without the layer cache"
  build --layers --no-cache
fi
# The image this build replaced goes if no other tag names it now (`buildah rmi ID` would
# remove all of its tags).
NEW_ID="$(bh inspect --type image --format '{{.FromImageID}}' "$IMAGE")"
if [[ -n "$OLD_ID" && "$OLD_ID" != "$NEW_ID" ]] &&
  bh images --noheading --format '{{.ID}} {{.Name}}' | grep -q "^${OLD_ID:0:12} *<none>$"; then
  bh rmi "$OLD_ID" >/dev/null 2>&1 || true
fi
if [[ -n "$ARCHIVE" ]]; then
  rm -f "$ARCHIVE"
  bh push --quiet "$IMAGE" "docker-archive:$ARCHIVE:$IMAGE" >/dev/null
  log "wrote $ARCHIVE"
fi
log "built $IMAGE with buildah in $((SECONDS - START))s; size $(bh images --format '{{.Size}}' "$IMAGE" | head -1)"
