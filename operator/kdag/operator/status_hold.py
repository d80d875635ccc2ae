"""Amortised status writes: a run's progress is written at most once per hold period.

Every status write makes the API server decode, store and send the whole run to every
watcher, and a chain wrote once per level. A pass whose only news is progress (nodes
finishing and starting, Jobs created, Events) and that comes within the hold period of the
run's last write keeps its status here instead of writing it; the next pass plans from the
held status (so nothing it decided is decided again: no timestamp moves, no Event or
metric repeats). The first pass after the period writes everything held; a run with no
pass coming is due again one period after it began to hold, so nothing waits longer than
that. In a busy run the write is made by a pass that has news anyway (a finished node,
whose dependents' Jobs it creates first). A quiet run's timer writes what is held as it is,
without planning again, when nothing woke the run since the pass that held it (no watch
event, no failed pass), the stored status is unchanged and nothing the plan waits for is
due: planning would only find the same status again (in 200 concurrent runs, a quarter of
the passes were such timers).

What must be seen or recorded at once is written at once: a change of the run's phase, a
node that needs attention (it failed, timed out, is retrying, queued on a full quota, waits
for approval or was cancelled: only Pending, Running, Succeeded and Skipped are progress),
answers a rerun clears, Jobs deleted (a finished Job may go only once the status that
records its result is stored), and every pass of a run whose Jobs are deleted by retention.

Nothing is lost by holding: Jobs are created before the status that records them anyway,
and the planner, finding them, asks for nothing twice (a crash while a status is held is
the same as one between a Job's create and the status write). A held status is dropped
when the stored status is no longer the one it was planned on (a write by someone else, a
re-read after a failed pass): the next pass plans from the stored one again. Then, and after
a crash, what was held is decided once more from the Jobs, so its node Events and metrics
may count twice; its timestamps are those of the pass that decides it again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from kdag.api import NodePhase, WorkflowRunStatus
from kdag.engine.model import CreateJob, EmitEvent, JobRetentionPolicy
from kdag.engine.rules.retention import retention_policy
from kdag.operator.decision import Decision
from kdag.operator.objects import RunKey

# What a held pass may ask for besides the status: anything else is written at once.
_HOLDABLE_ACTIONS = (CreateJob, EmitEvent)
# Node phases that are progress; a node reaching any other is written at once. A state
# shorter than the hold may otherwise never be seen (a 1 s backoff), and these are the ones
# a user waits for or acts on.
_PROGRESS = frozenset(
    {NodePhase.PENDING, NodePhase.RUNNING, NodePhase.SUCCEEDED, NodePhase.SKIPPED}
)


@dataclass(frozen=True)
class Held:
    """A status planned and not written yet."""

    stored: Mapping[str, Any]  # the stored status the held one was planned on
    status: WorkflowRunStatus
    patch: dict[str, Any]  # what turns `stored` into `status`
    since: datetime  # when the run began to hold: it writes one period later at the latest
    due: datetime | None  # when the plan that held it wanted the run planned again
    wakes: int  # the run's wake count when that pass began


class StatusHold:
    """Which runs' statuses are held, and when each run last wrote its status."""

    def __init__(self, seconds: float, job_retention_policy: JobRetentionPolicy) -> None:
        self._period = timedelta(seconds=seconds)
        self._job_retention_policy: JobRetentionPolicy = job_retention_policy
        self._held: dict[RunKey, Held] = {}
        self._written_at: dict[RunKey, datetime] = {}

    def base(self, key: RunKey, body: Mapping[str, Any]) -> WorkflowRunStatus | None:
        """The status to plan from instead of the stored one, if one is held on it."""
        held = self._held.get(key)
        if held is None:
            return None
        stored = body.get("status") or {}
        if held.stored is stored or held.stored == stored:
            return held.status
        del self._held[key]  # the stored status moved on: plan from it
        return None

    def until(self, key: RunKey, decision: Decision, now: datetime) -> datetime | None:
        """When the pass's status must be written by, if it may be held; None: write now."""
        written_at = self._written_at.get(key)
        if written_at is None or self._period <= timedelta(0):
            return None
        stored, new = decision.run.status, decision.result.status
        transitions = decision.result.transitions
        changed = transitions.nodes if transitions is not None else ()
        if (
            now >= written_at + self._period
            or stored is None
            or new.phase != stored.phase
            or any(node.phase not in _PROGRESS for node in changed)
            or not all(isinstance(a, _HOLDABLE_ACTIONS) for a in decision.result.actions)
            or retention_policy(new, self._job_retention_policy) != "Retain"
        ):
            return None
        held = self._held.get(key)
        return (held.since if held is not None else now) + self._period

    def hold(
        self,
        key: RunKey,
        body: Mapping[str, Any],
        decision: Decision,
        now: datetime,
        wakes: int,
    ) -> None:
        """Hold the pass's status; `wakes` is the run's wake count when the pass began."""
        held = self._held.get(key)
        since = held.since if held is not None else now
        result = decision.result
        self._held[key] = Held(
            body.get("status") or {},
            result.status,
            decision.status_patch,
            since,
            result.requeue_at,
            wakes,
        )

    def to_write_as_is(
        self, key: RunKey, body: Mapping[str, Any], now: datetime, wakes: int
    ) -> Held | None:
        """The held status, when its timer is due and planning again could only find it once
        more: nothing woke the run since the pass that held it (`wakes` is the run's wake
        count now), the stored status is the one it was planned on, and nothing the plan
        waits for (a backoff, a deadline) is due yet."""
        held = self._held.get(key)
        if (
            held is None
            or held.wakes != wakes
            or now < held.since + self._period
            or (held.due is not None and now >= held.due)
        ):
            return None
        stored = body.get("status") or {}
        if held.stored is stored or held.stored == stored:
            return held
        return None

    def written(self, key: RunKey, now: datetime) -> None:
        """The run's status was written (with whatever was held)."""
        self._held.pop(key, None)
        self._written_at[key] = now

    def drop(self, key: RunKey) -> None:
        """Plan the run from its stored status again: nothing is left to write (the pass
        changed nothing the store lacks), or the write failed for good (too large)."""
        self._held.pop(key, None)

    def forget(self, key: RunKey) -> None:
        self._held.pop(key, None)
        self._written_at.pop(key, None)

    def clear(self) -> None:
        self._held.clear()
        self._written_at.clear()
