# Sourced by hack/real-node/*.sh: names and paths of the real node (a kubelet
# with containerd and runc beside the KWOK nodes), in one place.
# shellcheck shell=bash disable=SC2034  # every variable here is for the scripts that source it

# shellcheck source=hack/cluster-env.sh
source "$(dirname "${BASH_SOURCE[0]}")/../cluster-env.sh"

# One real node per machine: it owns a bridge, the kubelet's port and a cgroup
# subtree, which two of them would fight over. RUN_DIR records which cluster it
# joined, so another cluster's real-node/up.sh refuses instead of stealing it.
REAL_NODE_NAME="${KDAG_CLUSTER}-real-node"
# Persistent: containerd's content (the imported images survive a restart, so a
# warm start imports nothing), the node's certificates, logs.
REAL_NODE_STATE="${KDAG_CACHE}/real-node"
# Volatile (tmpfs): sockets, pid files, containerd's runtime state.
REAL_NODE_RUN=/run/kdag-real-node
REAL_NODE_SOCK="${REAL_NODE_RUN}/containerd.sock"
# The kubelet's API (logs, exec: what the API server proxies to) and healthz.
REAL_NODE_KUBELET_PORT=10250
REAL_NODE_HEALTHZ_PORT=10248
# Its own bridge and pod subnet, so teardown removes exactly what it made.
REAL_NODE_BRIDGE=kdag0
REAL_NODE_POD_SUBNET=10.244.0.0/24
# Every pod cgroup lives under this cgroup (in each v1 controller), so
# teardown removes exactly the kubelet's cgroups.
REAL_NODE_CGROUP_ROOT=/kdag-real-node
# Only pods that tolerate this taint land on the real node; the label is what
# they select it by.
REAL_NODE_TAINT_KEY=kdag.dev/real-node
REAL_NODE_LABEL=kdag.dev/real-node=true

# Local images (hack/real-node/images.sh); no registry is ever asked.
PAUSE_IMAGE=kdag.local/pause:3.10.1     # build/pause of k8s.io/kubernetes@${K8S_VERSION}
BUSYBOX_IMAGE=kdag.local/busybox:debian # Debian's busybox-static

KWOK_WORKDIR="${KDAG_CACHE}/kwok"
KDAG_PKI="${KWOK_WORKDIR}/clusters/${KDAG_CLUSTER}/pki"

ctr_k8s() { ctr --address "${REAL_NODE_SOCK}" --namespace k8s.io "$@"; }

# alive PIDFILE PATTERN: the pid file names a live process whose command line
# contains PATTERN (so a pid reused by another process is not trusted).
alive() {
  local pid
  [[ -s "$1" ]] || return 1
  pid=$(<"$1")
  grep -qF -- "$2" "/proc/${pid}/cmdline" 2>/dev/null
}
