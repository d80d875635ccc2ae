"""Make the cache complete for a run before it is planned.

The watches show what changes, but the planner must also see what they have not shown yet:
every Job a started run has (or it would take a Job not yet shown for one deleted by hand),
and the pod result of every finished Job (or it would guess outputs and exit codes).
"""

from __future__ import annotations

import asyncio
from typing import Any

from kdag.api import NodePhase
from kdag.engine import names
from kdag.engine.model import LABEL_RUN, JobState
from kdag.operator.cache import Cache
from kdag.operator.kube import KubeApi
from kdag.operator.objects import RunKey
from kdag.operator.observe import POD_JOB_LABEL, pod_job_name, pod_result
from kdag.operator.runs import ParsedRun


class CacheCompleter:
    def __init__(self, kube: KubeApi, cache: Cache) -> None:
        self._kube = kube
        self._cache = cache

    async def complete(self, key: RunKey, run: ParsedRun) -> None:
        """List what the planner must see and the watches may not have shown yet."""
        if not self._cache.is_primed(key):
            if run.started:
                await self._prime(key, run)
            else:
                # Nothing is Running yet, so nothing can be misjudged as deleted: a Job left
                # by a pass that crashed before the first status write is adopted on
                # AlreadyExists. Saves two LISTs per new run when many start at once.
                self._cache.mark_primed(key)
        await self._fill_pod_results(key, run)

    async def _prime(self, key: RunKey, run: ParsedRun) -> None:
        """List the run's Jobs and pods once: the planner must see every Job that exists,
        or it would take a Job the watch has not shown yet for one deleted by hand. The
        Jobs go through the same reconciliation with the cache as a periodic resync."""
        selector = f"{LABEL_RUN}={names.run_label(run.name)}"
        jobs, pods = await asyncio.gather(
            self._kube.list_jobs(run.namespace, selector),
            self._kube.list_pods(run.namespace, selector),
        )
        self._cache.resync_jobs(key, jobs.items, jobs.resource_version)
        self._store_pods(run.namespace, pods)
        for name in self._cache.job_names(key):
            self._cache.mark_pods_listed(run.namespace, name)
        self._cache.mark_primed(key)

    def _store_pods(self, namespace: str, pods: list[dict[str, Any]]) -> None:
        for pod in pods:
            job_name, result = pod_job_name(pod), pod_result(pod)
            if job_name and result:
                self._cache.put_pod_result(namespace, job_name, result)

    async def _fill_pod_results(self, key: RunKey, run: ParsedRun) -> None:
        """A finished Job whose pod result the watch has not delivered yet: list its pods
        once, so outputs and exit codes are read, not guessed."""
        if run.status is None:
            return
        wanted = []
        for instance, node in (run.status.nodes or {}).items():
            if node.phase is not NodePhase.RUNNING or not node.attempt:
                continue
            name = names.current_job(run.name, run.uid, instance, node.job, node.attempt)
            if name is None:
                continue
            job = self._cache.job(key, name)
            if (
                job is not None
                and job.observation.state is not JobState.ACTIVE
                and self._cache.pod_result(run.namespace, name) is None
                and not self._cache.pods_listed(run.namespace, name)
            ):
                wanted.append(name)
        if not wanted:
            return
        found = await asyncio.gather(
            *(self._kube.list_pods(run.namespace, f"{POD_JOB_LABEL}={job}") for job in wanted)
        )
        for job_name, pods in zip(wanted, found, strict=True):
            self._store_pods(run.namespace, pods)
            self._cache.mark_pods_listed(run.namespace, job_name)
