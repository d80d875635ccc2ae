"""Job requests in flight, shared fairly between runs.

The API client's worker pool serves requests first come, first served. A pass that handed
it a 5,000-wide fan-out's creates at once made every other run's requests wait behind all
of them; a fixed share per pass made the wide run alone slower than it need be. Here a run
alone may use every slot, and a run that arrives waits for one slot to free, not for the
other run's whole batch: freed slots go round-robin to the runs that wait, one request each.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Hashable
from typing import TypeVar

T = TypeVar("T")


class FairShare:
    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._free = capacity
        # Waiting requests per run, the runs in the order they are served next.
        self._waiting: dict[Hashable, deque[asyncio.Future[None]]] = {}

    async def run(self, owner: Hashable, request: Awaitable[T]) -> T:
        """Await `request` once a slot is this owner's turn."""
        try:
            await self._acquire(owner)
        except BaseException:
            if asyncio.iscoroutine(request):
                request.close()  # never started: no "never awaited" warning
            raise
        try:
            return await request
        finally:
            self._release()

    async def _acquire(self, owner: Hashable) -> None:
        if self._free > 0 and not self._waiting:
            self._free -= 1
            return
        turn = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(owner, deque()).append(turn)
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self._release()  # the slot was handed over as the wait was cancelled
            else:
                self._discard(owner, turn)
            raise

    def _release(self) -> None:
        """Hand the freed slot to the next waiting run (which then goes to the back)."""
        while self._waiting:
            owner = next(iter(self._waiting))
            queue = self._waiting.pop(owner)
            turn = queue.popleft()
            if queue:
                self._waiting[owner] = queue
            if not turn.done():
                turn.set_result(None)
                return
        self._free += 1

    def _discard(self, owner: Hashable, turn: asyncio.Future[None]) -> None:
        queue = self._waiting.get(owner)
        if queue is None:
            return
        try:
            queue.remove(turn)
        except ValueError:
            return
        if not queue:
            del self._waiting[owner]
