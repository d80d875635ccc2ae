"""Finally nodes (SPEC §3): they run last and see the ending phase."""

from __future__ import annotations

from kdag.api import NodePhase, RunPhase
from tests.unit.engine.sim import FAIL, OK, World, workflow


def test_finally_runs_after_everything_else_with_the_ending_phase() -> None:
    world = World(
        workflow(
            onFailure="continue",
            nodes=[{"name": "a"}],
            **{"finally": [{"name": "notify", "args": ["ended {{ run.phase }}"]}]},
        )
    )
    world.step()
    assert world.node("notify").phase is NodePhase.PENDING
    world.finish("a", FAIL)
    world.step()
    assert world.active_instances() == ["notify"]
    assert world.created[-1].manifest["spec"]["template"]["spec"]["containers"][0]["args"] == [
        "ended Failed"
    ]
    assert world.phase is RunPhase.RUNNING
    world.finish("notify")
    world.step()
    assert world.phase is RunPhase.FAILED


def test_failed_finally_node_does_not_change_the_run_phase_but_is_reported() -> None:
    world = World(workflow(nodes=[{"name": "a"}], **{"finally": [{"name": "cleanup"}]}))
    assert world.run(lambda i, a: FAIL if i == "cleanup" else OK) is RunPhase.SUCCEEDED
    assert "finally node(s) cleanup failed" in (world.status.message if world.status else "")
