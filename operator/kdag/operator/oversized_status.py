"""Writing the end of a run whose status the API server will never store (the rule is
`kdag.engine.rules.status_too_large`): one small status write, its Jobs stopped."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

from kdag.api import WorkflowRunStatus
from kdag.engine.model import DeleteJob, EmitEvent
from kdag.engine.rules.status_too_large import fail_run
from kdag.operator.cache import Cache
from kdag.operator.events import EventSink
from kdag.operator.job_actions import JobActions
from kdag.operator.kube import KubeApi, KubeError
from kdag.operator.metrics import Metrics
from kdag.operator.objects import RunKey
from kdag.operator.runs import ParsedRun
from kdag.operator.transitions import record_transitions

logger = logging.getLogger(__name__)


def is_too_large(exc: KubeError) -> bool:
    """The API server (or etcd behind it) will never store this object: retrying the same
    write cannot succeed."""
    text = exc.body.lower()
    return exc.status == 413 or (
        exc.status in (422, 500) and ("too large" in text or "too long" in text)
    )


class OversizedStatus:
    def __init__(
        self,
        kube: KubeApi,
        cache: Cache,
        jobs: JobActions,
        events: EventSink,
        metrics: Metrics,
    ) -> None:
        self._kube = kube
        self._cache = cache
        self._jobs = jobs
        self._events = events
        self._metrics = metrics

    async def fail_run(self, key: RunKey, run: ParsedRun, exc: KubeError, now: datetime) -> None:
        observed = self._cache.observed(key, run.uid)
        old = run.status or WorkflowRunStatus()
        result = fail_run(old, observed, exc.api_message, now, run.generation)
        message = result.status.message
        logger.error("run %s/%s failed: %s", *key, message, extra={"run": f"{key[0]}/{key[1]}"})
        patch = {"status": result.status.to_wire()}
        stored = await self._kube.patch_run_status(run.namespace, run.name, patch)
        self._cache.put_run(stored)
        deletes = [a for a in result.actions if isinstance(a, DeleteJob)]
        await asyncio.gather(*(self._jobs.delete(key, run, action) for action in deletes))
        for action in result.actions:
            if isinstance(action, EmitEvent):
                self._events.post(stored, action, now)
        if result.transitions is not None:
            record_transitions(self._metrics, key, result.transitions)
