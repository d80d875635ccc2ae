"""Fan-out (SPEC §3): instances per item, fan-in, and run-time lists."""

from __future__ import annotations

import json

from kdag.api import NodePhase, RunPhase, SkipReason
from kdag.engine import budget
from tests.unit.engine.sim import Outcome, S, World, workflow


def test_fan_out_creates_one_instance_per_item() -> None:
    world = World(
        workflow(
            nodes=[{"name": "t", "forEach": ["eu", "us", "ap"], "args": ["--region", "{{ item }}"]}]
        )
    )
    world.step()
    assert world.active_instances() == ["t[ap]", "t[eu]", "t[us]"]
    args = {
        c.instance: c.manifest["spec"]["template"]["spec"]["containers"][0]["args"]
        for c in world.created
    }
    assert args["t[us]"] == ["--region", "us"]


def test_fan_in_waits_for_every_instance_and_sees_outputs_as_a_list() -> None:
    world = World(
        workflow(
            nodes=[
                {"name": "t", "forEach": ["a", "b"]},
                {"name": "sum", "dependsOn": ["t"], "args": ["{{ nodes.t.outputs.n }}"]},
            ]
        )
    )
    world.step()
    world.finish("t[a]", Outcome(message='{"n": "1"}'))
    world.step()
    assert world.node("sum").phase is NodePhase.PENDING
    world.finish("t[b]", Outcome(message='{"n": "2"}'))
    world.step()
    sum_job = world.created[-1]
    assert sum_job.manifest["spec"]["template"]["spec"]["containers"][0]["args"] == ['["1","2"]']


def test_fan_out_over_an_upstream_output_known_only_at_run_time() -> None:
    world = World(
        workflow(
            nodes=[
                {"name": "list"},
                {
                    "name": "each",
                    "dependsOn": ["list"],
                    "forEachFrom": "{{ nodes.list.outputs.regions }}",
                    "args": ["{{ item }}"],
                },
                {"name": "after", "dependsOn": ["each"]},
            ]
        )
    )
    world.step()
    assert "each" in world.phases()
    world.finish("list", Outcome(message=json.dumps({"regions": json.dumps(["x", "y"])})))
    world.step()
    assert world.active_instances() == ["each[x]", "each[y]"]
    assert "each" not in world.phases()
    assert world.run() is RunPhase.SUCCEEDED
    assert world.node("after").phase is S


def test_fan_out_over_an_empty_list_skips_without_blocking_dependents() -> None:
    world = World(
        workflow(nodes=[{"name": "each", "forEach": []}, {"name": "after", "dependsOn": ["each"]}])
    )
    assert world.run() is RunPhase.SUCCEEDED
    assert world.node("each").skip_reason is SkipReason.NO_ITEMS
    assert world.node("after").phase is S


def test_fan_out_from_something_that_is_not_a_list_fails_the_node() -> None:
    world = World(
        workflow(
            onFailure="continue",
            nodes=[
                {"name": "list"},
                {
                    "name": "each",
                    "dependsOn": ["list"],
                    "forEachFrom": "{{ nodes.list.outputs.x }}",
                },
            ],
        )
    )
    assert world.run(lambda i, a: Outcome(message='{"x": "nope"}')) is RunPhase.FAILED
    assert "not a JSON array" in (world.node("each").message or "")


def test_fan_out_beyond_the_node_maximum_fails_the_node() -> None:
    world = World(
        workflow(
            nodes=[
                {"name": "list"},
                {
                    "name": "each",
                    "dependsOn": ["list"],
                    "forEachFrom": "{{ nodes.list.outputs.x }}",
                },
            ]
        ),
        max_nodes=5,
    )
    items = json.dumps([str(i) for i in range(10)])
    assert world.run(lambda i, a: Outcome(message=json.dumps({"x": items}))) is RunPhase.FAILED
    assert "exceed the maximum of 5" in (world.node("each").message or "")


def test_fan_out_items_that_are_not_name_safe_are_keyed_by_index() -> None:
    world = World(workflow(nodes=[{"name": "t", "forEach": ["a b", "c/d"]}]))
    world.step()
    assert sorted(world.phases()) == ["t[0]", "t[1]"]
    assert world.node("t[1]").item == "c/d"


def test_a_dynamic_fan_out_that_could_not_fit_the_run_object_fails_its_node() -> None:
    items = json.dumps([str(i) for i in range(7000)])
    nodes = [
        {"name": "list"},
        {"name": "fan", "dependsOn": ["list"], "forEachFrom": "{{ nodes.list.outputs.items }}"},
    ]
    world = World(workflow(nodes=nodes))
    world.step()
    world.finish("list", Outcome(message=json.dumps({"items": items})))
    world.output_budget = budget.MAX_RUN_OBJECT_BYTES  # room for the message, none for nodes
    world.step()
    node = world.node("fan")
    assert node.phase is NodePhase.FAILED
    assert "KiB it may take" in (node.message or "")
