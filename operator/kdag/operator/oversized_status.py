"""A run whose status the API server will never store: end it Failed, with a small write."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

from kdag.api import RunPhase, WorkflowRunStatus
from kdag.engine.model import DeleteJob, EmitEvent, JobState
from kdag.engine.run_summary import run_conditions
from kdag.engine.timeutil import to_iso
from kdag.operator.cache import Cache
from kdag.operator.events import EventSink
from kdag.operator.job_actions import JobActions
from kdag.operator.kube import KubeApi, KubeError
from kdag.operator.objects import RunKey
from kdag.operator.runs import ParsedRun

logger = logging.getLogger(__name__)

STATUS_TOO_LARGE = "StatusTooLarge"


def is_too_large(exc: KubeError) -> bool:
    """The API server (or etcd behind it) will never store this object: retrying the same
    write cannot succeed."""
    text = exc.body.lower()
    return exc.status == 413 or (
        exc.status in (422, 500) and ("too large" in text or "too long" in text)
    )


class OversizedStatus:
    def __init__(self, kube: KubeApi, cache: Cache, jobs: JobActions, events: EventSink) -> None:
        self._kube = kube
        self._cache = cache
        self._jobs = jobs
        self._events = events

    async def fail_run(self, key: RunKey, run: ParsedRun, exc: KubeError, now: datetime) -> None:
        """A status the API server will never store: retrying it forever would leave the run
        Running for good. End it Failed with a small write, and stop its Jobs."""
        message = (
            "the run's status is too large for the API server to store "
            f"({exc.api_message}); stopped. Lower the nodes' outputs or the fan-out width, "
            "or the operator's --max-run-output-bytes"
        )
        logger.error("run %s/%s failed: %s", *key, message, extra={"run": f"{key[0]}/{key[1]}"})
        old = run.status or WorkflowRunStatus()
        now_iso = to_iso(now)
        conditions = run_conditions(
            RunPhase.FAILED, message, False, old.conditions, now_iso, run.generation
        )
        patch = {
            "phase": str(RunPhase.FAILED),
            "message": message,
            "finishedAt": now_iso,
            "conditions": [c.to_wire() for c in conditions],
        }
        stored = await self._kube.patch_run_status(run.namespace, run.name, {"status": patch})
        self._cache.put_run(stored)
        active = [
            DeleteJob(name, "its run's status is too large to store")
            for name, job in self._cache.observed(key, run.uid).jobs.items()
            if job.state is JobState.ACTIVE and not job.deleting
        ]
        await asyncio.gather(*(self._jobs.delete(key, run, action) for action in active))
        self._events.post(stored, EmitEvent("Warning", STATUS_TOO_LARGE, message), now)
