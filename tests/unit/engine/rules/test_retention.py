"""jobRetentionPolicy: finished Jobs deleted once their result is recorded."""

from __future__ import annotations

from kdag.api import NodePhase, RunPhase
from kdag.engine.model import DeleteJob, Observed
from kdag.engine.planner import recorded_jobs_to_delete
from tests.unit.engine.sim import FAIL, FAN, INSTANCES, OK, Outcome, World, workflow


def test_without_job_cleanup_a_quota_bound_fan_out_waits_queued_for_room() -> None:
    world = World(workflow(nodes=FAN), job_quota=2)
    world.step()
    world.finish("fan[a]")
    world.finish("fan[b]")
    for _ in range(5):
        result = world.step()
        assert result.requeue_at is not None
        world.now = result.requeue_at
    assert world.phase is RunPhase.RUNNING
    assert world.node("fan[c]").phase is NodePhase.QUEUED
    assert world.deleted == []


def test_with_job_cleanup_a_quota_bound_fan_out_completes_each_node_once() -> None:
    world = World(workflow(nodes=FAN), job_quota=2, job_retention_policy="DeleteSucceeded")
    assert world.run() is RunPhase.SUCCEEDED
    assert sorted(c.instance for c in world.created) == INSTANCES
    assert {world.node(k).attempt for k in INSTANCES} == {1}
    assert world.max_running_seen <= 2


def test_the_workflow_field_overrides_the_operators_retention_default() -> None:
    spec = workflow(nodes=FAN, jobRetentionPolicy="Delete")
    world = World(spec, job_quota=2, job_retention_policy="Retain")
    assert world.run() is RunPhase.SUCCEEDED


def test_a_finished_job_is_deleted_only_once_its_result_is_recorded() -> None:
    spec = workflow(nodes=[{"name": "a"}, {"name": "b", "dependsOn": ["a"]}])
    world = World(spec, job_retention_policy="Delete")
    world.step()
    world.finish("a", Outcome(message='{"rows": "12"}'))
    result = world.step()
    # This pass records a's outputs; the Job goes in the next one, after that is stored.
    assert result.jobs_to_delete == []
    assert world.node("a").outputs == {"rows": "12"}
    assert result.requeue_at == world.now
    result = world.step()
    assert result.jobs_to_delete == [
        DeleteJob(world.job_name("a", 1), "its result is recorded (jobRetentionPolicy Delete)")
    ]
    world.step()
    world.step()
    node = world.node("a")
    assert node.phase is NodePhase.SUCCEEDED  # not taken for a Job deleted by hand
    assert node.outputs == {"rows": "12"}
    assert world.deleted == [world.job_name("a", 1)]


def test_delete_succeeded_keeps_failed_jobs_for_their_logs() -> None:
    spec = workflow(nodes=[{"name": "ok"}, {"name": "bad"}], onFailure="continue")
    world = World(spec, job_retention_policy="DeleteSucceeded")
    phase = world.run(lambda instance, attempt: FAIL if instance == "bad" else OK)
    assert phase is RunPhase.FAILED
    # A finished run is no longer planned: the operator deletes what its last pass recorded.
    assert world.status is not None
    deletes = recorded_jobs_to_delete(world.status, Observed(world.jobs), "DeleteSucceeded")
    assert [d.name for d in deletes] == [world.job_name("ok", 1)]


def test_delete_removes_a_failed_attempt_once_its_retry_is_recorded() -> None:
    spec = workflow(nodes=[{"name": "a", "retry": {"limit": 1, "backoffSeconds": 5}}])
    world = World(spec, job_retention_policy="Delete")
    world.step()
    world.finish("a", FAIL)
    world.step()
    assert world.node("a").phase is NodePhase.RETRYING
    result = world.step()
    assert [d.name for d in result.jobs_to_delete] == [world.job_name("a", 1)]
    assert world.node("a").phase is NodePhase.RETRYING


def test_retain_deletes_nothing() -> None:
    world = World(workflow(nodes=FAN))
    assert world.run() is RunPhase.SUCCEEDED
    world.step()
    assert world.deleted == []


def test_the_last_pass_of_a_run_asks_to_be_called_again_to_clean_up() -> None:
    world = World(workflow(nodes=[{"name": "a"}]), job_retention_policy="Delete")
    world.step()
    world.finish("a")
    result = world.step()
    assert world.phase is RunPhase.SUCCEEDED
    assert result.requeue_at == world.now
