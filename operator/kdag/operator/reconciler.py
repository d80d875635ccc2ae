"""One pass for a run: plan it with the pure planner, then apply what it asked for.

Runs go through a keyed work queue (`workqueue.py`): one reconcile per run at a time;
events for a run that is being reconciled are merged into one more pass afterwards, so a
burst of Job events costs one plan, not one each. Applying goes Jobs first, then the
answers a rerun clears, then the status patch, then Events: if anything fails before the
status is written, the next pass plans from the old status again and the planner, finding
the Jobs already there, asks for nothing twice. Failed passes are
retried with backoff; nothing waits on a polling interval: a pass returns when the run is
due again (the planner's next due time: retry backoff, approval timeout, run timeout; or its
TTL), and the queue's timer fires then. A pass whose only news is progress may hold its
status for a moment instead of writing it (`status_hold.py`).

A little over 400 lines: about 40 of them are properties that keep the queue's state
readable under the names the unit tests and the model-based test inspect.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime
from typing import Any

from kdag.api import WorkflowRunStatus, WorkflowSpec
from kdag.engine.model import (
    DEFAULT_OUTPUT_BUDGET,
    CreateJob,
    EmitEvent,
    JobRetentionPolicy,
    RemoveAnnotations,
    ServiceAccountRef,
)
from kdag.engine.rules.retention import retention_policy
from kdag.operator.backoff import Backoff
from kdag.operator.cache import Cache, user_inputs
from kdag.operator.cache_completion import CacheCompleter
from kdag.operator.decision import Decision, decide
from kdag.operator.events import EventSink
from kdag.operator.finished_runs import FinishedRuns
from kdag.operator.job_actions import REQUESTS_IN_FLIGHT, JobActions
from kdag.operator.kube import KubeApi, KubeError
from kdag.operator.metrics import Metrics
from kdag.operator.objects import RunKey, resource_version, utcnow
from kdag.operator.oversized_status import OversizedStatus, is_too_large
from kdag.operator.resync import Resync
from kdag.operator.runs import (
    ParsedRun,
    is_settled,
    parse_run,
    workflow_from_object,
)
from kdag.operator.status_hold import Held, StatusHold
from kdag.operator.transitions import record_transitions
from kdag.operator.workqueue import Result, WorkQueue

# decide is re-exported for the benchmarks (bench/plan_profile.py), which import it here.
__all__ = ["Decision", "Reconciler", "decide"]

logger = logging.getLogger(__name__)

RETRY_BACKOFF = Backoff(base_seconds=0.5, max_seconds=60.0)

Clock = Callable[[], datetime]


class Reconciler:
    def __init__(
        self,
        kube: KubeApi,
        cache: Cache,
        metrics: Metrics,
        events: EventSink,
        *,
        max_nodes: int = 10_000,
        operator_account: ServiceAccountRef | None = None,
        job_retention_policy: JobRetentionPolicy = "Retain",
        output_budget: int = DEFAULT_OUTPUT_BUDGET,
        workers: int = 8,
        resync_seconds: float = 0.0,
        clock: Clock = utcnow,
        plan_in_thread: bool = True,
        owns: Callable[[RunKey], bool] | None = None,
        job_requests_in_flight: int = REQUESTS_IN_FLIGHT,
        status_hold_seconds: float = 0.0,
    ) -> None:
        # Active-active shards (kdag.operator.shards): the runs this replica drives.
        self._owns: Callable[[RunKey], bool] = owns or (lambda _key: True)
        # With shards, a run's writes carry the resourceVersion they were planned from: a
        # former owner's write that reaches the API server late is refused (409), never laid
        # over the new owner's newer status.
        self._versioned_writes = owns is not None
        self._kube = kube
        self._cache = cache
        self._metrics = metrics
        self._events = events
        self._max_nodes = max_nodes
        self._job_retention_policy: JobRetentionPolicy = job_retention_policy
        self._output_budget = output_budget
        self._operator_account = operator_account  # no run's pods may use it
        self._clock = clock
        # One planning thread: planning is CPU-bound (the GIL serialises it anyway), and
        # keeping it off the event loop keeps watches and API answers flowing meanwhile.
        self._planner = (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="planner")
            if plan_in_thread
            else None
        )
        self._queue: WorkQueue[RunKey] = WorkQueue(
            self._timed_reconcile,
            on_failure=self._pass_failed,
            clock=clock,
            backoff=RETRY_BACKOFF,
            workers=workers,
            name="kdag-reconciler",
        )
        self._resync = Resync(
            kube,
            cache,
            enqueue=self.enqueue,
            forget=self.forget,
            period_seconds=resync_seconds,
            owns=self._owns,
        )
        self._jobs = JobActions(
            kube, cache, metrics, clock, requests_in_flight=job_requests_in_flight
        )
        self._completer = CacheCompleter(kube, cache)
        self._finished = FinishedRuns(kube, cache, self._jobs, clock, job_retention_policy)
        self._oversized = OversizedStatus(kube, cache, self._jobs, events, self._metrics)
        # Runs whose last pass failed: a write whose answer was lost may have landed, so the
        # cached run may be behind the server; the next pass reads it first.
        self._unsure: set[RunKey] = set()
        self._parsed: dict[RunKey, tuple[str, ParsedRun]] = {}
        self._status_writes: set[RunKey] = set()
        self._hold = StatusHold(status_hold_seconds, job_retention_policy)
        # How often each run was woken (an event, a resync): a held status is written as it
        # is only while nothing woke the run since the pass that held it.
        self._wakes: dict[RunKey, int] = {}
        # How long each run rested after its last status write: a pass that holds its status
        # rests as long (see `_apply`).
        self._rests: dict[RunKey, float] = {}

    # ------------------------------------------------------------ queue

    def enqueue(self, key: RunKey) -> None:
        """Reconcile the run soon; merged with any pass already waiting or running."""
        if self._owns(key):  # another shard's run: its owner plans it
            self._wakes[key] = self._wakes.get(key, 0) + 1
            self._queue.add(key)  # dropped while paused: resuming plans every run afresh

    def forget(self, key: RunKey) -> None:
        """The run is gone: drop its timers and bookkeeping."""
        self._queue.forget(key)
        self._unsure.discard(key)
        self._parsed.pop(key, None)
        self._hold.forget(key)
        self._wakes.pop(key, None)
        self._rests.pop(key, None)
        self._metrics.forget_run(key)

    def take_over(self, key: RunKey) -> None:
        """This replica now owns the run (shards): plan it afresh, from the run read from
        the API (the former owner's last write may not have reached our watch yet) and
        its Jobs listed, as after a restart."""
        self._unsure.add(key)
        self._parsed.pop(key, None)
        self._hold.forget(key)
        self._cache.evict_jobs(key)
        self.enqueue(key)

    def writing_status(self, key: RunKey) -> bool:
        """Whether a status write of the run is in flight (its watch event may come first)."""
        return key in self._status_writes

    def deletes_finished_jobs(self, key: RunKey) -> bool:
        """Whether the run deletes its finished Jobs (jobRetentionPolicy), so that a Job's own
        completion gives it work; True while the run's workflow is not known yet."""
        remembered = self._parsed.get(key)
        if remembered is None or remembered[1].status is None:
            return True
        return retention_policy(remembered[1].status, self._job_retention_policy) != "Retain"

    def due_at(self, key: RunKey) -> datetime | None:
        """When the run's timer fires next (for tests and debugging)."""
        return self._queue.due_at(key)

    @property
    def idle(self) -> bool:
        return self._queue.idle

    @property
    def queue(self) -> WorkQueue[RunKey]:
        return self._queue

    def start(self) -> None:
        self._queue.start()
        self._resync.start()

    async def stop(self) -> None:
        await self._halt(self._queue.stop)
        if self._planner is not None:
            self._planner.shutdown(wait=False, cancel_futures=True)

    async def pause(self) -> None:
        """Another replica took over (kopf peering): stop every worker, timer and resync,
        and forget the cache, which no watch keeps current while paused. A pass cut off
        mid-way is like one cut off by a crash: the active replica plans it again."""
        if self._queue.paused:
            return
        await self._halt(self._queue.pause)
        for key in self._cache.run_keys():
            self._metrics.forget_run(key)
        self._unsure.clear()
        self._parsed.clear()
        self._hold.clear()
        self._cache.clear()

    def resume(self) -> None:
        """Act again. Every run is planned afresh from what the watches list anew, and a
        run's Jobs are listed before it is planned (the cache starts empty)."""
        if not self._queue.paused:
            return
        self._queue.resume()
        self._resync.start()
        for key in self._cache.run_keys():
            self.enqueue(key)

    async def _halt(self, halt_queue: Callable[[], Awaitable[None]]) -> None:
        # The resync is cancelled before the queue yields, so it cannot act in between.
        resync = self._resync.cancel()
        await halt_queue()
        if resync is not None:
            await asyncio.gather(resync, return_exceptions=True)

    # The queue's state under the names the unit tests drive it by.

    @property
    def _queued(self) -> set[RunKey]:
        return self._queue._queued

    @property
    def _busy(self) -> set[RunKey]:
        return self._queue._busy

    @property
    def _dirty(self) -> set[RunKey]:
        return self._queue._dirty

    @property
    def _cooldowns(self) -> dict[RunKey, asyncio.TimerHandle]:
        return self._queue._cooldowns

    @property
    def _timers(self) -> dict[RunKey, tuple[datetime, asyncio.TimerHandle]]:
        return self._queue._timers

    @property
    def _tasks(self) -> list[asyncio.Task[None]]:
        resync = self._resync.task
        return self._queue.tasks + ([resync] if resync is not None else [])

    def _fire(self, key: RunKey) -> None:
        self._queue._fire(key)

    def _cancel_timer(self, key: RunKey) -> None:
        self._queue.cancel_timer(key)

    async def resync(self, key: RunKey) -> None:
        """Re-read an active run and its Jobs (see `resync.py`)."""
        await self._resync.run(key)

    async def reconcile_safely(self, key: RunKey) -> Result:
        """One pass; a failure is logged, counted and retried with backoff, never raised."""
        return await self._queue.run_once(key)

    async def _timed_reconcile(self, key: RunKey) -> Result:
        started = time.perf_counter()
        try:
            return await self.reconcile(key)
        finally:
            self._metrics.reconcile_duration.observe(time.perf_counter() - started)

    def _pass_failed(self, key: RunKey, exc: Exception, failures: int, delay: float) -> None:
        self._unsure.add(key)
        self._metrics.reconcile_errors.inc()
        extra = {"run": f"{key[0]}/{key[1]}"}
        if isinstance(exc, KubeError):
            logger.warning(
                "reconcile of %s/%s failed (retry %d in %.1fs): %s",
                *key,
                failures,
                delay,
                exc,
                extra=extra,
            )
        else:
            logger.error(
                "reconcile of %s/%s failed (retry %d in %.1fs)",
                *key,
                failures,
                delay,
                exc_info=exc,
                extra=extra,
            )

    # ------------------------------------------------------------ one pass

    async def reconcile(self, key: RunKey) -> Result:
        """One pass: plan the run and apply what the plan asks; the Result carries when the
        run is due again (the plan's next due time or its TTL) and how long it rests."""
        if not self._owns(key):
            return Result()  # another shard's (lost since it was queued): no timer either
        wakes = self._wakes.get(key, 0)  # before anything is observed: later wakes count
        unsure = key in self._unsure
        if unsure:
            await self._reread_run(key)
        body = self._cache.run(key)
        if body is None:
            self.forget(key)
            return Result()
        if (body.get("metadata") or {}).get("deletionTimestamp"):
            return Result()  # being deleted: start nothing
        if is_settled(body):
            return await self._settled(key, body)
        run = self._parse(key, body)
        held = None if unsure else self._hold.to_write_as_is(key, body, self._clock(), wakes)
        if held is not None:
            return await self._write_held(key, body, run, held)
        base = self._hold.base(key, body)
        # Only a run not started reads its Workflow, and only a started one lists its Jobs
        # and pods: the order of API calls is the same either way round.
        workflow, workflow_problem = await self._resolve_workflow(run)
        await self._completer.complete(key, run)
        now = self._clock()
        began = time.perf_counter()

        async def planning(refused: Mapping[str, str]) -> Decision:
            observed = replace(self._cache.observed(key, run.uid), refused=refused)
            return await self._in_planner(
                lambda: decide(
                    body,
                    run,
                    observed,
                    workflow,
                    workflow_problem,
                    now,
                    self._max_nodes,
                    self._operator_account,
                    self._job_retention_policy,
                    self._output_budget,
                    base,
                )
            )

        decision = await planning({})
        planned = time.perf_counter()
        decision = await self._jobs.apply_plan(key, decision, planning)
        result = await self._apply(key, body, decision, now, wakes)
        self._follow_user_writes(key, body)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "planned in %.1f ms, applied %d action(s) in %.1f ms",
                (planned - began) * 1000, len(decision.result.actions),
                (time.perf_counter() - planned) * 1000, extra={"run": f"{key[0]}/{key[1]}"},
            )  # fmt: skip
        return result

    async def _reread_run(self, key: RunKey) -> None:
        """After a failed pass, read the run from the API: planning from a status older than
        one we wrote (its answer lost) would start again an attempt that status recorded."""
        found = await self._kube.get_run(*key)
        self._unsure.discard(key)
        if found is None:
            self._cache.remove_run(key)
        else:
            self._cache.put_run(found)

    def _follow_user_writes(self, key: RunKey, planned_from: Mapping[str, Any]) -> None:
        """Plan again when the run now cached carries user inputs this pass did not see.

        A user's write that lands mid-pass (a cancel, a gate answer) is contained in the
        answer to our own status write, which the cache then holds; the watch event of the
        user's write arrives later and is dropped as older. Comparing what the pass planned
        from with what the cache holds now catches it however the events interleave.
        """
        current = self._cache.run(key)
        if current is not None and user_inputs(current) != user_inputs(planned_from):
            self.enqueue(key)

    def _parse(self, key: RunKey, body: Mapping[str, Any]) -> ParsedRun:
        """The run read into models; reused when the object is the one we last wrote.

        Parsing a 5,000-node status costs tens of milliseconds, and after our own status
        write we already hold its parsed form.
        """
        version = resource_version(body)
        remembered = self._parsed.get(key)
        if remembered is not None and version and remembered[0] == version:
            return remembered[1]
        run = parse_run(body)
        self._parsed[key] = (version, run)
        return run

    async def _in_planner(self, compute: Callable[[], Decision]) -> Decision:
        if self._planner is None:
            return compute()
        return await asyncio.get_running_loop().run_in_executor(self._planner, compute)

    async def _settled(self, key: RunKey, body: Mapping[str, Any]) -> Result:
        """A finished run: only its TTL matters."""
        self._metrics.track_run(key, None, 0)
        seen = self._cache.job_versions(key)
        if seen:
            await self._finished.clean_up(key, self._parse(key, body))
        self._cache.evict_jobs(key, as_seen=seen)
        self._parsed.pop(key, None)
        return await self._finished.expire(key, body)

    def _planned_from(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """The precondition a run's write carries with shards: the version it was planned
        from (empty without shards, where one replica alone writes)."""
        if not self._versioned_writes:
            return {}
        return {"resourceVersion": resource_version(body)}

    async def _resolve_workflow(self, run: ParsedRun) -> tuple[WorkflowSpec | None, str | None]:
        if run.started or run.workflow_ref is None or run.problem is not None:
            return None, None
        found = await self._kube.get_workflow(run.namespace, run.workflow_ref)
        return workflow_from_object(run, found)

    # ------------------------------------------------------------ applying

    async def _write_held(
        self, key: RunKey, body: Mapping[str, Any], run: ParsedRun, held: Held
    ) -> Result:
        """Write a held status as it was planned: its Jobs, Events and metrics are done."""
        now = self._clock()
        written = await self._write_status(key, body, body, run, held.status, held.patch, now)
        if written is None:
            return Result()
        self._follow_user_writes(key, body)
        return Result(requeue_at=held.due, cooldown_seconds=written[1])

    async def _write_status(
        self,
        key: RunKey,
        body: Mapping[str, Any],
        stored: Mapping[str, Any],
        run: ParsedRun,
        status: WorkflowRunStatus,
        patch: dict[str, Any],
        now: datetime,
    ) -> tuple[Mapping[str, Any], float] | None:
        """Write the status patch (planned from `body`; `stored` is the run as it is now);
        the run as stored and how long the run rests, or None when the pass ends here (the
        run is gone, or its status too large: the run has failed)."""
        writing = time.perf_counter()
        self._status_writes.add(key)
        try:
            sent: dict[str, Any] = {"status": patch}
            if self._versioned_writes:
                sent["metadata"] = self._planned_from(stored)
            stored = await self._kube.patch_run_status(run.namespace, run.name, sent)
        except KubeError as exc:
            if exc.status == 404:
                return None  # deleted meanwhile; the watch's DELETED event cleans up
            if is_too_large(exc):
                await self._oversized.fail_run(key, run, exc, now)
                self._parsed.pop(key, None)
                self._hold.drop(key)
                return None
            raise
        finally:
            self._status_writes.discard(key)
        self._cache.put_run(stored)
        self._hold.written(key, now)
        # Back-pressure: the run pauses for twice as long as its write took before it
        # plans again, so its status writes hold the API server at most a third of the
        # time. Free on an idle server (a few ms); on a busy one, events merge into
        # fewer, larger writes, and a 5,000-node run (whose every write makes the server
        # decode, store and send the whole object to every watcher, which the write's
        # own time does not show) leaves room for the Jobs: pausing only as long as the
        # write, the fan-out wrote 56 times instead of 31 and took 183 s instead of 162
        # (docs/benchmarks.md).
        cooldown = 2 * (time.perf_counter() - writing)
        self._rests[key] = cooldown
        # The new status, already parsed, for the next pass (the planner never changes
        # the status it is given, so sharing it is safe). The spec and annotations are
        # reused only when the server's answer carries the ones this pass planned from:
        # a user's write that landed meanwhile is in the answer, and must be read.
        if user_inputs(stored) == user_inputs(body):
            self._parsed[key] = (resource_version(stored), replace(run, status=status))
        else:
            self._parsed.pop(key, None)
        return stored, cooldown

    async def _apply(
        self, key: RunKey, body: Mapping[str, Any], decision: Decision, now: datetime, wakes: int
    ) -> Result:
        run, result = decision.run, decision.result
        cooldown = 0.0
        creates = [a for a in result.actions if isinstance(a, CreateJob)]
        stored = body
        # Answers a rerun clears go before the status records the rerun: if anything fails in
        # between, the next pass plans the same rerun again instead of reading them as new.
        for action in result.actions:
            if isinstance(action, RemoveAnnotations):
                patch = {"metadata": self._planned_from(stored)}
                patch["metadata"]["annotations"] = dict.fromkeys(action.keys)
                stored = await self._kube.patch_run(run.namespace, run.name, patch)
                self._cache.put_run(stored)
                annotations = (stored.get("metadata") or {}).get("annotations") or {}
                run = replace(run, annotations=dict(annotations))
        hold_until = self._hold.until(key, decision, now) if decision.status_patch else None
        if not decision.status_patch:
            self._hold.drop(key)  # whatever was held is what is stored
        elif hold_until is not None:
            self._hold.hold(key, body, decision, now, wakes)
            # Holding must not make a run plan more often than writing did: when held passes
            # did not rest, 50 small runs beside a 2,002-node one took 779 passes instead of
            # 603 and 7.6 ms of operator CPU per node instead of 4.6 (docs/benchmarks.md).
            cooldown = self._rests.get(key, 0.0)
        else:
            written = await self._write_status(
                key, body, stored, run, result.status, decision.status_patch, now
            )
            if written is None:
                return Result()
            stored, cooldown = written
        for action in result.actions:
            if isinstance(action, EmitEvent):
                self._events.post(stored, action, now)
        if result.transitions is not None:
            record_transitions(self._metrics, key, result.transitions)
        if any(self._jobs.failed_create(key, a.name) for a in creates):
            self.enqueue(key)  # let the planner see the Job that could not be created
        requeue_at = result.requeue_at
        if hold_until is not None and (requeue_at is None or hold_until < requeue_at):
            requeue_at = hold_until  # the held status is written then at the latest
        return Result(requeue_at=requeue_at, cooldown_seconds=cooldown)
