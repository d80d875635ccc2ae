"""Creating and deleting a run's Jobs, as a plan asks, idempotently.

A create answered AlreadyExists adopts the Job when it is the run's own (made before a
restart, or by a pass whose status write failed); a create the API server refuses for good
is recorded in the cache as a failed attempt with the server's reason, so the planner
applies the node's retry policy; a create refused for now (a full ResourceQuota) is handed
back, so the run is planned again knowing it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from functools import partial

from kdag.engine.model import (
    ANNOTATION_READY_AT,
    Action,
    CreateJob,
    DeleteJob,
    JobObservation,
    JobState,
)
from kdag.engine.timeutil import parse_iso
from kdag.operator.cache import Cache
from kdag.operator.decision import Decision
from kdag.operator.fair_share import FairShare
from kdag.operator.kube import KubeApi, KubeError
from kdag.operator.metrics import Metrics
from kdag.operator.objects import RunKey
from kdag.operator.observe import ObservedJob
from kdag.operator.runs import ParsedRun

logger = logging.getLogger(__name__)

CREATE_FAILED_REASON = "CreateFailed"


def _is_refused_for_now(exc: KubeError) -> bool:
    # A ResourceQuota that is full frees up as other Jobs finish or are deleted: the node
    # waits Queued, it does not fail.
    return exc.status == 403 and "exceeded quota" in exc.body


# Job requests in flight for all runs together, by default: the API client's worker count,
# so its pool never holds a backlog that would serve one run's batch before another's request.
REQUESTS_IN_FLIGHT = 16


class JobActions:
    def __init__(
        self,
        kube: KubeApi,
        cache: Cache,
        metrics: Metrics,
        clock: Callable[[], datetime],
        *,
        requests_in_flight: int = REQUESTS_IN_FLIGHT,
    ) -> None:
        self._kube = kube
        self._cache = cache
        self._metrics = metrics
        self._clock = clock
        self._share = FairShare(requests_in_flight)

    async def apply_plan(
        self,
        key: RunKey,
        decision: Decision,
        planning: Callable[[Mapping[str, str]], Awaitable[Decision]],
    ) -> Decision:
        """Create and delete the Jobs the plan asks for; return the decision to record.

        When the API server refuses a create for now (a full ResourceQuota), the run is
        planned again, told which Jobs were refused: the plan to record keeps those nodes
        Queued with the server's message and a backoff, and adopts the Jobs that were made,
        so the status is written in this pass rather than never.
        """
        run = decision.run
        handled = await self._apply_actions(key, run, decision.result.actions, set())
        refused = {name: message for name, message in handled.items() if message is not None}
        if not refused:
            return decision
        decision = await planning(refused)
        # The replan makes nothing (it knows there is no room) and repeats the deletes.
        await self._apply_actions(key, run, decision.result.actions, set(handled))
        return decision

    async def _apply_actions(
        self, key: RunKey, run: ParsedRun, actions: list[Action], done: set[str]
    ) -> dict[str, str | None]:
        """Apply creates and deletes (skipping names in `done`); return every Job name
        handled, with the API server's message for creates refused for now."""
        creates = [a for a in actions if isinstance(a, CreateJob) and a.name not in done]
        deletes = [a for a in actions if isinstance(a, DeleteJob) and a.name not in done]
        requests: list[Callable[[], Awaitable[str | None]]] = [
            *(partial(self._create, key, run, action) for action in creates),
            *(partial(self.delete, key, run, action) for action in deletes),
        ]
        outcomes = await self._in_lanes(key, requests)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        handled: dict[str, str | None] = {a.name: None for a in deletes}
        for action, outcome in zip(creates, outcomes, strict=False):
            handled[action.name] = outcome if isinstance(outcome, str) else None
        return handled

    async def _in_lanes(
        self, key: RunKey, requests: list[Callable[[], Awaitable[str | None]]]
    ) -> list[str | BaseException | None]:
        """Every request's outcome (its exception, if it raised), in order, made through the
        fair share by as many lanes as it has slots, each taking the next request when its
        last one is done. Handing the share every request at once kept one waiting task per
        Job: a 5,000-wide fan-out's creates held 8 MiB of them (docs/benchmarks.md)."""
        outcomes: list[str | BaseException | None] = [None] * len(requests)
        unclaimed = iter(range(len(requests)))

        async def lane() -> None:
            for index in unclaimed:  # shared: each request is taken by one lane
                try:
                    outcomes[index] = await self._share.run(key, requests[index]())
                except Exception as exc:  # kept, as gather's return_exceptions did
                    outcomes[index] = exc

        # A run alone may use every slot, and waits in the share with no more requests.
        lanes = min(self._share.capacity, len(requests))
        await asyncio.gather(*(lane() for _ in range(lanes)))
        return outcomes

    async def _create(self, key: RunKey, run: ParsedRun, action: CreateJob) -> str | None:
        """Create the Job; the API server's message when it refuses it for now, else None."""
        extra = {"run": f"{run.namespace}/{run.name}", "node": action.instance}
        try:
            created = await self._kube.create_job(run.namespace, action.manifest)
        except KubeError as exc:
            if exc.status == 409 and exc.api_reason == "AlreadyExists":
                await self._adopt(key, run, action)
                return None
            if _is_refused_for_now(exc):
                logger.info(
                    "Job %s for node %s refused for now: %s",
                    action.name,
                    action.instance,
                    exc.api_message,
                    extra=extra,
                )
                return exc.api_message
            if exc.transient:
                raise
            # The API refuses this Job for good (invalid podTemplate, forbidden): record it
            # as a failed attempt with the API's reason, so the node's retry policy applies
            # and its message says why.
            self._create_failed(run, action, exc.api_message)
            return None
        self._cache.put_job(created)
        ready_at = ((created.get("metadata") or {}).get("annotations") or {}).get(
            ANNOTATION_READY_AT
        )
        if ready_at:
            try:
                latency = (self._clock() - parse_iso(ready_at)).total_seconds()
                self._metrics.scheduling_latency.observe(max(latency, 0.0))
            except ValueError:
                pass
        logger.debug("created Job %s", action.name, extra=extra)
        return None

    async def _adopt(self, key: RunKey, run: ParsedRun, action: CreateJob) -> None:
        """The Job exists (made before a restart, or by a pass whose status write failed)."""
        existing = await self._kube.get_job(run.namespace, action.name)
        if existing is None:
            raise KubeError(409, "Conflict", f"Job {action.name} exists but cannot be read")
        owners = (existing.get("metadata") or {}).get("ownerReferences") or []
        if not any(o.get("uid") == run.uid for o in owners):
            # Names carry a hash of the run's uid, so this is no Job of ours: someone made it
            # by hand, or it is a hash collision. Adopting it would take a stranger's result,
            # and waiting for it would stall the whole run: this attempt fails instead.
            owner = next((o for o in owners if o.get("controller")), None)
            whose = f"its owner is {owner.get('kind')} {owner.get('name')}" if owner else "no owner"
            self._create_failed(
                run,
                action,
                f"a Job named {action.name} already exists and is not this run's ({whose})",
            )
            return
        self._cache.put_job(existing)

    def _create_failed(self, run: ParsedRun, action: CreateJob, why: str) -> None:
        """Record a Job the API would not create as a failed attempt with the reason, so the
        node's retry policy applies and its message says why."""
        logger.warning(
            "Job %s for node %s could not be created: %s",
            action.name,
            action.instance,
            why,
            extra={"run": f"{run.namespace}/{run.name}", "node": action.instance},
        )
        self._cache.put_observed_job(
            ObservedJob(
                namespace=run.namespace,
                run=run.name,
                uid="",
                owner_uid=run.uid,
                resource_version="",
                observation=JobObservation(
                    name=action.name,
                    instance=action.instance,
                    attempt=action.attempt,
                    state=JobState.FAILED,
                    reason=CREATE_FAILED_REASON,
                    message=f"the Job could not be created: {why}",
                ),
            )
        )

    def failed_create(self, key: RunKey, name: str) -> bool:
        job = self._cache.job(key, name)
        return job is not None and job.observation.reason == CREATE_FAILED_REASON

    async def delete(self, key: RunKey, run: ParsedRun, action: DeleteJob) -> None:
        await self._kube.delete_job(run.namespace, action.name)
        # Until the watch shows it gone: the next pass must not ask again.
        self._cache.mark_deleting(key, action.name)
        logger.info(
            "deleted Job %s: %s",
            action.name,
            action.reason,
            extra={"run": f"{run.namespace}/{run.name}"},
        )
