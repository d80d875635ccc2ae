#!/usr/bin/env bash
# The real node (hack/real-node-up.sh) runs containers with Debian's
# containerd and runc, wires pods with the CNI reference plugins, and builds
# its busybox image from busybox-static. Install whichever is missing (CI
# machines start without them); quiet and quick when all are there.
set -euo pipefail

# Asked of dpkg, not of PATH: Debian's plain `busybox` package also ships a
# /bin/busybox, but a dynamically linked one that cannot run alone in an image.
packages=(containerd runc busybox-static containernetworking-plugins)
missing=()
for p in "${packages[@]}"; do
  [[ $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null) == "install ok installed" ]] || missing+=("$p")
done
((${#missing[@]} == 0)) && exit 0

if [[ $(id -u) -ne 0 ]]; then
  echo "missing: ${missing[*]}: run 'sudo apt-get install -y ${missing[*]}'" >&2
  exit 1
fi
echo "[ensure-real-node-deps] apt-get install ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
# --no-install-recommends: no docker.io/ctr extras. The containerd package
# would start a system containerd where systemd runs; real-node-up.sh runs
# its own, with its own root and socket, so the two never meet.
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
for f in /usr/bin/containerd /usr/sbin/runc /bin/busybox /usr/lib/cni/bridge; do
  [[ -x "$f" ]] || { echo "[ensure-real-node-deps] $f still missing" >&2; exit 1; }
done
