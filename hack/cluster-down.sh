#!/usr/bin/env bash
# Stop and delete kdag's local cluster (processes, etcd data, kubeconfig).
# The built binaries stay in the cache; `make cluster-up` recreates a cluster
# in seconds.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=hack/cluster-env.sh
source "${HERE}/cluster-env.sh"

# The real node first (if it joined this cluster): its kubelet must stop its
# containers while the API server still answers.
if [[ -s /run/kdag-real-node/cluster && $(</run/kdag-real-node/cluster) == "${KDAG_CLUSTER}" ]]; then
  bash "${HERE}/real-node/down.sh"
fi

export KWOK_WORKDIR="${KDAG_CACHE}/kwok"
# The whole list is read before matching: `grep -q` in a pipe exits at the first match,
# and under pipefail kwokctl dying of SIGPIPE made the check fail at random.
clusters=""
if [[ -x "${KDAG_BIN}/kwokctl" ]]; then
  clusters=$("${KDAG_BIN}/kwokctl" get clusters 2>/dev/null || true)
fi
if grep -qx "${KDAG_CLUSTER}" <<<"$clusters"; then
  "${KDAG_BIN}/kwokctl" delete cluster --name "${KDAG_CLUSTER}" >&2
else
  echo "[cluster-down] no cluster ${KDAG_CLUSTER}" >&2
fi
rm -f "${KDAG_KUBECONFIG}" "${KDAG_CACHE}/kwokctl-config-${KDAG_CLUSTER}.yaml"
