"""Jobs whose pods the API server refuses for good, found from the Job controller's Events.

PodSecurity `enforce` (like an admission webhook) refuses a Job's pods, not the Job: the Job
is created, the Job controller's pod creates fail, and it posts `FailedCreate` Events on the
Job and keeps trying until activeDeadlineSeconds. Without this the node would sit Running
and end TimedOut with nothing said about why.

A Job the Job controller has taken up but that has no pod (`observe.awaiting_pods`, seen on
its watch event) has its FailedCreate Events read. A refusal for good is recorded in the
cache and the run is planned again: the planner sees the attempt failed, with the admission
message, and deletes the Job. The controller posts its Event at about the time it writes
the status that shows no pod, so a check that finds no Event yet looks again a few times
with backoff: a bounded timer for a rare state, never a poll of every Job.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from kdag.operator.cache import Cache
from kdag.operator.kube import KubeApi, KubeError
from kdag.operator.objects import RunKey
from kdag.operator.observe import FAILED_CREATE, ObservedJob, pod_refusal

logger = logging.getLogger(__name__)

# Seconds before each further look when the Job's Events show no refusal yet (~15s in all).
RECHECK_SECONDS = (0.5, 1.0, 2.0, 4.0, 8.0)


class RefusalFinder:
    def __init__(
        self,
        kube: KubeApi,
        cache: Cache,
        enqueue: Callable[[RunKey], None],
        recheck_seconds: Sequence[float] = RECHECK_SECONDS,
    ) -> None:
        self._kube = kube
        self._cache = cache
        self._enqueue = enqueue
        self._recheck_seconds = tuple(recheck_seconds)
        self._checks: dict[tuple[str, str], asyncio.Task[None]] = {}

    def consider(self, key: RunKey, job: ObservedJob) -> None:
        """Look for a refusal of the Job's pods if it awaits them and nobody is looking yet."""
        name = job.observation.name
        slot = (job.namespace, job.uid)
        if (
            not job.awaiting_pods
            or not job.uid
            or slot in self._checks
            or self._cache.refused(job.namespace, name)
        ):
            return
        task = asyncio.create_task(self._check(key, job), name=f"kdag-refusal-{name}")
        self._checks[slot] = task
        task.add_done_callback(lambda _: self._checks.pop(slot, None))

    @property
    def checking(self) -> int:
        """How many Jobs are being looked at (for tests and debugging)."""
        return len(self._checks)

    async def wait(self) -> None:
        """Until every check now running has ended (for tests)."""
        await asyncio.gather(*self._checks.values(), return_exceptions=True)

    async def stop(self) -> None:
        for task in self._checks.values():
            task.cancel()
        await self.wait()

    async def _check(self, key: RunKey, job: ObservedJob) -> None:
        name = job.observation.name
        selector = f"involvedObject.uid={job.uid},reason={FAILED_CREATE}"
        extra = {"run": f"{key[0]}/{key[1]}", "node": job.observation.instance}
        for delay in (0.0, *self._recheck_seconds):
            if delay:
                await asyncio.sleep(delay)  # bounded backoff: see the module docstring
            current = self._cache.job(key, name)
            if current is None or current.uid != job.uid or not current.awaiting_pods:
                return  # gone, replaced, or it has its pod after all
            try:
                events = await self._kube.list_events(job.namespace, selector)
            except KubeError as exc:
                logger.warning("reading the Events of Job %s failed: %s", name, exc, extra=extra)
                continue
            message = next(filter(None, map(pod_refusal, events)), None)
            if message is not None:
                logger.info("the pods of Job %s are refused: %s", name, message, extra=extra)
                self._cache.put_refusal(job.namespace, name, job.uid, message)
                self._enqueue(key)
                return
