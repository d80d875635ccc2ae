"""A Workflow's status from its spec, its validity, its runs and the time (pure)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kdag.api import RunPhase
from kdag.engine.cron import ObservedRun
from kdag.engine.workflow_status import (
    CONDITION_SCHEDULED,
    CONDITION_VALID,
    OWNED_FIELDS,
    check_workflow,
    desired_status,
    previous_conditions,
    schedule_condition,
    scheduled_since,
)

NOW = datetime(2026, 11, 22, 9, 30, tzinfo=UTC)
EARLIER = "2026-11-22T08:00:00Z"


def spec(**schedule: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "defaults": {"image": "busybox:1.36"},
        "nodes": [
            {"name": "extract", "forEach": ["eu", "us"]},
            {"name": "load", "dependsOn": ["extract"]},
        ],
    }
    if schedule:
        body["schedule"] = schedule
    return body


def status_of(
    raw_spec: dict[str, Any],
    runs: Sequence[ObservedRun] = (),
    current: dict[str, Any] | None = None,
    *,
    last_scheduled: datetime | None = None,
    now: datetime = NOW,
) -> dict[str, Any]:
    return desired_status(
        raw_spec,
        current or {},
        check_workflow(raw_spec, max_nodes=100),
        runs,
        generation=4,
        last_scheduled=last_scheduled,
        now=now,
    )


def conditions_by_type(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in status["conditions"]}


def test_check_workflow_counts_the_nodes_after_fan_out() -> None:
    validity = check_workflow(spec(), max_nodes=100)
    assert (validity.valid, validity.message, validity.node_count) == (True, None, 3)
    assert validity.spec is not None


def test_check_workflow_names_the_wrong_field() -> None:
    broken = spec()
    broken["nodes"][1]["dependsOn"] = ["nope"]
    validity = check_workflow(broken, max_nodes=100)
    assert not validity.valid
    assert "nodes[load].dependsOn" in (validity.message or "")


def test_check_workflow_reports_a_spec_the_models_reject() -> None:
    validity = check_workflow({"nodes": [{"name": "a", "retry": {"limit": "lots"}}]}, max_nodes=9)
    assert (validity.spec, validity.node_count) == (None, None)
    assert (validity.message or "").startswith("spec.nodes[0].retry.limit:")


def test_check_workflow_applies_the_node_limit() -> None:
    assert not check_workflow(spec(), max_nodes=2).valid


def test_a_valid_workflow_without_schedule_has_only_the_valid_condition() -> None:
    status = status_of(spec())
    assert set(status) == {"observedGeneration", "valid", "nodeCount", "conditions"}
    assert set(status) <= set(OWNED_FIELDS)
    assert (status["observedGeneration"], status["valid"], status["nodeCount"]) == (4, True, 3)
    assert status["conditions"] == [
        {
            "type": CONDITION_VALID,
            "status": "True",
            "reason": "Valid",
            "message": "the workflow is valid",
            "lastTransitionTime": "2026-11-22T09:30:00Z",
            "observedGeneration": 4,
        }
    ]


def test_an_invalid_workflow_carries_the_message_in_status_and_condition() -> None:
    broken = spec()
    broken["nodes"][1]["dependsOn"] = ["nope"]
    status = status_of(broken)
    assert status["valid"] is False
    valid = conditions_by_type(status)[CONDITION_VALID]
    assert (valid["status"], valid["reason"], valid["message"]) == (
        "False",
        "Invalid",
        status["message"],
    )


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        ({"cron": "0 * * * *"}, ("True", "Active", "runs on '0 * * * *' in UTC")),
        (
            {"cron": "0 2 * * *", "timezone": "Europe/Berlin"},
            ("True", "Active", "runs on '0 2 * * *' in Europe/Berlin"),
        ),
        ({"cron": "0 * * * *", "suspend": True}, ("False", "Suspended", None)),
        ({"cron": "0 0 31 2 *"}, ("False", "NeverFires", None)),
        ({"cron": "every day"}, ("False", "InvalidWorkflow", None)),
    ],
)
def test_the_scheduled_condition_says_whether_the_schedule_creates_runs(
    schedule: dict[str, Any], expected: tuple[str, str, str | None]
) -> None:
    raw = spec(**schedule)
    state = schedule_condition(raw, check_workflow(raw, max_nodes=100), NOW)
    assert state is not None
    assert (state.status, state.reason) == expected[:2]
    if expected[2] is not None:
        assert state.message == expected[2]


def test_no_schedule_no_scheduled_condition() -> None:
    assert schedule_condition(spec(), check_workflow(spec(), max_nodes=100), NOW) is None


def test_a_condition_keeps_its_time_while_its_status_holds() -> None:
    current = {
        "conditions": [
            {"type": CONDITION_VALID, "status": "True", "lastTransitionTime": EARLIER},
            {"type": CONDITION_SCHEDULED, "status": "False", "lastTransitionTime": EARLIER},
        ]
    }
    status = status_of(spec(cron="0 * * * *"), current=current)
    by_type = conditions_by_type(status)
    assert by_type[CONDITION_VALID]["lastTransitionTime"] == EARLIER
    assert by_type[CONDITION_SCHEDULED]["lastTransitionTime"] == "2026-11-22T09:30:00Z"
    assert scheduled_since(status) == NOW


def test_previous_conditions_are_the_first_of_each_type_with_a_time() -> None:
    previous = previous_conditions(
        {
            "conditions": [
                {"type": "A", "status": "True", "lastTransitionTime": EARLIER},
                {"type": "A", "status": "False", "lastTransitionTime": "2026-11-22T07:00:00Z"},
                {"type": "B", "status": "True"},
                {"type": "B", "status": "True", "lastTransitionTime": EARLIER},
            ]
        }
    )
    assert [(c.type, c.status, c.last_transition_time) for c in previous] == [
        ("A", "True", EARLIER)
    ]


def run(name: str, minutes: int, phase: RunPhase | None, *, tick: bool = False) -> ObservedRun:
    created = NOW - timedelta(minutes=minutes)
    return ObservedRun(
        name=name,
        created_at=created,
        phase=phase,
        scheduled=tick,
        scheduled_at=created - timedelta(seconds=1) if tick else None,
    )


def test_runs_give_the_last_run_the_active_scheduled_runs_and_the_last_tick() -> None:
    runs = [
        run("etl-old", 90, RunPhase.SUCCEEDED, tick=True),
        run("etl-now", 30, RunPhase.RUNNING, tick=True),
        run("etl-manual", 10, RunPhase.RUNNING),
    ]
    status = status_of(spec(cron="0 * * * *"), runs)
    assert status["lastRun"] == "etl-manual"
    assert status["activeRuns"] == ["etl-now"]
    assert status["lastScheduleTime"] == "2026-11-22T08:59:59Z"


def test_the_last_tick_is_the_newest_known_and_never_one_in_the_future() -> None:
    current = {"lastScheduleTime": "2099-01-01T00:00:00Z"}
    assert "lastScheduleTime" not in status_of(spec(cron="0 * * * *"), current=current)
    recorded = {"lastScheduleTime": "2026-11-22T08:00:00Z"}
    remembered = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
    status = status_of(spec(cron="0 * * * *"), current=recorded, last_scheduled=remembered)
    assert status["lastScheduleTime"] == "2026-11-22T09:00:00Z"
