"""Workflows: their status (validity, node count, last run) and their cron schedules.

Two kinds of work, both driven by what the watches show:

* **Status.** Every Workflow is validated by the engine when its spec changes; its status
  says whether it is valid (the message names the field), how many nodes it has, its
  newest run and its active scheduled runs. The status is patched only when one of those
  changed, so the echo of our own write costs nothing.
* **Schedules.** A Workflow with `spec.schedule` gets a kopf daemon that sleeps until the
  next tick (or until something about the workflow or its runs changes), asks
  `kdag.engine.schedule.plan_schedule` what to do, and carries the plan out
  (`kdag.operator.schedules`). Sleeping costs no API calls. kopf puts a finalizer on a
  scheduled Workflow so the daemon is stopped before the Workflow goes; the finalizer is
  removed when the schedule is removed or the Workflow is deleted.

Runs and Workflows reach the daemon through kopf indexes, which kopf fills completely
before any handler runs: a restarted operator never schedules from a partial view.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import kopf

from kdag.api import GROUP, VERSION, WORKFLOWS, RunPhase, ScheduleSpec
from kdag.engine.model import DEFAULT_OUTPUT_BUDGET
from kdag.engine.schedule import ObservedRun, claimed_tick, plan_schedule
from kdag.engine.timeutil import parse_iso_or_none
from kdag.engine.workflow_status import (
    CONDITION_SCHEDULED,
    CONDITION_VALID,
    OWNED_FIELDS,
    Validity,
    check_workflow,
    desired_status,
    scheduled_since,
)
from kdag.operator.app import Operator
from kdag.operator.cache import is_newer
from kdag.operator.config import RUNS_RESOURCE
from kdag.operator.schedules import (
    ANNOTATION_SCHEDULED_AT,
    LABEL_SCHEDULED,
    ScheduleTarget,
    apply_plan,
)
from kdag.operator.status_patch import merge_patch
from kdag.operator.workflow_api import WorkflowApi

# The names other code imports from here.
__all__ = [
    "CONDITION_SCHEDULED",
    "CONDITION_VALID",
    "WorkflowController",
    "WorkflowObject",
    "observe_run",
]

logger = logging.getLogger(__name__)

WORKFLOWS_RESOURCE = (GROUP, VERSION, WORKFLOWS)
DELETED = "DELETED"
# A sleeping schedule daemon looks again after this long even if nothing woke it: a safety
# net against a missed wake-up or a wall-clock jump, and free (no API calls).
MAX_SLEEP_SECONDS = 600.0
# Retry delays after a failed schedule step (API trouble), in seconds.
RETRY_BASE_SECONDS = 2.0
RETRY_MAX_SECONDS = 60.0
MEMO_KEY = "kdag_workflow_controller"
# kopf names an index after its function and passes it to handlers under that name.
WORKFLOWS_INDEX = "kdag_workflows"
RUNS_INDEX = "kdag_workflow_runs"

WorkflowKey = tuple[str, str]
"""(namespace, name) of a Workflow."""

RunsIndex = Mapping[WorkflowKey, Iterable[ObservedRun]]
WorkflowsIndex = Mapping[WorkflowKey, Iterable["WorkflowObject"]]


def _utcnow() -> datetime:
    return datetime.now(UTC)


# -- reading objects (pure)


@dataclass(frozen=True)
class WorkflowObject:
    """A Workflow as this module reads it; spec and status stay raw until needed."""

    namespace: str
    name: str
    uid: str
    generation: int | None
    resource_version: str
    spec: Mapping[str, Any]
    status: Mapping[str, Any]
    deleting: bool = False

    @property
    def key(self) -> WorkflowKey:
        return self.namespace, self.name

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> WorkflowObject:
        meta = body.get("metadata") or {}
        return cls(
            namespace=str(meta.get("namespace", "")),
            name=str(meta.get("name", "")),
            uid=str(meta.get("uid", "")),
            generation=meta.get("generation"),
            resource_version=str(meta.get("resourceVersion", "")),
            spec=body.get("spec") or {},
            status=body.get("status") or {},
            deleting=bool(meta.get("deletionTimestamp")),
        )


def observe_run(body: Mapping[str, Any]) -> tuple[WorkflowKey, ObservedRun] | None:
    """The workflow a run belongs to and what the scheduler needs of it; None for a run
    with an inline workflow, which belongs to no Workflow."""
    meta = body.get("metadata") or {}
    spec = body.get("spec") or {}
    status = body.get("status") or {}
    workflow = (spec.get("workflowRef") or {}).get("name")
    if not isinstance(workflow, str) or not workflow:
        return None
    labels = meta.get("labels") or {}
    annotations = meta.get("annotations") or {}
    try:
        phase: RunPhase | None = RunPhase(str(status.get("phase")))
    except ValueError:
        phase = None  # not started yet, or a phase this version does not know
    created_at = parse_iso_or_none(meta.get("creationTimestamp")) or datetime.fromtimestamp(0, UTC)
    name = str(meta.get("name", ""))
    # Only a run the schedule could have made counts as scheduled; any other is a manual run.
    tick = (
        claimed_tick(
            workflow, name, parse_iso_or_none(annotations.get(ANNOTATION_SCHEDULED_AT)), created_at
        )
        if labels.get(LABEL_SCHEDULED) == "true"
        else None
    )
    run = ObservedRun(
        name=name,
        created_at=created_at,
        phase=phase,
        scheduled=tick is not None,
        scheduled_at=tick,
        finished_at=parse_iso_or_none(status.get("finishedAt")),
        cancel_requested=bool(spec.get("cancel")),
        uid=str(meta.get("uid", "")),
    )
    return (str(meta.get("namespace", "")), workflow), run


# -- the controller (imperative)


class WorkflowController:
    """Writes Workflow status and runs the schedules; one per operator process."""

    def __init__(
        self,
        api: WorkflowApi,
        *,
        max_nodes: int,
        output_budget: int = DEFAULT_OUTPUT_BUDGET,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self._api = api
        self._max_nodes = max_nodes
        self._output_budget = output_budget
        self._clock = clock
        self._locks: dict[WorkflowKey, asyncio.Lock] = {}
        self._validity: dict[WorkflowKey, tuple[str, int | None, Validity]] = {}
        # Our own last status write, newer than the watch until its echo arrives.
        self._written: dict[WorkflowKey, tuple[str, Mapping[str, Any]]] = {}
        # Runs we created or deleted that the index does not show yet.
        self._created: dict[WorkflowKey, dict[str, ObservedRun]] = {}
        self._deleted: dict[WorkflowKey, set[str]] = {}
        self._last_scheduled: dict[WorkflowKey, datetime] = {}
        self._reported: dict[WorkflowKey, datetime] = {}
        self._seen_runs: dict[tuple[str, str], ObservedRun] = {}
        self._wakeups: dict[WorkflowKey, asyncio.Event] = {}
        self._dirty: set[WorkflowKey] = set()
        self._syncs: dict[WorkflowKey, asyncio.Task[None]] = {}

    # -- memory

    def _lock(self, key: WorkflowKey) -> asyncio.Lock:
        return self._locks.setdefault(key, asyncio.Lock())

    def forget(self, key: WorkflowKey) -> None:
        for memory in (
            self._validity,
            self._written,
            self._created,
            self._deleted,
            self._last_scheduled,
            self._reported,
        ):
            memory.pop(key, None)
        lock = self._locks.get(key)
        if lock is not None and not lock.locked():
            del self._locks[key]

    def validity(self, workflow: WorkflowObject) -> Validity:
        """Validation is the costly part; it only changes with the spec (generation)."""
        cached = self._validity.get(workflow.key)
        if cached is not None and cached[:2] == (workflow.uid, workflow.generation):
            return cached[2]
        validity = check_workflow(
            workflow.spec, max_nodes=self._max_nodes, output_budget=self._output_budget
        )
        self._validity[workflow.key] = (workflow.uid, workflow.generation, validity)
        return validity

    def current_status(self, workflow: WorkflowObject) -> Mapping[str, Any]:
        written = self._written.get(workflow.key)
        if written is not None and is_newer(written[0], workflow.resource_version):
            return written[1]
        return workflow.status

    def runs_view(self, key: WorkflowKey, indexed: Iterable[ObservedRun]) -> list[ObservedRun]:
        """The indexed runs, with our own recent creations and deletions applied."""
        runs = list(indexed)
        names = {r.name for r in runs}
        created = self._created.get(key, {})
        for name in [n for n in created if n in names]:
            del created[name]
        deleted = self._deleted.get(key, set())
        deleted &= names
        return [r for r in runs if r.name not in deleted] + list(created.values())

    # -- status

    async def sync_status(self, workflow: WorkflowObject, indexed: Iterable[ObservedRun]) -> None:
        async with self._lock(workflow.key):
            await self._sync_locked(workflow, self.runs_view(workflow.key, indexed))

    async def _sync_locked(self, workflow: WorkflowObject, runs: list[ObservedRun]) -> None:
        if workflow.deleting:
            return
        current = self.current_status(workflow)
        desired = desired_status(
            workflow.spec,
            current,
            self.validity(workflow),
            runs,
            generation=workflow.generation,
            last_scheduled=self._last_scheduled.get(workflow.key),
            now=self._clock(),
        )
        await self._write(workflow, current, desired)

    async def _write(
        self, workflow: WorkflowObject, current: Mapping[str, Any], desired: Mapping[str, Any]
    ) -> None:
        owned = {key: current[key] for key in OWNED_FIELDS if key in current}
        patch = merge_patch(owned, desired)
        if not patch:
            return
        result = await self._api.patch_workflow_status(
            workflow.namespace, workflow.name, {"status": patch}
        )
        if result is not None:
            version = str((result.get("metadata") or {}).get("resourceVersion", ""))
            self._written[workflow.key] = (version, result.get("status") or {})

    # -- events from the watches

    async def workflow_changed(
        self, event_type: str | None, body: Mapping[str, Any], runs: RunsIndex
    ) -> None:
        workflow = WorkflowObject.from_body(body)
        if event_type == DELETED:
            self.forget(workflow.key)
            return
        await self.sync_status(workflow, runs.get(workflow.key, ()))
        self.wake(workflow.key)

    def run_changed(
        self,
        event_type: str | None,
        body: Mapping[str, Any],
        workflows: WorkflowsIndex,
        runs: RunsIndex,
    ) -> None:
        """A run appeared, went, or changed phase: refresh its workflow's status (in the
        background, coalesced: run events are the operator's hot path) and wake its
        schedule."""
        observed = observe_run(body)
        if observed is None:
            return
        key, run = observed
        slot = (key[0], run.name)
        if event_type == DELETED:
            self._seen_runs.pop(slot, None)
        elif self._seen_runs.get(slot) == run:
            return
        else:
            self._seen_runs[slot] = run
        if key not in workflows:
            return
        self.wake(key)
        self._dirty.add(key)
        if key not in self._syncs:
            self._syncs[key] = asyncio.create_task(self._sync_dirty(key, workflows, runs))

    async def _sync_dirty(
        self, key: WorkflowKey, workflows: WorkflowsIndex, runs: RunsIndex
    ) -> None:
        try:
            while key in self._dirty:
                self._dirty.discard(key)
                workflow = next(iter(workflows.get(key, ())), None)
                if workflow is None:
                    return
                try:
                    await self.sync_status(workflow, runs.get(key, ()))
                except Exception:  # the next event or schedule step writes it again
                    logger.exception("status of workflow %s/%s not updated", *key)
        finally:
            self._syncs.pop(key, None)

    def wake(self, key: WorkflowKey) -> None:
        event = self._wakeups.get(key)
        if event is not None:
            event.set()

    async def close(self) -> None:
        tasks = list(self._syncs.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def pause(self) -> None:
        """kopf peering paused the replica: drop the status writes in flight (kopf stops
        the schedule daemons itself; resuming re-lists every Workflow and run)."""
        self._dirty.clear()
        await self.close()

    def resume(self) -> None:
        """Nothing to restart: the watches' new listing drives status and daemons again."""

    # -- schedules

    async def schedule_once(
        self, workflow: WorkflowObject, indexed: Iterable[ObservedRun]
    ) -> datetime | None:
        """One look at the schedule: act on a due tick, prune, update the status.

        Returns when to look again (the next tick), or None to wait for a change.
        """
        key = workflow.key
        async with self._lock(key):
            if workflow.deleting:
                return None
            now = self._clock()
            runs = self.runs_view(key, indexed)
            validity = self.validity(workflow)
            current = self.current_status(workflow)
            desired = desired_status(
                workflow.spec,
                current,
                validity,
                runs,
                generation=workflow.generation,
                last_scheduled=self._last_scheduled.get(key),
                now=now,
            )
            schedule = validity.spec.schedule if validity.spec is not None else None
            if schedule is None:
                await self._write(workflow, current, desired)
                return None
            since = scheduled_since(desired)
            plan = plan_schedule(
                schedule,
                workflow=workflow.name,
                runs=runs,
                last_schedule_time=parse_iso_or_none(desired.get("lastScheduleTime")),
                active_since=since or now,
                now=now,
                runnable=since is not None,
            )
            skipped = plan.skipped.tick if plan.skipped else plan.missed
            applied = await apply_plan(
                self._api,
                _target(workflow, schedule),
                plan,
                {r.name: r for r in runs},
                now,
                report_skip=skipped is not None and self._reported.get(key) != skipped,
            )
            if skipped is not None:
                self._reported[key] = skipped
            if applied.created is not None:
                self._created.setdefault(key, {})[applied.created.name] = applied.created
            if plan.last_schedule_time is not None:
                self._last_scheduled[key] = plan.last_schedule_time
            self._deleted.setdefault(key, set()).update(applied.deleted)
            await self._sync_locked(workflow, self.runs_view(key, indexed))
            return plan.next_tick

    async def run_schedule(
        self,
        body: Mapping[str, Any],
        runs: RunsIndex,
        *,
        stop: asyncio.Event | None = None,
        log: logging.Logger | logging.LoggerAdapter[logging.Logger] = logger,
    ) -> None:
        """The daemon of one scheduled Workflow: runs until `stop` is set (then it returns
        at once) or the task is cancelled.

        `body` is kopf's live view of the Workflow, always its latest state.
        """
        key = WorkflowObject.from_body(body).key
        wakeup = self._wakeups[key] = asyncio.Event()
        failures = 0
        try:
            while stop is None or not stop.is_set():
                wakeup.clear()
                try:
                    workflow = WorkflowObject.from_body(body)
                    next_tick = await self.schedule_once(workflow, runs.get(key, ()))
                    failures = 0
                    delay = self._delay_until(next_tick)
                except Exception as exc:
                    failures += 1
                    delay = min(RETRY_MAX_SECONDS, RETRY_BASE_SECONDS * 2 ** (failures - 1))
                    log.warning("schedule step failed (retrying in %.0fs): %s", delay, exc)
                if stop is not None and stop.is_set():
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wakeup.wait(), timeout=delay)
        finally:
            if self._wakeups.get(key) is wakeup:
                del self._wakeups[key]

    def _delay_until(self, moment: datetime | None) -> float:
        if moment is None:
            return MAX_SLEEP_SECONDS
        seconds = (moment - self._clock()).total_seconds()
        return min(MAX_SLEEP_SECONDS, max(0.0, seconds))


def _target(workflow: WorkflowObject, schedule: ScheduleSpec) -> ScheduleTarget:
    return ScheduleTarget(workflow.namespace, workflow.name, workflow.uid, schedule.params)


# -- kopf wiring


def _controller(memo: kopf.Memo) -> WorkflowController:
    controller: WorkflowController = memo[MEMO_KEY]
    return controller


@kopf.on.startup()
async def start_workflow_controller(memo: kopf.Memo, **_: Any) -> None:
    app: Operator = memo["kdag"]
    controller = WorkflowController(
        app.kube,
        max_nodes=app.config.max_nodes,
        output_budget=app.config.max_run_output_bytes,
    )
    memo[MEMO_KEY] = controller
    app.pausables.append((controller.pause, controller.resume))


@kopf.on.cleanup()
async def stop_workflow_controller(memo: kopf.Memo, **_: Any) -> None:
    controller = memo.get(MEMO_KEY)
    if isinstance(controller, WorkflowController):
        await controller.close()


@kopf.index(*WORKFLOWS_RESOURCE, id=WORKFLOWS_INDEX)
def kdag_workflows(body: kopf.Body, **_: Any) -> dict[WorkflowKey, WorkflowObject]:
    workflow = WorkflowObject.from_body(body)
    return {workflow.key: workflow}


@kopf.index(*RUNS_RESOURCE, id=RUNS_INDEX)
def kdag_workflow_runs(body: kopf.Body, **_: Any) -> dict[WorkflowKey, ObservedRun] | None:
    observed = observe_run(body)
    return None if observed is None else {observed[0]: observed[1]}


def _runs_index(kwargs: Mapping[str, Any]) -> RunsIndex:
    return cast(RunsIndex, kwargs[RUNS_INDEX])


def _workflows_index(kwargs: Mapping[str, Any]) -> WorkflowsIndex:
    return cast(WorkflowsIndex, kwargs[WORKFLOWS_INDEX])


@kopf.on.event(*WORKFLOWS_RESOURCE)
async def workflow_status_on_workflow_event(
    event: kopf.RawEvent, memo: kopf.Memo, **kwargs: Any
) -> None:
    body = cast(Mapping[str, Any], event["object"])
    await _controller(memo).workflow_changed(event["type"], body, _runs_index(kwargs))


@kopf.on.event(*RUNS_RESOURCE)
async def workflow_status_on_run_event(
    event: kopf.RawEvent, memo: kopf.Memo, **kwargs: Any
) -> None:
    body = cast(Mapping[str, Any], event["object"])
    _controller(memo).run_changed(
        event["type"], body, _workflows_index(kwargs), _runs_index(kwargs)
    )


def _has_schedule(spec: kopf.Spec, **_: Any) -> bool:
    return bool(spec.get("schedule"))


@kopf.daemon(
    *WORKFLOWS_RESOURCE, when=_has_schedule, cancellation_backoff=5.0, cancellation_timeout=10.0
)
async def workflow_schedule(
    body: kopf.Body,
    memo: kopf.Memo,
    logger: kopf.Logger,
    stopped: kopf.DaemonStopped,
    **kwargs: Any,
) -> None:
    controller = _controller(memo)
    key = WorkflowObject.from_body(body).key
    stop = asyncio.Event()

    # kopf sets `stopped` when the Workflow goes, loses its schedule or the operator pauses
    # or exits; the daemon then returns by itself instead of being cancelled.
    async def relay_stop() -> None:
        await stopped.wait()
        stop.set()
        controller.wake(key)

    relay = asyncio.create_task(relay_stop())
    try:
        await controller.run_schedule(body, _runs_index(kwargs), stop=stop, log=logger)
    finally:
        relay.cancel()
