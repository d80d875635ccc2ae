"""A Workflow's status as the controller writes it, against a fake API."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from workflow_harness import T0, Harness, spec

from kdag.engine.workflow_status import CONDITION_SCHEDULED, CONDITION_VALID


@pytest.fixture
def h() -> Harness:
    return Harness()


# -- status


def test_a_valid_workflow_gets_its_status_once(h: Harness) -> None:
    h.apply("etl", spec())
    h.sync()
    status = h.status()
    assert status["valid"] is True
    assert status["nodeCount"] == 3
    assert status["observedGeneration"] == 1
    assert "message" not in status
    valid = h.condition(CONDITION_VALID)
    assert (valid["status"], valid["reason"], valid["observedGeneration"]) == ("True", "Valid", 1)
    assert all(c["type"] != CONDITION_SCHEDULED for c in status["conditions"])
    # The echo of our own write, and any later event, writes nothing.
    h.at(T0 + timedelta(minutes=5))
    h.sync()
    assert len(h.api.status_patches) == 1


def test_an_invalid_workflow_says_which_field_is_wrong(h: Harness) -> None:
    broken = spec()
    broken["nodes"][1]["dependsOn"] = ["nope"]
    h.apply("etl", broken)
    h.sync()
    status = h.status()
    assert status["valid"] is False
    assert "nodes[load].dependsOn" in status["message"]
    valid = h.condition(CONDITION_VALID)
    assert (valid["status"], valid["reason"]) == ("False", "Invalid")
    assert valid["message"] == status["message"]


def test_a_spec_the_models_reject_is_reported_not_raised(h: Harness) -> None:
    h.apply("etl", {"nodes": [{"name": "a", "image": "x", "retry": {"limit": "lots"}}]})
    h.sync()
    assert h.status()["valid"] is False
    assert h.status()["message"].startswith("spec.nodes[0].retry.limit:")
    assert "nodeCount" not in h.status()


def test_fixing_a_workflow_flips_its_condition_and_time(h: Harness) -> None:
    broken = spec()
    broken["nodes"][1]["dependsOn"] = ["nope"]
    h.apply("etl", broken)
    h.sync()
    first = h.condition(CONDITION_VALID)["lastTransitionTime"]
    h.at(T0 + timedelta(minutes=1))
    h.apply("etl", spec(), generation=2)
    h.sync()
    status = h.status()
    assert status["valid"] is True
    assert "message" not in status
    assert status["observedGeneration"] == 2
    assert h.condition(CONDITION_VALID)["lastTransitionTime"] > first


@pytest.mark.parametrize(
    ("schedule", "field"),
    [
        ({"cron": "every day"}, "schedule.cron"),
        ({"cron": "0 2 * * *", "timezone": "Mars/Olympus"}, "schedule.timezone"),
    ],
)
def test_a_bad_cron_or_zone_makes_the_workflow_invalid_and_schedules_nothing(
    h: Harness, schedule: dict[str, Any], field: str
) -> None:
    h.apply("etl", spec(**schedule))
    assert h.step() is None
    h.at(T0 + timedelta(days=1))
    assert h.step() is None
    assert field in h.status()["message"]
    assert h.condition(CONDITION_SCHEDULED)["reason"] == "InvalidWorkflow"
    assert not h.api.runs


def test_a_cron_that_never_fires_says_so(h: Harness) -> None:
    h.apply("etl", spec(cron="0 0 31 2 *"))
    assert h.step() is None
    scheduled = h.condition(CONDITION_SCHEDULED)
    assert (scheduled["status"], scheduled["reason"]) == ("False", "NeverFires")


def test_last_run_is_the_newest_run_manual_or_scheduled(h: Harness) -> None:
    h.apply("etl", spec())
    h.add_run("etl-manual-1", "Succeeded")
    h.at(T0 + timedelta(minutes=1))
    h.add_run("etl-manual-2", "Running")
    h.sync()
    assert h.status()["lastRun"] == "etl-manual-2"
    assert "activeRuns" not in h.status()  # only scheduled runs are listed
