"""Timeouts (SPEC §3): a node's (its Job's deadline) and the run's."""

from __future__ import annotations

from kdag.api import NodePhase, RunPhase
from kdag.engine.model import DeleteJob
from tests.unit.engine.sim import OK, TIMEOUT, World, chain, workflow


def test_node_timeout_marks_node_timed_out_and_is_retried() -> None:
    world = World(
        workflow(
            nodes=[{"name": "a", "timeoutSeconds": 5, "retry": {"limit": 1, "backoffSeconds": 0}}]
        )
    )
    assert world.run(lambda i, a: TIMEOUT if a == 1 else OK) is RunPhase.SUCCEEDED
    assert world.created[0].manifest["spec"]["activeDeadlineSeconds"] == 5
    assert world.node("a").attempt == 2


def test_node_timeout_without_retries_ends_timed_out_and_fails_the_run() -> None:
    world = World(workflow(nodes=[{"name": "a", "timeoutSeconds": 5}]))
    assert world.run(lambda i, a: TIMEOUT) is RunPhase.FAILED
    assert world.node("a").phase is NodePhase.TIMED_OUT


def test_run_timeout_deletes_running_jobs_and_ends_timed_out() -> None:
    world = World(workflow(timeoutSeconds=60, nodes=chain("a", "b")))
    result = world.step()
    assert result.requeue_at is not None
    world.now = result.requeue_at
    result = world.step()
    assert [a.name for a in result.actions if isinstance(a, DeleteJob)] == [world.job_name("a", 1)]
    assert world.phase is RunPhase.TIMED_OUT
    assert world.node("a").phase is NodePhase.TIMED_OUT
    assert world.node("b").phase is NodePhase.CANCELLED
