"""Cron schedules on the real local cluster: runs appear on the minute, Forbid holds back a
second run, and history limits prune finished runs.

A `* * * * *` schedule fires at the next minute boundary, so these tests wait up to about
70 seconds for a tick, always on a condition (a run object appearing, an Event being
posted), never with a fixed sleep.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from kdag.engine.cron import scheduled_run_name
from tests.support.cluster import Cluster, kubectl_json, wait_for
from tests.support.operator import (
    OperatorProcess,
    apply,
    create,
    ensure_operator,
    run_of,
    sim,
    wait_phase,
    workflow,
)

pytestmark = pytest.mark.operator

TICK_TIMEOUT = 75.0  # a minute to the next tick, plus the run's creation


@pytest.fixture(autouse=True)
def kdag_operator(cluster: Cluster) -> OperatorProcess:
    return ensure_operator(cluster)


def scheduled_runs(namespace: str, name: str) -> list[dict[str, Any]]:
    found = kubectl_json(
        "get", "workflowruns", "-n", namespace,
        "-l", f"kdag.dev/workflow={name},kdag.dev/scheduled=true",
    )  # fmt: skip
    items: list[dict[str, Any]] = found["items"]
    return sorted(items, key=lambda r: r["metadata"]["annotations"]["kdag.dev/scheduled-at"])


def workflow_events(namespace: str, name: str, reason: str) -> list[dict[str, Any]]:
    found = kubectl_json(
        "get", "events", "-n", namespace,
        "--field-selector", f"involvedObject.kind=Workflow,involvedObject.name={name},"
        f"reason={reason}",
    )  # fmt: skip
    items: list[dict[str, Any]] = found["items"]
    return items


def test_an_every_minute_schedule_creates_a_run_on_the_next_minute(namespace: str) -> None:
    params = [{"name": "region", "default": "eu"}]
    schedule = {"cron": "* * * * *", "params": {"region": "us"}}
    apply(namespace, workflow("minutely", [{"name": "a"}], params=params, schedule=schedule))
    runs = wait_for(
        lambda: scheduled_runs(namespace, "minutely"),
        timeout=TICK_TIMEOUT,
        what="a scheduled run of workflow minutely",
    )
    run = runs[0]
    scheduled_at = run["metadata"]["annotations"]["kdag.dev/scheduled-at"]
    tick = datetime.fromisoformat(scheduled_at.replace("Z", "+00:00"))
    assert tick.second == 0
    assert run["metadata"]["name"] == f"minutely-{int(tick.timestamp()) // 60}"
    assert run["spec"] == {"workflowRef": {"name": "minutely"}, "params": {"region": "us"}}
    # Created promptly after its tick, not at some later poll.
    created = datetime.fromisoformat(run["metadata"]["creationTimestamp"].replace("Z", "+00:00"))
    assert (created - tick).total_seconds() < 10
    done = wait_phase(namespace, run["metadata"]["name"], "Succeeded")
    assert done["params"] == {"region": "us"}

    def recorded() -> dict[str, Any] | None:
        status = kubectl_json("get", "workflow", "minutely", "-n", namespace)["status"]
        return status if status.get("lastScheduleTime") == scheduled_at else None

    status = wait_for(recorded, timeout=30, what="status.lastScheduleTime")
    names = {r["metadata"]["name"] for r in scheduled_runs(namespace, "minutely")}
    assert status["lastRun"] in names


def test_forbid_does_not_start_a_second_run_while_one_is_active(namespace: str) -> None:
    slow = [{"name": "slow", **sim(duration="90s")}]
    schedule = {"cron": "* * * * *", "concurrencyPolicy": "Forbid"}
    apply(namespace, workflow("exclusive", slow, schedule=schedule))
    first = wait_for(
        lambda: scheduled_runs(namespace, "exclusive"),
        timeout=TICK_TIMEOUT,
        what="the first scheduled run",
    )[0]["metadata"]["name"]
    wait_phase(namespace, first, "Running")
    # The next minute's tick comes while `first` still runs (90 s): it is skipped, with an
    # Event saying why.
    skipped = wait_for(
        lambda: workflow_events(namespace, "exclusive", "RunSkipped"),
        timeout=TICK_TIMEOUT,
        what="a RunSkipped event",
    )
    assert first in skipped[0]["message"]
    assert [r["metadata"]["name"] for r in scheduled_runs(namespace, "exclusive")] == [first]
    status = kubectl_json("get", "workflow", "exclusive", "-n", namespace)["status"]
    assert status["activeRuns"] == [first]


def test_history_limits_keep_the_newest_finished_runs(namespace: str) -> None:
    # A schedule that will not fire during the test: the history is made of runs as the
    # operator would have created them on earlier ticks (named after their ticks).
    schedule = {"cron": "0 3 1 1 *", "historyLimit": {"succeeded": 1, "failed": 1}}
    apply(namespace, workflow("pruned", [{"name": "a"}], schedule=schedule))
    made: dict[str, str] = {}
    for day in (1, 2, 3):
        for hour, outcome, cancel in ((3, "ok", False), (4, "cancelled", True)):
            tick = datetime(2026, 1, day, hour, tzinfo=UTC)
            manifest = run_of("pruned", name=scheduled_run_name("pruned", tick), cancel=cancel)
            manifest["metadata"]["labels"] = {
                "kdag.dev/workflow": "pruned",
                "kdag.dev/scheduled": "true",
            }
            manifest["metadata"]["annotations"] = {
                "kdag.dev/scheduled-at": tick.strftime("%Y-%m-%dT%H:%M:%SZ")
            }
            made[f"{outcome}-{day}"] = create(namespace, manifest)

    def kept() -> list[str] | None:
        names = [r["metadata"]["name"] for r in scheduled_runs(namespace, "pruned")]
        return names if len(names) == 2 else None

    remaining = wait_for(kept, timeout=90, what="history pruned to 1 succeeded + 1 failed")
    assert sorted(remaining) == sorted([made["ok-3"], made["cancelled-3"]])
    assert len(made) == 6
    deleted = wait_for(
        lambda: len(workflow_events(namespace, "pruned", "RunDeleted")) == 4,
        timeout=30,
        what="four RunDeleted events",
    )
    assert deleted


def test_a_run_labelled_scheduled_by_hand_does_not_hold_the_schedule_back(
    namespace: str,
) -> None:
    schedule = {"cron": "* * * * *"}
    apply(namespace, workflow("trusting", [{"name": "a"}], schedule=schedule))
    # Anyone who may create runs can claim a tick far in the future.
    forged = run_of("trusting", name="trusting-forged")
    forged["metadata"]["labels"] = {"kdag.dev/workflow": "trusting", "kdag.dev/scheduled": "true"}
    forged["metadata"]["annotations"] = {"kdag.dev/scheduled-at": "2099-01-01T00:00:00Z"}
    create(namespace, forged)

    def own_runs() -> list[str]:
        names = [r["metadata"]["name"] for r in scheduled_runs(namespace, "trusting")]
        return [n for n in names if n != "trusting-forged"]

    created = wait_for(own_runs, timeout=TICK_TIMEOUT, what="the schedule's own run")
    tick = int(created[0].rsplit("-", 1)[1]) * 60

    def recorded() -> str | None:
        status = kubectl_json("get", "workflow", "trusting", "-n", namespace)["status"]
        last: str | None = status.get("lastScheduleTime")
        return last if last and not last.startswith("2099") else None

    last = wait_for(recorded, timeout=30, what="status.lastScheduleTime of the real tick")
    # The real tick, or a later one if the test crossed another minute; never 2099.
    assert tick <= datetime.fromisoformat(last.replace("Z", "+00:00")).timestamp() <= tick + 120
    assert "trusting-forged" not in (
        kubectl_json("get", "workflow", "trusting", "-n", namespace)["status"].get("activeRuns")
        or []
    )
