"""The planner's pass as a whole: the workflow snapshot, invalid input, and the run's status.

Each rule's own tests are in tests/unit/engine/rules/, one file per rule module."""

from __future__ import annotations

import gc
import weakref
from datetime import timedelta
from typing import Any

import pytest

from kdag.api import NodePhase, NodeStatus, RunPhase, WorkflowRunStatus
from kdag.engine.model import CreateJob, EmitEvent, Observed
from kdag.engine.planner import plan
from kdag.engine.timeutil import to_iso
from tests.unit.engine.sim import T0, World, chain, workflow


def test_first_plan_snapshots_workflow_and_params() -> None:
    world = World(
        workflow(params=[{"name": "day", "default": "mon"}], nodes=[{"name": "a"}]),
        params={},
    )
    world.step()
    assert world.status is not None
    assert world.status.params == {"day": "mon"}
    assert world.status.workflow == world.spec
    assert world.status.started_at == "2026-11-22T02:00:00Z"


def test_run_uses_its_snapshot_when_the_workflow_changes() -> None:
    world = World(workflow(nodes=chain("a", "b")))
    world.step()
    world.spec = workflow(nodes=chain("x", "y", "z"))
    assert world.run() is RunPhase.SUCCEEDED
    assert sorted(world.phases()) == ["a", "b"]


@pytest.mark.parametrize(
    ("spec", "params", "expected"),
    [
        (
            {"nodes": [{"name": "a", "dependsOn": ["b"]}, {"name": "b", "dependsOn": ["a"]}]},
            None,
            "dependency cycle: a -> b -> a",
        ),
        (
            {"nodes": [{"name": "a", "dependsOn": ["ghost"]}]},
            None,
            "nodes[a].dependsOn[0]: unknown node 'ghost'",
        ),
        ({"nodes": [{"name": "a", "args": ["{{ params.nope }}"]}]}, None, "nodes[a].args[0]"),
        ({"nodes": [{"name": "a", "when": "1 +"}]}, None, "nodes[a].when: invalid CEL"),
        (
            {"params": [{"name": "day"}], "nodes": [{"name": "a"}]},
            None,
            "spec.params.day: required param",
        ),
        ({"nodes": [{"name": "a"}]}, {"extra": "1"}, "spec.params.extra"),
        (
            {"nodes": [{"name": "a", "resources": {"requests": {"cpu": "lots"}}}]},
            None,
            "nodes[a].resources.requests.cpu",
        ),
    ],
)
def test_invalid_workflow_ends_the_run_invalid_naming_node_and_field(
    spec: dict[str, object], params: dict[str, str] | None, expected: str
) -> None:
    world = World(workflow(**spec), params=params)
    world.step()
    assert world.phase is RunPhase.INVALID
    assert world.status is not None
    assert expected in (world.status.message or "")
    assert world.created == []
    conditions = {c.type: (c.status, c.reason) for c in world.status.conditions or []}
    assert conditions["Succeeded"] == ("False", "Invalid")
    world.step()  # planning an invalid run again is a no-op
    assert world.last is not None and world.last.actions == []


def test_a_huge_timeout_that_slipped_past_validation_makes_the_run_invalid() -> None:
    # Unvalidated (model_copy): the planner must not add it to a timestamp and overflow.
    spec = workflow(nodes=[{"name": "a"}]).model_copy(update={"timeout_seconds": 10**12})
    world = World(spec)
    world.step()
    assert world.phase is RunPhase.INVALID
    assert world.status is not None
    assert "timeoutSeconds: 1000000000000 is more than the maximum" in (world.status.message or "")


def test_more_nodes_than_the_maximum_is_invalid() -> None:
    world = World(
        workflow(nodes=[{"name": "a", "forEach": [str(i) for i in range(11)]}]), max_nodes=10
    )
    world.step()
    assert world.phase is RunPhase.INVALID
    assert "more than the maximum of 10" in (world.status.message if world.status else "")


def test_progress_counts_terminal_nodes_after_fan_out() -> None:
    world = World(
        workflow(
            nodes=[{"name": "t", "forEach": ["a", "b", "c"]}, {"name": "z", "dependsOn": ["t"]}]
        )
    )
    world.step()
    assert world.status is not None and world.status.progress == "0/4"
    world.finish("t[a]")
    world.step()
    assert world.status.progress == "1/4"


def test_succeeded_condition_tracks_the_phase() -> None:
    world = World(workflow(nodes=[{"name": "a"}]))
    world.step()
    assert world.status is not None
    cond = {c.type: c for c in world.status.conditions or []}["Succeeded"]
    assert (cond.status, cond.reason) == ("Unknown", "Running")
    world.run()
    cond = {c.type: c for c in world.status.conditions or []}["Succeeded"]
    assert (cond.status, cond.reason) == ("True", "Succeeded")


def test_finished_run_records_duration() -> None:
    world = World(workflow(nodes=[{"name": "a"}]))
    world.step()
    world.advance(75)
    world.finish("a")
    world.step()
    assert world.status is not None
    assert world.status.duration == "1m15s"
    assert world.status.finished_at == "2026-11-22T02:01:15Z"


def _waiting_run(
    nodes: dict[str, tuple[dict[str, Any], NodeStatus]], timeout: int | None
) -> tuple[World, WorkflowRunStatus]:
    """A running run, started 4 s before T0, whose nodes are in the given states."""
    spec = workflow(
        nodes=[{"name": name, **node} for name, (node, _) in nodes.items()],
        **({"timeoutSeconds": timeout} if timeout else {}),
    )
    status = WorkflowRunStatus(
        phase=RunPhase.RUNNING,
        workflow=spec,
        started_at=to_iso(T0 - timedelta(seconds=4)),
        nodes={name: ns for name, (_, ns) in nodes.items()},
    )
    return World(spec), status


_RETRYING = (
    {"retry": {"limit": 3}},
    NodeStatus(
        phase=NodePhase.RETRYING,
        attempt=1,
        retries=1,
        next_attempt_at=to_iso(T0 + timedelta(seconds=30)),
    ),
)
_GATE = (
    {"approval": {"timeoutSeconds": 20}},
    NodeStatus(phase=NodePhase.WAITING_FOR_APPROVAL, started_at=to_iso(T0 - timedelta(seconds=5))),
)
_REFUSED = (
    {},
    NodeStatus(
        phase=NodePhase.QUEUED, refusals=2, next_attempt_at=to_iso(T0 + timedelta(seconds=3))
    ),
)


@pytest.mark.parametrize(
    ("nodes", "timeout", "due_in"),
    [
        ({"r": _RETRYING}, None, 30),
        ({"g": _GATE}, None, 15),
        ({"r": _RETRYING, "g": _GATE}, None, 15),
        ({"r": _RETRYING, "g": _GATE}, 10, 6),
        ({"r": _RETRYING, "q": _REFUSED}, None, 3),
        ({"r": _RETRYING, "q": _REFUSED, "g": _GATE}, 10, 3),
        ({"g": _GATE}, 60, 15),
    ],
)
def test_the_run_is_planned_again_at_the_earliest_due_time_of_its_rules(
    nodes: dict[str, tuple[dict[str, Any], NodeStatus]], timeout: int | None, due_in: int
) -> None:
    world, status = _waiting_run(nodes, timeout)
    result = plan(world.context(), status, Observed({}), T0)
    assert result.requeue_at == T0 + timedelta(seconds=due_in)
    assert not [a for a in result.actions if not isinstance(a, EmitEvent)]  # nothing is due


def test_a_pass_is_freed_with_its_result_not_left_to_the_garbage_collector() -> None:
    """A pass that referred to itself (through the node views its templates read) stayed in
    memory with its Job manifests until a full garbage collection: for a 5,000-wide
    fan-out's first pass, some 17 MiB (docs/benchmarks.md)."""
    world = World(workflow(nodes=chain("a", "b")))
    gc.collect()
    gc.disable()
    try:
        result = plan(world.context(), None, Observed({}), world.now)
        create = next(a for a in result.actions if isinstance(a, CreateJob))
        freed = weakref.ref(create)
        del result, create
        assert freed() is None
    finally:
        gc.enable()
