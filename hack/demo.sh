#!/usr/bin/env bash
# `make demo`: kdag's main job on a local cluster, end to end.
#   1. a cluster: the one $KUBECONFIG points at if it answers, else the local
#      kwok control plane (built and started on first use);
#   2. the CRDs; 3. the operator (a local process); 4. the example Workflow and a
#   run of it, watched live; 5. its approval gate answered with `kubectl annotate`;
#   6. the run watched to the end, and its tree printed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HERE="${ROOT}/hack"
# shellcheck source=hack/cluster-env.sh
source "${HERE}/cluster-env.sh"
BIN="${ROOT}/.venv/bin"
NAMESPACE="${KDAG_DEMO_NAMESPACE:-kdag-demo}"

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

if [[ -n "${KUBECONFIG:-}" ]] && kubectl_ok=$(command -v kubectl) && \
   kubectl get --raw=/readyz --request-timeout=5s >/dev/null 2>&1; then
  KUBECTL="${kubectl_ok}"
  say "Using the cluster of your KUBECONFIG ($(kubectl config current-context))"
else
  say "Starting the local kwok cluster (first run builds it from Go modules: ~20 min)"
  bash "${HERE}/build-cluster-bins.sh" >/dev/null
  eval "$(bash "${HERE}/cluster-up.sh" | tail -1)"
  KUBECTL="${KDAG_BIN}/kubectl"
  say "Using the local kwok cluster (KUBECONFIG=${KUBECONFIG})"
fi
export KUBECONFIG
k() { "${KUBECTL}" "$@"; }

say "Installing the CRDs"
k apply --server-side --force-conflicts -f "${ROOT}/crds/"
k wait --for=condition=Established crd/workflows.kdag.dev crd/workflowruns.kdag.dev --timeout=60s
k create namespace "${NAMESPACE}" --dry-run=client -o yaml | k apply -f - >/dev/null

say "Starting the operator (log: ${KDAG_CACHE}/demo-operator.log)"
"${BIN}/kdag-operator" --namespace "${NAMESPACE}" --metrics-port 0 --liveness "" \
  >"${KDAG_CACHE}/demo-operator.log" 2>&1 &
OPERATOR=$!
WATCH=""
cleanup() {
  [[ -n "${WATCH}" ]] && kill "${WATCH}" 2>/dev/null || true
  kill "${OPERATOR}" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap cleanup EXIT

say "Applying the example Workflow and creating a run of it"
k -n "${NAMESPACE}" apply -f "${ROOT}/examples/etl-workflow.yaml"
RUN=$(k -n "${NAMESPACE}" create -f "${ROOT}/examples/etl-run.yaml" -o jsonpath='{.metadata.name}')
echo "workflowrun/${RUN} created"

say "Progress (kubectl get workflowrun -w)"
"${KUBECTL}" -n "${NAMESPACE}" get workflowrun "${RUN}" -w &  # not `k`: $! must be kubectl itself
WATCH=$!
k -n "${NAMESPACE}" wait --for=condition=WaitingForApproval "workflowrun/${RUN}" --timeout=300s >/dev/null

kill "${WATCH}" 2>/dev/null || true; wait "${WATCH}" 2>/dev/null || true; WATCH=""
say "The run waits at its approval gate"
"${BIN}/kubectl-kdag" -n "${NAMESPACE}" tree "${RUN}"
GATE=$(k -n "${NAMESPACE}" get workflowrun "${RUN}" -o json | "${BIN}/python" -c '
import json, sys
nodes = json.load(sys.stdin)["status"]["nodes"]
print(next(k for k, v in nodes.items() if v["phase"] == "WaitingForApproval"))')

say "Approving it: kubectl annotate workflowrun ${RUN} approve.kdag.dev/${GATE}=$(k auth whoami -o jsonpath='{.status.userInfo.username}')"
k -n "${NAMESPACE}" annotate workflowrun "${RUN}" \
  "approve.kdag.dev/${GATE}=$(k auth whoami -o jsonpath='{.status.userInfo.username}')"

say "Progress until the end"
"${KUBECTL}" -n "${NAMESPACE}" get workflowrun "${RUN}" -w &  # not `k`: $! must be kubectl itself
WATCH=$!
k -n "${NAMESPACE}" wait --for=condition=Succeeded "workflowrun/${RUN}" --timeout=300s >/dev/null
kill "${WATCH}" 2>/dev/null || true; wait "${WATCH}" 2>/dev/null || true; WATCH=""
k -n "${NAMESPACE}" get workflowrun "${RUN}"

say "Done"
"${BIN}/kubectl-kdag" -n "${NAMESPACE}" tree "${RUN}"
k -n "${NAMESPACE}" get jobs -l "kdag.dev/run=${RUN}"
echo
echo "Look around: export KUBECONFIG=${KUBECONFIG}; kubectl -n ${NAMESPACE} get kdag"
