#!/usr/bin/env bash
# Build the real node's images locally and import them into containerd's
# k8s.io namespace (the one the kubelet's CRI uses), because no registry is
# reachable:
#   kdag.local/pause:3.10.1     the sandbox image, from build/pause/linux/pause.c
#                                in k8s.io/kubernetes@K8S_VERSION (Go module cache)
#   kdag.local/busybox:debian   Debian's busybox-static with its applet links
# Optionally, with an argument, also an OCI/docker archive to import (the
# operator image from `make image`).
#
# Idempotent: the archives are deterministic, so an image already imported with
# the same digest is not imported again (seconds when warm).
# Needs containerd running (hack/real-node/up.sh calls this).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=hack/real-node/env.sh
source "${HERE}/env.sh"

log() { printf '[real-node-images] %s\n' "$*" >&2; }

work="${REAL_NODE_STATE}/images"
mkdir -p "$work"

# import NAME ARCHIVE: into containerd unless it already has NAME with the
# archive's manifest digest.
import() {
  local name=$1 archive=$2 want have
  want=$(tar -xOf "$archive" index.json | python3 -c \
    'import json,sys; print(json.load(sys.stdin)["manifests"][0]["digest"])')
  have=$(ctr_k8s images ls "name==${name}" 2>/dev/null | awk 'NR > 1 {print $3}')
  if [[ "$have" == "$want" ]]; then
    return 0
  fi
  log "importing ${name} (${want})"
  # Unpacked on import into overlayfs, the snapshotter the CRI uses.
  ctr_k8s images import "$archive" >/dev/null
}

# pause: a tiny C program that sleeps until signalled and reaps zombies.
# Static, so the image is the binary alone, as upstream's.
pause_src="$(go env GOMODCACHE)/k8s.io/kubernetes@${K8S_VERSION}/build/pause/linux/pause.c"
if [[ ! -f "$pause_src" ]]; then
  (cd / && GOFLAGS=-mod=mod go mod download "k8s.io/kubernetes@${K8S_VERSION}" >/dev/null)
fi
rootfs="$work/pause-rootfs"
if [[ ! -x "$rootfs/pause" || "$pause_src" -nt "$rootfs/pause" ]]; then
  rm -rf "$rootfs" && mkdir -p "$rootfs"
  # VERSION is what `pause -v` prints, as upstream's Makefile defines it.
  gcc -Os -Wall -Werror -static -DVERSION="v${PAUSE_IMAGE##*:}-kdag" \
    -o "$rootfs/pause" "$pause_src"
  strip "$rootfs/pause"
fi
python3 "${HERE}/oci_image.py" "$work/pause.tar" "${PAUSE_IMAGE}" "$rootfs" \
  --entrypoint '["/pause"]' --user 65535:65535
import "${PAUSE_IMAGE}" "$work/pause.tar"

# busybox: the static binary plus one link per applet (so `sh`, `sleep`, `cat`
# resolve), and the passwd/group a non-root user needs to have a name.
rootfs="$work/busybox-rootfs"
if [[ ! -x "$rootfs/bin/busybox" || /bin/busybox -nt "$rootfs/bin/busybox" ]]; then
  rm -rf "$rootfs" && mkdir -p "$rootfs"/{bin,etc,tmp,root,home}
  cp /bin/busybox "$rootfs/bin/busybox"
  for applet in $(/bin/busybox --list); do
    [[ "$applet" == busybox ]] || ln -s busybox "$rootfs/bin/$applet"
  done
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/sh\n' >"$rootfs/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$rootfs/etc/group"
  chmod 1777 "$rootfs/tmp"
fi
python3 "${HERE}/oci_image.py" "$work/busybox.tar" "${BUSYBOX_IMAGE}" "$rootfs" --cmd '["sh"]'
import "${BUSYBOX_IMAGE}" "$work/busybox.tar"

# An extra archive (the operator image), imported under the names it carries.
if [[ $# -gt 0 ]]; then
  log "importing $1"
  ctr_k8s images import "$1" >/dev/null
fi
