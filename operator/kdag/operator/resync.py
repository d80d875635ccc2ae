"""Periodic re-reading of active runs and their Jobs.

A watch that restarts replays what exists but not what was deleted while it was down, which
would leave a node waiting on a Job that is gone, or a deleted run in the cache.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from kdag.engine import names
from kdag.engine.model import LABEL_RUN
from kdag.operator.cache import Cache
from kdag.operator.kube import KubeApi
from kdag.operator.objects import RunKey
from kdag.operator.runs import is_settled

logger = logging.getLogger(__name__)


class Resync:
    def __init__(
        self,
        kube: KubeApi,
        cache: Cache,
        *,
        enqueue: Callable[[RunKey], None],
        forget: Callable[[RunKey], None],
        period_seconds: float,
        owns: Callable[[RunKey], bool] = lambda _key: True,
    ) -> None:
        self._kube = kube
        self._cache = cache
        self._enqueue = enqueue
        self._forget = forget
        self._period_seconds = period_seconds
        self._owns = owns  # shards: another replica re-reads its own runs
        self._task: asyncio.Task[None] | None = None

    @property
    def task(self) -> asyncio.Task[None] | None:
        return self._task

    def start(self) -> None:
        if self._period_seconds > 0:
            self._task = asyncio.create_task(self._forever(), name="kdag-resync")

    def cancel(self) -> asyncio.Task[None] | None:
        """Cancel the loop at once (it cannot act after this returns); the caller awaits
        the task returned."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
        return task

    async def _forever(self) -> None:
        while True:
            await asyncio.sleep(self._period_seconds)  # a period, not a wait for a condition
            for key in self._cache.run_keys():
                if not self._owns(key):
                    continue
                try:
                    await self.run(key)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    logger.warning(
                        "resync of %s/%s failed: %s", *key, exc, extra={"run": "/".join(key)}
                    )

    async def run(self, key: RunKey) -> None:
        """Re-read an active run and its Jobs: a watch that restarts replays what exists but
        not what was deleted while it was down, which would leave a node waiting on a Job
        that is gone, or a deleted run in the cache."""
        body = self._cache.run(key)
        if body is None or is_settled(body):
            return
        found = await self._kube.get_run(*key)
        if found is None:
            logger.info("run %s/%s is gone (deleted while unwatched)", *key)
            self._cache.remove_run(key)
            self._forget(key)
            return
        self._cache.put_run(found)
        if self._cache.is_primed(key):
            listing = await self._kube.list_jobs(key[0], f"{LABEL_RUN}={names.run_label(key[1])}")
            gone = self._cache.resync_jobs(key, listing.items, listing.resource_version)
            if gone:
                logger.info(
                    "Jobs %s of %s/%s were deleted while unwatched",
                    ", ".join(gone),
                    *key,
                    extra={"run": "/".join(key)},
                )
        self._enqueue(key)
