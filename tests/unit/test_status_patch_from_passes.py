"""The status patch a pass writes is made from what it changed (the node entries and the
workflow snapshot it shares with the stored status are not serialised again); over random
runs it must be exactly the whole diff."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kdag.api import NodePhase, NodeStatus, WorkflowRunStatus
from kdag.engine.model import PlanResult
from kdag.operator.status_patch import merge_patch, status_patch
from tests.unit.engine.sim import Outcome, World, workflow
from tests.unit.engine.test_planner_properties import outcomes, random_workflows


class _PatchCheckingWorld(World):
    """A simulated run whose every plan is also written as the operator writes it: the patch
    made from what the pass changed must be the whole diff."""

    patches: int = 0

    def _plan(self, refused: dict[str, str]) -> PlanResult:
        stored = self.status.to_wire() if self.status is not None else {}
        result = super()._plan(refused)
        whole = merge_patch(stored, result.status.to_wire())
        assert status_patch(stored, self.status, result.status) == whole
        self.patches += bool(whole)
        return result


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=random_workflows(), data=st.data())
def test_a_patch_made_from_what_a_pass_changed_is_the_whole_diff(
    case: dict[str, Any], data: st.DataObject
) -> None:
    world = _PatchCheckingWorld(workflow(**case["spec"]), annotations=dict(case["annotations"]))
    drawn: dict[tuple[str, int], Outcome] = {}

    def outcome(instance: str, attempt: int) -> Outcome:
        if (instance, attempt) not in drawn:
            drawn[(instance, attempt)] = data.draw(outcomes, label=f"{instance}#{attempt}")
        return drawn[(instance, attempt)]

    world.run(outcome)
    assert world.patches > 0
    # A rerun resets nodes (new entries) and keeps the snapshot.
    world.annotations["kdag.dev/rerun"] = "again"
    world.run(outcome)


def test_a_node_removed_from_the_status_is_deleted_by_the_patch() -> None:
    old = WorkflowRunStatus.model_validate(
        {"phase": "Running", "nodes": {"fan": {"phase": "Pending"}, "b": {"phase": "Pending"}}}
    )
    new = old.model_copy()
    assert old.nodes is not None
    new.nodes = {"b": old.nodes["b"], "fan[x]": NodeStatus(phase=NodePhase.QUEUED, index=0)}
    patch = status_patch(old.to_wire(), old, new)
    assert patch == {"nodes": {"fan": None, "fan[x]": {"phase": "Queued", "index": 0}}}


def test_a_shared_node_the_stored_status_lacks_is_written() -> None:
    old = WorkflowRunStatus.model_validate(
        {"phase": "Running", "nodes": {"a": {"phase": "Pending"}}}
    )
    patch = status_patch({"phase": "Running", "nodes": {}}, old, old.model_copy())
    assert patch == {"nodes": {"a": {"phase": "Pending"}}}
