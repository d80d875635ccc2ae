"""Cron schedules on the real local cluster: runs appear on the minute, Forbid holds back a
second run, and history limits prune finished runs.

A `* * * * *` schedule fires at the next minute boundary, so these tests wait up to about
70 seconds for a tick, always on a condition (a run object appearing, an Event being
posted), never with a fixed sleep.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

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
    # A schedule that will not fire during the test: the history is made of runs labelled as
    # scheduled, as the operator would have created them on earlier ticks.
    schedule = {"cron": "0 3 1 1 *", "historyLimit": {"succeeded": 1, "failed": 1}}
    apply(namespace, workflow("pruned", [{"name": "a"}], schedule=schedule))
    ticks = ["2026-01-01T03:00:00Z", "2026-01-02T03:00:00Z", "2026-01-03T03:00:00Z"]
    made = []
    for day, tick in enumerate(ticks, start=1):
        for outcome, cancel in (("ok", False), ("cancelled", True)):
            manifest = run_of("pruned", name=f"pruned-{outcome}-{day}", cancel=cancel)
            manifest["metadata"]["labels"] = {
                "kdag.dev/workflow": "pruned",
                "kdag.dev/scheduled": "true",
            }
            manifest["metadata"]["annotations"] = {"kdag.dev/scheduled-at": tick}
            made.append(create(namespace, manifest))

    def kept() -> list[str] | None:
        names = [r["metadata"]["name"] for r in scheduled_runs(namespace, "pruned")]
        return names if len(names) == 2 else None

    remaining = wait_for(kept, timeout=90, what="history pruned to 1 succeeded + 1 failed")
    assert sorted(remaining) == ["pruned-cancelled-3", "pruned-ok-3"]
    assert len(made) == 6
    deleted = wait_for(
        lambda: len(workflow_events(namespace, "pruned", "RunDeleted")) == 4,
        timeout=30,
        what="four RunDeleted events",
    )
    assert deleted
