"""Runs in a namespace that enforces the PodSecurity `restricted` level (the real
kube-apiserver's admission; KWOK only plays the kubelet).

- With runAsNonRoot set by the workflow (kdag supplies the rest of `restricted`:
  allowPrivilegeEscalation false, capabilities.drop [ALL], seccompProfile RuntimeDefault),
  a run succeeds.
- A node whose pods the namespace refuses fails at once with the admission message, not
  after its timeout with "Job was active longer than specified deadline".
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.cluster import kubectl, wait_for
from tests.support.operator import apply, create, jobs, pods, run_of, wait_phase, workflow

pytestmark = pytest.mark.operator

NON_ROOT = {"runAsNonRoot": True, "runAsUser": 65532}


def _enforce_restricted(namespace: str) -> None:
    kubectl(
        "label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted",
        "--overwrite",
    )  # fmt: skip


@pytest.mark.parametrize(
    "defaults",
    [
        pytest.param({"securityContext": NON_ROOT}, id="defaults.securityContext"),
        pytest.param({"podTemplate": {"securityContext": NON_ROOT}}, id="podTemplate"),
    ],
)
def test_a_run_that_asks_for_a_non_root_user_succeeds_in_a_restricted_namespace(
    namespace: str, defaults: dict[str, Any]
) -> None:
    _enforce_restricted(namespace)
    nodes = [{"name": "extract"}, {"name": "load", "dependsOn": ["extract"]}]
    apply(namespace, workflow("etl", nodes, defaults=defaults))
    run = create(namespace, run_of("etl"))
    done = wait_phase(namespace, run, "Succeeded")
    assert {n["phase"] for n in done["nodes"].values()} == {"Succeeded"}
    # The pods really ran (the Job controller made them past admission).
    (pod,) = pods(namespace, f"kdag.dev/run={run},kdag.dev/node=extract")
    container = pod["spec"]["containers"][0]
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}


def test_a_node_whose_pods_are_forbidden_fails_at_once_with_the_admission_message(
    namespace: str,
) -> None:
    _enforce_restricted(namespace)
    # No runAsNonRoot: `restricted` refuses the pod, though not the Job.
    apply(namespace, workflow("rooty", [{"name": "a", "timeoutSeconds": 3600}]))
    run = create(namespace, run_of("rooty"))
    # Far inside the node's hour: the wait gives up long before the Job's deadline.
    done = wait_phase(namespace, run, "Failed", timeout=120)
    node = done["nodes"]["a"]
    assert node["phase"] == "Failed"
    assert "violates PodSecurity" in node["message"]
    assert "runAsNonRoot" in node["message"]
    # The Job is deleted, so no pod can start for the finished attempt should the
    # namespace's label change.
    wait_for(lambda: not jobs(namespace, run), timeout=120, what="the refused Job deleted")
