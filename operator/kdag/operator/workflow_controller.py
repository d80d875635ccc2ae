"""The Workflow controller: keeps every Workflow's status and runs the cron schedules.

Two kinds of work, both driven by what the watches show (`kdag.operator.workflow_handlers`):

* **Status.** Every Workflow is validated by the engine when its spec changes; its status
  says whether it is valid (the message names the field), how many nodes it has, its
  newest run and its active scheduled runs (`kdag.engine.workflow_status` decides). The
  status is patched only when one of those changed, so the echo of our own write costs
  nothing.
* **Schedules.** A Workflow with `spec.schedule` gets a daemon that sleeps until the next
  tick (or until something about the workflow or its runs changes), asks
  `kdag.engine.cron.plan_schedule` what to do, and carries the plan out
  (`kdag.operator.cron_runs`). Sleeping costs no API calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

from kdag.api import ScheduleSpec
from kdag.engine.cron import ObservedRun, plan_schedule
from kdag.engine.model import DEFAULT_OUTPUT_BUDGET
from kdag.engine.timeutil import parse_iso_or_none
from kdag.engine.workflow_status import (
    OWNED_FIELDS,
    Validity,
    check_workflow,
    desired_status,
    scheduled_since,
)
from kdag.operator.backoff import Backoff
from kdag.operator.cron_runs import ScheduleTarget, apply_plan
from kdag.operator.objects import DELETED, is_newer, resource_version, utcnow
from kdag.operator.status_patch import merge_patch
from kdag.operator.workflow_api import WorkflowApi
from kdag.operator.workflow_objects import WorkflowKey, WorkflowObject, observe_run

logger = logging.getLogger(__name__)

# A sleeping schedule daemon looks again after this long even if nothing woke it: a safety
# net against a missed wake-up or a wall-clock jump, and free (no API calls).
MAX_SLEEP_SECONDS = 600.0
# A schedule step that failed (the API down, say) is tried again after this.
SCHEDULE_RETRY = Backoff(base_seconds=2.0, max_seconds=60.0)

RunsIndex = Mapping[WorkflowKey, Iterable[ObservedRun]]
WorkflowsIndex = Mapping[WorkflowKey, Iterable[WorkflowObject]]


class WorkflowController:
    """Writes Workflow status and runs the schedules; one per operator process."""

    def __init__(
        self,
        api: WorkflowApi,
        *,
        max_nodes: int,
        output_budget: int = DEFAULT_OUTPUT_BUDGET,
        clock: Callable[[], datetime] = utcnow,
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
            version = resource_version(result)
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
                    delay = SCHEDULE_RETRY.delay(failures)
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
