"""The one condition builder of runs and Workflows, and the run conditions made with it."""

from __future__ import annotations

from kdag.api import Condition, RunPhase
from kdag.engine.run_summary import run_conditions
from kdag.engine.status_conditions import ConditionState, updated_conditions

EARLIER = "2026-11-22T08:00:00Z"
NOW = "2026-11-22T09:00:00Z"


def test_a_new_condition_starts_now_with_the_generation() -> None:
    [made] = updated_conditions(
        {"Valid": ConditionState("True", "Valid", "fine")}, [], now_iso=NOW, generation=3
    )
    assert made.to_wire() == {
        "type": "Valid",
        "status": "True",
        "reason": "Valid",
        "message": "fine",
        "lastTransitionTime": NOW,
        "observedGeneration": 3,
    }


def test_the_transition_time_holds_while_the_status_does_and_moves_when_it_changes() -> None:
    previous = [
        Condition(type="A", status="True", last_transition_time=EARLIER),
        Condition(type="B", status="True", last_transition_time=EARLIER),
    ]
    made = updated_conditions(
        {
            "A": ConditionState("True", "Still", "new text"),
            "B": ConditionState("False", "Changed", None),
        },
        previous,
        now_iso=NOW,
        generation=None,
    )
    assert [(c.type, c.reason, c.message, c.last_transition_time) for c in made] == [
        ("A", "Still", "new text", EARLIER),
        ("B", "Changed", None, NOW),
    ]
    assert all(c.observed_generation is None for c in made)


def test_the_wanted_order_is_kept_and_unwanted_previous_conditions_go() -> None:
    previous = [Condition(type="Old", status="True", last_transition_time=EARLIER)]
    wanted = {
        "Z": ConditionState("True", "Z", None),
        "A": ConditionState("False", "A", None),
    }
    made = updated_conditions(wanted, previous, now_iso=NOW, generation=1)
    assert [c.type for c in made] == ["Z", "A"]


def test_the_last_previous_condition_of_a_type_is_compared_with() -> None:
    previous = [
        Condition(type="A", status="False", last_transition_time="2026-11-22T07:00:00Z"),
        Condition(type="A", status="True", last_transition_time=EARLIER),
    ]
    [made] = updated_conditions(
        {"A": ConditionState("True", "A", None)}, previous, now_iso=NOW, generation=1
    )
    assert made.last_transition_time == EARLIER


def test_run_conditions_of_a_running_run_waiting_at_a_gate() -> None:
    made = run_conditions(RunPhase.RUNNING, "1 running", True, None, NOW, 2)
    assert [c.to_wire() for c in made] == [
        {
            "type": "Succeeded",
            "status": "Unknown",
            "reason": "Running",
            "message": "1 running",
            "lastTransitionTime": NOW,
            "observedGeneration": 2,
        },
        {
            "type": "WaitingForApproval",
            "status": "True",
            "reason": "GatePending",
            "lastTransitionTime": NOW,
            "observedGeneration": 2,
        },
    ]


def test_run_conditions_of_finished_runs_keep_the_times_of_unchanged_statuses() -> None:
    previous = [
        Condition(type="Succeeded", status="Unknown", last_transition_time=EARLIER),
        Condition(type="WaitingForApproval", status="False", last_transition_time=EARLIER),
    ]
    succeeded = run_conditions(RunPhase.SUCCEEDED, "done", False, previous, NOW, 1)
    assert [(c.status, c.reason, c.last_transition_time) for c in succeeded] == [
        ("True", "Succeeded", NOW),
        ("False", "NoGatePending", EARLIER),
    ]
    failed = run_conditions(RunPhase.FAILED, "node x failed", False, previous, NOW, 1)
    assert (failed[0].status, failed[0].reason, failed[0].message) == (
        "False",
        "Failed",
        "node x failed",
    )


def test_run_conditions_keep_a_missing_transition_time_of_an_unchanged_status() -> None:
    previous = [Condition(type="Succeeded", status="Unknown")]
    made = run_conditions(RunPhase.RUNNING, None, False, previous, NOW, None)
    assert made[0].last_transition_time is None
    assert made[1].last_transition_time == NOW
