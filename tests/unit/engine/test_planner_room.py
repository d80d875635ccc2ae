"""What a run does when the namespace or the run object runs out of room: a count/jobs.batch
ResourceQuota that refuses Jobs, finished Jobs deleted to free it (jobRetentionPolicy), and
the output budget that keeps the run object under the API server's limit."""

from __future__ import annotations

import json
from datetime import timedelta

from kdag.api import NodePhase, RunPhase, SkipReason
from kdag.engine import budget
from kdag.engine.model import DeleteJob, Observed
from kdag.engine.planner import JOB_REFUSED, OUTPUT_TOO_LARGE, recorded_jobs_to_delete
from kdag.engine.timeutil import parse_iso
from kdag.engine.validation import validate_workflow
from tests.unit.engine.sim import FAIL, OK, Outcome, World, workflow

FAN = [{"name": "fan", "forEach": ["a", "b", "c", "d"]}]
INSTANCES = ["fan[a]", "fan[b]", "fan[c]", "fan[d]"]


# ---------------------------------------------------------------- a full ResourceQuota


def test_a_job_the_quota_refuses_leaves_its_node_queued_with_the_message_and_others_run() -> None:
    world = World(workflow(nodes=FAN), job_quota=2)
    result = world.step()
    assert world.active_instances() == ["fan[a]", "fan[b]"]
    assert world.phase is RunPhase.RUNNING
    for key in ("fan[c]", "fan[d]"):
        node = world.node(key)
        assert node.phase is NodePhase.QUEUED
        assert node.reason == JOB_REFUSED
        assert "exceeded quota: jobs" in (node.message or "")
        assert node.attempt is None  # a refusal is not an attempt
        assert node.refusals == 1
        assert node.next_attempt_at == "2026-11-22T02:00:01Z"
    assert result.requeue_at == world.now + timedelta(seconds=1)
    assert [e.reason for e in result.events if e.type == "Warning"] == [JOB_REFUSED]


def test_a_refused_node_backs_off_and_is_not_tried_before_its_time() -> None:
    world = World(workflow(nodes=FAN), job_quota=2)
    world.step()
    world.refused.clear()
    world.advance(0.5)
    world.step()
    assert world.refused == []  # not due yet: no create was even tried
    world.advance(0.5)
    result = world.step()
    assert sorted(world.refused) == sorted(world.job_name(k, 1) for k in INSTANCES[2:])
    node = world.node("fan[c]")
    assert node.refusals == 2
    assert parse_iso(node.next_attempt_at or "") == world.now + timedelta(seconds=2)
    assert result.requeue_at == world.now + timedelta(seconds=2)


def test_refusals_back_off_up_to_thirty_seconds() -> None:
    world = World(workflow(nodes=FAN), job_quota=2)
    waits = []
    for _ in range(8):
        result = world.step()
        assert result.requeue_at is not None
        waits.append((result.requeue_at - world.now).total_seconds())
        world.now = result.requeue_at
    assert waits == [1, 2, 4, 8, 16, 30, 30, 30]
    assert world.node("fan[c]").refusals == 8


def test_a_refused_node_starts_as_attempt_one_once_there_is_room() -> None:
    world = World(workflow(nodes=FAN), job_quota=2)
    world.step()
    world.job_quota = None  # the quota was raised
    world.advance(1)
    world.step()
    assert world.active_instances() == INSTANCES
    for key in INSTANCES:
        node = world.node(key)
        assert (node.attempt, node.refusals, node.reason, node.message) == (1, None, None, None)


def test_while_a_create_is_refused_the_pass_creates_nothing_else() -> None:
    nodes = [{"name": "fan", "forEach": [str(i) for i in range(20)]}]
    world = World(workflow(nodes=nodes), job_quota=2)
    world.step()
    # The first plan tried them all; the plan that was recorded made nothing more.
    assert len(world.created) == 2
    assert sum(1 for n in (world.status.nodes or {}).values() if n.refusals) == 18  # type: ignore[union-attr]


def test_a_suspended_run_with_a_refused_node_does_not_spin() -> None:
    world = World(workflow(nodes=FAN), job_quota=2)
    world.step()
    world.suspend = True
    world.advance(5)  # past the refused nodes' time
    result = world.step()
    assert result.requeue_at is None  # woken by resume, not by a timer in the past


def test_a_refused_node_skipped_after_a_failure_forgets_its_refusal() -> None:
    world = World(workflow(nodes=FAN), job_quota=2)
    world.step()
    world.finish("fan[a]", FAIL)
    world.step()
    node = world.node("fan[c]")
    assert node.phase is NodePhase.SKIPPED
    assert (node.reason, node.refusals, node.next_attempt_at) == (None, None, None)


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


# ---------------------------------------------------------------- deleting finished Jobs


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


# ---------------------------------------------------------------- the output budget


def _message(size: int) -> str:
    return json.dumps({"blob": "x" * (size - len('{"blob": ""}'))})


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


# ---------------------------------------------------------------- validation


def test_validation_refuses_a_fan_out_whose_run_could_not_be_stored() -> None:
    spec = workflow(nodes=[{"name": "wide", "forEach": [str(i) for i in range(8000)]}])
    problems = validate_workflow(spec)
    assert [p.path for p in problems] == ["nodes[wide].forEach"]
    assert "more than the 1024 KiB a run object may take" in problems[0].message


def test_validation_counts_the_output_budget_against_the_run_object() -> None:
    spec = workflow(nodes=[{"name": "wide", "forEach": [str(i) for i in range(400)]}])
    assert validate_workflow(spec) == []
    problems = validate_workflow(spec, output_budget=1024 * 1024)
    assert [p.path for p in problems] == ["nodes[wide].forEach"]


def test_a_five_thousand_node_fan_out_with_the_default_budget_is_valid() -> None:
    # The benchmark's shape (SPEC §8): root -> forEach of 5,000 -> join.
    nodes = [
        {"name": "root"},
        {"name": "fan", "dependsOn": ["root"], "forEach": [str(i) for i in range(5000)]},
        {"name": "join", "dependsOn": ["fan"]},
    ]
    assert validate_workflow(workflow(nodes=nodes)) == []


def test_a_run_that_could_not_be_stored_ends_invalid_naming_the_field() -> None:
    spec = workflow(nodes=[{"name": "wide", "forEach": [str(i) for i in range(400)]}])
    world = World(spec, output_budget=1024 * 1024)
    world.step()
    assert world.phase is RunPhase.INVALID
    assert "nodes[wide].forEach" in (world.status.message or "")  # type: ignore[union-attr]
    assert world.created == []
