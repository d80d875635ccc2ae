#!/usr/bin/env bash
# Start (or reuse) kdag's real node: a kubelet (built by
# `hack/build-cluster-bins.sh kubelet`) with Debian's containerd and runc as its
# runtime and the CNI bridge plugin for pod networking, joined to the running
# local control plane (hack/cluster-up.sh) without restarting it. KWOK keeps
# managing only its fake nodes (cluster-up.sh selects them by annotation).
#
# The node is tainted kdag.dev/real-node=true:NoSchedule and labelled
# kdag.dev/real-node=true: only pods that tolerate the taint run real
# containers. hack/real-node/down.sh removes it and everything it made.
#
# Needs root (containerd, mounts, network namespaces, cgroups). On failure the
# last line on stderr says why; tests/support/real_node.py shows it as the
# skip reason.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=hack/real-node/env.sh
source "${HERE}/env.sh"

log() { printf '[real-node-up] %s\n' "$*" >&2; }
die() {
  log "$*"
  exit 1
}

[[ $(id -u) -eq 0 ]] || die "needs root (containerd, mounts, network namespaces); run as root"
kubelet_bin="${KDAG_BIN}/kubelet"
[[ -x "$kubelet_bin" ]] || die "missing ${kubelet_bin}: run 'hack/build-cluster-bins.sh kubelet'"
[[ -s "${KDAG_KUBECONFIG}" && -f "${KDAG_PKI}/ca.key" ]] ||
  die "no cluster ${KDAG_CLUSTER}: run hack/cluster-up.sh first"
kubectl() { "${KDAG_BIN}/kubectl" --kubeconfig "${KDAG_KUBECONFIG}" "$@"; }

mkdir -p "${REAL_NODE_RUN}"
# One up/down at a time.
exec 8>"${REAL_NODE_RUN}/lock"
flock 8

if [[ -s "${REAL_NODE_RUN}/cluster" && $(<"${REAL_NODE_RUN}/cluster") != "${KDAG_CLUSTER}" ]]; then
  die "the real node runs for cluster $(<"${REAL_NODE_RUN}/cluster"); stop it first (KDAG_CLUSTER=$(<"${REAL_NODE_RUN}/cluster") hack/real-node/down.sh)"
fi

bash "${HERE}/../ensure-real-node-deps.sh"

# The node's address: the source address of the default route. Not loopback:
# the kubelet refuses a loopback node IP, and the API server reaches the
# kubelet at the node's InternalIP.
node_ip=$(ip -4 -o route get 1.1.1.1 2>/dev/null | sed -n 's/.* src \([0-9.]*\).*/\1/p')
[[ -n "$node_ip" ]] || node_ip=$(ip -4 -o addr show scope global | awk '{sub("/.*", "", $4); print $4; exit}')
[[ -n "$node_ip" ]] || die "no global IPv4 address for the node"

state="${REAL_NODE_STATE}"
mkdir -p "$state"/{pki,logs,kubelet,cni/net.d,cni/ipam,containerd}
echo "${KDAG_CLUSTER}" >"${REAL_NODE_RUN}/cluster"

# --- credentials -------------------------------------------------------------
# The kubelet's client certificate: user system:node:<name> in group
# system:nodes, signed by the cluster CA, as the Node authorizer expects. Its
# serving certificate is signed by the same CA for the node's IP and name.
# Regenerated when the CA changed (a recreated cluster).
ca_sum=$(sha256sum "${KDAG_PKI}/ca.crt" | cut -c1-16)
if [[ ! -s "$state/pki/ca.sum" || $(<"$state/pki/ca.sum") != "$ca_sum" ]]; then
  log "issuing the node's certificates"
  openssl req -new -newkey rsa:2048 -nodes -keyout "$state/pki/client.key" \
    -subj "/O=system:nodes/CN=system:node:${REAL_NODE_NAME}" -out "$state/pki/client.csr" 2>/dev/null
  openssl x509 -req -in "$state/pki/client.csr" -CA "${KDAG_PKI}/ca.crt" -CAkey "${KDAG_PKI}/ca.key" \
    -CAcreateserial -days 365 -out "$state/pki/client.crt" 2>/dev/null
  openssl req -new -newkey rsa:2048 -nodes -keyout "$state/pki/serving.key" \
    -subj "/CN=${REAL_NODE_NAME}" -out "$state/pki/serving.csr" 2>/dev/null
  printf 'subjectAltName=DNS:%s,IP:%s\n' "${REAL_NODE_NAME}" "$node_ip" >"$state/pki/serving.ext"
  openssl x509 -req -in "$state/pki/serving.csr" -CA "${KDAG_PKI}/ca.crt" -CAkey "${KDAG_PKI}/ca.key" \
    -CAcreateserial -days 365 -extfile "$state/pki/serving.ext" -out "$state/pki/serving.crt" 2>/dev/null
  echo "$ca_sum" >"$state/pki/ca.sum"
fi
server=$(kubectl config view --minify -o jsonpath='{.clusters[0].cluster.server}')
cat >"$state/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: ${KDAG_CLUSTER}
  cluster: {server: "${server}", certificate-authority: "${KDAG_PKI}/ca.crt"}
users:
- name: ${REAL_NODE_NAME}
  user: {client-certificate: "$state/pki/client.crt", client-key: "$state/pki/client.key"}
contexts:
- name: node
  context: {cluster: ${KDAG_CLUSTER}, user: ${REAL_NODE_NAME}}
current-context: node
EOF

# --- containerd --------------------------------------------------------------
# Its own root, state and socket (never /run/containerd), so it cannot meet a
# system containerd. cgroupfs (SystemdCgroup=false): this VM has no systemd
# and cgroups v1, and the kubelet's cgroupDriver must match.
cat >"$state/containerd.toml" <<EOF
version = 2
root = "$state/containerd"
state = "${REAL_NODE_RUN}/containerd"
# Plugins this node does not use; without them containerd logs fewer errors.
disabled_plugins = [
  "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.internal.v1.opt", "io.containerd.tracing.processor.v1.otlp",
]
[grpc]
  address = "${REAL_NODE_SOCK}"
[ttrpc]
  address = "${REAL_NODE_SOCK}.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  # Built locally by hack/real-node/images.sh; never pulled.
  sandbox_image = "${PAUSE_IMAGE}"
  # The kubelet asks for oom_score_adj -998 (sandboxes) and -997 (Guaranteed
  # pods); lowering it needs CAP_SYS_RESOURCE, which root lacks on these VMs
  # (runc then fails with "can't get final child's PID from pipe: EOF").
  # This clamps each request to containerd's own score instead.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "/usr/sbin/runc"
        # runc's state beside ours (not /run/containerd/runc), so teardown
        # finds it.
        Root = "${REAL_NODE_RUN}/runc"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$state/cni/net.d"
EOF

# Pods get addresses from the bridge plugin on a bridge of their own, with
# host-local IPAM keeping its leases in our state directory. No ipMasq: pods
# need no way out (no iptables rules to clean up); the bridge is their gateway
# to the host.
cat >"$state/cni/net.d/10-kdag.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "kdag-real-node",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "${REAL_NODE_BRIDGE}",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "${REAL_NODE_POD_SUBNET}"}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": "$state/cni/ipam"
      }
    },
    {"type": "loopback"}
  ]
}
EOF

# start NAME PATTERN CMD...: run CMD as a daemon in its own session (so it
# outlives this script and a test session's process group), logging to
# logs/NAME.log, unless its pid file names a live one started from the same
# command line and the same INPUTS (files: its configuration, credentials).
# One started from others (this script changed, or the cluster was recreated
# with a new CA and port) is stopped and started again.
start() {
  local name=$1 pattern=$2 pid sum f
  shift 2
  sum=$({
    printf '%s\n' "$@"
    for f in ${INPUTS:-}; do cat "$f"; done
  } | sha256sum | cut -c1-16)
  if alive "${REAL_NODE_RUN}/$name.pid" "$pattern"; then
    [[ $(cat "${REAL_NODE_RUN}/$name.sum" 2>/dev/null) == "$sum" ]] && return 0
    log "restarting $name (its configuration changed)"
    pid=$(<"${REAL_NODE_RUN}/$name.pid")
    kill -TERM "$pid"
    while [[ -e /proc/$pid ]]; do sleep 0.1; done # no exit event to wait on from bash
  else
    log "starting $name"
  fi
  # 8>&-: the daemon must not inherit (and hold forever) our lock.
  setsid "$@" >>"$state/logs/$name.log" 2>&1 </dev/null 8>&- &
  echo $! >"${REAL_NODE_RUN}/$name.pid"
  echo "$sum" >"${REAL_NODE_RUN}/$name.sum"
}

# wait_until DAEMON WHAT SECONDS CMD...: poll CMD (there is no event to wait
# on); give up at once, with the daemon's last error, if DAEMON died.
wait_until() {
  local daemon=$1 what=$2 limit=$3 t=$SECONDS
  shift 3
  until "$@" >/dev/null 2>&1; do
    if ! alive "${REAL_NODE_RUN}/$daemon.pid" "$state/$daemon"; then
      die "$daemon exited: $(grep -E '^(E|F)[0-9]|level=(error|fatal)' "$state/logs/$daemon.log" | tail -1)"
    fi
    if ((SECONDS - t > limit)); then
      die "$what not ready after ${limit}s; logs: $state/logs"
    fi
    sleep 0.5
  done
}

INPUTS="$state/containerd.toml" start containerd "$state/containerd.toml" /usr/bin/containerd --config "$state/containerd.toml"
wait_until containerd containerd 60 ctr --address "${REAL_NODE_SOCK}" version

bash "${HERE}/images.sh"

# --- kubelet -----------------------------------------------------------------
cat >"$state/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: ${node_ip}
port: ${REAL_NODE_KUBELET_PORT}
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: ${REAL_NODE_HEALTHZ_PORT}
tlsCertFile: $state/pki/serving.crt
tlsPrivateKeyFile: $state/pki/serving.key
# The API server (logs, exec, port-forward) authenticates with its
# --kubelet-client-certificate (cluster-up.sh sets it), signed by the cluster
# CA; anything else is asked of the API server (webhook).
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: ${KDAG_PKI}/ca.crt}
authorization: {mode: Webhook}
containerRuntimeEndpoint: unix://${REAL_NODE_SOCK}
# cgroups v1 on this VM: deprecated in 1.34 but still supported (failCgroupV1
# defaults to false; said here so that a default change shows up as a diff).
cgroupDriver: cgroupfs
failCgroupV1: false
cgroupRoot: ${REAL_NODE_CGROUP_ROOT}
failSwapOn: false
registerWithTaints:
- {key: ${REAL_NODE_TAINT_KEY}, value: "true", effect: NoSchedule}
# A shared development VM: evict only when really out of space, and never
# garbage-collect the local images (they cannot be pulled back).
evictionHard: {memory.available: 100Mi, nodefs.available: 2%, imagefs.available: 2%}
imageGCHighThresholdPercent: 99
imageGCLowThresholdPercent: 98
maxPods: 50
serializeImagePulls: false
resolvConf: /etc/resolv.conf
EOF

# The kubelet puts every pod cgroup under cgroupRoot but insists that it
# exists, in every v1 controller. cpuset needs its cpus and mems filled in
# before anything can join it: copy them from the root.
for ctl in /sys/fs/cgroup/*/; do
  [[ -e "${ctl}cgroup.procs" && "${ctl%/}" != /sys/fs/cgroup/unified ]] || continue
  mkdir -p "${ctl%/}${REAL_NODE_CGROUP_ROOT}"
done
if [[ -e /sys/fs/cgroup/cpuset/cpuset.cpus ]]; then
  cat /sys/fs/cgroup/cpuset/cpuset.cpus >"/sys/fs/cgroup/cpuset${REAL_NODE_CGROUP_ROOT}/cpuset.cpus"
  cat /sys/fs/cgroup/cpuset/cpuset.mems >"/sys/fs/cgroup/cpuset${REAL_NODE_CGROUP_ROOT}/cpuset.mems"
fi

INPUTS="$state/kubelet.yaml $state/kubeconfig $state/pki/client.crt" \
  start kubelet "$state/kubelet.yaml" "$kubelet_bin" \
  --config="$state/kubelet.yaml" \
  --kubeconfig="$state/kubeconfig" \
  --root-dir="$state/kubelet" \
  --cert-dir="$state/pki" \
  --hostname-override="${REAL_NODE_NAME}" \
  --node-ip="$node_ip" \
  --node-labels="${REAL_NODE_LABEL}"
wait_until kubelet "the kubelet's healthz" 120 curl -sf "http://127.0.0.1:${REAL_NODE_HEALTHZ_PORT}/healthz"
wait_until kubelet "node ${REAL_NODE_NAME} registered" 60 kubectl get node "${REAL_NODE_NAME}"
if ! kubectl wait --for=condition=Ready "node/${REAL_NODE_NAME}" --timeout=120s >&2; then
  die "node ${REAL_NODE_NAME} not Ready: $(kubectl get node "${REAL_NODE_NAME}" \
    -o jsonpath='{.status.conditions[?(@.type=="Ready")].message}'); logs: $state/logs"
fi
# Pods reach the API server at the `kubernetes` Service's endpoint, the node's
# address (apiserver_forward.py says why).
api_port=${server##*:}
start apiserver-forward real-node/apiserver_forward.py \
  python3 "${HERE}/apiserver_forward.py" "$node_ip" "$api_port"
echo "$node_ip $api_port" >"${REAL_NODE_RUN}/apiserver-endpoint"

log "node ${REAL_NODE_NAME} is Ready (${node_ip})"
