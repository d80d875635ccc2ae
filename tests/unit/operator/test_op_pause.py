"""A replica that kopf's peering pauses does nothing until it is resumed, then starts afresh."""

from __future__ import annotations

import asyncio
import inspect
from datetime import timedelta

import kopf
import pytest
from conftest import Harness, run_body
from kopf._cogs.aiokits import aiotoggles
from kopf._core.reactor import running

from kdag.operator import peering
from kdag.operator.reconciler import Reconciler

GATED = [{"name": "gate", "approval": {"timeoutSeconds": 60}}]


def writes(h: Harness) -> list[tuple[str, ...]]:
    return [c for c in h.kube.calls if c[0] not in ("get_run", "list_jobs", "list_pods")]


async def settled(reconciler: Reconciler) -> None:
    """Until the workers have nothing left to do (no time-based wait: loop turns only)."""
    while not reconciler.idle:
        await asyncio.sleep(0)


def test_a_paused_reconciler_fires_no_timer_drains_no_queue_and_forgets_its_cache(
    h: Harness,
) -> None:
    key = h.create_run(run_body(nodes=GATED))
    reconciler = h.reconciler
    seen: dict[str, object] = {}

    async def scenario() -> None:
        reconciler.start()
        reconciler.enqueue(key)
        await settled(reconciler)
        seen["timer before"] = reconciler.due_at(key)
        workers = list(reconciler._tasks)
        await reconciler.pause()
        seen["workers stopped"] = all(task.done() for task in workers)
        seen["timer after"] = reconciler.due_at(key)
        seen["cached"] = h.cache.run(key)
        h.kube.calls.clear()
        h.sync_from_api()  # a straggling watch event
        reconciler.enqueue(key)
        reconciler._fire(key)  # a timer callback already on its way
        for _ in range(20):
            await asyncio.sleep(0)
        seen["calls while paused"] = list(h.kube.calls)
        await reconciler.stop()

    asyncio.run(scenario())
    assert seen["timer before"] == h.clock.now + timedelta(seconds=60)
    assert seen["workers stopped"] is True
    assert seen["timer after"] is None
    assert seen["cached"] is None
    assert seen["calls while paused"] == []


def test_a_paused_reconciler_stops_its_resync_loop(h: Harness) -> None:
    reconciler = Reconciler(
        h.kube,  # type: ignore[arg-type]
        h.cache,
        h.metrics,
        h.events,
        clock=h.clock,
        plan_in_thread=False,
        resync_seconds=3600,
    )

    async def scenario() -> list[asyncio.Task[None]]:
        reconciler.start()
        tasks = list(reconciler._tasks)
        await reconciler.pause()
        await reconciler.stop()
        return tasks

    tasks = asyncio.run(scenario())
    assert "kdag-resync" in [t.get_name() for t in tasks]
    assert all(t.cancelled() for t in tasks)


def test_a_resumed_reconciler_lists_each_runs_jobs_before_it_plans_again(h: Harness) -> None:
    key = h.create_run(run_body(nodes=[{"name": "a"}, {"name": "b", "dependsOn": ["a"]}]))
    reconciler = h.reconciler

    async def scenario() -> None:
        reconciler.start()
        reconciler.enqueue(key)
        await settled(reconciler)
        await reconciler.pause()
        # While paused, the other replica's world moves on: a finishes.
        h.kube.finish_job("ns", h.job(key, "a", 1))
        h.kube.calls.clear()
        h.sync_from_api()  # kopf's listing after the resume...
        reconciler.resume()  # ...may come before or after the resume itself
        await settled(reconciler)
        await reconciler.stop()

    asyncio.run(scenario())
    kinds = [c[0] for c in h.kube.calls]
    assert kinds[:2] == ["list_jobs", "list_pods"]
    assert ("create_job", h.job(key, "b", 1)) in h.kube.calls
    assert h.status(key)["nodes"]["a"]["phase"] == "Succeeded"


def test_a_run_seen_only_after_the_resume_is_planned_too(h: Harness) -> None:
    reconciler = h.reconciler

    async def scenario() -> None:
        reconciler.start()
        await reconciler.pause()
        reconciler.resume()
        key = h.create_run(run_body())
        reconciler.enqueue(key)  # what the watch handler does
        await settled(reconciler)
        await reconciler.stop()

    asyncio.run(scenario())
    assert ("create_job", h.job(("ns", "r1"), "a", 1)) in h.kube.calls


def test_kdag_pauses_and_resumes_whenever_kopf_does() -> None:
    log: list[str] = []

    async def pause() -> None:
        log.append("pause")

    async def resume() -> None:
        log.append("resume")

    async def scenario() -> None:
        paused = aiotoggles.ToggleSet(any)
        follower = asyncio.create_task(peering.follow_pause(paused, pause, resume))
        toggle = await paused.make_toggle(False)
        for state, expected in ((True, 1), (False, 2), (True, 3)):
            await toggle.turn_to(state)
            while len(log) < expected:
                await asyncio.sleep(0)
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)

    asyncio.run(scenario())
    assert log == ["pause", "resume", "pause"]


def test_the_pause_state_recorded_is_the_one_kopf_creates_for_its_tasks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made: list[object] = []

    async def spawn_tasks(**_: object) -> list[asyncio.Task[None]]:
        made.append(vars(running)["aiotoggles"].ToggleSet(any))  # as kopf's spawn_tasks does
        return []

    monkeypatch.setattr(kopf, "spawn_tasks", spawn_tasks)
    _, paused = asyncio.run(peering.spawn_operator())
    assert made == [paused]
    assert isinstance(paused, aiotoggles.ToggleSet)
    assert vars(running)["aiotoggles"] is aiotoggles


def test_this_kopf_creates_its_pause_state_where_kdag_records_it() -> None:
    source = inspect.getsource(running.spawn_tasks)
    assert source.count("aiotoggles.ToggleSet(") == 1
    assert "operator_paused = aiotoggles.ToggleSet(any)" in source
