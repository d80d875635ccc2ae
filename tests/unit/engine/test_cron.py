"""Cron schedules: tick search across time zones and DST, run names, and the schedule plan."""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kdag.api import HistoryLimit, RunPhase, ScheduleSpec
from kdag.engine.cron import (
    CronSchedule,
    ObservedRun,
    ScheduleError,
    SchedulePlan,
    claimed_tick,
    plan_schedule,
    scheduled_run_name,
)

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
BERLIN = "Europe/Berlin"
# 2026 in Berlin: clocks jump 02:00 -> 03:00 on March 29 and go back 03:00 -> 02:00 on Oct 25.
SPRING_FORWARD = datetime(2026, 3, 29, 1, 0, tzinfo=UTC)
FALL_BACK = datetime(2026, 10, 25, 1, 0, tzinfo=UTC)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def local_ticks(cron: str, timezone: str | None, start: str, end: str) -> list[str]:
    schedule = CronSchedule.parse(cron, timezone)
    return [
        tick.astimezone(schedule.zone).isoformat()
        for tick in schedule.ticks_between(utc(start), utc(end))
    ]


# -- ticks


@pytest.mark.parametrize(
    ("cron", "timezone", "start", "end", "expected"),
    [
        pytest.param(
            "0 2 * * *",
            None,
            "2026-11-20T00:00:00+00:00",
            "2026-11-22T00:00:00+00:00",
            ["2026-11-20T02:00:00+00:00", "2026-11-21T02:00:00+00:00"],
            id="utc-when-no-zone",
        ),
        pytest.param(
            "0 2 * * *",
            BERLIN,
            "2026-11-20T00:00:00+00:00",
            "2026-11-21T12:00:00+00:00",
            ["2026-11-20T02:00:00+01:00", "2026-11-21T02:00:00+01:00"],
            id="wall-clock-of-the-zone",
        ),
        pytest.param(
            "30 2 * * *",
            BERLIN,
            "2026-03-28T00:00:00+00:00",
            "2026-03-31T00:00:00+00:00",
            ["2026-03-28T02:30:00+01:00", "2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00"],
            id="skipped-time-runs-when-clocks-jump",
        ),
        pytest.param(
            "0,30 2 * * *",
            BERLIN,
            "2026-03-28T23:00:00+00:00",
            "2026-03-29T03:00:00+00:00",
            ["2026-03-29T03:00:00+02:00"],
            id="several-skipped-times-run-once",
        ),
        pytest.param(
            "*/30 * * * *",
            BERLIN,
            "2026-03-29T00:00:00+00:00",
            "2026-03-29T01:30:00+00:00",
            ["2026-03-29T01:30:00+01:00", "2026-03-29T03:00:00+02:00", "2026-03-29T03:30:00+02:00"],
            id="interval-job-skips-the-missing-hour",
        ),
        pytest.param(
            "30 2 * * *",
            BERLIN,
            "2026-10-24T00:00:00+00:00",
            "2026-10-27T00:00:00+00:00",
            ["2026-10-24T02:30:00+02:00", "2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"],
            id="repeated-time-runs-once",
        ),
        pytest.param(
            "*/30 * * * *",
            BERLIN,
            "2026-10-24T23:45:00+00:00",
            "2026-10-25T01:45:00+00:00",
            [
                "2026-10-25T02:00:00+02:00",
                "2026-10-25T02:30:00+02:00",
                "2026-10-25T02:00:00+01:00",
                "2026-10-25T02:30:00+01:00",
            ],
            id="interval-job-runs-in-both-repeated-hours",
        ),
        pytest.param(
            "0 * * * *",
            "Australia/Lord_Howe",
            "2026-04-04T13:30:00+00:00",
            "2026-04-04T16:30:00+00:00",
            ["2026-04-05T01:00:00+11:00", "2026-04-05T02:00:00+10:30", "2026-04-05T03:00:00+10:30"],
            id="half-hour-dst",
        ),
        pytest.param(
            "0 0 29 2 *",
            None,
            "2026-01-01T00:00:00+00:00",
            "2029-01-01T00:00:00+00:00",
            ["2028-02-29T00:00:00+00:00"],
            id="leap-day",
        ),
    ],
)
def test_ticks(cron: str, timezone: str | None, start: str, end: str, expected: list[str]) -> None:
    assert local_ticks(cron, timezone, start, end) == expected


def test_a_cron_matching_no_date_never_fires() -> None:
    schedule = CronSchedule.parse("0 0 31 2 *")
    now = utc("2026-11-22T00:00:00+00:00")
    assert schedule.next_after(now) is None
    assert schedule.latest_at_or_before(now) is None


@pytest.mark.parametrize(
    ("cron", "timezone", "field"),
    [
        ("61 * * * *", None, "schedule.cron"),
        ("* * * *", None, "schedule.cron"),
        ("* * * * * *", None, "schedule.cron"),
        ("@daily", None, "schedule.cron"),
        ("0 2 * * *", "Mars/Olympus", "schedule.timezone"),
    ],
)
def test_unusable_schedules_name_the_field(cron: str, timezone: str | None, field: str) -> None:
    with pytest.raises(ScheduleError, match=f"^{re.escape(field)}: "):
        CronSchedule.parse(cron, timezone)


def test_latest_tick_respects_the_lower_bound() -> None:
    schedule = CronSchedule.parse("0 * * * *")
    now = utc("2026-11-22T10:30:00+00:00")
    assert schedule.latest_at_or_before(now) == utc("2026-11-22T10:00:00+00:00")
    assert schedule.latest_at_or_before(now, after=utc("2026-11-22T10:00:00+00:00")) is None
    assert schedule.latest_at_or_before(now, after=utc("2026-11-22T09:59:00+00:00")) == utc(
        "2026-11-22T10:00:00+00:00"
    )


def test_a_tick_is_due_at_its_exact_second() -> None:
    schedule = CronSchedule.parse("0 * * * *")
    tick = utc("2026-11-22T10:00:00+00:00")
    assert schedule.latest_at_or_before(tick) == tick
    assert schedule.next_after(tick) == utc("2026-11-22T11:00:00+00:00")


def field_matches(field: str, value: int) -> bool:
    """The part of cron syntax the generated crons use: *, */n, a, a-b and lists."""
    for part in field.split(","):
        if part == "*" or (part.startswith("*/") and value % int(part[2:]) == 0):
            return True
        low, _, high = part.partition("-")
        if not part.startswith("*") and int(low) <= value <= int(high or low):
            return True
    return False


def matches(cron: str, wall: datetime) -> bool:
    minute, hour = cron.split()[:2]  # the generated crons fire every day
    return field_matches(minute, wall.minute) and field_matches(hour, wall.hour)


# A reference that states the DST rules independently, minute by minute in UTC: a minute
# fires when its wall-clock time matches and it is the first occurrence of that wall time
# (or the job is an interval job); the minute the clocks jump forward also fires when a
# skipped wall-clock time matched, unless the job is an interval job.
def reference_ticks(cron: str, timezone: str, start: datetime, end: datetime) -> list[datetime]:
    zone = zoneinfo.ZoneInfo(timezone)
    minute, hour = cron.split()[:2]
    interval_job = minute.startswith("*") or hour.startswith("*")
    ticks = []
    moment = start.replace(second=0, microsecond=0) + timedelta(minutes=1)
    while moment <= end:
        local = moment.astimezone(zone)
        wall = local.replace(tzinfo=None)
        fires = matches(cron, wall) and (interval_job or local.fold == 0)
        previous = (moment - timedelta(minutes=1)).astimezone(zone).replace(tzinfo=None)
        skipped = wall - previous - timedelta(minutes=1)
        if not fires and not interval_job and skipped > timedelta(0):
            fires = any(
                matches(cron, previous + timedelta(minutes=m))
                for m in range(1, int(skipped / timedelta(minutes=1)) + 1)
            )
        if fires:
            ticks.append(moment)
        moment += timedelta(minutes=1)
    return ticks


def transitions(timezone: str, year: int) -> Iterator[datetime]:
    """The instants in `year` at which the zone's UTC offset changes."""
    zone = zoneinfo.ZoneInfo(timezone)
    moment = datetime(year, 1, 1, tzinfo=UTC)
    offset = moment.astimezone(zone).utcoffset()
    while moment.year == year:
        later = moment + timedelta(hours=1)
        if later.astimezone(zone).utcoffset() != offset:
            low, high = moment, later
            while high - low > timedelta(minutes=1):
                middle = low + (high - low) / 2
                if middle.astimezone(zone).utcoffset() == offset:
                    low = middle
                else:
                    high = middle
            yield high
            offset = later.astimezone(zone).utcoffset()
        moment = later


DST_ZONES = [
    "Europe/Berlin",
    "America/New_York",
    "Australia/Sydney",
    "Australia/Lord_Howe",
    "Pacific/Chatham",
    "America/Santiago",
]
TRANSITIONS = [(zone, t) for zone in DST_ZONES for t in transitions(zone, 2026)]

minute_fields = st.sampled_from(["*", "*/15", "*/20", "0", "30", "0,30", "5-10", "45"])
hour_fields = st.sampled_from(["*", "*/2", "0", "1", "2", "3", "1-3", "2,3", "23"])
crons = st.builds(lambda m, h: f"{m} {h} * * *", minute_fields, hour_fields)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    cron=crons,
    transition=st.sampled_from(TRANSITIONS),
    offset_minutes=st.integers(min_value=-300, max_value=300),
)
def test_tick_search_agrees_with_a_minute_by_minute_reference(
    cron: str, transition: tuple[str, datetime], offset_minutes: int
) -> None:
    timezone, instant = transition
    schedule = CronSchedule.parse(cron, timezone)
    now = instant + timedelta(minutes=offset_minutes, seconds=17)
    window = timedelta(hours=30)  # every generated cron fires at least daily
    expected = reference_ticks(cron, timezone, now - window, now + window)
    assert schedule.latest_at_or_before(now) == max(t for t in expected if t <= now)
    assert schedule.next_after(now) == min(t for t in expected if t > now)


@settings(max_examples=40, deadline=None)
@given(cron=crons, transition=st.sampled_from(TRANSITIONS))
def test_ticks_are_strictly_increasing_and_never_repeat_a_run_name(
    cron: str, transition: tuple[str, datetime]
) -> None:
    timezone, instant = transition
    schedule = CronSchedule.parse(cron, timezone)
    ticks = schedule.ticks_between(instant - timedelta(hours=6), instant + timedelta(hours=6))
    assert ticks == sorted(set(ticks))
    names = [scheduled_run_name("etl", tick) for tick in ticks]
    assert len(set(names)) == len(names)


# -- run names


def test_run_name_is_workflow_and_unix_minutes() -> None:
    tick = utc("2026-11-22T02:00:00+00:00")
    assert scheduled_run_name("etl", tick) == f"etl-{int(tick.timestamp()) // 60}"


def test_workflows_that_sanitise_alike_get_different_run_names() -> None:
    tick = utc("2026-11-22T02:00:00+00:00")
    assert scheduled_run_name("a.b", tick) != scheduled_run_name("a-b", tick)


workflow_names = st.from_regex(
    r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?){0,3}", fullmatch=True
).filter(lambda n: len(n) <= 253)
instants = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
)


@given(workflow=workflow_names, tick=instants)
def test_run_names_are_valid_labels_and_deterministic(workflow: str, tick: datetime) -> None:
    name = scheduled_run_name(workflow, tick)
    assert len(name) <= 63
    assert DNS_LABEL.match(name)
    assert name == scheduled_run_name(workflow, tick)
    assert scheduled_run_name(workflow, tick + timedelta(minutes=1)) != name


# -- the plan

HOURLY = ScheduleSpec(cron="0 * * * *")
CREATED = utc("2026-11-22T08:30:00+00:00")


def hourly(**changes: object) -> ScheduleSpec:
    return HOURLY.model_copy(update=changes)


def run(
    name: str,
    scheduled_at: str | None = None,
    phase: RunPhase | None = RunPhase.RUNNING,
    *,
    created: str | None = None,
    finished: str | None = None,
    cancel_requested: bool = False,
    scheduled: bool = True,
) -> ObservedRun:
    tick = utc(scheduled_at) if scheduled_at else None
    return ObservedRun(
        name=name,
        created_at=utc(created) if created else (tick or CREATED) + timedelta(seconds=1),
        phase=phase,
        scheduled=scheduled,
        scheduled_at=tick,
        finished_at=utc(finished) if finished else None,
        cancel_requested=cancel_requested,
    )


def tick_name(tick: str) -> str:
    return scheduled_run_name("etl", utc(tick))


def plan(
    schedule: ScheduleSpec = HOURLY,
    runs: list[ObservedRun] | None = None,
    *,
    now: str,
    last: str | None = None,
    active_since: datetime = CREATED,
    runnable: bool = True,
    starting_deadline_seconds: int | None = None,
) -> SchedulePlan:
    return plan_schedule(
        schedule,
        workflow="etl",
        runs=runs or [],
        last_schedule_time=utc(last) if last else None,
        active_since=active_since,
        now=utc(now),
        runnable=runnable,
        starting_deadline_seconds=starting_deadline_seconds,
    )


def test_nothing_is_due_before_the_first_tick() -> None:
    result = plan(now="2026-11-22T08:59:59+00:00")
    assert result.create is None
    assert result.next_tick == utc("2026-11-22T09:00:00+00:00")


def test_the_first_tick_after_the_schedule_became_active_creates_a_run() -> None:
    result = plan(now="2026-11-22T09:00:00.2+00:00")
    assert result.create is not None
    assert result.create.name == tick_name("2026-11-22T09:00:00+00:00")
    assert result.create.scheduled_at == utc("2026-11-22T09:00:00+00:00")
    assert result.last_schedule_time == utc("2026-11-22T09:00:00+00:00")
    assert result.active_runs == (result.create.name,)
    assert result.next_tick == utc("2026-11-22T10:00:00+00:00")


def test_ticks_before_the_schedule_became_active_never_run() -> None:
    # Unsuspended at 09:10: the 09:00 tick is not caught up, 10:00 is the next run.
    result = plan(now="2026-11-22T09:10:00+00:00", active_since=utc("2026-11-22T09:05:00+00:00"))
    assert result.create is None
    assert result.next_tick == utc("2026-11-22T10:00:00+00:00")


def test_after_an_outage_only_the_most_recent_missed_tick_runs() -> None:
    result = plan(now="2026-11-22T13:20:00+00:00", last="2026-11-22T09:00:00+00:00")
    assert result.create is not None
    assert result.create.scheduled_at == utc("2026-11-22T13:00:00+00:00")


def test_a_tick_already_run_is_not_run_again() -> None:
    done = run(tick_name("2026-11-22T09:00:00+00:00"), "2026-11-22T09:00:00+00:00")
    # The status write of lastScheduleTime was lost; the run's annotation still tells.
    result = plan(HOURLY, [done], now="2026-11-22T09:00:30+00:00")
    assert result.create is None
    assert result.last_schedule_time == utc("2026-11-22T09:00:00+00:00")


def test_a_run_with_the_ticks_name_is_adopted_even_without_its_annotation() -> None:
    done = run(tick_name("2026-11-22T09:00:00+00:00"), created="2026-11-22T09:00:01+00:00")
    result = plan(HOURLY, [replace(done, scheduled_at=None)], now="2026-11-22T09:00:30+00:00")
    assert result.create is None
    assert result.last_schedule_time == utc("2026-11-22T09:00:00+00:00")


def test_a_tick_in_the_future_is_never_taken_as_done() -> None:
    forged = run(tick_name("2099-01-01T00:00:00+00:00"), "2099-01-01T00:00:00+00:00")
    result = plan(HOURLY, [forged], now="2026-11-22T09:00:30+00:00")
    assert result.create is not None
    assert result.create.scheduled_at == utc("2026-11-22T09:00:00+00:00")
    assert result.last_schedule_time == utc("2026-11-22T09:00:00+00:00")


def test_a_last_schedule_time_in_the_future_is_never_trusted() -> None:
    result = plan(HOURLY, now="2026-11-22T09:00:30+00:00", last="2099-01-01T00:00:00+00:00")
    assert result.create is not None
    assert result.create.scheduled_at == utc("2026-11-22T09:00:00+00:00")


@pytest.mark.parametrize(
    ("name", "tick", "created", "trusted"),
    [
        (None, "2026-11-22T09:00:00+00:00", "2026-11-22T09:00:01+00:00", True),
        ("etl-by-hand", "2026-11-22T09:00:00+00:00", "2026-11-22T09:00:01+00:00", False),
        (None, "2026-11-22T09:00:00+00:00", "2026-11-22T08:00:00+00:00", False),
        (None, "2099-01-01T00:00:00+00:00", "2026-11-22T09:00:01+00:00", False),
        # The operator's clock may run a little ahead of the API server's.
        (None, "2026-11-22T09:00:00+00:00", "2026-11-22T08:59:50+00:00", True),
    ],
)
def test_a_run_is_trusted_with_a_tick_the_schedule_could_have_created_it_for(
    name: str | None, tick: str, created: str, trusted: bool
) -> None:
    run_name = name or tick_name(tick)
    found = claimed_tick("etl", run_name, utc(tick), utc(created))
    assert found == (utc(tick) if trusted else None)


def test_a_tick_older_than_the_starting_deadline_is_missed() -> None:
    result = plan(now="2026-11-22T09:05:00+00:00", starting_deadline_seconds=60)
    assert result.create is None
    assert result.missed == utc("2026-11-22T09:00:00+00:00")


ACTIVE_RUN = run("etl-old", "2026-11-22T09:00:00+00:00", RunPhase.RUNNING)
NOW = "2026-11-22T10:00:01+00:00"


def test_allow_starts_a_run_while_another_is_active() -> None:
    result = plan(HOURLY, [ACTIVE_RUN], now=NOW, last="2026-11-22T09:00:00+00:00")
    assert result.create is not None
    assert result.cancel == ()
    assert result.active_runs == ("etl-old", result.create.name)


def test_forbid_skips_the_tick_while_a_scheduled_run_is_active() -> None:
    forbid = hourly(concurrency_policy="Forbid")
    result = plan(forbid, [ACTIVE_RUN], now=NOW, last="2026-11-22T09:00:00+00:00")
    assert result.create is None
    assert result.skipped is not None
    assert result.skipped.active_runs == ("etl-old",)
    assert result.skipped.tick == utc("2026-11-22T10:00:00")
    assert result.last_schedule_time == utc("2026-11-22T09:00:00+00:00")
    assert result.next_tick == utc("2026-11-22T11:00:00+00:00")


def test_forbid_keeps_skipping_a_tick_after_the_blocking_run_finished() -> None:
    # The blocker finished after the tick: re-evaluating (or restarting) must not start the
    # skipped tick late.
    forbid = hourly(concurrency_policy="Forbid")
    finished = replace(
        ACTIVE_RUN, phase=RunPhase.SUCCEEDED, finished_at=utc("2026-11-22T10:00:30+00:00")
    )
    result = plan(forbid, [finished], now="2026-11-22T10:01:00+00:00", last="2026-11-22T09:00:00Z")
    assert result.create is None
    assert result.skipped is not None


def test_forbid_runs_the_tick_when_the_previous_run_finished_before_it() -> None:
    forbid = hourly(concurrency_policy="Forbid")
    finished = replace(
        ACTIVE_RUN, phase=RunPhase.FAILED, finished_at=utc("2026-11-22T09:40:00+00:00")
    )
    result = plan(forbid, [finished], now=NOW, last="2026-11-22T09:00:00+00:00")
    assert result.create is not None


def test_forbid_ignores_manual_runs() -> None:
    forbid = hourly(concurrency_policy="Forbid")
    manual = replace(ACTIVE_RUN, name="etl-manual", scheduled=False, scheduled_at=None)
    result = plan(forbid, [manual], now=NOW, last="2026-11-22T09:00:00+00:00")
    assert result.create is not None


def test_replace_cancels_the_active_runs_and_starts_the_new_one() -> None:
    replace_policy = hourly(concurrency_policy="Replace")
    cancelling = run("etl-older", "2026-11-22T08:00:00+00:00", cancel_requested=True)
    result = plan(
        replace_policy, [cancelling, ACTIVE_RUN], now=NOW, last="2026-11-22T09:00:00+00:00"
    )
    assert result.cancel == ("etl-old",)  # etl-older was already asked to cancel
    assert result.create is not None


def test_suspend_creates_nothing_and_does_not_wake_up_but_still_prunes() -> None:
    suspended = hourly(suspend=True, history_limit=HistoryLimit(succeeded=0, failed=0))
    done = run("etl-done", "2026-11-22T09:00:00+00:00", RunPhase.SUCCEEDED)
    result = plan(suspended, [done], now=NOW, last="2026-11-22T09:00:00+00:00")
    assert result.create is None
    assert result.next_tick is None
    assert result.delete == ("etl-done",)


def test_an_invalid_workflow_is_not_scheduled() -> None:
    result = plan(now=NOW, runnable=False)
    assert result.create is None
    assert result.next_tick is None


def test_an_unusable_cron_is_reported_not_raised() -> None:
    result = plan(ScheduleSpec(cron="0 2 * * *", timezone="Nowhere/City"), now=NOW)
    assert result.create is None
    assert result.problem is not None
    assert result.problem.startswith("schedule.timezone:")


def history(phases: list[RunPhase]) -> list[ObservedRun]:
    """Scheduled runs one hour apart, oldest first, named by their index."""
    start = utc("2026-11-01T00:00:00+00:00")
    return [
        run(f"etl-{i}", (start + timedelta(hours=i)).isoformat(), phase)
        for i, phase in enumerate(phases)
    ]


S, F, C, T, R = (
    RunPhase.SUCCEEDED,
    RunPhase.FAILED,
    RunPhase.CANCELLED,
    RunPhase.TIMED_OUT,
    RunPhase.RUNNING,
)


@pytest.mark.parametrize(
    ("phases", "limit", "deleted"),
    [
        pytest.param([S, S, S, S, S], None, ["etl-0", "etl-1"], id="default-keeps-3-succeeded"),
        pytest.param([F, F, S], None, ["etl-0"], id="default-keeps-1-failed"),
        pytest.param(
            [S, F, C, T, S, S],
            HistoryLimit(succeeded=2, failed=2),
            ["etl-0", "etl-1"],
            id="cancelled-and-timed-out-count-as-failed",
        ),
        pytest.param(
            [S, S, R, R],
            HistoryLimit(succeeded=0, failed=0),
            ["etl-0", "etl-1"],
            id="active-runs-are-never-pruned",
        ),
        pytest.param([S, S], HistoryLimit(succeeded=5, failed=5), [], id="under-the-limit"),
    ],
)
def test_history_limits(
    phases: list[RunPhase], limit: HistoryLimit | None, deleted: list[str]
) -> None:
    schedule = hourly(history_limit=limit)
    result = plan(schedule, history(phases), now="2026-11-02T00:00:00+00:00")
    assert list(result.delete) == deleted


def test_manual_runs_are_never_pruned() -> None:
    manual = run(
        "etl-by-hand", None, RunPhase.SUCCEEDED, created="2026-11-01T00:00:00Z", scheduled=False
    )
    strict = hourly(history_limit=HistoryLimit(succeeded=0, failed=0))
    assert plan(strict, [manual], now=NOW).delete == ()


phases = st.sampled_from([None, *RunPhase])


@settings(max_examples=200, deadline=None)
@given(
    run_phases=st.lists(phases, max_size=12),
    policy=st.sampled_from(["Allow", "Forbid", "Replace"]),
    succeeded=st.integers(0, 4),
    failed=st.integers(0, 4),
    minutes=st.integers(0, 600),
)
def test_replanning_after_applying_a_plan_changes_nothing(
    run_phases: list[RunPhase | None], policy: str, succeeded: int, failed: int, minutes: int
) -> None:
    """A plan applied, then planned again at the same moment, asks for nothing more: the
    scheduler can be woken any number of times without creating, cancelling or deleting
    twice; and history never keeps more than the limits."""
    schedule = ScheduleSpec(
        cron="*/7 * * * *",
        concurrency_policy=policy,  # type: ignore[arg-type]
        history_limit=HistoryLimit(succeeded=succeeded, failed=failed),
    )
    start = utc("2026-11-22T00:00:00+00:00")
    runs = [
        ObservedRun(
            name=scheduled_run_name("etl", start + timedelta(minutes=7 * i)),
            created_at=start + timedelta(minutes=7 * i, seconds=1),
            phase=phase,
            scheduled=True,
            scheduled_at=start + timedelta(minutes=7 * i),
            finished_at=None if phase is None or not phase.terminal else start,
        )
        for i, phase in enumerate(run_phases)
    ]
    now = start + timedelta(minutes=7 * len(run_phases) + minutes)
    last = runs[-1].scheduled_at if runs else None
    first = plan_schedule(
        schedule,
        workflow="etl",
        runs=runs,
        last_schedule_time=last,
        active_since=start - timedelta(minutes=1),
        now=now,
    )
    applied = [
        replace(r, cancel_requested=r.cancel_requested or r.name in first.cancel)
        for r in runs
        if r.name not in first.delete
    ]
    if first.create is not None:
        applied.append(
            ObservedRun(
                name=first.create.name,
                created_at=now,
                scheduled=True,
                scheduled_at=first.create.scheduled_at,
            )
        )
    again = plan_schedule(
        schedule,
        workflow="etl",
        runs=applied,
        last_schedule_time=first.last_schedule_time,
        active_since=start - timedelta(minutes=1),
        now=now,
    )
    assert again.create is None
    assert again.cancel == ()
    assert again.delete == ()
    kept = [r for r in applied if r.phase is not None and r.phase.terminal]
    assert sum(r.phase == RunPhase.SUCCEEDED for r in kept) <= succeeded
    assert sum(r.phase != RunPhase.SUCCEEDED for r in kept) <= failed
