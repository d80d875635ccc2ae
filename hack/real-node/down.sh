#!/usr/bin/env bash
# Stop kdag's real node and remove everything it made: its pods' containers,
# network namespaces, veths and bridge, its mounts, cgroups and processes, and
# its Node object. The images (in containerd's root under the cache) and the
# node's certificates stay, so the next up.sh is fast.
#
# Safe to run when nothing runs. Prints what it could not remove and fails.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=hack/real-node/env.sh
source "${HERE}/env.sh"

log() { printf '[real-node-down] %s\n' "$*" >&2; }

[[ -d "${REAL_NODE_RUN}" ]] || { log "no real node running"; exit 0; }
[[ $(id -u) -eq 0 ]] || { log "needs root"; exit 1; }
exec 8>"${REAL_NODE_RUN}/lock"
flock 8

state="${REAL_NODE_STATE}"
cluster=$(cat "${REAL_NODE_RUN}/cluster" 2>/dev/null || echo "${KDAG_CLUSTER}")
node="${cluster}-real-node"
kubeconfig="${KDAG_KUBECONFIG}"
[[ "$cluster" == "${KDAG_CLUSTER}" ]] || kubeconfig="${KDAG_CACHE}/kubeconfig-${cluster}"
kubectl() { timeout 30 "${KDAG_BIN}/kubectl" --kubeconfig "$kubeconfig" --request-timeout=10s "$@"; }

# 1. Let the kubelet stop its pods properly (CNI DEL releases their addresses
# and veths), then remove the Node so nothing is scheduled to it any more.
if alive "${REAL_NODE_RUN}/kubelet.pid" "$state/kubelet.yaml" && kubectl get node "$node" >/dev/null 2>&1; then
  # Cordoned first, so a controller's replacement pod is not scheduled back here.
  kubectl cordon "$node" >/dev/null 2>&1 || true
  kubectl delete pods -A --field-selector "spec.nodeName=$node" --grace-period=1 --wait=false >/dev/null 2>&1 || true
  # Polled: `kubectl wait --for=delete` cannot wait on a field selector.
  for ((i = 0; i < 60; i++)); do
    [[ -z $(kubectl get pods -A --field-selector "spec.nodeName=$node" -o name 2>/dev/null) ]] && break
    sleep 0.5
  done
  ((i < 60)) || log "some pods did not stop within 30s; killing their containers"
fi
kubectl delete node "$node" --ignore-not-found >/dev/null 2>&1 || log "could not delete node $node (API down?)"

# stop NAME PATTERN: SIGTERM, then SIGKILL after 10s.
stop() {
  local pidfile="${REAL_NODE_RUN}/$1.pid" pid i
  if alive "$pidfile" "$2"; then
    pid=$(<"$pidfile")
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
      [[ -e /proc/$pid ]] || break
      sleep 0.1 # a process exit has no event to wait on from bash
    done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
}

# Patterns name no checkout: another worktree's up.sh may have started them.
stop apiserver-forward real-node/apiserver_forward.py

# 2. The kubelet first, so it does not restart what we remove next.
stop kubelet "$state/kubelet.yaml"

# 3. Every container still there: remember the sandboxes' network namespaces,
# kill the tasks, delete containers (and their rootfs snapshots).
declare -A netns_inodes=()
if [[ -S "${REAL_NODE_SOCK}" ]] && ctr_k8s version >/dev/null 2>&1; then
  while read -r id pid _; do
    [[ -n "$pid" && "$pid" != 0 ]] || continue
    ino=$(stat -L -c %i "/proc/$pid/ns/net" 2>/dev/null) && netns_inodes[$ino]=1
    ctr_k8s tasks kill -s SIGKILL "$id" >/dev/null 2>&1 || true
  done < <(ctr_k8s tasks ls 2>/dev/null | awk 'NR > 1')
  for id in $(ctr_k8s tasks ls -q 2>/dev/null); do
    ctr_k8s tasks delete -f "$id" >/dev/null 2>&1 || true
  done
  for id in $(ctr_k8s containers ls -q 2>/dev/null); do
    ctr_k8s containers delete "$id" >/dev/null 2>&1 || true
  done
fi
stop containerd "$state/containerd.toml"
# A shim whose task could not be deleted outlives containerd: its command line
# names our containerd's socket.
for pid in $(pgrep -f "containerd-shim-runc-v2 .*-address ${REAL_NODE_SOCK}" || true); do
  kill -KILL "$pid" 2>/dev/null || true
done

# 4. Network: the sandboxes' namespaces (CRI pins them under /run/netns as
# cni-<uuid>; we remove only those our sandboxes were in), then the bridge.
for ns in /run/netns/cni-*; do
  [[ -e "$ns" ]] || continue
  ino=$(stat -L -c %i "$ns" 2>/dev/null) || continue
  if [[ -n "${netns_inodes[$ino]:-}" ]]; then
    umount "$ns" 2>/dev/null || umount -l "$ns" 2>/dev/null || true
    rm -f "$ns"
  fi
done
if ip link show "${REAL_NODE_BRIDGE}" >/dev/null 2>&1; then
  # Veths still enslaved (their namespace gone unnoticed) go with it.
  for veth in $(ip -o link show master "${REAL_NODE_BRIDGE}" | awk -F': ' '{print $2}' | cut -d@ -f1); do
    ip link delete "$veth" 2>/dev/null || true
  done
  ip link delete "${REAL_NODE_BRIDGE}"
fi
rm -rf "$state/cni/ipam"

# 5. Mounts under our directories (overlay rootfs, shm, the kubelet's volume
# tmpfs), deepest first.
unmount_under() {
  local mp
  for mp in $(awk -v d="$1" 'index($5, d) == 1 {print $5}' /proc/self/mountinfo | sort -r); do
    umount "$mp" 2>/dev/null || umount -l "$mp" 2>/dev/null || true
  done
}
unmount_under "$state/"
unmount_under "${REAL_NODE_RUN}/"

# 6. The kubelet's cgroups, deepest first, in every v1 controller (and v2).
for root in /sys/fs/cgroup/*/ /sys/fs/cgroup/; do
  dir="${root%/}${REAL_NODE_CGROUP_ROOT}"
  [[ -d "$dir" ]] || continue
  find "$dir" -depth -type d -exec rmdir {} \; 2>/dev/null || true
done

# containerd 1.6 puts shim sockets and fifos under /run/containerd whatever its
# state directory: remove those directories when we emptied them.
rmdir /run/containerd/s /run/containerd/fifo /run/containerd 2>/dev/null || true

# 7. Check: anything left is an error worth reading.
left=()
pgrep -f -- "--config=$state/kubelet.yaml" >/dev/null && left+=("kubelet")
pgrep -f -- "containerd --config $state/containerd.toml" >/dev/null && left+=("containerd")
pgrep -f -- "real-node/apiserver_forward.py" >/dev/null && left+=("apiserver-forward")
pgrep -f "containerd-shim-runc-v2 .*-address ${REAL_NODE_SOCK}" >/dev/null && left+=("containerd shims")
awk -v a="$state/" -v b="${REAL_NODE_RUN}/" 'index($5, a) == 1 || index($5, b) == 1 {f=1} END {exit !f}' \
  /proc/self/mountinfo && left+=("mounts under $state or ${REAL_NODE_RUN}")
ip link show "${REAL_NODE_BRIDGE}" >/dev/null 2>&1 && left+=("bridge ${REAL_NODE_BRIDGE}")
for root in /sys/fs/cgroup/*/; do
  [[ -d "${root%/}${REAL_NODE_CGROUP_ROOT}" ]] && left+=("cgroup ${root%/}${REAL_NODE_CGROUP_ROOT}")
done
rm -rf "${REAL_NODE_RUN}"
if ((${#left[@]})); then
  log "left behind: ${left[*]}"
  exit 1
fi
log "real node ${node} stopped and removed"
