"""The controller driven by watch events and by its schedule daemon, against a fake API."""

from __future__ import annotations

import asyncio
import copy
from datetime import timedelta

import pytest
from workflow_harness import TICK, Harness, spec

from kdag.engine.cron import scheduled_run_name
from kdag.engine.workflow_status import CONDITION_SCHEDULED
from kdag.operator.workflow_objects import WorkflowObject


@pytest.fixture
def h() -> Harness:
    return Harness()


# -- events from the watches


def test_only_relevant_run_changes_refresh_the_status() -> None:
    h = Harness()
    h.apply("etl", spec())
    h.add_run("etl-1", None)

    async def scenario() -> None:
        workflows = {("team", "etl"): [h.workflow()]}
        controller = h.controller
        body = h.api.runs["etl-1"]
        controller.run_changed(None, body, workflows, h.index())
        controller.run_changed("MODIFIED", copy.deepcopy(body), workflows, h.index())
        for _ in range(100):  # let the coalesced background sync run
            await asyncio.sleep(0)
        assert h.status()["lastRun"] == "etl-1"
        patches = len(h.api.status_patches)
        # A node's progress changes the run, but nothing the workflow shows.
        progressed = copy.deepcopy(body)
        progressed["status"] = {"progress": "1/3"}
        controller.run_changed("MODIFIED", progressed, workflows, h.index())
        for _ in range(100):
            await asyncio.sleep(0)
        assert len(h.api.status_patches) == patches
        await controller.close()

    asyncio.run(scenario())


def test_the_schedule_daemon_creates_the_due_run_and_returns_when_stopped(h: Harness) -> None:
    h.apply("etl", spec(cron="0 * * * *"))
    h.at(TICK + timedelta(seconds=1))
    h.api.workflows["etl"]["status"] = {
        "conditions": [
            {
                "type": CONDITION_SCHEDULED,
                "status": "True",
                "reason": "Active",
                "message": "",
                "lastTransitionTime": "2026-11-22T08:30:00Z",
            }
        ]
    }

    async def scenario() -> None:
        stop = asyncio.Event()
        daemon = asyncio.create_task(
            h.controller.run_schedule(h.api.workflows["etl"], h.index(), stop=stop)
        )
        for _ in range(1000):
            if h.api.runs:
                break
            await asyncio.sleep(0)
        # It now sleeps until the next tick; kopf's stop ends it without a cancellation.
        stop.set()
        h.controller.wake(("team", "etl"))
        await daemon

    asyncio.run(scenario())
    assert list(h.api.runs) == [scheduled_run_name("etl", TICK)]


def test_deleting_a_workflow_forgets_it(h: Harness) -> None:
    h.apply("etl", spec(cron="0 * * * *"))
    body = copy.deepcopy(h.api.workflows["etl"])
    asyncio.run(h.controller.workflow_changed(None, body, {}))
    asyncio.run(h.controller.workflow_changed("DELETED", body, {}))
    assert h.controller.current_status(WorkflowObject.from_body(body)) == {}
