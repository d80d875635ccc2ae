"""Rerun (SPEC §3): a finished run reruns what did not succeed."""

from __future__ import annotations

from kdag.api import NodePhase, RunPhase
from kdag.engine.model import Observed, RemoveAnnotations
from kdag.engine.planner import plan
from tests.unit.engine.sim import FAIL, Outcome, S, World, workflow


def test_rerun_resets_only_failed_and_skipped_nodes_and_keeps_outputs() -> None:
    world = World(
        workflow(
            onFailure="continue",
            nodes=[{"name": "good"}, {"name": "bad"}, {"name": "after", "dependsOn": ["bad"]}],
        )
    )
    assert (
        world.run(lambda i, a: Outcome(message='{"k": "v"}') if i == "good" else FAIL)
        is RunPhase.FAILED
    )
    world.annotations["kdag.dev/rerun"] = "1"
    assert world.run() is RunPhase.SUCCEEDED
    assert world.node("good").outputs == {"k": "v"}
    assert world.node("good").attempt == 1
    assert world.node("bad").attempt == 2  # a new Job name
    assert [c.name for c in world.created].count(world.job_name("good", 1)) == 1
    assert world.status is not None and world.status.reruns == 1


def test_rerun_of_a_rejected_gate_drops_the_reject_annotation() -> None:
    world = World(
        workflow(nodes=[{"name": "gate", "approval": {}}]),
        annotations={"reject.kdag.dev/gate": "no"},
    )
    assert world.run() is RunPhase.FAILED
    world.annotations["kdag.dev/rerun"] = "again"
    result = world.step()
    assert RemoveAnnotations(("reject.kdag.dev/gate",)) in result.actions
    assert world.node("gate").phase is NodePhase.WAITING_FOR_APPROVAL


def test_a_rerun_gate_waits_for_an_answer_given_after_the_rerun() -> None:
    world = World(
        workflow(nodes=[{"name": "gate", "approval": {}}]),
        annotations={"approve.kdag.dev/gate": "alice", "reject.kdag.dev/gate": "bob says no"},
    )
    assert world.run() is RunPhase.FAILED  # the reject wins
    world.annotations["kdag.dev/rerun"] = "again"
    result = world.step()
    removed = {k for a in result.actions if isinstance(a, RemoveAnnotations) for k in a.keys}
    assert removed == {"approve.kdag.dev/gate", "reject.kdag.dev/gate"}
    assert world.node("gate").phase is NodePhase.WAITING_FOR_APPROVAL
    world.step()
    assert world.node("gate").phase is NodePhase.WAITING_FOR_APPROVAL
    world.annotations["approve.kdag.dev/gate"] = "carol"
    world.step()
    assert world.node("gate").phase is S
    assert world.node("gate").approved_by == "carol"


def test_a_rerun_planned_again_before_its_answers_were_removed_asks_again_to_remove_them() -> None:
    world = World(
        workflow(nodes=[{"name": "gate", "approval": {}}]),
        annotations={"reject.kdag.dev/gate": "no"},
    )
    assert world.run() is RunPhase.FAILED
    world.annotations["kdag.dev/rerun"] = "again"
    before = world.status
    context = world.context()
    first = plan(context, before, Observed({}), world.now)
    # The shell failed to apply it: the same inputs plan the same rerun.
    second = plan(context, before, Observed({}), world.now)
    assert RemoveAnnotations(("reject.kdag.dev/gate",)) in first.actions
    assert RemoveAnnotations(("reject.kdag.dev/gate",)) in second.actions
    assert second.status.nodes is not None
    assert second.status.nodes["gate"].phase is NodePhase.WAITING_FOR_APPROVAL


def test_a_rerun_keeps_the_answer_of_a_gate_that_it_does_not_rerun() -> None:
    world = World(
        workflow(nodes=[{"name": "gate", "approval": {}}, {"name": "a", "dependsOn": ["gate"]}]),
        annotations={"approve.kdag.dev/gate": "alice"},
    )
    assert world.run(lambda i, a: FAIL) is RunPhase.FAILED
    world.annotations["kdag.dev/rerun"] = "again"
    result = world.step()
    assert not [a for a in result.actions if isinstance(a, RemoveAnnotations)]
    assert world.node("gate").approved_by == "alice"
    assert world.active_instances() == ["a"]


def test_rerun_is_acted_on_once_per_annotation_value() -> None:
    world = World(workflow(nodes=[{"name": "a"}]), annotations={"kdag.dev/rerun": "1"})
    assert world.run(lambda i, a: FAIL) is RunPhase.FAILED
    assert world.status is not None and world.status.rerun_token == "1"
    world.step()
    assert world.phase is RunPhase.FAILED  # same value: nothing happens
