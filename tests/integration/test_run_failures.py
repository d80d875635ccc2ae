"""Failures on the real local cluster: retries, timeouts, onFailure, and rerunning a run."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from tests.support.cluster import job_of, kubectl, wait_job_deleted
from tests.support.operator import (
    apply,
    create,
    jobs,
    node_phases,
    release_pod,
    run_of,
    sim,
    wait_node,
    wait_phase,
    workflow,
)

pytestmark = pytest.mark.operator


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _job(namespace: str, run: str, name: str) -> dict[str, object]:
    return next(j for j in jobs(namespace, run) if j["metadata"]["name"] == name)


def test_a_failed_attempt_is_retried_after_the_backoff_and_succeeds(namespace: str) -> None:
    retry = {"limit": 2, "backoffSeconds": 3, "factor": 2}
    apply(namespace, workflow("flaky", [{"name": "a", "retry": retry, **sim(hang=True)}]))
    run = create(namespace, run_of("flaky"))
    release_pod(namespace, run, "a", attempt=1, exit_code=1)
    retrying = wait_node(namespace, run, "a", "Retrying")
    assert retrying["retries"] == 1
    assert "exit code 1" in retrying["message"]
    release_pod(namespace, run, "a", attempt=2)
    done = wait_phase(namespace, run, "Succeeded")
    assert done["nodes"]["a"]["attempt"] == 2
    first = _job(namespace, run, job_of(namespace, run, "a"))
    second = _job(namespace, run, job_of(namespace, run, "a", 2))
    failed_at = next(
        c["lastTransitionTime"] for c in first["status"]["conditions"] if c["type"] == "Failed"
    )
    # The second attempt waited for the backoff (3s, whole-second timestamps).
    waited = _time(second["metadata"]["creationTimestamp"]) - _time(failed_at)
    assert waited >= timedelta(seconds=2)


def test_a_node_over_its_timeout_is_timed_out(namespace: str) -> None:
    apply(namespace, workflow("slow", [{"name": "a", "timeoutSeconds": 2, **sim(hang=True)}]))
    run = create(namespace, run_of("slow"))
    done = wait_phase(namespace, run, "Failed")
    assert done["nodes"]["a"]["phase"] == "TimedOut"
    assert _job(namespace, run, job_of(namespace, run, "a"))["spec"]["activeDeadlineSeconds"] == 2


def test_a_run_over_its_timeout_deletes_its_jobs_and_ends_timed_out(namespace: str) -> None:
    nodes = [{"name": "a", **sim(hang=True)}, {"name": "b", "dependsOn": ["a"]}]
    apply(namespace, workflow("late", nodes, timeoutSeconds=3))
    run = create(namespace, run_of("late"))
    done = wait_phase(namespace, run, "TimedOut")
    assert node_phases(done) == {"a": "TimedOut", "b": "Cancelled"}
    wait_job_deleted(namespace, run, "a")


@pytest.mark.parametrize(
    ("on_failure", "after_slow"),
    [("stop", "Skipped"), ("continue", "Succeeded")],
)
def test_on_failure_stop_starts_nothing_new_and_continue_runs_all_it_can(
    namespace: str, on_failure: str, after_slow: str
) -> None:
    nodes = [
        {"name": "bad", **sim(exit_code=2)},
        {"name": "slow", **sim(duration="2s")},
        {"name": "after-slow", "dependsOn": ["slow"]},
    ]
    apply(namespace, workflow("policy", nodes, onFailure=on_failure))
    run = create(namespace, run_of("policy"))
    done = wait_phase(namespace, run, "Failed")
    assert node_phases(done) == {"bad": "Failed", "slow": "Succeeded", "after-slow": after_slow}
    assert done["nodes"]["bad"]["exitCode"] == 2
    if on_failure == "stop":
        assert done["nodes"]["after-slow"]["skipReason"] == "RunStopping"


def test_rerun_reruns_only_the_failed_nodes(namespace: str) -> None:
    nodes = [
        {"name": "a"},
        {"name": "b", "dependsOn": ["a"], **sim(hang=True)},
        {"name": "c", "dependsOn": ["b"]},
    ]
    apply(namespace, workflow("again", nodes))
    run = create(namespace, run_of("again"))
    release_pod(namespace, run, "b", attempt=1, exit_code=1)
    failed = wait_phase(namespace, run, "Failed")
    assert node_phases(failed) == {"a": "Succeeded", "b": "Failed", "c": "Skipped"}
    kubectl("annotate", "workflowrun", run, "-n", namespace, "kdag.dev/rerun=1")
    release_pod(namespace, run, "b", attempt=2)
    done = wait_phase(namespace, run, "Succeeded")
    assert done["reruns"] == 1
    assert done["nodes"]["a"]["attempt"] == 1  # kept, not run again
    names = sorted(j["metadata"]["name"] for j in jobs(namespace, run))
    assert names == [
        job_of(namespace, run, "a"),
        job_of(namespace, run, "b"),
        job_of(namespace, run, "b", 2),
        job_of(namespace, run, "c"),
    ]
