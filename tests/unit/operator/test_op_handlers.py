from __future__ import annotations

import copy
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from kdag.operator.cache import Cache
from kdag.operator.handlers import handle_job_event, handle_pod_event, handle_run, handle_run_event
from kdag.operator.workflow_runs import WorkflowRuns


class Queue:
    def __init__(self) -> None:
        self.enqueued: list[tuple[str, str]] = []
        self.forgotten: list[tuple[str, str]] = []

    def enqueue(self, key: tuple[str, str]) -> None:
        self.enqueued.append(key)

    def forget(self, key: tuple[str, str]) -> None:
        self.forgotten.append(key)

    def deletes_finished_jobs(self, key: tuple[str, str]) -> bool:
        return False

    writing: bool = False

    def writing_status(self, key: tuple[str, str]) -> bool:
        return self.writing


class Refusals:
    def __init__(self) -> None:
        self.considered: list[tuple[tuple[str, str], str]] = []

    def consider(self, key: tuple[str, str], job: Any) -> None:
        self.considered.append((key, job.observation.name))


def app() -> Any:
    return SimpleNamespace(cache=Cache(), reconciler=Queue(), refusals=Refusals())


def run(rv: str, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "metadata": {"name": "r1", "namespace": "ns", "resourceVersion": rv, "generation": 1},
        "spec": {},
        "status": {"phase": "Running"},
    }
    body["metadata"].update(changes.pop("metadata", {}))
    body.update(changes)
    return body


def test_new_and_changed_runs_are_enqueued_but_our_own_status_writes_are_not() -> None:
    a = app()
    handle_run_event(a, None, run("1"))
    assert a.reconciler.enqueued == [("ns", "r1")]
    # The answer to our status patch is already cached; its watch event changes nothing.
    written = run("2", status={"phase": "Succeeded"})
    a.cache.put_run(copy.deepcopy(written))
    handle_run_event(a, "MODIFIED", written)
    assert len(a.reconciler.enqueued) == 1
    # A stale event (older resourceVersion) is ignored.
    handle_run_event(a, "MODIFIED", run("1", metadata={"annotations": {"x": "y"}}))
    assert len(a.reconciler.enqueued) == 1
    assert a.cache.run(("ns", "r1"))["metadata"]["resourceVersion"] == "2"
    # A user's annotation is a new input.
    handle_run_event(
        a, "MODIFIED", run("3", status={"phase": "Succeeded"}, metadata={"annotations": {"a": "b"}})
    )
    assert len(a.reconciler.enqueued) == 2
    handle_run_event(a, "DELETED", run("4"))
    assert a.cache.run(("ns", "r1")) is None
    assert a.reconciler.forgotten == [("ns", "r1")]


def test_our_status_write_seen_before_its_answer_wakes_nothing_but_a_users_change_does() -> None:
    a = app()
    handle_run_event(a, None, run("1"))
    a.reconciler.enqueued.clear()
    a.reconciler.writing = True  # our status write is in flight; its event comes first
    handle_run_event(a, "MODIFIED", run("2", status={"phase": "Running", "progress": "1/3"}))
    assert a.reconciler.enqueued == []
    assert a.cache.run(("ns", "r1"))["metadata"]["resourceVersion"] == "2"
    handle_run_event(a, "MODIFIED", run("3", status={"phase": "Running"}, spec={"cancel": True}))
    assert a.reconciler.enqueued == [("ns", "r1")]
    a.reconciler.writing = False  # no write of ours: a status change is someone else's
    handle_run_event(a, "MODIFIED", run("4", status={"phase": "Failed"}, spec={"cancel": True}))
    assert a.reconciler.enqueued == [("ns", "r1"), ("ns", "r1")]


def job(rv: str, uid: str = "j1", conditions: list[dict[str, str]] | None = None) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "r1-a-1",
            "namespace": "ns",
            "uid": uid,
            "resourceVersion": rv,
            "labels": {"kdag.dev/run": "r1", "kdag.dev/attempt": "1"},
            "annotations": {"kdag.dev/node-instance": "a"},
        },
        "status": {"conditions": conditions or []},
    }


def test_job_events_wake_the_run_only_when_the_planner_would_see_a_change() -> None:
    a = app()
    handle_job_event(a, "ADDED", job("5"))
    handle_job_event(a, "MODIFIED", job("6"))  # e.g. status.active counted: same observation
    assert a.reconciler.enqueued == [("ns", "r1")]
    handle_job_event(a, "MODIFIED", job("7", conditions=[{"type": "Complete", "status": "True"}]))
    assert len(a.reconciler.enqueued) == 2
    handle_job_event(a, "DELETED", job("8", uid="older-job-of-same-name"))
    assert len(a.reconciler.enqueued) == 2  # not the cached Job
    handle_job_event(a, "DELETED", job("8"))
    assert len(a.reconciler.enqueued) == 3
    assert a.cache.job(("ns", "r1"), "r1-a-1") is None


def pod(exit_code: int | None) -> dict[str, Any]:
    state = {"terminated": {"exitCode": exit_code}} if exit_code is not None else {"running": {}}
    return {
        "metadata": {
            "namespace": "ns",
            "labels": {"kdag.dev/run": "r1", "batch.kubernetes.io/job-name": "r1-a-1"},
        },
        "status": {"containerStatuses": [{"name": "main", "state": state}]},
    }


def test_pod_results_are_stored_and_wake_the_run_only_if_its_job_already_finished() -> None:
    a = app()
    handle_job_event(a, "ADDED", job("5"))
    a.reconciler.enqueued.clear()
    handle_pod_event(a, "MODIFIED", pod(None))
    handle_pod_event(a, "MODIFIED", pod(0))
    assert a.cache.pod_result("ns", "r1-a-1").exit_code == 0
    assert a.reconciler.enqueued == []  # the Job's own event will bring it
    a2 = app()
    handle_job_event(a2, "ADDED", job("5", conditions=[{"type": "Failed", "status": "True"}]))
    a2.reconciler.enqueued.clear()
    handle_pod_event(a2, "MODIFIED", pod(2))
    assert a2.reconciler.enqueued == [("ns", "r1")]


def test_a_job_is_stamped_with_when_the_operator_first_saw_it_in_its_state() -> None:
    moments = iter(datetime(2026, 1, 1, 0, 0, s, tzinfo=UTC) for s in range(10))
    a = SimpleNamespace(
        cache=Cache(clock=lambda: next(moments)), reconciler=Queue(), refusals=Refusals()
    )
    key = ("ns", "r1")
    handle_job_event(a, "ADDED", job("5"))
    handle_job_event(a, "MODIFIED", job("6"))  # same state: the first sighting stands
    assert a.cache.job(key, "r1-a-1").observation.seen_at.second == 0
    handle_job_event(a, "MODIFIED", job("7", conditions=[{"type": "Complete", "status": "True"}]))
    handle_job_event(a, "MODIFIED", job("8", conditions=[{"type": "Complete", "status": "True"}]))
    assert a.cache.job(key, "r1-a-1").observation.seen_at.second == 1  # the next reading
    assert a.reconciler.enqueued == [key, key]


def test_every_job_event_is_offered_to_the_refusal_finder() -> None:
    a = app()
    handle_job_event(a, "ADDED", job("5"))
    handle_job_event(a, "MODIFIED", job("6"))
    assert a.refusals.considered == [(("ns", "r1"), "r1-a-1")] * 2


def test_a_run_event_reaches_the_workflows_view_the_runs_pass_and_the_workflow_controller() -> None:
    a = app()
    a.workflow_runs = WorkflowRuns()
    told: list[tuple[str | None, str]] = []
    a.run_changed = lambda event_type, body: told.append((event_type, body["metadata"]["name"]))
    body = run("1", spec={"workflowRef": {"name": "etl"}})
    handle_run(a, None, body)
    assert [r.name for r in a.workflow_runs.runs(("ns", "etl"))] == ["r1"]
    assert a.reconciler.enqueued == [("ns", "r1")]
    assert told == [(None, "r1")]
    handle_run(a, "DELETED", body)
    assert list(a.workflow_runs.runs(("ns", "etl"))) == []
    assert a.reconciler.forgotten == [("ns", "r1")]
    assert told[-1] == ("DELETED", "r1")
