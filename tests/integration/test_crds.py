"""The generated CRDs on a real kube-apiserver: accepted (structural, CEL within the cost
budget), and enforcing at admission what tests/unit/api/ checks offline."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.support.cluster import Cluster, KubectlError, kubectl, kubectl_json

CRD_DIR = Path(__file__).resolve().parents[2] / "crds"
CRD_NAMES = ("workflows.kdag.dev", "workflowruns.kdag.dev")


@pytest.fixture(scope="module")
def crds(cluster: Cluster) -> None:
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD_DIR))
    kubectl(
        "wait",
        "--for=condition=Established",
        *(f"crd/{name}" for name in CRD_NAMES),
        "--timeout=60s",
    )


def workflow(nodes: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kdag.dev/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": "wf"},
        "spec": {"nodes": nodes, **spec},
    }


def run(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kdag.dev/v1alpha1",
        "kind": "WorkflowRun",
        "metadata": {"name": "run"},
        "spec": spec,
    }


def apply(namespace: str, obj: dict[str, Any]) -> str:
    return kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(obj))


def rejection(namespace: str, obj: dict[str, Any]) -> str:
    """The API server's message for an object it must refuse."""
    with pytest.raises(KubectlError) as refused:
        kubectl("create", "--dry-run=server", "-n", namespace, "-f", "-", input=json.dumps(obj))
    return str(refused.value.stderr)


@pytest.mark.usefixtures("crds")
def test_crds_are_accepted_as_structural_schemas() -> None:
    for name in CRD_NAMES:
        crd = kubectl_json("get", "crd", name)
        conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
        assert conditions.get("Established") == "True", conditions
        assert conditions.get("NonStructuralSchema") != "True", conditions


@pytest.mark.usefixtures("crds")
def test_short_names_and_the_kdag_category_list_both_kinds(namespace: str) -> None:
    apply(namespace, workflow([{"name": "a", "image": "busybox"}]))
    apply(namespace, run(workflowRef={"name": "wf"}))
    assert "wf" in kubectl("get", "kwf", "-n", namespace, "-o", "name")
    assert "run" in kubectl("get", "kwfr", "-n", namespace, "-o", "name")
    listed = kubectl("get", "kdag", "-n", namespace, "-o", "name").split()
    assert sorted(listed) == ["workflow.kdag.dev/wf", "workflowrun.kdag.dev/run"]


@pytest.mark.usefixtures("crds")
def test_printer_columns(namespace: str) -> None:
    apply(namespace, workflow([{"name": "a"}], schedule={"cron": "0 2 * * *"}))
    apply(namespace, run(workflowRef={"name": "wf"}))
    assert kubectl("get", "workflows", "-n", namespace).split("\n")[0].split() == [
        "NAME", "NODES", "SCHEDULE", "LAST", "RUN", "AGE"
    ]  # fmt: skip
    assert "0 2 * * *" in kubectl("get", "workflows", "-n", namespace)
    assert kubectl("get", "workflowruns", "-n", namespace).split("\n")[0].split() == [
        "NAME", "WORKFLOW", "PHASE", "PROGRESS", "AGE", "DURATION"
    ]  # fmt: skip


@pytest.mark.usefixtures("crds")
def test_kubectl_explain_teaches_the_fields() -> None:
    out = kubectl("explain", "workflow.spec.nodes.dependsOn")
    assert "Nodes that must succeed" in out


@pytest.mark.usefixtures("crds")
def test_a_valid_workflow_and_runs_are_admitted(namespace: str) -> None:
    apply(
        namespace,
        workflow(
            [
                {"name": "a", "image": "busybox", "resources": {"requests": {"cpu": 1}}},
                {"name": "b", "dependsOn": ["a"], "forEach": ["x", "y"]},
                {"name": "gate", "dependsOn": ["b"], "approval": {"message": "ok?"}},
            ],
            **{"finally": [{"name": "f1"}, {"name": "f2", "dependsOn": ["f1"]}]},
        ),
    )
    apply(namespace, run(workflowRef={"name": "wf"}, params={"x": "1"}))
    inline = run(workflow={"nodes": [{"name": "a"}, {"name": "b", "dependsOn": ["a"]}]})
    inline["metadata"]["name"] = "inline"
    apply(namespace, inline)


BAD = {
    "unknown dependency": (
        workflow([{"name": "a"}, {"name": "b", "dependsOn": ["a", "nope"]}]),
        "node b depends on nope, which is not a node in nodes",
    ),
    "node depends on a finally node": (
        workflow([{"name": "a", "dependsOn": ["z"]}], **{"finally": [{"name": "z"}]}),
        "node a depends on z, which is not a node in nodes",
    ),
    "finally node depends on a node": (
        workflow([{"name": "a"}], **{"finally": [{"name": "z", "dependsOn": ["a"]}]}),
        "finally node z depends on a, which is not a node in finally",
    ),
    "name in nodes and finally": (
        workflow([{"name": "a"}], **{"finally": [{"name": "a"}]}),
        "node name a is used in both nodes and finally",
    ),
    # (The dependsOn rule adds "insert failed: key a already exists": its name map cannot
    # hold a duplicate. Noisy, but it names the node too.)
    "name twice in nodes": (
        workflow([{"name": "a"}, {"name": "a"}]),
        'spec.nodes[1]: Duplicate value: {"name":"a"}',
    ),
    "forEach and forEachFrom": (
        workflow([{"name": "a", "forEach": ["x"], "forEachFrom": "[]"}]),
        "node a: forEach and forEachFrom are mutually exclusive",
    ),
    "approval with an image": (
        workflow([{"name": "a", "approval": {}, "image": "busybox"}]),
        "node a is an approval gate and runs no container",
    ),
    "node name not a DNS label": (workflow([{"name": "A_1"}]), "spec.nodes[0].name"),
    "run with workflowRef and workflow": (
        run(workflowRef={"name": "wf"}, workflow={"nodes": [{"name": "a"}]}),
        "set exactly one of workflowRef",
    ),
    "run with neither": (run(params={"x": "1"}), "set exactly one of workflowRef"),
    "inline workflow with an unknown dependency": (
        run(workflow={"nodes": [{"name": "b", "dependsOn": ["nope"]}]}),
        "node b depends on nope, which is not a node in nodes",
    ),
}


@pytest.mark.usefixtures("crds")
@pytest.mark.parametrize(("obj", "message"), BAD.values(), ids=BAD.keys())
def test_invalid_objects_are_refused_with_a_clear_message(
    namespace: str, obj: dict[str, Any], message: str
) -> None:
    assert message in rejection(namespace, obj)


@pytest.mark.usefixtures("crds")
def test_status_snapshot_is_not_checked_by_the_spec_rules(namespace: str) -> None:
    # The operator writes the snapshot; the admission rules guard only what users write.
    apply(namespace, run(workflowRef={"name": "wf"}))
    patch = {"status": {"workflow": {"nodes": [{"name": "a", "dependsOn": ["nope"]}]}}}
    kubectl(
        "patch", "workflowrun", "run", "-n", namespace, "--subresource=status",
        "--type=merge", "-p", json.dumps(patch),
    )  # fmt: skip


def largest_workflow_spec() -> dict[str, Any]:
    """As many nodes and dependencies as the schema allows: the CEL rules must still fit the
    API server's runtime cost limit (1M per rule), not only its estimate."""

    def chain(prefix: str) -> list[dict[str, Any]]:
        nodes: list[dict[str, Any]] = [{"name": f"{prefix}0"}]
        for i in range(1, 500):
            deps = [f"{prefix}{j}" for j in range(max(0, i - 100), i)]
            nodes.append({"name": f"{prefix}{i}", "dependsOn": deps})
        return nodes

    return {"nodes": chain("n"), "finally": chain("f")}


@pytest.mark.usefixtures("crds")
def test_the_largest_workflow_the_schema_allows_is_admitted(namespace: str) -> None:
    big = workflow([])
    big["spec"] = largest_workflow_spec()
    kubectl("create", "--dry-run=server", "-n", namespace, "-f", "-", input=json.dumps(big))
    inline = run(workflow=largest_workflow_spec())
    kubectl("create", "--dry-run=server", "-n", namespace, "-f", "-", input=json.dumps(inline))
