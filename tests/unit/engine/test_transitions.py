"""The planner reports the phase changes it made; the shell counts and logs only those."""

from __future__ import annotations

from kdag.api import NodePhase, RunPhase
from kdag.engine.transitions import NodeTransition, transitions_between
from tests.unit.engine.sim import FAIL, OK, World, chain, workflow


def test_the_first_pass_reports_the_run_started_and_every_node_created() -> None:
    world = World(workflow(nodes=chain("a", "b")))
    changes = world.step().transitions
    assert changes is not None
    assert changes.started
    assert changes.phase is RunPhase.RUNNING and changes.phase_changed
    assert {(n.name, n.phase) for n in changes.nodes} == {
        ("a", NodePhase.RUNNING),
        ("b", NodePhase.PENDING),
    }
    assert not changes.finished


def test_a_pass_that_changes_nothing_reports_no_transition() -> None:
    world = World(workflow(nodes=chain("a", "b")))
    world.step()
    changes = world.step().transitions
    assert changes is not None
    assert not changes.started and not changes.phase_changed and changes.nodes == ()
    assert changes.phase is RunPhase.RUNNING  # the current phase, for the gauges


def test_a_finished_node_reports_how_long_it_ran() -> None:
    world = World(workflow(nodes=chain("a", "b")))
    world.step()
    world.advance(7)
    world.finish("a", OK)
    changes = world.step().transitions
    assert changes is not None
    assert NodeTransition("a", NodePhase.SUCCEEDED, None, 7.0) in changes.nodes
    assert ("b", NodePhase.RUNNING) in {(n.name, n.phase) for n in changes.nodes}


def test_the_pass_that_ends_the_run_reports_it_finished_once() -> None:
    world = World(workflow(nodes=[{"name": "a"}]))
    world.step()
    world.advance(3)
    world.finish("a", FAIL)
    changes = world.step().transitions
    assert changes is not None
    assert changes.finished and changes.phase is RunPhase.FAILED
    assert changes.seconds == 3.0
    again = world.step().transitions
    assert again is not None and not again.finished and again.nodes == ()


def test_a_retried_attempt_is_reported_as_retrying() -> None:
    world = World(workflow(nodes=[{"name": "a", "retry": {"limit": 1, "backoffSeconds": 5}}]))
    world.step()
    world.finish("a", FAIL)
    changes = world.step().transitions
    assert changes is not None
    assert [(n.name, n.phase) for n in changes.nodes] == [("a", NodePhase.RETRYING)]


def test_open_gates_are_counted_after_the_pass() -> None:
    world = World(workflow(nodes=[{"name": "gate", "approval": {}}, {"name": "b"}]))
    changes = world.step().transitions
    assert changes is not None and changes.waiting_for_approval == 1


def test_transitions_between_equal_statuses_are_empty() -> None:
    world = World(workflow(nodes=chain("a")))
    status = world.step().status
    changes = transitions_between(status, status)
    assert changes.nodes == () and not changes.phase_changed and not changes.started
