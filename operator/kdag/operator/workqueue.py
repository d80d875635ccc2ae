"""A keyed work queue, after client-go's workqueue and controller-runtime's Result.

Workers call `reconcile(key) -> Result` one key at a time. A key added while it waits is
not added twice; added while it is being reconciled (or resting), it is marked dirty and
gets exactly one more pass afterwards, so a burst of events costs one pass, not one each.
A pass's Result sets the key's timer (`requeue_at`) and may ask the key to rest a while
before its next pass (`cooldown_seconds`: back-pressure after a costly write). A failed pass
is handed to the owner's hook and retried after one exponential backoff.

Timers go by the injected clock (delays are computed from it) and fire on the event loop.
A queue may cap how long a timer waits (`longest_wait_seconds`): a timer further away fires
after that long anyway, so a pass looks again and sets it anew (a safety net against a
wall-clock jump, for owners whose timers are far away, such as cron ticks).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Generic, TypeVar

from kdag.operator.backoff import Backoff

K = TypeVar("K", bound=Hashable)

# Timers fire a little late rather than early: planners compare whole-second timestamps.
TIMER_SLACK_SECONDS = 0.05


@dataclass(frozen=True)
class Result:
    """What a pass asks of the queue for its key."""

    requeue_at: datetime | None = None
    """Pass again at this time; None: no timer (events alone wake the key)."""
    cooldown_seconds: float = 0.0
    """Rest this long before the next pass; what arrives meanwhile waits, merged."""


FailureHook = Callable[[K, Exception, int, float], None]
"""Told of a failed pass: the key, the error, failures in a row, seconds until the retry."""


class WorkQueue(Generic[K]):
    def __init__(
        self,
        reconcile: Callable[[K], Awaitable[Result]],
        *,
        on_failure: FailureHook[K],
        clock: Callable[[], datetime],
        backoff: Backoff,
        workers: int = 1,
        name: str = "worker",
        timer_slack_seconds: float = TIMER_SLACK_SECONDS,
        longest_wait_seconds: float = math.inf,
    ) -> None:
        self._reconcile = reconcile
        self._on_failure = on_failure
        self._clock = clock
        self._backoff = backoff
        self._worker_count = workers
        self._name = name
        self._timer_slack = timer_slack_seconds
        self._longest_wait = longest_wait_seconds
        self._pending: asyncio.Queue[K] = asyncio.Queue()
        self._queued: set[K] = set()
        self._busy: set[K] = set()
        self._dirty: set[K] = set()
        self._cooldowns: dict[K, asyncio.TimerHandle] = {}
        self._timers: dict[K, tuple[datetime, asyncio.TimerHandle]] = {}
        self._failures: dict[K, int] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._paused = False

    # ------------------------------------------------------------ adding and forgetting

    def add(self, key: K) -> None:
        """Reconcile the key soon; merged with any pass already waiting or running."""
        if self._paused:
            return  # resuming adds every key afresh
        if key in self._busy or key in self._cooldowns:
            self._dirty.add(key)
        elif key not in self._queued:
            self._queued.add(key)
            self._pending.put_nowait(key)

    def forget(self, key: K) -> None:
        """The key is gone: drop its timer, rest, failures and pending re-run."""
        self.cancel_timer(key)
        self._cancel_cooldown(key)
        self._failures.pop(key, None)
        self._dirty.discard(key)

    def due_at(self, key: K) -> datetime | None:
        """When the key's timer fires next."""
        timer = self._timers.get(key)
        return timer[0] if timer else None

    @property
    def idle(self) -> bool:
        return not self._queued and not self._busy and not self._cooldowns

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def tasks(self) -> list[asyncio.Task[None]]:
        return list(self._tasks)

    # ------------------------------------------------------------ timers

    def add_after(self, key: K, due: datetime) -> None:
        """Pass again at `due` at the latest: an earlier timer already set wins."""
        current = self.due_at(key)
        if current is None or due < current:
            self._set_timer(key, due)

    def cancel_timer(self, key: K) -> None:
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer[1].cancel()

    def apply(self, key: K, result: Result) -> None:
        """Set the key's timer as a pass's Result asks: the pass saw the latest state, so its
        answer replaces any earlier timer."""
        if result.requeue_at is None:
            self.cancel_timer(key)
        else:
            self._set_timer(key, result.requeue_at)

    def _set_timer(self, key: K, due: datetime) -> None:
        self.cancel_timer(key)
        if self._paused:
            return
        delay = max((due - self._clock()).total_seconds(), 0.0) + self._timer_slack
        delay = min(delay, self._longest_wait)
        if not math.isfinite(delay):
            return
        handle = asyncio.get_running_loop().call_later(delay, self._fire, key)
        self._timers[key] = (due, handle)

    def _fire(self, key: K) -> None:
        self._timers.pop(key, None)
        self.add(key)

    # ------------------------------------------------------------ one pass

    async def run_once(self, key: K) -> Result:
        """One pass for the key, its Result applied to the key's timer. A failure is handed
        to the hook and retried with backoff, never raised; its Result is the retry."""
        try:
            result = await self._reconcile(key)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            failures = self._failures.get(key, 0) + 1
            self._failures[key] = failures
            delay = self._backoff.delay(failures)
            self._on_failure(key, exc, failures, delay)
            result = Result(requeue_at=self._clock() + timedelta(seconds=delay))
        else:
            self._failures.pop(key, None)
        self.apply(key, result)
        return result

    # ------------------------------------------------------------ workers

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._work(), name=f"{self._name}-{i}")
            for i in range(self._worker_count)
        ]

    async def stop(self) -> None:
        """Stop the workers and every timer and rest; what is queued stays queued."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for key in list(self._timers):
            self.cancel_timer(key)
        for key in list(self._cooldowns):
            self._cancel_cooldown(key)

    async def pause(self) -> None:
        """Stop, and drop everything: nothing is added until `resume`."""
        self._paused = True
        await self.stop()
        self._pending = asyncio.Queue()
        self._queued.clear()
        self._busy.clear()
        self._dirty.clear()
        self._failures.clear()

    def resume(self) -> None:
        self._paused = False
        self.start()

    async def _work(self) -> None:
        while True:
            key = await self._pending.get()
            self._queued.discard(key)
            self._busy.add(key)
            cooldown = 0.0
            try:
                cooldown = (await self.run_once(key)).cooldown_seconds
            finally:
                self._busy.discard(key)
                if cooldown > 0:
                    self._cooldowns[key] = asyncio.get_running_loop().call_later(
                        cooldown, self._cooled_down, key
                    )
                elif key in self._dirty:
                    self._dirty.discard(key)
                    self.add(key)

    def _cooled_down(self, key: K) -> None:
        """The key's rest is over: pass again if anything arrived meanwhile."""
        self._cooldowns.pop(key, None)
        if key in self._dirty:
            self._dirty.discard(key)
            self.add(key)

    def _cancel_cooldown(self, key: K) -> None:
        handle = self._cooldowns.pop(key, None)
        if handle is not None:
            handle.cancel()
