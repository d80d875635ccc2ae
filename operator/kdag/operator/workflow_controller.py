"""The Workflow controller: keeps every Workflow's status and carries out the cron schedules.

Workflows go through a keyed work queue (`kdag.operator.workqueue`), as runs do: watch
events (`kdag.operator.workflow_handlers`) only add a Workflow's key, and `reconcile(key)`
does one pass for it, never two at once:

* **Status.** The Workflow is validated by the engine when its spec changes; its status
  says whether it is valid (the message names the field), how many nodes it has, its
  newest run and its active scheduled runs (`kdag.engine.workflow_status` decides). The
  status is patched only when one of those changed, so the echo of our own write costs
  nothing.
* **Schedules.** For a Workflow with `spec.schedule`, the pass asks
  `kdag.engine.cron.plan_schedule` what to do, carries the plan out
  (`kdag.operator.cron_runs`), and returns the next tick as its `Result.requeue_at`: the
  queue's timer for the key fires then. Waiting costs no API calls.

A burst of run events costs one pass; a failed pass is retried with backoff.
"""

from __future__ import annotations

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
from kdag.operator.kube import KubeError
from kdag.operator.objects import DELETED, utcnow
from kdag.operator.status_patch import merge_patch
from kdag.operator.workflow_api import WorkflowApi
from kdag.operator.workflow_objects import (
    WorkflowKey,
    WorkflowObject,
    WorkflowView,
    observe_run,
)
from kdag.operator.workflow_writes import OwnWrites
from kdag.operator.workqueue import TIMER_SLACK_SECONDS, Result, WorkQueue

logger = logging.getLogger(__name__)

# A tick's timer looks again after this long at the latest, even if nothing changed: a
# safety net against a wall-clock jump, and free (a pass with nothing to do calls no API).
LONGEST_WAIT_SECONDS = 600.0
# A failed pass (the API down, say) is tried again after this.
RETRY_BACKOFF = Backoff(base_seconds=2.0, max_seconds=60.0)

# Passes are short (a few API calls at most); a few workers keep one slow Workflow from
# holding up the others.
WORKERS = 4


class WorkflowController:
    """Writes Workflow status and carries out the schedules; one per operator process."""

    def __init__(
        self,
        api: WorkflowApi,
        view: WorkflowView,
        *,
        max_nodes: int,
        output_budget: int = DEFAULT_OUTPUT_BUDGET,
        clock: Callable[[], datetime] = utcnow,
        workers: int = WORKERS,
        timer_slack_seconds: float = TIMER_SLACK_SECONDS,
        owns: Callable[[], bool] = lambda: True,
    ) -> None:
        # Active-active shards: one replica drives every Workflow (`shard_ring.WORKFLOWS_KEY`).
        self._owns = owns
        self._api = api
        self._view = view
        self._max_nodes = max_nodes
        self._output_budget = output_budget
        self._clock = clock
        self._queue: WorkQueue[WorkflowKey] = WorkQueue(
            self.reconcile,
            on_failure=self._pass_failed,
            clock=clock,
            backoff=RETRY_BACKOFF,
            workers=workers,
            name="kdag-workflows",
            timer_slack_seconds=timer_slack_seconds,
            longest_wait_seconds=LONGEST_WAIT_SECONDS,
        )
        self._writes = OwnWrites()
        self._validity: dict[WorkflowKey, tuple[str, int | None, Validity]] = {}
        self._last_scheduled: dict[WorkflowKey, datetime] = {}
        self._reported: dict[WorkflowKey, datetime] = {}
        self._seen_runs: dict[tuple[str, str], ObservedRun] = {}
        # Workflows passed over because their namespace's runs were not listed yet.
        self._awaiting_listing: set[WorkflowKey] = set()

    # ------------------------------------------------------------ queue

    @property
    def queue(self) -> WorkQueue[WorkflowKey]:
        return self._queue

    def due_at(self, key: WorkflowKey) -> datetime | None:
        """When the Workflow's timer (its next tick, or a retry) fires."""
        return self._queue.due_at(key)

    def start(self) -> None:
        self._queue.start()

    async def stop(self) -> None:
        await self._queue.stop()

    async def pause(self) -> None:
        """kopf peering paused the replica: stop every pass and timer, and forget what the
        watches will show anew. Resuming, kopf lists every Workflow and run again, and each
        Workflow's event adds its key."""
        await self._queue.pause()
        self._seen_runs.clear()
        self._writes.clear()

    def resume(self) -> None:
        self._queue.resume()

    def take_over(self, keys: Iterable[WorkflowKey]) -> None:
        """This replica now drives the Workflows (shards): pass over every one."""
        for key in list(keys):
            self._queue.add(key)

    def forget(self, key: WorkflowKey) -> None:
        """The Workflow is gone: drop its timer and what is remembered of it."""
        self._queue.forget(key)
        self._writes.forget(key)
        self._awaiting_listing.discard(key)
        for memory in (self._validity, self._last_scheduled, self._reported):
            memory.pop(key, None)

    def _pass_failed(self, key: WorkflowKey, exc: Exception, failures: int, delay: float) -> None:
        message = "pass of workflow %s/%s failed (retry %d in %.0fs)"
        if isinstance(exc, KubeError):  # the API's answer says it all
            logger.warning(message + ": %s", *key, failures, delay, exc)
        else:  # a bug: its traceback
            logger.error(message, *key, failures, delay, exc_info=exc)

    # ------------------------------------------------------------ events from the watches

    def workflow_changed(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        """The view has taken the event in; a deletion forgets the Workflow unless another
        of the same name was made since (its events may come first)."""
        key = WorkflowObject.from_body(body).key
        if event_type == DELETED and self._view.workflow(key) is None:
            self.forget(key)
        else:
            self._queue.add(key)

    def run_changed(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        """A run appeared, went, or changed what its Workflow shows: pass over the Workflow
        (merged with any pass already due: run events are the operator's hot path)."""
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
        if self._view.workflow(key) is not None:
            self._queue.add(key)

    def runs_listed(self, namespace: str | None) -> None:
        """The namespace's (None: every namespace's) runs have been listed: pass over the
        Workflows that waited for it."""
        ready = {key for key in self._awaiting_listing if namespace in (None, key[0])}
        self._awaiting_listing -= ready
        for key in ready:
            self._queue.add(key)

    # ------------------------------------------------------------ one pass

    async def reconcile(self, key: WorkflowKey) -> Result:
        """One pass: validate, carry out the schedule if any, patch the status if it
        changed; the Result's `requeue_at` is the next tick."""
        if not self._owns():
            return Result()  # another replica drives the Workflows (shards); no timer
        if not self._view.complete(key[0]):
            # Never from a partial view of the runs. `runs_listed` brings the key back; no
            # worker waits (a namespace whose runs may not be listed must not stall others).
            self._awaiting_listing.add(key)
            return Result()
        workflow = self._view.workflow(key)
        if workflow is None:
            self.forget(key)
            return Result()
        if workflow.deleting:
            return Result()
        validity = self.validity(workflow)
        current = self._writes.status(workflow)
        schedule = validity.spec.schedule if validity.spec is not None else None
        next_tick = None
        if schedule is not None:
            next_tick = await self._schedule(workflow, schedule, validity, current)
        desired = self._desired(workflow, validity, current)
        owned = {name: current[name] for name in OWNED_FIELDS if name in current}
        patch = merge_patch(owned, desired)
        if patch:
            stored = await self._api.patch_workflow_status(
                workflow.namespace, workflow.name, {"status": patch}
            )
            if stored is not None:
                self._writes.wrote_status(key, stored)
        return Result(requeue_at=next_tick)

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
        return self._writes.status(workflow)

    def _desired(
        self, workflow: WorkflowObject, validity: Validity, current: Mapping[str, Any]
    ) -> dict[str, Any]:
        return desired_status(
            workflow.spec,
            current,
            validity,
            self._runs(workflow.key),
            generation=workflow.generation,
            last_scheduled=self._last_scheduled.get(workflow.key),
            now=self._clock(),
        )

    def _runs(self, key: WorkflowKey) -> list[ObservedRun]:
        return self._writes.runs(key, self._view.runs(key))

    async def _schedule(
        self,
        workflow: WorkflowObject,
        schedule: ScheduleSpec,
        validity: Validity,
        current: Mapping[str, Any],
    ) -> datetime | None:
        """Act on a due tick and prune the history; returns the next tick."""
        key = workflow.key
        now = self._clock()
        before = self._desired(workflow, validity, current)
        runs = self._runs(key)
        since = scheduled_since(before)
        plan = plan_schedule(
            schedule,
            workflow=workflow.name,
            runs=runs,
            last_schedule_time=parse_iso_or_none(before.get("lastScheduleTime")),
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
            self._writes.created(key, applied.created)
        if plan.last_schedule_time is not None:
            self._last_scheduled[key] = plan.last_schedule_time
        self._writes.deleted(key, applied.deleted)
        return plan.next_tick


def _target(workflow: WorkflowObject, schedule: ScheduleSpec) -> ScheduleTarget:
    return ScheduleTarget(workflow.namespace, workflow.name, workflow.uid, schedule.params)
