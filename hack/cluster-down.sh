#!/usr/bin/env bash
# Stop and delete kdag's local cluster (processes, etcd data, kubeconfig).
# The built binaries stay in the cache; `make cluster-up` recreates a cluster
# in seconds.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=hack/cluster-env.sh
source "${HERE}/cluster-env.sh"

export KWOK_WORKDIR="${KDAG_CACHE}/kwok"
if [[ -x "${KDAG_BIN}/kwokctl" ]] &&
  "${KDAG_BIN}/kwokctl" get clusters 2>/dev/null | grep -qx "${KDAG_CLUSTER}"; then
  "${KDAG_BIN}/kwokctl" delete cluster --name "${KDAG_CLUSTER}" >&2
else
  echo "[cluster-down] no cluster ${KDAG_CLUSTER}" >&2
fi
rm -f "${KDAG_KUBECONFIG}" "${KDAG_CACHE}/kwokctl-config-${KDAG_CLUSTER}.yaml"
