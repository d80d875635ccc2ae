"""The controller driven by watch events through its work queue, against a fake API: what
the queue guarantees a Workflow (one pass per burst, never two at once, tick timers,
backoff) and what a restarted operator's first passes see. Conditions, not sleeps."""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Callable, Coroutine
from datetime import timedelta
from typing import Any

import pytest
from workflow_harness import NS, TICK, Harness, spec, status_error

from kdag.engine.cron import scheduled_run_name
from kdag.engine.workflow_status import CONDITION_SCHEDULED
from kdag.operator.workflow_controller import RETRY_BACKOFF
from kdag.operator.workflow_objects import WorkflowObject

KEY = (NS, "etl")


async def until(condition: Callable[[], bool]) -> None:
    while not condition():
        await asyncio.sleep(0)


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(scenario())


def scheduled_since(h: Harness, when: str = "2026-11-22T08:30:00Z") -> None:
    """The Workflow's schedule has been active since `when` (as an earlier pass wrote)."""
    h.api.workflows["etl"]["status"] = {
        "conditions": [
            {
                "type": CONDITION_SCHEDULED,
                "status": "True",
                "reason": "Active",
                "message": "",
                "lastTransitionTime": when,
            }
        ]
    }


# -- events from the watches


def test_only_relevant_run_changes_refresh_the_status() -> None:
    h = Harness()
    h.apply("etl", spec())
    h.add_run("etl-1", None)
    controller = h.controller

    async def scenario() -> None:
        controller.start()
        body = h.api.runs["etl-1"]
        controller.run_changed(None, body)
        controller.run_changed("MODIFIED", copy.deepcopy(body))
        await until(lambda: controller.queue.idle and bool(h.api.status_patches))
        assert h.status()["lastRun"] == "etl-1"
        passes = len(controller.passes)
        # A node's progress changes the run, but nothing the workflow shows: no pass.
        progressed = copy.deepcopy(body)
        progressed["status"] = {"progress": "1/3"}
        controller.run_changed("MODIFIED", progressed)
        assert controller.queue.idle
        assert len(controller.passes) == passes
        await controller.stop()

    run(scenario)
    assert len(h.api.status_patches) == 1


def test_a_burst_of_run_events_costs_one_status_pass() -> None:
    h = Harness()
    h.apply("etl", spec())
    controller = h.controller

    async def scenario() -> None:
        controller.start()
        for i in range(20):
            h.at(h.api.now + timedelta(seconds=1))
            h.add_run(f"etl-{i}", "Running")
            controller.run_changed(None, h.api.runs[f"etl-{i}"])
        await until(lambda: controller.queue.idle and bool(controller.passes))
        await controller.stop()

    run(scenario)
    assert controller.passes == [KEY]
    assert len(h.api.status_patches) == 1
    assert h.status()["lastRun"] == "etl-19"


def test_run_events_for_a_workflow_the_watch_does_not_show_pass_nothing() -> None:
    h = Harness()
    h.add_run("etl-1", "Running")  # its Workflow was deleted, or is not listed
    controller = h.controller

    async def scenario() -> None:
        controller.start()
        controller.run_changed(None, h.api.runs["etl-1"])
        assert controller.queue.idle
        await controller.stop()

    run(scenario)
    assert controller.passes == []


def test_events_while_a_pass_runs_give_exactly_one_more_pass_never_two_at_once() -> None:
    h = Harness()
    h.apply("etl", spec())
    h.add_run("etl-1", "Running")
    controller = h.controller
    hold = h.api.hold = asyncio.Event()

    async def scenario() -> None:
        controller.start()
        controller.workflow_changed(None, h.api.workflows["etl"])
        await until(lambda: bool(h.api.calls))  # the first pass waits in its status patch
        for i in range(2, 6):
            h.at(h.api.now + timedelta(seconds=1))
            h.add_run(f"etl-{i}", "Running")
            controller.run_changed(None, h.api.runs[f"etl-{i}"])
            controller.workflow_changed("MODIFIED", h.api.workflows["etl"])
        for _ in range(20):  # four idle workers get every chance to start a second pass
            await asyncio.sleep(0)
        assert controller.passes == [KEY]
        hold.set()
        await until(lambda: controller.queue.idle and len(controller.passes) == 2)
        await controller.stop()

    run(scenario)
    assert controller.passes == [KEY, KEY]
    assert controller.most_at_once == 1
    assert h.status()["lastRun"] == "etl-5"


def test_deleting_a_workflow_forgets_it_and_its_timer() -> None:
    h = Harness()
    h.apply("etl", spec(cron="0 * * * *"))
    controller = h.controller
    body = copy.deepcopy(h.api.workflows["etl"])
    seen: dict[str, object] = {}

    async def scenario() -> None:
        controller.start()
        controller.workflow_changed(None, body)
        await until(lambda: controller.queue.idle and bool(controller.passes))
        seen["due"] = controller.due_at(KEY)
        seen["status"] = controller.current_status(WorkflowObject.from_body(body))
        del h.api.workflows["etl"]  # the view has taken the deletion in
        controller.workflow_changed("DELETED", body)
        await controller.stop()

    run(scenario)
    assert seen["due"] == TICK
    assert seen["status"]
    assert controller.due_at(KEY) is None
    # The body the watch showed, older than our write: our write is forgotten with it.
    assert controller.current_status(WorkflowObject.from_body(body)) == {}


def test_an_old_workflows_deletion_seen_after_one_of_the_same_name_was_made_keeps_its_timer() -> (
    None
):
    """kopf handles each object's events apart: the old Workflow's deletion may come after
    the new one's first event, and must not forget the new one's schedule."""
    h = Harness()
    h.apply("etl", spec(cron="0 * * * *"))
    controller = h.controller
    old = copy.deepcopy(h.api.workflows["etl"])
    old["metadata"]["uid"] = "the-old-one"
    seen: dict[str, object] = {}

    async def scenario() -> None:
        controller.start()
        controller.workflow_changed(None, h.api.workflows["etl"])
        await until(lambda: controller.queue.idle and bool(controller.passes))
        controller.workflow_changed("DELETED", old)  # the view still shows the new one
        await until(lambda: controller.queue.idle)
        seen["due"] = controller.due_at(KEY)
        await controller.stop()

    run(scenario)
    assert seen["due"] == TICK


# -- timers and backoff


def test_the_tick_timer_a_pass_sets_fires_and_creates_the_due_run() -> None:
    h = Harness(timer_slack_seconds=0.0)
    h.apply("etl", spec(cron="0 * * * *"))
    scheduled_since(h)
    h.at(TICK - timedelta(microseconds=1))  # the tick is due in a microsecond
    controller = h.controller

    async def scenario() -> None:
        controller.start()
        controller.workflow_changed(None, h.api.workflows["etl"])
        await until(lambda: controller.queue.idle and bool(controller.passes))
        assert controller.due_at(KEY) == TICK
        assert not h.api.runs
        h.at(TICK + timedelta(seconds=1))  # the timer's pass sees the tick as due
        await until(lambda: bool(h.api.runs) and controller.queue.idle)
        await controller.stop()

    run(scenario)
    assert list(h.api.runs) == [scheduled_run_name("etl", TICK)]
    assert controller.due_at(KEY) is None  # stop() drops the timers
    assert h.status()["lastScheduleTime"] == "2026-11-22T09:00:00Z"


def test_a_failed_pass_is_logged_and_retried_with_backoff(
    caplog: pytest.LogCaptureFixture,
) -> None:
    h = Harness()
    h.apply("etl", spec())
    controller = h.controller
    h.api.status_patch_error = status_error(503, "ServiceUnavailable")
    due: list[object] = []

    async def scenario() -> None:
        due.append((await controller.queue.run_once(KEY)).requeue_at)
        due.append(controller.due_at(KEY))
        h.api.status_patch_error = status_error(503, "ServiceUnavailable")
        due.append((await controller.queue.run_once(KEY)).requeue_at)
        due.append((await controller.queue.run_once(KEY)).requeue_at)  # the API is back
        await controller.stop()

    with caplog.at_level(logging.WARNING, logger="kdag.operator.workflow_controller"):
        run(scenario)
    first = h.api.now + timedelta(seconds=RETRY_BACKOFF.delay(1))
    second = h.api.now + timedelta(seconds=RETRY_BACKOFF.delay(2))
    assert RETRY_BACKOFF.delay(2) > RETRY_BACKOFF.delay(1)
    assert due == [first, first, second, None]
    assert h.status()["valid"] is True
    failed = [r.getMessage() for r in caplog.records]
    assert len(failed) == 2
    assert "team/etl" in failed[0]
    assert "ServiceUnavailable" in failed[0]
    assert all(r.levelno == logging.WARNING and r.exc_info is None for r in caplog.records)


def test_a_pass_that_fails_on_a_bug_logs_its_traceback(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = Harness()

    def broken(key: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(h.view, "workflow", broken)
    due: list[object] = []

    async def scenario() -> None:
        due.append((await h.controller.queue.run_once(KEY)).requeue_at)
        await h.controller.stop()

    with caplog.at_level(logging.WARNING, logger="kdag.operator.workflow_controller"):
        run(scenario)
    [record] = caplog.records
    assert record.levelno == logging.ERROR
    assert record.exc_info is not None
    assert due == [h.api.now + timedelta(seconds=RETRY_BACKOFF.delay(1))]


# -- a restarted operator


def test_a_new_controller_passes_only_on_events_and_then_sees_the_whole_view() -> None:
    """kopf calls handlers only once its indexes hold a full listing; a controller adds keys
    only from handlers, so its first pass of a Forbid schedule sees the active run."""
    h = Harness()
    h.apply("etl", spec(cron="0 * * * *", concurrencyPolicy="Forbid"))
    scheduled_since(h)
    active = scheduled_run_name("etl", TICK - timedelta(hours=1))
    h.add_run(active, "Running", scheduled_at=TICK - timedelta(hours=1))
    h.at(TICK + timedelta(seconds=1))
    controller = h.controller

    async def scenario() -> None:
        controller.start()
        for _ in range(20):
            await asyncio.sleep(0)
        assert controller.passes == []  # nothing until the watches hand over an event
        controller.workflow_changed(None, h.api.workflows["etl"])
        await until(lambda: controller.queue.idle and bool(controller.passes))
        await controller.stop()

    run(scenario)
    assert list(h.api.runs) == [active]
    assert [e["reason"] for e in h.api.events] == ["RunSkipped"]


def test_a_paused_controller_passes_nothing_and_resumes_on_the_next_listing() -> None:
    h = Harness(timer_slack_seconds=0.0)
    h.apply("etl", spec(cron="0 * * * *"))
    scheduled_since(h)
    controller = h.controller
    seen: dict[str, object] = {}

    async def scenario() -> None:
        controller.start()
        controller.workflow_changed(None, h.api.workflows["etl"])
        await until(lambda: controller.queue.idle and bool(controller.passes))
        seen["timer before"] = controller.due_at(KEY)
        await controller.pause()
        seen["timer after"] = controller.due_at(KEY)
        h.at(TICK + timedelta(seconds=1))
        controller.workflow_changed("MODIFIED", h.api.workflows["etl"])
        controller.run_changed(None, {"metadata": {"name": "x", "namespace": NS},
                                      "spec": {"workflowRef": {"name": "etl"}}})  # fmt: skip
        for _ in range(20):
            await asyncio.sleep(0)
        seen["runs while paused"] = list(h.api.runs)
        controller.resume()
        controller.workflow_changed(None, h.api.workflows["etl"])  # kopf lists anew
        await until(lambda: controller.queue.idle and bool(h.api.runs))
        await controller.stop()

    run(scenario)
    assert seen["timer before"] == TICK
    assert seen["timer after"] is None
    assert seen["runs while paused"] == []
    assert list(h.api.runs) == [scheduled_run_name("etl", TICK)]


def test_a_workflow_waits_for_its_namespaces_listing_without_a_timer_and_passes_after_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    h = Harness()
    h.apply("etl", spec())
    listed: set[str | None] = set()
    monkeypatch.setattr(h.view, "complete", lambda namespace: bool({namespace, None} & listed))

    async def scenario() -> None:
        h.controller.start()
        h.controller.workflow_changed(None, h.api.workflows["etl"])
        await until(lambda: len(h.controller.passes) == 1 and h.controller.queue.idle)
        assert h.api.status_patches == [] and h.controller.due_at(KEY) is None
        h.controller.runs_listed("elsewhere")  # not its namespace: it keeps waiting
        assert h.controller.queue.idle
        listed.add(None)
        h.controller.runs_listed(None)  # a cluster-wide listing covers every namespace
        await until(lambda: bool(h.api.status_patches))
        h.controller.runs_listed(None)  # a later listing: it no longer waits
        assert h.controller.queue.idle
        await h.controller.stop()

    run(scenario)
    assert len(h.controller.passes) == 2
