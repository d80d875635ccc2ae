#!/usr/bin/env bash
# Bring up (or reuse) kdag's local Kubernetes control plane: etcd,
# kube-apiserver, kube-controller-manager and kube-scheduler from the binaries
# hack/build-cluster-bins.sh built, run by `kwokctl --runtime=binary`, with
# KWOK simulating three nodes and pod lifecycles (hack/kwok/). With
# REAL_NODE=1, also a real node: a kubelet with containerd (hack/real-node/).
#
# Returns once the API is ready, the nodes are Ready and the `default`
# ServiceAccount exists. The LAST line printed is
#   export KUBECONFIG=<path>
# so that `eval "$(make -s cluster-up | tail -1)"` points a shell at it.
# Everything else goes to stderr.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=hack/cluster-env.sh
source "${HERE}/cluster-env.sh"

log() { printf '[cluster-up] %s\n' "$*" >&2; }

# One cluster-up at a time (a developer's shell and a test session, say):
# re-run this script under a lock. `flock -o` keeps the lock's descriptor out
# of the script, so the daemons kwokctl forks do not hold it forever.
mkdir -p "${KDAG_CACHE}"
if [[ -z "${KDAG_CLUSTER_UP_LOCKED:-}" ]]; then
  KDAG_CLUSTER_UP_LOCKED=1 exec flock -o "${KDAG_CACHE}/cluster-up.lock" bash "$0" "$@"
fi

for b in etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok kwokctl; do
  if [[ ! -x "${KDAG_BIN}/$b" ]]; then
    log "missing ${KDAG_BIN}/$b: run 'make cluster-bins' first"
    exit 1
  fi
done

# kwokctl keeps its clusters (config, pki, logs, etcd data) under
# KWOK_WORKDIR; keep them in our cache rather than in ~/.kwok.
export KWOK_WORKDIR="${KDAG_CACHE}/kwok"
mkdir -p "${KWOK_WORKDIR}"
kwokctl() { "${KDAG_BIN}/kwokctl" "$@"; }
kubectl() { "${KDAG_BIN}/kubectl" --kubeconfig "${KDAG_KUBECONFIG}" "$@"; }

# The outer `timeout` also bounds a hung (stopped, deadlocked) API server,
# which accepts the connection and then never answers.
healthy() {
  [[ -s "${KDAG_KUBECONFIG}" ]] &&
    timeout 10 "${KDAG_BIN}/kubectl" --kubeconfig "${KDAG_KUBECONFIG}" \
      get --raw=/readyz --request-timeout=5s >/dev/null 2>&1
}

# Writes the kwokctl configuration: every component points at a local binary,
# so kwokctl never downloads anything; then our pod Stages.
write_config() {
  local config=$1
  cat >"$config" <<EOF
apiVersion: config.kwok.x-k8s.io/v1alpha1
kind: KwokctlConfiguration
options:
  runtime: binary
  kubeVersion: ${K8S_VERSION}
  etcdVersion: ${ETCD_VERSION}
  kwokVersion: ${KWOK_VERSION}
  etcdBinary: ${KDAG_BIN}/etcd
  kubeApiserverBinary: ${KDAG_BIN}/kube-apiserver
  kubeControllerManagerBinary: ${KDAG_BIN}/kube-controller-manager
  kubeSchedulerBinary: ${KDAG_BIN}/kube-scheduler
  kubectlBinary: ${KDAG_BIN}/kubectl
  kwokControllerBinary: ${KDAG_BIN}/kwok
  # Every component listens on loopback only: nothing off this machine needs it.
  bindAddress: 127.0.0.1
  # TLS on, RBAC (--authorization-mode=Node,RBAC), and the default admission
  # plugins of the release, which include ValidatingAdmissionPolicy.
  securePort: true
  kubeAuthorization: true
  kubeAdmission: true
  # Real scheduler and controller manager: Job controller, garbage collector,
  # serviceaccount and serviceaccount-token controllers all run.
  disableKubeScheduler: false
  disableKubeControllerManager: false
componentsPatches:
# OwnerReferencesPermissionEnforcement (on in OpenShift) refuses an object whose
# blockOwnerDeletion owner reference names an owner whose finalizers the creator
# may not update: the tests run under it so the chart's RBAC is proven against it.
- name: kube-apiserver
  extraArgs:
  - key: enable-admission-plugins
    value: OwnerReferencesPermissionEnforcement
  # For the real node (hack/real-node/up.sh, REAL_NODE=1): the API server
  # proxies logs and exec to a kubelet, which authenticates it by this client
  # certificate (the cluster CA signed it; it is in system:masters), and
  # reaches it at its InternalIP: the real node's Hostname does not resolve.
  # KWOK's nodes have only a Hostname address, so they are reached as before.
  - key: kubelet-client-certificate
    value: ${KWOK_WORKDIR}/clusters/${KDAG_CLUSTER}/pki/admin.crt
  - key: kubelet-client-key
    value: ${KWOK_WORKDIR}/clusters/${KDAG_CLUSTER}/pki/admin.key
  - key: kubelet-preferred-address-types
    value: InternalIP,Hostname,InternalDNS,ExternalDNS,ExternalIP
# KWOK manages only its fake nodes (hack/kwok/nodes.yaml annotates them), never
# the real node's kubelet: kwokctl's binary runtime passes
# --manage-all-nodes=true, which this overrides.
- name: kwok-controller
  extraArgs:
  - key: manage-all-nodes
    value: "false"
    override: true
  - key: manage-nodes-with-annotation-selector
    value: kwok.x-k8s.io/node=fake
# A throwaway test cluster: etcd need not fsync, which makes every write (and
# so every test) faster on slow disks.
- name: etcd
  extraArgs:
  - key: unsafe-no-fsync
    value: "true"
# The Job controller's client is rate limited to 20 requests/s by default, and
# every simulated Job costs it ~5 writes (pod, Job status, finalizers): that
# caps the whole cluster at ~4 Jobs/s, far below what the API server and KWOK
# manage. Lift it (and the Job controller's workers) so that tests and
# benchmarks measure kdag, not the Job controller's client.
- name: kube-controller-manager
  extraArgs:
  - key: kube-api-qps
    value: "400"
  - key: kube-api-burst
    value: "800"
  - key: concurrent-job-syncs
    value: "20"
---
EOF
  cat "${HERE}/kwok/pod-stages.yaml" >>"$config"
}

create_cluster() {
  write_config "$config"
  log "creating cluster ${KDAG_CLUSTER} (kwokctl, runtime=binary)"
  # --kubeconfig="" keeps kwokctl away from ~/.kube/config; we export the
  # cluster's own kubeconfig below.
  kwokctl create cluster \
    --name "${KDAG_CLUSTER}" \
    --config "$config" \
    --kubeconfig "" \
    --wait 2m >&2
}

# Restart an existing cluster whose API does not answer (its processes died
# with a session, or hang), keeping its etcd data.
restart_cluster() {
  local dir="${KWOK_WORKDIR}/clusters/${KDAG_CLUSTER}" pidfile pid
  # kwokctl skips a component whose pid file names a live process. Kill the
  # ones that really are this cluster's (their command line names its
  # directory) and drop every pid file, so a pid reused by an unrelated
  # process after a reboot is neither trusted nor killed.
  for pidfile in "$dir"/pids/*.pid; do
    [[ -e "$pidfile" ]] || continue
    pid=$(<"$pidfile")
    if grep -qF "$dir/" "/proc/$pid/cmdline" 2>/dev/null; then
      kill -KILL "$pid" 2>/dev/null || true
      while [[ -e "/proc/$pid" ]]; do sleep 0.1; done # until the port is free
    fi
    rm -f "$pidfile"
  done
  kwokctl start cluster --name "${KDAG_CLUSTER}" >&2
}

# Read the whole list before matching: `grep -q` exits at the first match, and under
# pipefail kwokctl dying of SIGPIPE would make the check fail at random.
exists() {
  local clusters
  clusters=$(kwokctl get clusters 2>/dev/null) || return 1
  grep -qx "${KDAG_CLUSTER}" <<<"$clusters"
}

start=$SECONDS
config="${KDAG_CACHE}/kwokctl-config-${KDAG_CLUSTER}.yaml"
if exists; then
  # A cluster built from an older configuration (this script changed since)
  # is rebuilt, so that nobody measures or tests against stale flags.
  write_config "${config}.new"
  if ! cmp -s "$config" "${config}.new" 2>/dev/null; then
    log "cluster ${KDAG_CLUSTER} was built from another configuration; recreating it"
    kwokctl delete cluster --name "${KDAG_CLUSTER}" >&2 || true
  fi
  rm -f "${config}.new"
fi
if exists && healthy; then
  log "cluster ${KDAG_CLUSTER} is up, reusing it"
elif exists; then
  log "cluster ${KDAG_CLUSTER} exists but is not answering; restarting it"
  if ! restart_cluster; then
    log "restart failed; recreating"
    kwokctl delete cluster --name "${KDAG_CLUSTER}" >&2 || true
    create_cluster
  fi
else
  create_cluster
fi

kwokctl get kubeconfig --name "${KDAG_CLUSTER}" >"${KDAG_KUBECONFIG}.tmp"
mv "${KDAG_KUBECONFIG}.tmp" "${KDAG_KUBECONFIG}"

log "waiting for the API"
until healthy; do
  if ((SECONDS - start > 180)); then
    log "API not ready after 180s; logs: ${KWOK_WORKDIR}/clusters/${KDAG_CLUSTER}/logs"
    exit 1
  fi
  sleep 1 # polling the API server, there is nothing to wait on yet
done

# Applying is idempotent, so the reuse path also repairs deleted nodes.
kubectl apply -f "${HERE}/kwok/nodes.yaml" >&2
kubectl wait --for=condition=Ready node -l type=kwok --timeout=120s >&2
# The serviceaccount controller (kube-controller-manager) creates it; without
# it no pod can be admitted in `default`.
kubectl wait --for=create serviceaccount/default -n default --timeout=120s >&2

# REAL_NODE=1 (make cluster-up REAL_NODE=1): also a real kubelet node with
# containerd, joined to this control plane (hack/real-node/up.sh).
if [[ "${REAL_NODE:-0}" == 1 ]]; then
  bash "${HERE}/build-cluster-bins.sh" kubelet >/dev/null
  bash "${HERE}/real-node/up.sh"
fi

log "ready in $((SECONDS - start))s (kubectl: ${KDAG_BIN}/kubectl)"
echo "export KUBECONFIG=${KDAG_KUBECONFIG}"
