"""Outputs (SPEC §3): termination messages, templates, and the run's output budget."""

from __future__ import annotations

import json

from kdag.api import NodePhase, RunPhase, SkipReason
from kdag.engine.planner import OUTPUT_TOO_LARGE
from tests.unit.engine.sim import FAN, INSTANCES, Outcome, World, workflow


def _message(size: int) -> str:
    return json.dumps({"blob": "x" * (size - len('{"blob": ""}'))})


def test_outputs_are_read_from_the_termination_message() -> None:
    world = World(workflow(nodes=[{"name": "a"}]))
    world.run(lambda i, a: Outcome(message='{"rows": "120", "n": 3}'))
    assert world.node("a").outputs == {"rows": "120", "n": "3"}


def test_a_termination_message_that_is_not_json_gives_no_outputs_and_says_why() -> None:
    world = World(workflow(nodes=[{"name": "a"}]))
    world.run(lambda i, a: Outcome(message="hello"))
    assert world.node("a").outputs is None
    assert "not JSON" in (world.node("a").message or "")


def test_templates_substitute_params_outputs_and_run_name() -> None:
    world = World(
        workflow(
            params=[{"name": "day"}],
            nodes=[
                {"name": "a"},
                {
                    "name": "b",
                    "dependsOn": ["a"],
                    "command": ["echo", "{{ params.day }}"],
                    "args": ["{{ nodes.a.outputs.rows }}", "{{ run.name }}"],
                    "env": [{"name": "DAY", "value": "day={{ params.day }}"}],
                },
            ],
        ),
        params={"day": "2026-11-22"},
    )
    world.run(lambda i, a: Outcome(message='{"rows": "7"}'))
    container = world.created[-1].manifest["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["echo", "2026-11-22"]
    assert container["args"] == ["7", "run1"]
    assert container["env"] == [{"name": "DAY", "value": "day=2026-11-22"}]


def test_reference_to_a_missing_output_fails_the_node_naming_it() -> None:
    world = World(
        workflow(
            nodes=[
                {"name": "a"},
                {"name": "b", "dependsOn": ["a"], "args": ["{{ nodes.a.outputs.x }}"]},
            ]
        )
    )
    assert world.run() is RunPhase.FAILED
    assert world.node("b").message == "template: node 'a' has no output 'x'"


def test_a_node_whose_outputs_exceed_the_run_budget_fails_with_output_too_large() -> None:
    nodes = [{"name": "fan", "forEach": ["a", "b", "c"]}, {"name": "after", "dependsOn": ["fan"]}]
    world = World(workflow(nodes=nodes, onFailure="continue"), output_budget=9000)
    world.step()
    for key in ("fan[a]", "fan[b]", "fan[c]"):
        world.finish(key, Outcome(message=_message(4000)))
    world.step()
    kept = [k for k in ("fan[a]", "fan[b]", "fan[c]") if world.node(k).outputs]
    assert kept == ["fan[a]", "fan[b]"]
    node = world.node("fan[c]")
    assert node.phase is NodePhase.FAILED
    assert node.reason == OUTPUT_TOO_LARGE
    assert node.outputs is None
    assert "over its budget of 9000 bytes" in (node.message or "")
    assert world.node("after").skip_reason is SkipReason.UPSTREAM
    assert world.run() is RunPhase.FAILED


def test_an_output_too_large_is_not_retried() -> None:
    spec = workflow(nodes=[{"name": "a", "retry": {"limit": 3}}])
    world = World(spec, output_budget=100)
    world.step()
    world.finish("a", Outcome(message=_message(200)))
    world.step()
    assert world.node("a").phase is NodePhase.FAILED
    assert len(world.created) == 1


def test_outputs_within_the_budget_are_kept() -> None:
    world = World(workflow(nodes=FAN), output_budget=4 * 64)
    assert world.run(lambda i, a: Outcome(message='{"k": "v"}')) is RunPhase.SUCCEEDED
    assert {world.node(k).outputs["k"] for k in INSTANCES} == {"v"}  # type: ignore[index]
