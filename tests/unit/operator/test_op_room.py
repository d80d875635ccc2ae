"""The reconciler when the namespace or the run object runs out of room: a ResourceQuota
that refuses Jobs, finished Jobs deleted to free it, a status the API server will not store."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from conftest import Harness, run_body

from kdag.operator.kube import KubeError

FAN = [{"name": "fan", "forEach": ["a", "b", "c", "d"]}]
INSTANCES = ["fan[a]", "fan[b]", "fan[c]", "fan[d]"]


def calls(h: Harness, verb: str) -> list[tuple[str, ...]]:
    return [c for c in h.kube.calls if c[0] == verb]


def finish_active_jobs(h: Harness) -> None:
    for (namespace, name), job in list(h.kube.jobs.items()):
        if not job["status"]:
            h.kube.finish_job(namespace, name)


def test_a_create_refused_by_a_quota_still_writes_the_status_with_the_node_queued() -> None:
    h = Harness()
    h.kube.job_quota = 2
    key = h.create_run(run_body(nodes=FAN))
    h.reconcile(key)  # does not raise: the pass goes on to write the status
    status = h.status(key)
    assert status["phase"] == "Running"
    phases = {k: status["nodes"][k]["phase"] for k in INSTANCES}
    assert phases == {
        "fan[a]": "Running",
        "fan[b]": "Running",
        "fan[c]": "Queued",
        "fan[d]": "Queued",
    }
    refused = status["nodes"]["fan[c]"]
    assert refused["reason"] == "JobRefused"
    assert "exceeded quota: jobs" in refused["message"]
    assert "attempt" not in refused
    assert len(h.kube.jobs) == 2
    assert h.metrics.reconcile_errors._value.get() == 0
    assert h.due[key] == h.clock.now + timedelta(seconds=1)  # retried with backoff


def test_with_job_cleanup_a_quota_bound_fan_out_completes_with_one_job_per_node() -> None:
    h = Harness(job_retention_policy="DeleteSucceeded")
    h.kube.job_quota = 2
    key = h.create_run(run_body(nodes=FAN))
    h.reconcile(key)
    for _ in range(30):
        if h.status(key).get("phase") == "Succeeded":
            break
        finish_active_jobs(h)
        h.sync_from_api()
        h.clock.now = h.due.get(key) or h.clock.now
        h.reconcile(key)
    status = h.status(key)
    assert status["phase"] == "Succeeded"
    made = {c[1] for c in calls(h, "create_job")}
    assert len(made) == 4 and all(name.endswith("-1") for name in made)
    assert {status["nodes"][k]["attempt"] for k in INSTANCES} == {1}
    h.sync_from_api()
    h.reconcile(key)  # the finished run's last Jobs go too
    assert h.kube.jobs == {}
    assert sorted(c[1] for c in calls(h, "delete_job")) == sorted(made)


def test_without_job_cleanup_a_quota_bound_fan_out_waits_queued_with_the_message() -> None:
    h = Harness()
    h.kube.job_quota = 2
    key = h.create_run(run_body(nodes=FAN))
    h.reconcile(key)
    for _ in range(4):
        finish_active_jobs(h)
        h.sync_from_api()
        h.clock.now = h.due.get(key) or h.clock.now
        h.reconcile(key)
    status = h.status(key)
    assert status["phase"] == "Running"
    assert status["nodes"]["fan[a]"]["phase"] == "Succeeded"
    assert status["nodes"]["fan[c]"]["phase"] == "Queued"
    assert "exceeded quota" in status["nodes"]["fan[c]"]["message"]
    assert calls(h, "delete_job") == []
    assert key in h.due  # still trying, on a timer


def test_a_deleted_finished_job_is_not_taken_for_one_deleted_by_hand() -> None:
    h = Harness(job_retention_policy="Delete")
    key = h.create_run(run_body(nodes=[{"name": "a"}, {"name": "b", "dependsOn": ["a"]}]))
    h.reconcile(key)
    h.kube.finish_job("ns", h.job(key, "a", 1), message='{"rows": "12"}')
    h.sync_from_api()
    h.reconcile(key)
    assert calls(h, "delete_job") == []  # first the outputs are stored
    assert h.due[key] == h.clock.now
    h.reconcile(key)
    assert calls(h, "delete_job") == [("delete_job", h.job(key, "a", 1))]
    h.cache.remove_job(_deleted_job(h, h.job(key, "a", 1)))  # the watch's DELETED event
    h.reconcile(key)
    node = h.status(key)["nodes"]["a"]
    assert node["phase"] == "Succeeded"
    assert node["outputs"] == {"rows": "12"}
    assert calls(h, "delete_job") == [("delete_job", h.job(key, "a", 1))]  # asked once


def _deleted_job(h: Harness, name: str) -> dict[str, Any]:
    """The DELETED watch event's object of a Job the fake API no longer has."""
    cached = h.cache.job(("ns", "r1"), name)
    assert cached is not None
    return {
        "metadata": {
            "name": name,
            "namespace": "ns",
            "uid": cached.uid,
            "labels": {"kdag.dev/run": "r1", "app.kubernetes.io/managed-by": "kdag"},
            "annotations": {"kdag.dev/node-instance": "a"},
            "ownerReferences": [{"uid": "uid-r1", "controller": True}],
        }
    }


def test_a_status_the_api_server_will_not_store_fails_the_run_instead_of_retrying() -> None:
    h = Harness()
    key = h.create_run(run_body(nodes=[{"name": "a"}, {"name": "b"}]))
    h.reconcile(key)
    h.kube.finish_job("ns", h.job(key, "a", 1), message='{"big": "x"}')
    h.sync_from_api()
    body = {"kind": "Status", "code": 500, "message": "etcdserver: request is too large"}
    h.kube.fail_next["patch_run_status"] = KubeError(500, "Internal", json.dumps(body))
    h.reconcile_safely(key)
    status = h.status(key)
    assert status["phase"] == "Failed"
    assert "too large for the API server to store" in status["message"]
    assert "etcdserver: request is too large" in status["message"]
    (succeeded,) = [c for c in status["conditions"] if c["type"] == "Succeeded"]
    assert succeeded["status"] == "False"
    assert h.metrics.reconcile_errors._value.get() == 0
    assert key not in h.due
    assert ("delete_job", h.job(key, "b", 1)) in h.kube.calls  # its running Job is stopped
    assert [e.reason for e in h.events.posted][-1] == "StatusTooLarge"
    # Counted as any other failed run, and no longer active.
    value = h.metrics.registry.get_sample_value
    assert value("kdag_runs_finished_total", {"phase": "Failed"}) == 1
    assert value("kdag_runs_active", {"phase": "Running"}) == 0
