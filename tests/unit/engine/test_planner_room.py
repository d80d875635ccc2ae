"""Whether a run's object could be stored at all: validation weighs fan-out width and the
output budget against the API server's limit. How a run copes with a full quota, deletes
finished Jobs and keeps its output budget is in tests/unit/engine/rules/."""

from __future__ import annotations

from kdag.api import RunPhase
from kdag.engine.validation import validate_workflow
from tests.unit.engine.sim import World, workflow


def test_validation_refuses_a_fan_out_whose_run_could_not_be_stored() -> None:
    spec = workflow(nodes=[{"name": "wide", "forEach": [str(i) for i in range(8000)]}])
    problems = validate_workflow(spec)
    assert [p.path for p in problems] == ["nodes[wide].forEach"]
    assert "more than the 1024 KiB a run object may take" in problems[0].message


def test_validation_counts_the_output_budget_against_the_run_object() -> None:
    spec = workflow(nodes=[{"name": "wide", "forEach": [str(i) for i in range(400)]}])
    assert validate_workflow(spec) == []
    problems = validate_workflow(spec, output_budget=1024 * 1024)
    assert [p.path for p in problems] == ["nodes[wide].forEach"]


def test_a_five_thousand_node_fan_out_with_the_default_budget_is_valid() -> None:
    # The benchmark's shape (SPEC §8): root -> forEach of 5,000 -> join.
    nodes = [
        {"name": "root"},
        {"name": "fan", "dependsOn": ["root"], "forEach": [str(i) for i in range(5000)]},
        {"name": "join", "dependsOn": ["fan"]},
    ]
    assert validate_workflow(workflow(nodes=nodes)) == []


def test_a_run_that_could_not_be_stored_ends_invalid_naming_the_field() -> None:
    spec = workflow(nodes=[{"name": "wide", "forEach": [str(i) for i in range(400)]}])
    world = World(spec, output_budget=1024 * 1024)
    world.step()
    assert world.phase is RunPhase.INVALID
    assert "nodes[wide].forEach" in (world.status.message or "")  # type: ignore[union-attr]
    assert world.created == []
