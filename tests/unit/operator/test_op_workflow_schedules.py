"""Cron schedules as the controller carries them out, against a fake API."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from workflow_harness import TICK, Harness, spec, status_error

from kdag.engine.cron import scheduled_run_name
from kdag.engine.workflow_status import CONDITION_SCHEDULED
from kdag.operator.kube import KubeError


@pytest.fixture
def h() -> Harness:
    return Harness()


# -- schedules


def test_a_tick_creates_one_run_with_the_schedules_params(h: Harness) -> None:
    h.apply("etl", spec(cron="0 * * * *", params={"day": "2026-11-22"}))
    assert h.step() == TICK  # nothing due yet: sleep until 09:00
    assert not h.api.runs
    assert h.condition(CONDITION_SCHEDULED)["status"] == "True"

    h.at(TICK + timedelta(seconds=0.2))
    assert h.step() == TICK + timedelta(hours=1)
    name = scheduled_run_name("etl", TICK)
    run = h.api.runs[name]
    assert run["spec"] == {"workflowRef": {"name": "etl"}, "params": {"day": "2026-11-22"}}
    assert run["metadata"]["labels"]["kdag.dev/workflow"] == "etl"
    assert run["metadata"]["labels"]["kdag.dev/scheduled"] == "true"
    assert run["metadata"]["annotations"]["kdag.dev/scheduled-at"] == "2026-11-22T09:00:00Z"
    assert "ownerReferences" not in run["metadata"]
    status = h.status()
    assert status["lastScheduleTime"] == "2026-11-22T09:00:00Z"
    assert status["lastRun"] == name
    assert status["activeRuns"] == [name]
    assert [e["reason"] for e in h.api.events] == ["RunCreated"]
    assert h.api.events[0]["involvedObject"]["kind"] == "Workflow"


def test_waking_again_before_the_watch_shows_the_new_run_creates_nothing(h: Harness) -> None:
    h.apply("etl", spec(cron="0 * * * *"))
    h.step()
    h.at(TICK + timedelta(seconds=1))
    h.step()
    writes = len(h.api.writes())
    h.step(stale_index=True)
    h.at(TICK + timedelta(seconds=30))
    h.step()
    assert len(h.api.writes()) == writes
    assert len(h.api.runs) == 1


def test_a_restarted_operator_adopts_the_run_of_a_tick_already_done(h: Harness) -> None:
    h.apply("etl", spec(cron="0 * * * *"))
    h.step()
    h.at(TICK + timedelta(seconds=1))
    # The run was created, then the operator died before it wrote lastScheduleTime.
    h.api.status_patch_error = status_error(503, "ServiceUnavailable")
    with pytest.raises(KubeError):
        h.step()
    assert len(h.api.runs) == 1
    h.controller = h.new_controller()
    h.at(TICK + timedelta(seconds=20))
    h.step()
    assert [c for c in h.api.calls if c[0] == "create_run"] == [
        ("create_run", scheduled_run_name("etl", TICK))
    ]
    assert h.status()["lastScheduleTime"] == "2026-11-22T09:00:00Z"


def test_already_exists_means_the_tick_is_done(h: Harness) -> None:
    h.apply("etl", spec(cron="0 * * * *"))
    h.step()
    h.at(TICK + timedelta(seconds=1))
    # Another replica created it; our watch has not shown it yet.
    h.add_run(scheduled_run_name("etl", TICK), None, scheduled_at=TICK)
    h.step(stale_index=True)
    assert h.status()["lastScheduleTime"] == "2026-11-22T09:00:00Z"
    assert [e["reason"] for e in h.api.events] == []


def test_a_run_labelled_scheduled_by_hand_is_not_the_schedules(h: Harness) -> None:
    h.apply("etl", spec(cron="0 * * * *", historyLimit={"succeeded": 0, "failed": 0}))
    h.step()
    # Anyone who may create runs can label one; its claimed tick is far in the future.
    h.add_run("etl-forged", "Succeeded", scheduled_at=datetime(2099, 1, 1, tzinfo=UTC))
    h.api.runs["etl-forged"]["metadata"]["creationTimestamp"] = "2026-11-22T08:59:40Z"
    h.at(TICK + timedelta(seconds=1))
    h.step()
    assert scheduled_run_name("etl", TICK) in h.api.runs
    assert h.status()["lastScheduleTime"] == "2026-11-22T09:00:00Z"
    assert "etl-forged" in h.api.runs  # not the schedule's to prune either


def test_a_run_named_for_a_tick_is_not_trusted_with_a_tick_after_its_creation(
    h: Harness,
) -> None:
    h.apply("etl", spec(cron="0 * * * *"))
    h.step()
    later = TICK + timedelta(hours=5)
    h.add_run(scheduled_run_name("etl", later), "Succeeded", scheduled_at=later)
    h.api.runs[scheduled_run_name("etl", later)]["metadata"]["creationTimestamp"] = (
        "2026-11-22T08:59:40Z"
    )
    h.at(TICK + timedelta(seconds=1))
    h.step()
    assert scheduled_run_name("etl", TICK) in h.api.runs
    assert h.status()["lastScheduleTime"] == "2026-11-22T09:00:00Z"


def test_a_last_schedule_time_in_the_future_is_not_trusted_and_is_corrected(
    h: Harness,
) -> None:
    h.apply("etl", spec(cron="0 * * * *"))
    h.step()
    # Written by an operator that trusted a forged run, before this one started.
    h.api.workflows["etl"]["status"]["lastScheduleTime"] = "2099-01-01T00:00:00Z"
    h.api.workflows["etl"]["metadata"]["resourceVersion"] = h.api.next_rv()
    h.controller = h.new_controller()
    h.at(TICK + timedelta(seconds=1))
    h.step()
    assert scheduled_run_name("etl", TICK) in h.api.runs
    assert h.status()["lastScheduleTime"] == "2026-11-22T09:00:00Z"


def first_run_still_running_at_next_tick(h: Harness, policy: str) -> str:
    """The 09:00 run is created and still running when the 10:00 tick comes."""
    h.apply("etl", spec(cron="0 * * * *", concurrencyPolicy=policy))
    h.step()
    h.at(TICK + timedelta(seconds=1))
    h.step()
    first = scheduled_run_name("etl", TICK)
    h.api.runs[first]["status"] = {"phase": "Running"}
    h.at(TICK + timedelta(hours=1, seconds=1))
    h.step()
    return first


def test_forbid_skips_while_a_scheduled_run_is_active_and_says_so_once(h: Harness) -> None:
    first = first_run_still_running_at_next_tick(h, "Forbid")
    h.step()
    assert list(h.api.runs) == [first]
    assert [e["reason"] for e in h.api.events] == ["RunCreated", "RunSkipped"]
    assert first in h.api.events[1]["message"]
    # It ends after the skipped tick: that tick stays skipped, the next one runs.
    h.finish(first, "Succeeded", TICK + timedelta(hours=1, minutes=5))
    h.at(TICK + timedelta(hours=1, minutes=6))
    h.step()
    assert list(h.api.runs) == [first]
    h.at(TICK + timedelta(hours=2))
    h.step()
    assert len(h.api.runs) == 2


def test_replace_cancels_the_active_run_then_starts_the_new_one(h: Harness) -> None:
    first = first_run_still_running_at_next_tick(h, "Replace")
    second = scheduled_run_name("etl", TICK + timedelta(hours=1))
    writes = [c for c in h.api.calls if c[0] in ("patch_run", "create_run")]
    assert writes[-2:] == [("patch_run", first), ("create_run", second)]
    assert h.api.runs[first]["spec"]["cancel"] is True
    assert h.status()["activeRuns"] == [first, second]


def test_history_keeps_the_newest_finished_runs(h: Harness) -> None:
    h.apply("etl", spec(cron="0 * * * *", historyLimit={"succeeded": 1, "failed": 1}))
    for hours, phase in enumerate(["Succeeded", "Failed", "Succeeded", "Cancelled"], start=-4):
        tick = TICK + timedelta(hours=hours)
        h.add_run(scheduled_run_name("etl", tick), phase, scheduled_at=tick)
    h.add_run("etl-by-hand", "Succeeded")
    h.step()
    deleted = sorted(c[1] for c in h.api.calls if c[0] == "delete_run")
    assert deleted == sorted(
        [
            scheduled_run_name("etl", TICK - timedelta(hours=4)),
            scheduled_run_name("etl", TICK - timedelta(hours=3)),
        ]
    )
    assert "etl-by-hand" in h.api.runs
    assert {e["reason"] for e in h.api.events} == {"RunDeleted"}


def test_suspend_stops_runs_and_resuming_does_not_catch_up(h: Harness) -> None:
    h.apply("etl", spec(cron="0 * * * *", suspend=True))
    assert h.step() is None
    assert h.condition(CONDITION_SCHEDULED)["reason"] == "Suspended"
    h.at(TICK + timedelta(minutes=30))
    h.apply("etl", spec(cron="0 * * * *", suspend=False), generation=2)
    assert h.step() == TICK + timedelta(hours=1)
    assert not h.api.runs  # the 09:00 tick passed while suspended
    assert h.condition(CONDITION_SCHEDULED)["lastTransitionTime"] == "2026-11-22T09:30:00Z"
    h.at(TICK + timedelta(hours=1))
    h.step()
    assert list(h.api.runs) == [scheduled_run_name("etl", TICK + timedelta(hours=1))]


def test_removing_the_schedule_drops_the_condition(h: Harness) -> None:
    h.apply("etl", spec(cron="0 * * * *"))
    h.step()
    h.apply("etl", spec(), generation=2)
    assert h.step() is None
    assert all(c["type"] != CONDITION_SCHEDULED for c in h.status()["conditions"])


def test_timezone_decides_the_tick(h: Harness) -> None:
    h.apply("etl", spec(cron="0 10 * * *", timezone="Europe/Berlin"))
    assert h.step() == datetime(2026, 11, 22, 9, 0, tzinfo=UTC)  # 10:00 CET
