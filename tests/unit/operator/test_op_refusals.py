"""A node whose pods the API server refuses (PodSecurity) fails with the admission message,
instead of hanging until its timeout."""

from __future__ import annotations

import asyncio
from typing import Any

from conftest import Harness, run_body

from kdag.operator.refusals import RefusalFinder

REFUSAL = (
    'Error creating: pods "r1-a-1-x7k2q" is forbidden: violates PodSecurity '
    '"restricted:latest": runAsNonRoot != true (pod or container "main" must set '
    "securityContext.runAsNonRoot=true)"
)
QUOTA = 'Error creating: pods "r1-a-1-x7k2q" is forbidden: exceeded quota: pods, requested: pods=1'


def _without_pods(h: Harness, name: str) -> dict[str, Any]:
    """The Job as the Job controller leaves it when its pod create is refused."""
    job = h.kube.jobs[("ns", name)]
    job["status"] = {
        "startTime": "2026-11-22T02:00:01Z",
        "ready": 0,
        "terminating": 0,
        "uncountedTerminatedPods": {},
    }
    job["metadata"]["resourceVersion"] = h.kube._next_rv()
    h.cache.put_job(job)
    return job


def _failed_create(job: dict[str, Any], message: str) -> dict[str, Any]:
    return {
        "metadata": {"namespace": "ns", "name": f"{job['metadata']['name']}.1"},
        "involvedObject": {
            "kind": "Job",
            "name": job["metadata"]["name"],
            "uid": job["metadata"]["uid"],
        },
        "reason": "FailedCreate",
        "type": "Warning",
        "message": message,
    }


def _look(
    h: Harness, key: tuple[str, str], name: str, recheck_seconds: tuple[float, ...] = ()
) -> list[tuple[str, str]]:
    """Offer the cached Job to a RefusalFinder and wait for its look; the runs it woke."""
    woken: list[tuple[str, str]] = []

    async def look() -> None:
        finder = RefusalFinder(h.kube, h.cache, woken.append, recheck_seconds)  # type: ignore[arg-type]
        job = h.cache.job(key, name)
        assert job is not None
        finder.consider(key, job)
        await finder.wait()

    asyncio.run(look())
    return woken


def test_a_node_whose_pods_pod_security_refuses_fails_with_the_admission_message(
    h: Harness,
) -> None:
    key = h.create_run(run_body(nodes=[{"name": "a", "timeoutSeconds": 3600}]))
    h.reconcile(key)
    job = _without_pods(h, h.job(key, "a", 1))
    h.kube.cluster_events.append(_failed_create(job, REFUSAL))

    assert _look(h, key, h.job(key, "a", 1)) == [key]
    h.reconcile(key)

    node = h.status(key)["nodes"]["a"]
    assert node["phase"] == "Failed"
    assert "violates PodSecurity" in node["message"]
    assert node["message"].startswith("the Job's pod could not be created: Error creating")
    assert h.status(key)["phase"] == "Failed"
    # The Job would go on trying until its deadline, for an attempt that is over.
    assert ("delete_job", h.job(key, "a", 1)) in h.kube.calls


def test_the_retry_policy_applies_to_a_refused_attempt(h: Harness) -> None:
    key = h.create_run(run_body(nodes=[{"name": "a", "retry": {"limit": 1}}]))
    h.reconcile(key)
    h.kube.cluster_events.append(_failed_create(_without_pods(h, h.job(key, "a", 1)), REFUSAL))
    _look(h, key, h.job(key, "a", 1))
    h.reconcile(key)
    node = h.status(key)["nodes"]["a"]
    assert node["phase"] == "Retrying"
    assert "violates PodSecurity" in node["message"]


def test_a_full_quota_is_waited_out_not_failed(h: Harness) -> None:
    key = h.create_run(run_body())
    h.reconcile(key)
    h.kube.cluster_events.append(_failed_create(_without_pods(h, h.job(key, "a", 1)), QUOTA))
    assert _look(h, key, h.job(key, "a", 1), recheck_seconds=(0.0, 0.0)) == []
    # One look and two more, then it stops: bounded, whatever the Job does afterwards.
    assert [c[0] for c in h.kube.calls].count("list_events") == 3
    h.reconcile(key)
    assert h.status(key)["nodes"]["a"]["phase"] == "Running"


def test_a_refusal_posted_after_the_first_look_is_found_by_a_later_one(h: Harness) -> None:
    key = h.create_run(run_body())
    h.reconcile(key)
    job = _without_pods(h, h.job(key, "a", 1))
    list_events = h.kube.list_events

    async def event_posted_late(namespace: str, selector: str) -> list[dict[str, Any]]:
        found = await list_events(namespace, selector)
        h.kube.cluster_events.append(_failed_create(job, REFUSAL))
        return found

    h.kube.list_events = event_posted_late  # type: ignore[method-assign]
    assert _look(h, key, h.job(key, "a", 1), recheck_seconds=(0.0, 0.0)) == [key]
    assert [c[0] for c in h.kube.calls].count("list_events") == 2


def test_a_job_that_gets_its_pod_is_looked_at_no_more(h: Harness) -> None:
    key = h.create_run(run_body())
    h.reconcile(key)
    job = _without_pods(h, h.job(key, "a", 1))
    list_events = h.kube.list_events

    async def pod_made_meanwhile(namespace: str, selector: str) -> list[dict[str, Any]]:
        job["status"]["active"] = 1
        job["metadata"]["resourceVersion"] = h.kube._next_rv()
        h.cache.put_job(job)
        return await list_events(namespace, selector)

    h.kube.list_events = pod_made_meanwhile  # type: ignore[method-assign]
    assert _look(h, key, h.job(key, "a", 1), recheck_seconds=(0.0, 0.0)) == []
    assert [c[0] for c in h.kube.calls].count("list_events") == 1


def test_a_job_with_its_pod_is_not_looked_at(h: Harness) -> None:
    key = h.create_run(run_body())
    h.reconcile(key)
    h.kube.jobs[("ns", h.job(key, "a", 1))]["status"] = {
        "startTime": "2026-11-22T02:00:01Z",
        "active": 1,
    }
    h.kube.jobs[("ns", h.job(key, "a", 1))]["metadata"]["resourceVersion"] = h.kube._next_rv()
    h.sync_from_api()
    assert _look(h, key, h.job(key, "a", 1)) == []
    assert "list_events" not in [c[0] for c in h.kube.calls]
