"""The keyed work queue on its own: a fake reconcile, the fixed clock, conditions not sleeps."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from datetime import timedelta
from typing import Any

from conftest import Clock

from kdag.operator.backoff import Backoff
from kdag.operator.workqueue import Result, WorkQueue


class Recorder:
    """A reconcile that records its passes; a pass may be held until released."""

    def __init__(self) -> None:
        self.passes: list[str] = []
        self.results: dict[str, Result] = {}
        self.errors: dict[str, list[Exception]] = {}
        self.hold: asyncio.Event | None = None
        self.failures: list[tuple[str, int, float]] = []

    async def __call__(self, key: str) -> Result:
        self.passes.append(key)
        if self.hold is not None:
            await self.hold.wait()
        pending = self.errors.get(key)
        if pending:
            raise pending.pop(0)
        return self.results.get(key, Result())

    def failed(self, key: str, exc: Exception, failures: int, delay: float) -> None:
        self.failures.append((key, failures, delay))


def make_queue(
    recorder: Recorder, clock: Clock, *, workers: int = 1, slack: float = 0.0
) -> WorkQueue[str]:
    return WorkQueue(
        recorder,
        on_failure=recorder.failed,
        clock=clock,
        backoff=Backoff(base_seconds=0.5, max_seconds=4.0),
        workers=workers,
        timer_slack_seconds=slack,
    )


async def until(condition: Callable[[], bool]) -> None:
    while not condition():
        await asyncio.sleep(0)


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(scenario())


def test_a_key_added_while_queued_is_reconciled_once() -> None:
    recorder, clock = Recorder(), Clock()

    async def scenario() -> None:
        queue = make_queue(recorder, clock)
        for _ in range(3):
            queue.add("a")
        queue.add("b")
        queue.start()
        await until(lambda: queue.idle)
        await queue.stop()

    run(scenario)
    assert recorder.passes == ["a", "b"]


def test_a_key_added_while_busy_gets_exactly_one_more_pass_afterwards() -> None:
    recorder, clock = Recorder(), Clock()

    async def scenario() -> None:
        queue = make_queue(recorder, clock, workers=2)
        recorder.hold = asyncio.Event()
        queue.add("a")
        queue.start()
        await until(lambda: recorder.passes == ["a"])
        for _ in range(3):
            queue.add("a")  # never two passes of one key at once, even with two workers
        assert queue._queued == set()
        assert queue._dirty == {"a"}
        recorder.hold.set()
        await until(lambda: queue.idle)
        await queue.stop()

    run(scenario)
    assert recorder.passes == ["a", "a"]


def test_a_key_rests_for_its_cooldown_and_then_passes_once_for_what_arrived() -> None:
    recorder, clock = Recorder(), Clock()
    recorder.results["a"] = Result(cooldown_seconds=0.01)
    seen: list[tuple[bool, bool, list[str]]] = []

    async def scenario() -> None:
        queue = make_queue(recorder, clock)
        queue.start()
        queue.add("a")
        await until(lambda: "a" in queue._cooldowns)
        queue.add("a")
        queue.add("a")
        seen.append(("a" in queue._queued, "a" in queue._dirty, list(recorder.passes)))
        recorder.results["a"] = Result()
        await until(lambda: queue.idle)
        await queue.stop()

    run(scenario)
    assert seen == [(False, True, ["a"])]  # resting: waits, merged
    assert recorder.passes == ["a", "a"]


def test_a_result_sets_the_timer_and_the_next_result_replaces_it() -> None:
    recorder, clock = Recorder(), Clock()
    later = clock.now + timedelta(hours=1)
    due: list[object] = []

    async def scenario() -> None:
        queue = make_queue(recorder, clock)
        recorder.results["a"] = Result(requeue_at=later)
        await queue.run_once("a")
        due.append(queue.due_at("a"))
        recorder.results["a"] = Result(requeue_at=later + timedelta(hours=1))
        await queue.run_once("a")
        due.append(queue.due_at("a"))
        recorder.results["a"] = Result()
        await queue.run_once("a")
        due.append(queue.due_at("a"))

    run(scenario)
    assert due == [later, later + timedelta(hours=1), None]


def test_of_two_timers_asked_for_one_key_the_earliest_wins() -> None:
    recorder, clock = Recorder(), Clock()
    soon, late = clock.now + timedelta(minutes=1), clock.now + timedelta(minutes=5)
    due: list[object] = []

    async def scenario() -> None:
        queue = make_queue(recorder, clock)
        queue.add_after("a", late)
        queue.add_after("a", soon)
        queue.add_after("a", late)
        due.append(queue.due_at("a"))
        await queue.stop()
        due.append(queue.due_at("a"))

    run(scenario)
    assert due == [soon, None]


def test_a_timer_that_is_due_adds_its_key() -> None:
    recorder, clock = Recorder(), Clock()

    async def scenario() -> None:
        queue = make_queue(recorder, clock)
        queue.start()
        queue.add_after("a", clock.now)  # due now: fires on the next loop turn
        await until(lambda: recorder.passes == ["a"] and queue.idle)
        assert queue.due_at("a") is None
        await queue.stop()

    run(scenario)


def test_a_far_timer_fires_after_the_longest_wait_and_keeps_its_due_time() -> None:
    recorder, clock = Recorder(), Clock()

    async def scenario() -> None:
        queue = WorkQueue(
            recorder,
            on_failure=recorder.failed,
            clock=clock,
            backoff=Backoff(),
            timer_slack_seconds=0.0,
            longest_wait_seconds=0.0,
        )
        queue.start()
        far = clock.now + timedelta(days=1)
        queue.add_after("a", far)
        assert queue.due_at("a") == far  # what it is due for, not when it looks again
        fires_at = queue._timers["a"][1].when()
        assert fires_at <= asyncio.get_running_loop().time()  # now, not in a day
        await until(lambda: recorder.passes == ["a"] and queue.idle)
        await queue.stop()

    run(scenario)


def test_a_failed_pass_is_reported_and_retried_with_one_doubling_backoff() -> None:
    recorder, clock = Recorder(), Clock()
    recorder.errors["a"] = [RuntimeError("boom") for _ in range(5)]
    due: list[object] = []

    async def scenario() -> None:
        queue = make_queue(recorder, clock)
        for _ in range(5):
            result = await queue.run_once("a")
            due.append(result.requeue_at)
            assert queue.due_at("a") == result.requeue_at
        await queue.run_once("a")  # healthy again: no timer, and the count starts over
        due.append(queue.due_at("a"))
        recorder.errors["a"] = [RuntimeError("boom")]
        await queue.run_once("a")
        await queue.stop()

    run(scenario)
    delays = [0.5, 1.0, 2.0, 4.0, 4.0]
    assert recorder.failures == [("a", n, d) for n, d in enumerate(delays, 1)] + [("a", 1, 0.5)]
    assert due == [clock.now + timedelta(seconds=d) for d in delays] + [None]


def test_forgetting_a_key_drops_its_timer_rest_failures_and_pending_pass() -> None:
    recorder, clock = Recorder(), Clock()
    recorder.errors["a"] = [RuntimeError("boom")]

    async def scenario() -> None:
        queue = make_queue(recorder, clock)
        await queue.run_once("a")
        queue._dirty.add("a")
        queue.forget("a")
        assert queue.due_at("a") is None
        assert queue._dirty == set()
        recorder.errors["a"] = [RuntimeError("boom")]
        await queue.run_once("a")
        await queue.stop()

    run(scenario)
    assert [f[1] for f in recorder.failures] == [1, 1]  # counted afresh


def test_pause_drops_everything_and_adds_nothing_until_resumed() -> None:
    recorder, clock = Recorder(), Clock()
    state: dict[str, object] = {}

    async def scenario() -> None:
        queue = make_queue(recorder, clock)
        recorder.hold = asyncio.Event()
        queue.start()
        queue.add("a")
        await until(lambda: recorder.passes == ["a"])
        queue.add("a")  # dirty
        queue.add("b")  # queued
        queue.add_after("c", clock.now + timedelta(hours=1))
        workers = queue.tasks
        await queue.pause()
        state["workers stopped"] = all(t.done() for t in workers)
        state["left"] = (queue._queued, queue._busy, queue._dirty, queue._timers)
        queue.add("d")
        queue.add_after("d", clock.now)
        queue._fire("c")  # a timer callback already on its way
        state["while paused"] = (queue._queued, queue.due_at("d"), queue.idle)
        recorder.hold.set()
        queue.resume()
        queue.add("e")
        await until(lambda: queue.idle)
        await queue.stop()

    run(scenario)
    assert state["workers stopped"] is True
    assert state["left"] == (set(), set(), set(), {})
    assert state["while paused"] == (set(), None, True)
    assert recorder.passes == ["a", "e"]
