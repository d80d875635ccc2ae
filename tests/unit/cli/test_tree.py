"""`kubectl kdag tree` rendering, from statuses the real planner produced."""

from __future__ import annotations

import re
from datetime import timedelta

from rich.console import Console

from kdag.cli.tree import progress_lines, render_run
from tests.unit.engine.sim import FAIL, OK, T0, World, workflow


def _text(world: World) -> str:
    assert world.status is not None
    raw = {
        "apiVersion": "kdag.dev/v1alpha1",
        "kind": "WorkflowRun",
        "metadata": {"name": "etl-x7k2"},
        "spec": {"workflowRef": {"name": "etl"}},
        "status": world.status.to_wire(),
    }
    console = Console(width=120, record=True, color_system=None)
    console.print(render_run(raw, T0 + timedelta(seconds=90)))
    return console.export_text()


def test_tree_lists_nodes_in_dependency_order_indented_by_depth() -> None:
    world = World(
        workflow(
            onFailure="continue",
            nodes=[
                {"name": "extract"},
                {"name": "transform", "dependsOn": ["extract"], "forEach": ["eu", "us"]},
                {"name": "load", "dependsOn": ["transform"]},
            ],
            **{"finally": [{"name": "notify"}]},
        )
    )
    world.run(lambda i, a: FAIL if i == "transform[us]" else OK)
    lines = _text(world).splitlines()
    assert "etl-x7k2  Failed  5/5" in lines[0]
    rows = [line.split() for line in lines if line.strip()]
    names = [r[0] if r[0] != "finally" else r[1] for r in rows[2:] if r]
    assert names[:5] == ["extract", "transform[eu]", "transform[us]", "load", "notify"]
    text = "\n".join(lines)
    assert re.search(r"^  transform\[us\] +Failed +1 ", text, re.MULTILINE)
    assert "upstream node transform[us] failed" in text


def test_tree_of_a_run_that_has_not_started_is_empty_but_says_so() -> None:
    raw = {
        "apiVersion": "kdag.dev/v1alpha1",
        "kind": "WorkflowRun",
        "metadata": {"name": "r"},
        "spec": {"workflowRef": {"name": "etl"}},
    }
    console = Console(width=80, record=True, color_system=None)
    console.print(render_run(raw, T0))
    assert "Pending" in console.export_text()


def _raw(world: World) -> dict[str, object]:
    assert world.status is not None
    return {"metadata": {"name": "r1"}, "status": world.status.to_wire()}


def test_progress_lines_say_what_changed_between_two_versions_of_a_run() -> None:
    world = World(workflow(nodes=[{"name": "a"}, {"name": "b", "dependsOn": ["a"]}]))
    world.step()
    first = _raw(world)
    assert progress_lines(None, first) == [
        "  a: - -> Running",
        "  b: - -> Pending",
        "run Running 0/2: 1 running",
    ]
    world.finish("a")
    world.step()
    assert progress_lines(first, _raw(world)) == [
        "  a: Running -> Succeeded",
        "  b: Pending -> Running",
        "run Running 1/2: 1 running",
    ]
    assert progress_lines(first, first) == []


def test_wide_tree_adds_each_node_s_job_and_exit_code() -> None:
    world = World(workflow(nodes=[{"name": "a"}, {"name": "t", "forEach": ["eu"]}]))
    world.run(lambda i, a: FAIL if i == "a" else OK)
    raw = {
        "metadata": {"name": world.name, "uid": world.context().uid},
        "spec": {"workflowRef": {"name": "etl"}},
        "status": world.status.to_wire() if world.status else None,
    }
    console = Console(width=200, record=True, color_system=None)
    console.print(render_run(raw, T0 + timedelta(seconds=90), wide=True))
    lines = console.export_text().splitlines()
    assert lines[1].split() == ["NODE", "PHASE", "ATTEMPTS", "DURATION", "JOB", "EXIT", "MESSAGE"]
    row = {line.split()[0]: line.split() for line in lines[2:] if line.strip()}
    assert row["a"][4:6] == [world.job_name("a"), "1"]
    # A fan-out instance keeps its Job (and exit code) out of status: the Job is still shown.
    assert row["t[eu]"][4:] == [world.job_name("t[eu]")]
