"""Readiness (SPEC §3): when a node is ready, waits, or is skipped, and its `when`."""

from __future__ import annotations

import math

import pytest

from kdag.api import NodePhase, RunPhase, SkipReason
from kdag.engine import conditions
from kdag.engine.model import ANNOTATION_READY_AT
from kdag.engine.timeutil import to_iso_precise
from tests.unit.engine.sim import FAIL, OK, Outcome, S, World, chain, workflow


def ready_at_of(world: World, instance: str) -> str:
    (create,) = [c for c in world.created if c.instance == instance]
    return str(create.manifest["metadata"]["annotations"][ANNOTATION_READY_AT])


def _load_when_rows() -> World:
    """count -> load, where load runs only if count output rows > 0."""
    return World(
        workflow(
            nodes=[
                {"name": "count"},
                {
                    "name": "load",
                    "dependsOn": ["count"],
                    "when": "int(nodes.count.outputs.rows) > 0",
                },
            ]
        )
    )


def test_linear_chain_runs_one_node_after_another() -> None:
    world = World(workflow(nodes=chain("a", "b", "c")))
    world.step()
    assert world.active_instances() == ["a"]
    assert world.phases() == {
        "a": NodePhase.RUNNING,
        "b": NodePhase.PENDING,
        "c": NodePhase.PENDING,
    }
    world.finish("a")
    world.step()
    assert world.active_instances() == ["b"]
    assert world.run() is RunPhase.SUCCEEDED
    assert [c.instance for c in world.created] == ["a", "b", "c"]


def test_diamond_starts_both_branches_then_joins() -> None:
    world = World(
        workflow(
            nodes=[
                {"name": "top"},
                {"name": "left", "dependsOn": ["top"]},
                {"name": "right", "dependsOn": ["top"]},
                {"name": "bottom", "dependsOn": ["left", "right"]},
            ]
        )
    )
    world.step()
    world.finish("top")
    world.step()
    assert world.active_instances() == ["left", "right"]
    world.finish("left")
    world.step()
    assert world.node("bottom").phase is NodePhase.PENDING
    world.finish("right")
    world.step()
    assert world.active_instances() == ["bottom"]


def test_dependent_is_ready_from_when_its_dependency_was_seen_done() -> None:
    # Scheduling latency (SPEC §8) starts when the operator learns the dependency is done,
    # not when the pass that acts on it begins: the wait for that pass counts.
    world = World(workflow(nodes=chain("a", "b")))
    world.step()
    world.finish("a")
    seen = world.now
    world.advance(2.5)
    world.step()
    assert ready_at_of(world, "b") == to_iso_precise(seen)


def test_dependent_of_a_fan_out_is_ready_from_its_last_instance_seen_done() -> None:
    world = World(
        workflow(
            nodes=[{"name": "fan", "forEach": ["x", "y"]}, {"name": "join", "dependsOn": ["fan"]}]
        )
    )
    world.step()
    world.finish("fan[x]")
    world.advance(1)
    world.finish("fan[y]")
    last = world.now
    world.advance(3)
    world.step()
    assert ready_at_of(world, "join") == to_iso_precise(last)


def test_node_ready_without_a_job_event_is_ready_from_the_pass() -> None:
    world = World(workflow(nodes=[{"name": "a", "when": "true"}]))
    world.step()
    assert ready_at_of(world, "a") == to_iso_precise(world.now)


def test_node_never_starts_before_its_dependencies_succeed() -> None:
    world = World(workflow(nodes=chain("a", "b")))
    world.step()
    world.step()
    assert world.active_instances() == ["a"]


def test_failed_dependency_skips_downstream() -> None:
    world = World(workflow(onFailure="continue", nodes=chain("a", "b", "c")))
    phase = world.run(lambda i, a: FAIL if i == "a" else OK)
    assert phase is RunPhase.FAILED
    assert world.node("b").phase is NodePhase.SKIPPED
    assert world.node("b").skip_reason is SkipReason.UPSTREAM
    assert world.node("c").skip_reason is SkipReason.UPSTREAM
    assert "upstream node a failed" in (world.node("b").message or "")


def test_when_false_skips_the_node_and_lets_dependents_run() -> None:
    world = World(
        workflow(
            params=[{"name": "go", "default": "no"}],
            nodes=[
                {"name": "maybe", "when": "params.go == 'yes'"},
                {"name": "after", "dependsOn": ["maybe"]},
            ],
        )
    )
    assert world.run() is RunPhase.SUCCEEDED
    assert world.node("maybe").skip_reason is SkipReason.WHEN_FALSE
    assert world.node("after").phase is S


def test_when_true_runs_the_node() -> None:
    world = _load_when_rows()
    assert world.run(lambda i, a: Outcome(message='{"rows": "120"}')) is RunPhase.SUCCEEDED
    assert world.node("load").phase is S


def test_when_that_fails_to_evaluate_fails_the_node_with_the_message() -> None:
    world = _load_when_rows()
    assert world.run() is RunPhase.FAILED
    assert (world.node("load").message or "").startswith("when: evaluating")


def test_when_over_its_cost_budget_fails_the_node_and_the_run_goes_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Steps decide here, not the wall-clock backstop, whatever the machine's load.
    monkeypatch.setattr(conditions, "WHEN_DEADLINE_SECONDS", math.inf)
    # Four nested maps over ten items: ~220,000 steps, a few seconds of the planning thread.
    ten = "[0,1,2,3,4,5,6,7,8,9]"
    costly = "1"
    for level in range(4):
        costly = f"{ten}.map(v{level}, {costly})"
    world = World(
        workflow(
            onFailure="continue",
            nodes=[
                {"name": "costly", "when": f"size({costly}) > 0"},
                {"name": "plain"},
            ],
        )
    )
    assert world.run() is RunPhase.FAILED
    assert world.node("costly").phase is NodePhase.FAILED
    assert world.node("costly").message == (
        "when: evaluation exceeded its cost budget of 50000 steps"
    )
    assert world.node("plain").phase is S


def test_a_pass_spends_a_bounded_amount_on_when_and_plans_the_rest_next_pass(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(conditions, "WHEN_DEADLINE_SECONDS", math.inf)
    monkeypatch.setattr(conditions, "WHEN_PASS_SECONDS", math.inf)
    # Each instance's condition costs ~22,000 steps, within its own budget; five of them
    # would hold the planning thread for five budgets. A pass stops evaluating once it has
    # spent one budget, and asks to be planned again at once, behind other runs' passes.
    ten = "[0,1,2,3,4,5,6,7,8,9]"
    costly = f"size({ten}.map(a, {ten}.map(b, {ten}.map(c, 1)))) > 0"
    world = World(
        workflow(nodes=[{"name": "fan", "forEach": ["1", "2", "3", "4", "5"], "when": costly}])
    )
    first = world.step()
    assert world.active_instances() == ["fan[1]", "fan[2]", "fan[3]"]
    assert world.node("fan[4]").phase is NodePhase.PENDING
    assert first.requeue_at == world.now
    second = world.step()
    assert world.active_instances() == [f"fan[{i}]" for i in range(1, 6)]
    assert second.requeue_at is None
    assert world.run() is RunPhase.SUCCEEDED
