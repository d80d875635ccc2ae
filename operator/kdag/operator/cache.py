"""What the watches have shown: runs, their Jobs, and the results of the Jobs' pods.

Single-threaded (the event loop); objects are replaced, never mutated, so a snapshot handed
to a worker thread stays consistent. A newer resourceVersion always wins: a stale watch event
arriving after the answer to our own write must not roll the cache back.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from kdag.engine.model import PODS_REFUSED_REASON, JobObservation, JobState, Observed
from kdag.operator.objects import RunKey, is_newer, resource_version, run_key, utcnow
from kdag.operator.observe import ObservedJob, PodResult, observe_job, with_pod_result

# is_newer is re-exported while workflows.py still imports it from here.
__all__ = ["Cache", "JobUpdate", "RunJobs", "is_newer", "user_inputs"]


def user_inputs(body: Mapping[str, Any]) -> tuple[Any, ...]:
    """What users write to a run and the planner acts on: its spec (suspend, cancel, params,
    workflow), annotations (gate answers, rerun requests) and deletion."""
    meta = body.get("metadata") or {}
    return (
        meta.get("generation"),
        body.get("spec"),
        meta.get("annotations") or {},
        meta.get("deletionTimestamp"),
    )


# What a Job's planner view is made of: the Job, its pod's result, why its container cannot
# start, its pods' refusal (uid, message).
_ViewInputs = tuple[ObservedJob, PodResult | None, str | None, tuple[str, str] | None]


@dataclass(frozen=True)
class JobUpdate:
    """A Job stored in the cache: its run, and the planner's view of it before and after
    (pod result, waiting reason and refusal folded in; `before` None for a Job not seen)."""

    key: RunKey
    before: JobObservation | None
    after: JobObservation


@dataclass
class RunJobs:
    """The Jobs of one run, by Job name, and whether they were listed from the API."""

    jobs: dict[str, ObservedJob] = field(default_factory=dict)
    primed: bool = False


class Cache:
    def __init__(self, clock: Callable[[], datetime] = utcnow) -> None:
        # Stamps when a Job was first seen in its state: a dependency is done when the
        # operator learns it, which is where scheduling latency starts (SPEC §8).
        self._clock = clock
        self._runs: dict[RunKey, dict[str, Any]] = {}
        self._jobs: dict[RunKey, RunJobs] = {}
        self._pods: dict[tuple[str, str], PodResult] = {}
        # Why a Job's container cannot start, while it cannot (see `observe.pod_waiting`).
        self._waiting: dict[tuple[str, str], str] = {}
        # Jobs whose pods were already listed once because the watch had not shown the result.
        self._pods_listed: set[tuple[str, str]] = set()
        # Jobs whose pods the API server refuses for good: (Job uid, the refusal's message).
        self._refusals: dict[tuple[str, str], tuple[str, str]] = {}
        # The planner's view of each Job, kept while what it was made of is the same objects:
        # a pass reads every Job of its run, and a long run has hundreds that no longer change.
        self._views: dict[tuple[str, str], tuple[_ViewInputs, JobObservation]] = {}

    def clear(self) -> None:
        """Forget everything: no watch feeds the cache any more (the replica was paused)."""
        self._runs.clear()
        self._jobs.clear()
        self._pods.clear()
        self._waiting.clear()
        self._pods_listed.clear()
        self._views.clear()

    # -- runs

    def run(self, key: RunKey) -> dict[str, Any] | None:
        return self._runs.get(key)

    def run_keys(self) -> list[RunKey]:
        return list(self._runs)

    def put_run(self, body: dict[str, Any]) -> bool:
        """Store the run unless the cached one is newer; True when stored."""
        key = run_key(body)
        current = self._runs.get(key)
        if current is not None and not is_newer(resource_version(body), resource_version(current)):
            return False
        self._runs[key] = body
        return True

    def remove_run(self, key: RunKey) -> None:
        self._runs.pop(key, None)
        self.evict_jobs(key)

    def evict_jobs(self, key: RunKey, as_seen: Mapping[str, str] | None = None) -> None:
        """Forget a run's Jobs and pod results (a finished run needs them no more; a rerun
        lists them again, as after a restart).

        With `as_seen` (Job name -> resourceVersion, read before a pass that awaited the
        API), only the Jobs still as seen go: one that changed meanwhile (completed while
        its finished run's other Jobs were being deleted) stays for the pass its event
        asked for.
        """
        run_jobs = self._jobs.get(key)
        if run_jobs is None:
            return
        for name, job in list(run_jobs.jobs.items()):
            if as_seen is None or as_seen.get(name) == job.resource_version:
                del run_jobs.jobs[name]
                self._forget_pods(key[0], name)
        if run_jobs.jobs:
            run_jobs.primed = False
        else:
            del self._jobs[key]

    def job_versions(self, key: RunKey) -> dict[str, str]:
        """The run's cached Jobs by name, with the resourceVersion of each."""
        run_jobs = self._jobs.get(key)
        return {n: j.resource_version for n, j in run_jobs.jobs.items()} if run_jobs else {}

    # -- jobs

    def _run_jobs(self, key: RunKey) -> RunJobs:
        return self._jobs.setdefault(key, RunJobs())

    def is_primed(self, key: RunKey) -> bool:
        run_jobs = self._jobs.get(key)
        return run_jobs is not None and run_jobs.primed

    def mark_primed(self, key: RunKey) -> None:
        self._run_jobs(key).primed = True

    def put_job(self, job: Mapping[str, Any]) -> JobUpdate | None:
        """Store a Job; return its run and the planner's view before and after (the same when
        it was not stored: an older copy, a stranger at a failed name), or None when it is no
        kdag Job."""
        observed = observe_job(job)
        if observed is None:
            return None
        key = (observed.namespace, observed.run)
        jobs = self._run_jobs(key).jobs
        current = jobs.get(observed.observation.name)
        if current is not None and (
            not is_newer(observed.resource_version, current.resource_version)
            # The stranger that took the name of a Job this run could not create: the failed
            # attempt must stay on record, not turn into "deleted" when the stranger is seen.
            or (not current.uid and current.owner_uid != observed.owner_uid)
        ):
            unchanged = self._view(observed.namespace, current)
            return JobUpdate(key, unchanged, unchanged)
        if current is not None and current.observation.state is observed.observation.state:
            seen_at = current.observation.seen_at
        else:
            seen_at = self._clock()
        observed = replace(observed, observation=replace(observed.observation, seen_at=seen_at))
        jobs[observed.observation.name] = observed
        before = self._view(observed.namespace, current) if current is not None else None
        return JobUpdate(key, before, self._view(observed.namespace, observed))

    def put_observed_job(self, observed: ObservedJob) -> None:
        """Store an observation that did not come from the API (a Job that could not be made)."""
        key = (observed.namespace, observed.run)
        self._run_jobs(key).jobs[observed.observation.name] = observed

    def mark_deleting(self, key: RunKey, name: str) -> None:
        """A Job the operator deleted: seen as deleting until its DELETED event removes it
        (a Job that never existed, refused for good, has no such event: it goes now)."""
        run_jobs = self._jobs.get(key)
        job = run_jobs.jobs.get(name) if run_jobs else None
        if job is None or run_jobs is None:
            return
        if not job.uid:
            del run_jobs.jobs[name]
            return
        run_jobs.jobs[name] = replace(job, observation=replace(job.observation, deleting=True))

    def remove_job(self, job: Mapping[str, Any]) -> RunKey | None:
        """Forget a deleted Job; return its run, or None when it was not the cached one."""
        observed = observe_job(job)
        if observed is None:
            return None
        key = (observed.namespace, observed.run)
        run_jobs = self._jobs.get(key)
        name = observed.observation.name
        current = run_jobs.jobs.get(name) if run_jobs else None
        if current is None:
            # Not cached (its run finished and was evicted); a pod result may still be.
            self._forget_pods(observed.namespace, name)
            return None
        if current.uid != observed.uid:
            return None  # an older Job of the same name: the cached one is its successor
        assert run_jobs is not None
        del run_jobs.jobs[name]
        self._forget_pods(observed.namespace, name)
        return key

    def resync_jobs(
        self, key: RunKey, listed: list[dict[str, Any]], list_version: str
    ) -> list[str]:
        """Bring the run's Jobs in line with a LIST read at `list_version`; return the names
        of the cached Jobs it dropped.

        A restarted watch replays what exists, never what was deleted while it was down. A
        cached Job that the list does not show is dropped only if the list is at least as new
        as the cached copy: one created after the list was read must stay.
        """
        for job in listed:
            self.put_job(job)
        run_jobs = self._jobs.get(key)
        if run_jobs is None:
            return []
        shown = {str((job.get("metadata") or {}).get("name", "")) for job in listed}
        gone = [
            name
            for name, job in run_jobs.jobs.items()
            if name not in shown
            and job.uid  # not a Job that could not be created (no API object)
            and job.resource_version
            and list_version
            and is_newer(list_version, job.resource_version)
        ]
        for name in gone:
            del run_jobs.jobs[name]
            self._forget_pods(key[0], name)
        return gone

    def job(self, key: RunKey, name: str) -> ObservedJob | None:
        run_jobs = self._jobs.get(key)
        return run_jobs.jobs.get(name) if run_jobs else None

    def job_names(self, key: RunKey) -> list[str]:
        run_jobs = self._jobs.get(key)
        return list(run_jobs.jobs) if run_jobs else []

    # -- pods

    def put_pod_result(self, namespace: str, job_name: str, result: PodResult) -> bool:
        """Store a terminated container's result; True when it is new. The time the pod was
        first seen ended is stamped by the operator's clock (latency is measured from it)."""
        slot = (namespace, job_name)
        current = self._pods.get(slot)
        if current == result:
            return False
        if result.pod_state is not None:
            same = current is not None and current.pod_state is result.pod_state
            seen = current.seen_at if same and current is not None else self._clock()
            result = replace(result, seen_at=seen)
        self._pods[slot] = result
        return True

    def put_pod_waiting(self, namespace: str, job_name: str, waiting: str | None) -> bool:
        """Record why the Job's container cannot start (None: it can); True when changed."""
        slot = (namespace, job_name)
        if self._waiting.get(slot) == waiting:
            return False
        if waiting is None:
            del self._waiting[slot]
        else:
            self._waiting[slot] = waiting
        return True

    def pod_result(self, namespace: str, job_name: str) -> PodResult | None:
        return self._pods.get((namespace, job_name))

    def pods_listed(self, namespace: str, job_name: str) -> bool:
        return (namespace, job_name) in self._pods_listed

    def mark_pods_listed(self, namespace: str, job_name: str) -> None:
        self._pods_listed.add((namespace, job_name))

    def put_refusal(self, namespace: str, job_name: str, job_uid: str, message: str) -> None:
        """Record that the Job's pods are refused for good (see `kdag.operator.refusals`)."""
        self._refusals[(namespace, job_name)] = (job_uid, message)

    def refused(self, namespace: str, job_name: str) -> bool:
        return (namespace, job_name) in self._refusals

    def _forget_pods(self, namespace: str, job_name: str) -> None:
        self._pods.pop((namespace, job_name), None)
        self._waiting.pop((namespace, job_name), None)
        self._pods_listed.discard((namespace, job_name))
        self._refusals.pop((namespace, job_name), None)
        self._views.pop((namespace, job_name), None)

    # -- what the planner sees

    def observed(self, key: RunKey, run_uid: str) -> Observed:
        """The run's Jobs with their pods' results folded in, as the planner wants them.

        Only Jobs owned by this incarnation of the run count: a run deleted and created again
        under the same name may still have the old one's Jobs around until the garbage
        collector removes them.
        """
        run_jobs = self._jobs.get(key)
        if run_jobs is None:
            return Observed({})
        return Observed(
            {
                name: self._view(key[0], job)
                for name, job in run_jobs.jobs.items()
                if job.owner_uid == run_uid
            }
        )

    def _view(self, namespace: str, job: ObservedJob) -> JobObservation:
        """The Job as the planner sees it: its pod's result, why its container cannot start
        and a refusal of its pods folded in; remade only when one of those changed."""
        slot = (namespace, job.observation.name)
        result = self._pods.get(slot)
        if result is not None and result.job_uid not in (None, job.uid):
            result = None
        waiting, refusal = self._waiting.get(slot), self._refusals.get(slot)
        remembered = self._views.get(slot)
        if remembered is not None:
            (was_job, was_result, was_waiting, was_refusal), view = remembered
            if (
                was_job is job
                and was_result is result
                and was_waiting is waiting
                and was_refusal is refusal
            ):
                return view
        view = with_pod_result(self._refused_or(namespace, job), result)
        if waiting is not None:
            view = replace(view, pod_waiting=waiting)
        self._views[slot] = ((job, result, waiting, refusal), view)
        return view

    def _refused_or(self, namespace: str, job: ObservedJob) -> JobObservation:
        """A still-active Job whose pods are refused for good is a failed attempt."""
        refusal = self._refusals.get((namespace, job.observation.name))
        if refusal is None or refusal[0] != job.uid or job.observation.state is not JobState.ACTIVE:
            return job.observation
        return replace(
            job.observation, state=JobState.FAILED, reason=PODS_REFUSED_REASON, message=refusal[1]
        )

    def stats(self) -> dict[str, int]:
        return {
            "runs": len(self._runs),
            "jobs": sum(len(r.jobs) for r in self._jobs.values()),
            "pod_results": len(self._pods),
        }
