"""The local control plane behaves like a real cluster where kdag relies on it.

Real kube-apiserver, kube-controller-manager (Job controller, garbage
collector) and kube-scheduler; KWOK only plays the kubelet, steered by the
sim.kdag.dev/* pod annotations (hack/kwok/pod-stages.yaml, docs/testing.md).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.cluster import (
    Cluster,
    KubectlError,
    kubectl,
    kubectl_json,
    namespace_policy,
    wait_for,
)


def job_manifest(
    name: str,
    namespace: str,
    annotations: dict[str, str] | None = None,
    active_deadline_seconds: int | None = None,
) -> str:
    spec: dict[str, Any] = {
        # One try: a failure is final, so the test needs no retry back-off.
        "backoffLimit": 0,
        "template": {
            "metadata": {"annotations": annotations or {}},
            "spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "main", "image": "busybox", "command": ["true"]}],
            },
        },
    }
    if active_deadline_seconds is not None:
        spec["activeDeadlineSeconds"] = active_deadline_seconds
    return json.dumps(
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": name, "namespace": namespace},
            "spec": spec,
        }
    )


def run_job(namespace: str, name: str, condition: str, **kwargs: Any) -> dict[str, Any]:
    """Create a Job, wait for the Job condition, return its (only) pod."""
    kubectl("apply", "-f", "-", input=job_manifest(name, namespace, **kwargs))
    kubectl("wait", f"--for=condition={condition}", f"job/{name}", "-n", namespace, "--timeout=60s")
    pods = kubectl_json(
        "get", "pods", "-n", namespace, "-l", f"batch.kubernetes.io/job-name={name}"
    )
    assert len(pods["items"]) == 1, pods["items"]
    pod: dict[str, Any] = pods["items"][0]
    return pod


def terminated(pod: dict[str, Any]) -> dict[str, Any]:
    state: dict[str, Any] = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    return state


def test_fake_nodes_are_ready(cluster: Cluster) -> None:
    nodes = kubectl_json("get", "nodes", "-l", "type=kwok")["items"]
    assert sorted(n["metadata"]["name"] for n in nodes) == [
        "kwok-node-0",
        "kwok-node-1",
        "kwok-node-2",
    ]
    for node in nodes:
        ready = {c["type"]: c["status"] for c in node["status"]["conditions"]}["Ready"]
        assert ready == "True", node["metadata"]["name"]
        assert node["status"]["allocatable"]["cpu"] == "4"
    # And what a user sees.
    assert "kwok-node-0" in kubectl("get", "nodes")


def test_plain_job_completes(namespace: str) -> None:
    pod = run_job(namespace, "plain", "Complete")
    assert pod["status"]["phase"] == "Succeeded"
    assert terminated(pod)["exitCode"] == 0
    assert terminated(pod)["reason"] == "Completed"
    # The real scheduler placed it on one of the fake nodes.
    assert pod["spec"]["nodeName"].startswith("kwok-node-")


def test_annotated_failure_fails_the_job_with_that_exit_code(namespace: str) -> None:
    pod = run_job(
        namespace,
        "fails",
        "Failed",
        annotations={"sim.kdag.dev/exit-code": "3", "sim.kdag.dev/message": "disk full"},
    )
    assert pod["status"]["phase"] == "Failed"
    assert terminated(pod)["exitCode"] == 3
    assert terminated(pod)["reason"] == "Error"
    assert terminated(pod)["message"] == "disk full"
    job = kubectl_json("get", "job", "fails", "-n", namespace)
    failed = [c for c in job["status"]["conditions"] if c["type"] == "Failed"]
    assert failed[0]["reason"] == "BackoffLimitExceeded"


def test_termination_message_reaches_the_pod_status(namespace: str) -> None:
    outputs = {"rows": "42", "path": "s3://bucket/key"}
    pod = run_job(
        namespace,
        "outputs",
        "Complete",
        annotations={"sim.kdag.dev/message": json.dumps(outputs), "sim.kdag.dev/duration": "10ms"},
    )
    assert json.loads(terminated(pod)["message"]) == outputs


def test_hanging_pod_hits_the_active_deadline(namespace: str) -> None:
    kubectl(
        "apply",
        "-f",
        "-",
        input=job_manifest(
            "hangs", namespace, annotations={"sim.kdag.dev/hang": "true"}, active_deadline_seconds=2
        ),
    )
    kubectl("wait", "--for=condition=Failed", "job/hangs", "-n", namespace, "--timeout=60s")
    job = kubectl_json("get", "job", "hangs", "-n", namespace)
    failed = [c for c in job["status"]["conditions"] if c["type"] == "Failed"]
    assert failed[0]["reason"] == "DeadlineExceeded"
    # The Job controller deleted the running pod, and KWOK let it go.
    wait_for(
        lambda: (
            not kubectl_json(
                "get", "pods", "-n", namespace, "-l", "batch.kubernetes.io/job-name=hangs"
            )["items"]
        ),
        what="the hanging pod to be deleted",
    )


def test_deleting_a_job_deletes_its_pods(namespace: str) -> None:
    kubectl(
        "apply",
        "-f",
        "-",
        input=job_manifest("deleted", namespace, annotations={"sim.kdag.dev/hang": "true"}),
    )
    selector = "batch.kubernetes.io/job-name=deleted"
    kubectl(
        "wait",
        "--for=jsonpath={.status.phase}=Running",
        "pod",
        "-l",
        selector,
        "-n",
        namespace,
        "--timeout=60s",
    )
    # Foreground: the garbage collector deletes the pods before the Job.
    kubectl("delete", "job", "deleted", "-n", namespace, "--cascade=foreground", "--timeout=60s")
    assert not kubectl_json("get", "pods", "-n", namespace, "-l", selector)["items"]


def test_pod_too_big_for_any_node_is_unschedulable(namespace: str) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "huge", "namespace": namespace},
        "spec": {
            "containers": [
                {"name": "main", "image": "busybox", "resources": {"requests": {"cpu": "64"}}}
            ]
        },
    }
    kubectl("apply", "-f", "-", input=json.dumps(pod))
    kubectl(
        "wait", "--for=condition=PodScheduled=False", "pod/huge", "-n", namespace, "--timeout=60s"
    )
    status = kubectl_json("get", "pod", "huge", "-n", namespace)["status"]
    assert status["phase"] == "Pending"
    scheduled = next(c for c in status["conditions"] if c["type"] == "PodScheduled")
    assert scheduled["reason"] == "Unschedulable"
    assert "Insufficient cpu" in scheduled["message"]


def test_user_without_rights_is_forbidden(namespace: str) -> None:
    with pytest.raises(KubectlError) as denied:
        kubectl("--as=nobody", "get", "secrets", "-n", namespace)
    assert "Forbidden" in denied.value.stderr
    # The raw API call shows the HTTP status itself.
    with pytest.raises(KubectlError) as raw:
        kubectl("--as=nobody", "get", "--raw", f"/api/v1/namespaces/{namespace}/secrets", "-v=6")
    assert "403 Forbidden" in raw.value.stderr


@pytest.fixture
def deny_configmaps_policy(namespace: str) -> Iterator[str]:
    """A ValidatingAdmissionPolicy bound to this test's namespace only."""
    name = f"kdag-test-deny-{uuid.uuid4().hex[:8]}"
    rules = [
        {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"],
         "resources": ["configmaps"]},
    ]  # fmt: skip
    validations = [
        {
            "expression": "!object.metadata.name.startsWith('forbidden-')",
            "message": "kdag test policy: forbidden- names are not allowed",
        }
    ]
    with namespace_policy(name, namespace, rules, validations):
        yield name


def test_validating_admission_policy_denies_with_its_message(
    namespace: str, deny_configmaps_policy: str
) -> None:
    # The API server picks a new policy up asynchronously: wait until it bites.
    def denied() -> str:
        try:
            kubectl("create", "configmap", f"forbidden-{uuid.uuid4().hex[:6]}", "-n", namespace)
        except KubectlError as err:
            return str(err.stderr)
        return ""

    message = wait_for(denied, timeout=30, what="the policy to deny")
    assert "kdag test policy: forbidden- names are not allowed" in message
    assert deny_configmaps_policy in message
    # Requests the policy does not match still pass.
    kubectl("create", "configmap", "allowed", "-n", namespace)


def test_pod_not_owned_by_a_job_keeps_running_until_deleted(namespace: str) -> None:
    kubectl("run", "server", "--image=busybox", "-n", namespace)
    kubectl("wait", "--for=condition=Ready", "pod/server", "-n", namespace, "--timeout=60s")
    # A pod that Stages would finish gets there in ~300ms; give this one far
    # longer (a Job in the same namespace) and it must still be Running.
    run_job(namespace, "yardstick", "Complete", annotations={"sim.kdag.dev/duration": "1s"})
    assert kubectl_json("get", "pod", "server", "-n", namespace)["status"]["phase"] == "Running"
    kubectl("delete", "pod", "server", "-n", namespace, "--timeout=60s")
    assert not kubectl(
        "get", "pods", "-n", namespace, "--field-selector=metadata.name=server", "-o", "name"
    )
