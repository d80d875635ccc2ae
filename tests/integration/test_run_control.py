"""Steering runs on the real local cluster: approvals, suspend, cancel, operator restarts."""

from __future__ import annotations

from collections import Counter

import pytest

from tests.support.cluster import Cluster, job_of, kubectl, wait_for, wait_job_deleted
from tests.support.operator import (
    WAIT_SECONDS,
    apply,
    create,
    ensure_operator,
    get_run,
    jobs,
    node_phases,
    run_of,
    sim,
    status,
    wait_node,
    wait_phase,
    workflow,
)

pytestmark = pytest.mark.operator


def _gated(namespace: str, name: str, **approval: object) -> None:
    nodes = [
        {"name": "build"},
        {
            "name": "publish",
            "dependsOn": ["build"],
            "approval": {"message": "Ship it?", **approval},
        },
        {"name": "load", "dependsOn": ["publish"]},
    ]
    apply(namespace, workflow(name, nodes))


def test_approve_a_gate_with_kubectl_annotate(namespace: str) -> None:
    _gated(namespace, "gate")
    run = create(namespace, run_of("gate"))
    waiting = wait_phase(namespace, run, "WaitingForApproval")
    assert waiting["nodes"]["publish"]["message"] == "Ship it?"
    events = kubectl(
        "get", "events", "-n", namespace, "--field-selector", f"involvedObject.name={run}"
    )
    assert "ApprovalRequested" in events
    kubectl("annotate", "workflowrun", run, "-n", namespace, "approve.kdag.dev/publish=alice")
    done = wait_phase(namespace, run, "Succeeded")
    gate = done["nodes"]["publish"]
    assert gate["approvedBy"] == "alice"
    assert gate["answeredAt"]
    assert job_of(namespace, run, "publish") not in {
        j["metadata"]["name"] for j in jobs(namespace, run)
    }


def test_reject_a_gate(namespace: str) -> None:
    _gated(namespace, "nogo")
    run = create(namespace, run_of("nogo"))
    wait_phase(namespace, run, "WaitingForApproval")
    kubectl("annotate", "workflowrun", run, "-n", namespace, "reject.kdag.dev/publish=not today")
    done = wait_phase(namespace, run, "Failed")
    assert done["nodes"]["publish"]["rejectedBy"] == "not today"
    assert node_phases(done) == {"build": "Succeeded", "publish": "Failed", "load": "Skipped"}


def test_a_rerun_gate_waits_for_an_answer_given_after_the_rerun(namespace: str) -> None:
    _gated(namespace, "again")
    run = create(namespace, run_of("again"))
    wait_phase(namespace, run, "WaitingForApproval")
    # One user approves, another rejects in the same write: the reject wins.
    kubectl(
        "annotate", "workflowrun", run, "-n", namespace,
        "approve.kdag.dev/publish=alice", "reject.kdag.dev/publish=bob: numbers look wrong",
    )  # fmt: skip
    wait_phase(namespace, run, "Failed")
    kubectl("annotate", "workflowrun", run, "-n", namespace, "kdag.dev/rerun=1")
    wait_for(
        lambda: status(namespace, run).get("rerunToken") == "1",
        timeout=WAIT_SECONDS,
        what="the rerun to be recorded",
    )
    rerun = wait_phase(namespace, run, "WaitingForApproval")
    assert rerun["nodes"]["publish"]["phase"] == "WaitingForApproval"
    annotations = get_run(namespace, run)["metadata"].get("annotations") or {}
    assert not [k for k in annotations if k.endswith("kdag.dev/publish")]
    kubectl("annotate", "workflowrun", run, "-n", namespace, "approve.kdag.dev/publish=carol")
    done = wait_phase(namespace, run, "Succeeded")
    assert done["nodes"]["publish"]["approvedBy"] == "carol"
    assert done["reruns"] == 1


def test_an_unanswered_gate_times_out(namespace: str) -> None:
    _gated(namespace, "quiet", timeoutSeconds=2)
    run = create(namespace, run_of("quiet"))
    done = wait_phase(namespace, run, "Failed")
    assert done["nodes"]["publish"]["phase"] == "Failed"
    assert "approval timed out" in done["nodes"]["publish"]["message"]


def test_suspend_lets_running_nodes_finish_and_resume_continues(namespace: str) -> None:
    nodes = [{"name": "a", **sim(duration="2s")}, {"name": "b", "dependsOn": ["a"]}]
    apply(namespace, workflow("pause", nodes))
    run = create(namespace, run_of("pause"))
    wait_node(namespace, run, "a", "Running")
    kubectl("patch", "workflowrun", run, "-n", namespace, "--type=merge",
            "-p", '{"spec": {"suspend": true}}')  # fmt: skip
    wait_node(namespace, run, "a", "Succeeded")
    paused = wait_phase(namespace, run, "Suspended")
    assert paused["nodes"]["b"]["phase"] in ("Pending", "Queued")
    assert {j["metadata"]["name"] for j in jobs(namespace, run)} == {job_of(namespace, run, "a")}
    kubectl("patch", "workflowrun", run, "-n", namespace, "--type=merge",
            "-p", '{"spec": {"suspend": false}}')  # fmt: skip
    wait_phase(namespace, run, "Succeeded")


def test_cancel_deletes_running_jobs_and_runs_finally(namespace: str) -> None:
    nodes = [{"name": "a", **sim(hang=True)}, {"name": "b", "dependsOn": ["a"]}]
    apply(namespace, workflow("stopme", nodes, **{"finally": [{"name": "notify"}]}))
    run = create(namespace, run_of("stopme"))
    wait_node(namespace, run, "a", "Running")
    kubectl("patch", "workflowrun", run, "-n", namespace, "--type=merge",
            "-p", '{"spec": {"cancel": true}}')  # fmt: skip
    done = wait_phase(namespace, run, "Cancelled")
    assert node_phases(done) == {"a": "Cancelled", "b": "Cancelled", "notify": "Succeeded"}
    wait_job_deleted(namespace, run, "a")
    assert {j["metadata"]["name"] for j in jobs(namespace, run)} == {
        job_of(namespace, run, "notify")
    }


def test_a_killed_operator_resumes_every_run_without_duplicate_jobs(
    namespace: str, cluster: Cluster
) -> None:
    kdag_operator = ensure_operator(cluster)
    nodes = [
        {"name": "a", **sim(duration="1s")},
        {"name": "b", "dependsOn": ["a"], **sim(duration="1s")},
        {"name": "c", "dependsOn": ["a"], "forEach": ["x", "y", "z"], **sim(duration="1s")},
        {"name": "d", "dependsOn": ["b", "c"], **sim(duration="1s")},
    ]
    apply(namespace, workflow("crash", nodes))
    runs = [create(namespace, run_of("crash")) for _ in range(3)]
    # Mid-run in every run: b's Job is made. Its Running may never show in the status (b
    # runs 1 s, and progress is written at most every --status-hold-seconds).
    wait_for(
        lambda: all(any(j["metadata"]["labels"]["kdag.dev/node"] == "b" for j in jobs(namespace, r))
                    for r in runs),
        timeout=WAIT_SECONDS, what="node b's Job in every run",
    )  # fmt: skip
    kdag_operator.kill()
    # While it is down, Jobs finish unobserved.
    for r in runs:
        job = job_of(namespace, r, "b")
        kubectl("wait", "--for=condition=Complete", f"job/{job}", "-n", namespace,
                "--timeout=240s")  # fmt: skip
    kdag_operator.start()
    for r in runs:
        done = wait_phase(namespace, r, "Succeeded")
        attempts = Counter(
            (j["metadata"]["labels"]["kdag.dev/node"], j["metadata"]["labels"]["kdag.dev/attempt"])
            for j in jobs(namespace, r)
        )
        assert len(attempts) == 6
        assert set(attempts.values()) == {1}
        assert all(n.get("attempt", 1) == 1 for n in done["nodes"].values())


def test_the_operator_writes_no_annotations_or_finalizers_of_its_own(namespace: str) -> None:
    apply(namespace, workflow("clean", [{"name": "a"}]))
    run = create(namespace, run_of("clean"))
    wait_phase(namespace, run, "Succeeded")
    meta = get_run(namespace, run)["metadata"]
    assert not meta.get("finalizers")
    assert not [k for k in meta.get("annotations") or {} if "kopf" in k]
