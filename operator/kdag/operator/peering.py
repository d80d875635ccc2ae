"""A replica that kopf's peering pauses stops all of kdag's own work too.

kopf pauses its watch streams and daemons while a replica of higher priority is alive, but
knows nothing of the reconciler's workers, timers and resync loop, which would go on acting
from a cache that no watch keeps current. kopf keeps whether it is paused in a ToggleSet it
creates inside `kopf.spawn_tasks` and exposes nowhere; `spawn_operator` records that one
object as it is created, and `follow_pause` mirrors it onto kdag's parts.
"""

from __future__ import annotations

import asyncio
import logging
import types
from collections.abc import Awaitable, Callable, Collection, Iterable
from typing import Any, Protocol

import kopf
from kopf._cogs.aiokits import aiotoggles
from kopf._core.reactor import running

logger = logging.getLogger(__name__)


class PauseState(Protocol):
    """What kdag needs of kopf's ToggleSet `operator_paused`."""

    def is_on(self) -> bool: ...

    async def wait_for(self, state: bool, /) -> None: ...


class PauseCaptureError(RuntimeError):
    """This kopf version creates its pause state differently: kdag cannot follow it."""


async def spawn_operator(**kwargs: Any) -> tuple[Collection[asyncio.Task[Any]], PauseState]:
    """`kopf.spawn_tasks(**kwargs)`, and the operator's pause state it created."""
    created: list[aiotoggles.ToggleSet] = []

    class Recorded(aiotoggles.ToggleSet):
        def __init__(self, fn: Callable[[Iterable[bool]], bool]) -> None:
            super().__init__(fn)
            created.append(self)

    # Only `running`'s own name is redirected, and only while it builds its tasks.
    shim = types.SimpleNamespace(**{**vars(aiotoggles), "ToggleSet": Recorded})
    namespace = vars(running)
    namespace["aiotoggles"] = shim
    try:
        tasks = await kopf.spawn_tasks(**kwargs)
    finally:
        namespace["aiotoggles"] = aiotoggles
    if len(created) != 1:
        for task in tasks:
            task.cancel()
        raise PauseCaptureError(
            f"kopf created {len(created)} pause states, not one: this kopf version is not "
            "supported with peering"
        )
    return tasks, created[0]


async def follow_pause(
    paused: PauseState,
    pause: Callable[[], Awaitable[None]],
    resume: Callable[[], Awaitable[None]],
) -> None:
    """Pause and resume kdag's parts whenever kopf does; runs until cancelled."""
    while True:
        await paused.wait_for(True)
        await pause()
        logger.info("paused by kopf peering: another replica acts; kdag's work is stopped")
        await paused.wait_for(False)
        logger.info("resumed by kopf peering: planning every run afresh")
        await resume()
