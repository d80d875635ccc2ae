"""Finished runs: no plan runs for them; their recorded Jobs are cleaned up as the
retention policy says, and the run itself is deleted when its TTL has passed."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from kdag.api import RunPhase
from kdag.engine.model import JobRetentionPolicy
from kdag.engine.planner import recorded_jobs_to_delete, retention_policy
from kdag.engine.rules.expiry import expiry_time
from kdag.operator.cache import Cache
from kdag.operator.job_actions import JobActions
from kdag.operator.kube import KubeApi
from kdag.operator.objects import RunKey
from kdag.operator.runs import ParsedRun
from kdag.operator.workqueue import Result

logger = logging.getLogger(__name__)


def ttl_due(status: Mapping[str, Any]) -> datetime | None:
    """When a finished run is to be deleted, read straight from its stored status."""
    try:
        phase = RunPhase(str(status.get("phase")))
    except ValueError:
        return None
    ttl = (status.get("workflow") or {}).get("ttlSecondsAfterFinished")
    return expiry_time(phase, status.get("finishedAt"), ttl)


class FinishedRuns:
    def __init__(
        self,
        kube: KubeApi,
        cache: Cache,
        jobs: JobActions,
        clock: Callable[[], datetime],
        job_retention_policy: JobRetentionPolicy,
    ) -> None:
        self._kube = kube
        self._cache = cache
        self._jobs = jobs
        self._clock = clock
        self._job_retention_policy: JobRetentionPolicy = job_retention_policy

    async def clean_up(self, key: RunKey, run: ParsedRun) -> None:
        """The Jobs whose results the run's last pass recorded, which its retention policy
        deletes: no plan runs for a finished run, so they are deleted here."""
        if run.status is None:
            return
        policy = retention_policy(run.status, self._job_retention_policy)
        deletes = recorded_jobs_to_delete(run.status, self._cache.observed(key, run.uid), policy)
        await asyncio.gather(*(self._jobs.delete(key, run, action) for action in deletes))

    async def expire(self, key: RunKey, body: Mapping[str, Any]) -> Result:
        """Delete the run once its TTL has passed; until then, be due at it."""
        due = ttl_due(body.get("status") or {})
        if due is None:
            return Result()
        if due > self._clock():
            return Result(requeue_at=due)
        meta = body.get("metadata") or {}
        logger.info(
            "deleting finished run %s/%s: ttlSecondsAfterFinished passed",
            *key,
            extra={"run": f"{key[0]}/{key[1]}"},
        )
        await self._kube.delete_run(key[0], key[1], str(meta.get("uid", "")))
        return Result()
