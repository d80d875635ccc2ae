"""Cron schedules of workflows (pure): which tick is due, what to create, cancel and prune.

Semantics follow Kubernetes CronJob where users know them, with three deliberate choices:

* Only the most recent missed tick runs. After an operator outage, a suspension or a burst
  of skipped ticks, one run is created, never a backlog.
* Ticks before the schedule became active (workflow created, schedule added, unsuspended,
  workflow fixed) never run: resuming a schedule does not start a catch-up run at once,
  which is the CronJob behaviour users most often trip over.
* Forbid is decided from the runs themselves: a tick is skipped when a scheduled run was
  active at that tick. So the decision is the same however often it is re-evaluated and
  after an operator restart, with no extra state to persist.

Time zones follow classic (Vixie) cron across daylight-saving changes. A wall-clock time
that occurs twice (clocks go back) runs once, at its first occurrence, unless the minute or
hour field starts with `*` (an interval job such as `*/15 * * * *`), which runs at both so
the interval holds. A wall-clock time that never occurs (clocks go forward) runs once at
the moment the clocks jump, unless it is an interval job, for which that time simply did
not happen.
"""

from __future__ import annotations

import hashlib
import zoneinfo
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Literal

from croniter import CroniterBadCronError, CroniterBadDateError, croniter

from kdag.api import HistoryLimit, RunPhase, ScheduleSpec
from kdag.engine.names import MAX_NAME, sanitize

# Longest daylight-saving or zone-offset change the tick search allows for. Real changes
# are at most two hours (usually one); three leaves room without slowing the search much.
MAX_OFFSET_CHANGE = timedelta(hours=3)
# Cron matches one search may step over before it gives up (a cron matching only in a
# skipped hour, or far in the past): a bound on the work, never reached by normal crons.
MAX_SEARCH_STEPS = 2000
# How far the operator's clock may run ahead of the API server's. A tick claimed later than
# this past a run's creation, or past now, is one no schedule could have run yet.
CLOCK_SKEW = timedelta(seconds=60)
_CRON_FIELDS = 5
_SECOND = timedelta(seconds=1)

ConcurrencyPolicy = Literal["Allow", "Forbid", "Replace"]


class ScheduleError(ValueError):
    """The cron expression or time zone cannot be used; the message names the field."""


def _zone(timezone: str | None) -> tzinfo:
    if timezone is None:
        return UTC
    try:
        return zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ScheduleError(f"schedule.timezone: unknown time zone {timezone!r}") from exc


@dataclass(frozen=True)
class CronSchedule:
    """A five-field cron expression evaluated in a time zone, returning UTC instants."""

    expression: str
    zone: tzinfo

    @classmethod
    def parse(cls, cron: str, timezone: str | None = None) -> CronSchedule:
        if len(cron.split()) != _CRON_FIELDS or not croniter.is_valid(cron):
            raise ScheduleError(f"schedule.cron: {cron!r} is not a five-field cron expression")
        return cls(cron, _zone(timezone))

    @property
    def interval_job(self) -> bool:
        """Minute or hour field starting with `*`: classic cron's 'wildcard job' (see above)."""
        minute, hour = self.expression.split()[:2]
        return minute.startswith("*") or hour.startswith("*")

    # -- wall clock <-> instants

    def _wall(self, moment: datetime) -> datetime:
        return moment.astimezone(self.zone).replace(tzinfo=None)

    def _offset(self, moment: datetime) -> timedelta:
        offset = moment.astimezone(self.zone).utcoffset()
        return offset if offset is not None else timedelta(0)

    def occurrences(self, wall: datetime) -> tuple[datetime, ...]:
        """The UTC instants at which a matching wall-clock time fires (0, 1 or 2)."""
        first = wall.replace(tzinfo=self.zone, fold=0).astimezone(UTC)
        second = wall.replace(tzinfo=self.zone, fold=1).astimezone(UTC)
        if first == second:
            return (first,)
        if self._wall(first) == wall:  # it happens twice: the clocks went back
            return (first, second) if self.interval_job else (first,)
        # It never happens: the clocks jumped over it. fold=1 reads it with the offset
        # after the jump, which lands before the jump; fold=0 lands after it.
        return () if self.interval_job else (self._jump_between(second, first),)

    def _jump_between(self, before: datetime, after: datetime) -> datetime:
        """The first whole second after `before` with a different UTC offset (bisection)."""
        offset_before = self._offset(before)
        low, high = int(before.timestamp()), int(after.timestamp())
        while high - low > 1:
            middle = (low + high) // 2
            if self._offset(datetime.fromtimestamp(middle, UTC)) == offset_before:
                low = middle
            else:
                high = middle
        return datetime.fromtimestamp(high, UTC)

    # -- searches

    def _walls(self, start: datetime, *, forward: bool) -> Iterator[datetime]:
        """Matching wall-clock times strictly after (or before) naive `start`."""
        matches = croniter(self.expression, start)
        for _ in range(MAX_SEARCH_STEPS):
            try:
                yield matches.get_next(datetime) if forward else matches.get_prev(datetime)
            except CroniterBadDateError:  # the cron matches no date any more
                return

    def next_after(self, moment: datetime) -> datetime | None:
        """The first tick strictly after `moment`; None when the cron never fires again."""
        moment = moment.astimezone(UTC)
        # Walls of later instants are at least this: the clocks may go back in between.
        lowest = moment + min(self._offset(moment), self._offset(moment + MAX_OFFSET_CHANGE))
        best: datetime | None = None
        stop_after: datetime | None = None
        for wall in self._walls(lowest.replace(tzinfo=None) - _SECOND, forward=True):
            if stop_after is not None and wall > stop_after:
                break
            for instant in self.occurrences(wall):
                if instant > moment and (best is None or instant < best):
                    best = instant
            if best is not None and stop_after is None:
                # Only if the clocks went back just before `best` can a later wall time
                # be an earlier instant; then look one offset change further.
                went_back = self._offset(max(moment, best - MAX_OFFSET_CHANGE)) > self._offset(best)
                if not went_back:
                    break
                stop_after = wall + MAX_OFFSET_CHANGE
        return best

    def latest_at_or_before(
        self, moment: datetime, *, after: datetime | None = None
    ) -> datetime | None:
        """The last tick at or before `moment` (and strictly after `after`, if given)."""
        moment = moment.astimezone(UTC)
        highest = moment + max(self._offset(moment), self._offset(moment - MAX_OFFSET_CHANGE))
        floor = None if after is None else after.astimezone(UTC)
        # Wall times below this are instants before `after`, whatever the offset did.
        floor_wall = None if floor is None else self._wall(floor) - MAX_OFFSET_CHANGE
        candidate: datetime | None = None
        for wall in self._walls(highest.replace(tzinfo=None) + _SECOND, forward=False):
            if floor_wall is not None and wall < floor_wall:
                break
            found = [instant for instant in self.occurrences(wall) if instant <= moment]
            if found:
                candidate = max(found)
                break
        if candidate is None:
            return None
        # Around a change of offset the descending wall-clock order can miss a later tick;
        # stepping forward from the candidate finds it.
        while (following := self.next_after(candidate)) is not None and following <= moment:
            candidate = following
        if floor is not None and candidate <= floor:
            return None
        return candidate

    def ticks_between(self, start: datetime, end: datetime) -> list[datetime]:
        """All ticks in (start, end]; for tests and previews, not for long spans."""
        ticks = []
        moment = start
        while (tick := self.next_after(moment)) is not None and tick <= end:
            ticks.append(tick)
            moment = tick
        return ticks


def parse_schedule(schedule: ScheduleSpec) -> CronSchedule:
    """The schedule's cron in its time zone; raises ScheduleError naming the bad field."""
    try:
        return CronSchedule.parse(schedule.cron, schedule.timezone)
    except CroniterBadCronError as exc:  # pragma: no cover - is_valid() catches these
        raise ScheduleError(f"schedule.cron: {exc}") from exc


# -- run names


def scheduled_run_name(workflow: str, tick: datetime) -> str:
    """`<workflow>-<unix minutes of the tick>`, like a CronJob's Jobs: a valid DNS label.

    The same tick always gives the same name, so creating it twice answers AlreadyExists.
    Long or non-label workflow names are shortened and get a hash of the full name, so two
    workflows never share run names.
    """
    suffix = f"-{int(tick.timestamp()) // 60}"
    base = sanitize(workflow)
    if base == workflow and len(base) + len(suffix) <= MAX_NAME:
        return base + suffix
    digest = hashlib.sha256(workflow.encode()).hexdigest()[:8]
    room = MAX_NAME - len(suffix) - len(digest) - 1
    return f"{base[:room].rstrip('-')}-{digest}{suffix}"


def claimed_tick(
    workflow: str, name: str, scheduled_at: datetime | None, created_at: datetime
) -> datetime | None:
    """The tick a run labelled as scheduled claims, if the schedule could have created it.

    Anyone who may create runs can set the label and annotation, so neither is proof. The
    name the schedule gives that tick and the creation time the API server stamps are: a
    run that passes claims at most that a past tick ran, as a run of that name would show
    anyway, and never a tick in the future.
    """
    if scheduled_at is None or name != scheduled_run_name(workflow, scheduled_at):
        return None
    if scheduled_at > created_at + CLOCK_SKEW:
        return None
    return scheduled_at


# -- planning


@dataclass(frozen=True)
class ObservedRun:
    """What the scheduler needs to know about one run of the workflow."""

    name: str
    created_at: datetime
    phase: RunPhase | None = None
    scheduled: bool = False
    scheduled_at: datetime | None = None
    finished_at: datetime | None = None
    cancel_requested: bool = False
    uid: str = ""

    @property
    def active(self) -> bool:
        return self.phase is None or not self.phase.terminal

    def active_at(self, moment: datetime) -> bool:
        """Whether the run existed and had not finished at `moment`."""
        if self.created_at > moment:
            return False
        if self.active:
            return True
        return self.finished_at is not None and self.finished_at > moment

    @property
    def order(self) -> tuple[datetime, str]:
        """Newest last: by scheduled time (creation time for manual runs), then name."""
        return (self.scheduled_at or self.created_at, self.name)


@dataclass(frozen=True)
class NewRun:
    name: str
    scheduled_at: datetime


@dataclass(frozen=True)
class SkippedTick:
    """A tick Forbid did not run because these scheduled runs were active."""

    tick: datetime
    active_runs: tuple[str, ...]


@dataclass(frozen=True)
class SchedulePlan:
    """What to do now, and when to look again."""

    create: NewRun | None = None
    cancel: tuple[str, ...] = ()
    delete: tuple[str, ...] = ()
    skipped: SkippedTick | None = None
    missed: datetime | None = None
    last_schedule_time: datetime | None = None
    active_runs: tuple[str, ...] = ()
    next_tick: datetime | None = None
    problem: str | None = None


def plan_schedule(
    schedule: ScheduleSpec,
    *,
    workflow: str,
    runs: Sequence[ObservedRun],
    last_schedule_time: datetime | None,
    active_since: datetime,
    now: datetime,
    runnable: bool = True,
    starting_deadline_seconds: int | None = None,
) -> SchedulePlan:
    """Decide the schedule's actions for this moment.

    `runs` are the workflow's runs (scheduled and manual); `active_since` is when the
    schedule last became active, so earlier ticks never run; `runnable` is False while the
    workflow is invalid, which holds new runs back but still prunes history.
    """
    # No tick after now has run, whatever a run or the status says.
    horizon = now + CLOCK_SKEW
    scheduled = sorted(
        (r for r in runs if r.scheduled and not (r.scheduled_at and r.scheduled_at > horizon)),
        key=lambda r: r.order,
    )
    existing = {r.name for r in runs}
    # A run we created carries its tick: a status write lost in a crash cannot make a
    # restarted operator forget the tick was done.
    done = [r.scheduled_at for r in scheduled if r.scheduled_at is not None]
    recorded = [last_schedule_time] if last_schedule_time and last_schedule_time <= horizon else []
    last = max([*done, *recorded], default=None)
    history = _prune(scheduled, schedule.history_limit or HistoryLimit())
    active = tuple(r.name for r in scheduled if r.active)

    try:
        cron = parse_schedule(schedule)
    except ScheduleError as exc:
        return SchedulePlan(
            delete=history, last_schedule_time=last, active_runs=active, problem=str(exc)
        )
    if schedule.suspend or not runnable:
        return SchedulePlan(delete=history, last_schedule_time=last, active_runs=active)

    plan = SchedulePlan(
        delete=history,
        last_schedule_time=last,
        active_runs=active,
        next_tick=cron.next_after(now),
    )
    earliest = max(active_since, last) if last is not None else active_since
    tick = cron.latest_at_or_before(now, after=earliest)
    if tick is None:
        return plan
    name = scheduled_run_name(workflow, tick)
    if name in existing:  # created before a crash, before its annotation was read
        return replace(plan, last_schedule_time=tick)
    if starting_deadline_seconds is not None and now - tick > timedelta(
        seconds=starting_deadline_seconds
    ):
        return replace(plan, missed=tick)
    policy: ConcurrencyPolicy = schedule.concurrency_policy
    if policy == "Forbid":
        blockers = tuple(r.name for r in scheduled if r.active_at(tick))
        if blockers:
            return replace(plan, skipped=SkippedTick(tick, blockers))
    cancel: tuple[str, ...] = ()
    if policy == "Replace":
        cancel = tuple(r.name for r in scheduled if r.active and not r.cancel_requested)
    return replace(
        plan,
        create=NewRun(name, tick),
        cancel=cancel,
        last_schedule_time=tick,
        active_runs=(*active, name),
    )


def _prune(scheduled: Sequence[ObservedRun], limit: HistoryLimit) -> tuple[str, ...]:
    """Finished scheduled runs beyond the history limits, oldest first."""
    finished = [r for r in scheduled if not r.active]
    succeeded = [r for r in finished if r.phase == RunPhase.SUCCEEDED]
    failed = [r for r in finished if r.phase != RunPhase.SUCCEEDED]
    doomed = _beyond(succeeded, limit.succeeded) + _beyond(failed, limit.failed)
    return tuple(r.name for r in sorted(doomed, key=lambda r: r.order))


def _beyond(runs: list[ObservedRun], keep: int) -> list[ObservedRun]:
    """`runs` is oldest first: all but the newest `keep`."""
    return runs[: max(0, len(runs) - keep)]
