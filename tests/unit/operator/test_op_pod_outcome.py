"""A node's attempt is decided by its pod as soon as the pod ends: dependents start without
waiting the second the Job controller takes to mark the Job finished (SPEC §8 latency)."""

from __future__ import annotations

import copy

from conftest import Harness, Wakes, run_body, watch_handlers_app

from kdag.operator.handlers import handle_job_event, handle_pod_event


def _pod_ends(
    h: Harness, key: tuple[str, str], instance: str, **pod: object
) -> list[tuple[str, str]]:
    """The node's pod ends; only its watch event arrives (the Job is still active).
    Returns the runs the event woke."""
    body = h.kube.end_pod(key[0], h.job_of(key, instance), **pod)  # type: ignore[arg-type]
    wakes = Wakes()
    handle_pod_event(watch_handlers_app(h.cache, wakes), "MODIFIED", body)
    return wakes.woken


def _job_event(h: Harness, key: tuple[str, str], instance: str) -> list[tuple[str, str]]:
    """The Job's watch event, as the API has it now; returns the runs it woke (the real
    reconciler says whether the run deletes its finished Jobs)."""
    wakes = Wakes(deletes_finished_jobs=h.reconciler.deletes_finished_jobs(key))
    job = copy.deepcopy(h.kube.jobs[(key[0], h.job_of(key, instance))])
    handle_job_event(watch_handlers_app(h.cache, wakes), "MODIFIED", job)
    return wakes.woken


def test_a_pod_that_succeeded_starts_its_dependents_before_its_job_completes() -> None:
    h = Harness()
    key = h.create_run(run_body(nodes=[{"name": "a"}, {"name": "b", "dependsOn": ["a"]}]))
    h.reconcile(key)
    assert _pod_ends(h, key, "a", message='{"rows": "12"}') == [key]
    h.reconcile(key)
    nodes = h.status(key)["nodes"]
    assert nodes["a"]["phase"] == "Succeeded"
    assert nodes["a"]["outputs"] == {"rows": "12"}
    assert nodes["a"]["finishedAt"] == "2026-11-22T02:00:04Z"  # when the container ended
    assert nodes["b"]["phase"] == "Running"
    assert h.job_of(key, "b")


def test_a_job_marked_complete_after_its_pod_decided_costs_no_pass() -> None:
    h = Harness()
    key = h.create_run(run_body(nodes=[{"name": "a"}, {"name": "b", "dependsOn": ["a"]}]))
    h.reconcile(key)
    job = h.kube.jobs[(key[0], h.job_of(key, "a"))]
    job["status"] = {"startTime": "2026-11-22T02:00:01Z", "active": 1}
    job["metadata"]["resourceVersion"] = "900"
    assert _job_event(h, key, "a") == []  # its start time: nothing to plan
    _pod_ends(h, key, "a")
    h.reconcile(key)
    assert h.status(key)["nodes"]["b"]["phase"] == "Running"
    h.kube.finish_job(key[0], h.job_of(key, "a"))
    assert _job_event(h, key, "a") == []  # the Job caught up with its pod


def test_a_job_marked_complete_after_its_pod_decided_wakes_a_run_that_deletes_it() -> None:
    h = Harness()
    nodes = [{"name": "a"}, {"name": "b", "dependsOn": ["a"]}]
    key = h.create_run(run_body(nodes=nodes, jobRetentionPolicy="DeleteSucceeded"))
    h.reconcile(key)
    _pod_ends(h, key, "a")
    h.reconcile(key)
    job = h.job_of(key, "a")
    h.kube.finish_job(key[0], job)
    assert _job_event(h, key, "a") == [key]
    h.reconcile(key)
    assert ("delete_job", job) in h.kube.calls


def test_a_job_that_fails_after_its_pod_succeeded_wakes_its_run() -> None:
    h = Harness()
    key = h.create_run(run_body(nodes=[{"name": "a"}, {"name": "b", "dependsOn": ["a"]}]))
    h.reconcile(key)
    _pod_ends(h, key, "a")
    h.reconcile(key)
    h.kube.finish_job(key[0], h.job_of(key, "a"), ok=False, reason="DeadlineExceeded")
    assert _job_event(h, key, "a") == [key]


def test_a_pod_that_failed_fails_its_attempt_naming_the_kubelets_reason() -> None:
    h = Harness()
    key = h.create_run(run_body(nodes=[{"name": "a"}]))
    h.reconcile(key)
    _pod_ends(h, key, "a", ok=False, exit_code=137, container_reason="OOMKilled")
    h.reconcile(key)
    status = h.status(key)
    assert status["phase"] == "Failed"
    assert status["nodes"]["a"]["phase"] == "Failed"
    assert status["nodes"]["a"]["message"].startswith("exit code 137 (OOMKilled)")


def test_a_pod_being_deleted_leaves_the_attempt_to_the_jobs_own_status() -> None:
    h = Harness()
    key = h.create_run(run_body(nodes=[{"name": "a", "timeoutSeconds": 5}]))
    h.reconcile(key)
    # The Job's deadline passed: the Job controller deletes the pod, the kubelet kills it.
    _pod_ends(h, key, "a", ok=False, exit_code=137, deleting=True)
    h.reconcile(key)
    assert h.status(key)["nodes"]["a"]["phase"] == "Running"
    h.kube.finish_job(key[0], h.job_of(key, "a"), ok=False, reason="DeadlineExceeded")
    h.sync_from_api()
    h.reconcile(key)
    assert h.status(key)["nodes"]["a"]["phase"] == "TimedOut"


def test_a_job_that_ends_otherwise_after_its_pod_succeeded_does_not_undo_the_node() -> None:
    h = Harness()
    key = h.create_run(
        run_body(nodes=[{"name": "a", "retry": {"limit": 2}}, {"name": "b", "dependsOn": ["a"]}])
    )
    h.reconcile(key)
    _pod_ends(h, key, "a")
    h.reconcile(key)
    # The Job's deadline passed in the second before the Job controller marked it Complete.
    job = h.job_of(key, "a")
    h.kube.finish_job(key[0], job, ok=False, reason="DeadlineExceeded")
    h.sync_from_api()
    h.reconcile(key)
    nodes = h.status(key)["nodes"]
    assert nodes["a"]["phase"] == "Succeeded"
    assert nodes["a"].get("attempt") == 1
    assert [c for c in h.kube.calls if c[0] == "create_job"] == [
        ("create_job", job),
        ("create_job", h.job_of(key, "b")),
    ]


def test_a_job_still_active_when_its_run_ended_is_deleted_once_it_completes() -> None:
    h = Harness()
    key = h.create_run(run_body(nodes=[{"name": "a"}], jobRetentionPolicy="DeleteSucceeded"))
    h.reconcile(key)
    job = h.job_of(key, "a")
    _pod_ends(h, key, "a")
    h.reconcile(key)
    assert h.status(key)["phase"] == "Succeeded"
    h.sync_from_api()
    h.reconcile(key)  # settled: the Job is still active, so it stays
    assert ("delete_job", job) not in h.kube.calls
    h.kube.finish_job(key[0], job)
    h.sync_from_api()
    h.reconcile(key)
    assert ("delete_job", job) in h.kube.calls


def test_a_job_completing_while_its_finished_runs_jobs_are_deleted_is_deleted_too() -> None:
    h = Harness()
    nodes = [{"name": "a"}, {"name": "b"}]
    key = h.create_run(run_body(nodes=nodes, jobRetentionPolicy="DeleteSucceeded"))
    h.reconcile(key)
    job_a, job_b = h.job_of(key, "a"), h.job_of(key, "b")
    h.kube.finish_job(key[0], job_a)
    h.sync_from_api()
    _pod_ends(h, key, "b")
    h.reconcile(key)
    assert h.status(key)["phase"] == "Succeeded"
    h.sync_from_api()
    deleting = h.kube.delete_job

    async def b_completes_meanwhile(namespace: str, name: str) -> bool:
        # b's Complete event lands while the settled pass awaits the deletion of a.
        h.kube.finish_job(namespace, job_b)
        h.cache.put_job(copy.deepcopy(h.kube.jobs[(namespace, job_b)]))
        return await deleting(namespace, name)

    h.kube.delete_job = b_completes_meanwhile  # type: ignore[method-assign]
    h.reconcile(key)
    assert ("delete_job", job_a) in h.kube.calls
    h.kube.delete_job = deleting  # type: ignore[method-assign]
    h.reconcile(key)  # the pass b's event asked for
    assert ("delete_job", job_b) in h.kube.calls


def test_a_container_that_cannot_pull_its_image_says_so_in_its_node_until_it_starts() -> None:
    h = Harness()
    key = h.create_run(run_body(nodes=[{"name": "a"}]))
    h.reconcile(key)
    job = h.job_of(key, "a")
    pod = h.kube.end_pod(key[0], job)
    (container,) = pod["status"]["containerStatuses"]
    pod["status"]["phase"] = "Pending"
    container["state"] = {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off"}}
    wakes = Wakes()
    woken = wakes.woken
    app = watch_handlers_app(h.cache, wakes)
    handle_pod_event(app, "MODIFIED", copy.deepcopy(pod))
    assert woken == [key]
    handle_pod_event(app, "MODIFIED", copy.deepcopy(pod))
    assert woken == [key]  # the same news once
    h.reconcile(key)
    node = h.status(key)["nodes"]["a"]
    assert (node["phase"], node["message"]) == ("Running", "ImagePullBackOff: Back-off")
    pod["status"]["phase"] = "Running"
    container["state"] = {"running": {}}
    handle_pod_event(app, "MODIFIED", copy.deepcopy(pod))
    assert woken == [key, key]
    h.reconcile(key)
    assert "message" not in h.status(key)["nodes"]["a"]
