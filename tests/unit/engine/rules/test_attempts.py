"""Attempts: starting and following a node's Jobs, parallelism, and Jobs the
API server refuses for now (a full count/jobs.batch ResourceQuota)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from kdag.api import NodePhase, RunPhase
from kdag.engine.model import PODS_REFUSED_REASON, JobObservation, JobState
from kdag.engine.planner import JOB_REFUSED
from kdag.engine.rules.attempts import decided, job_change_matters
from kdag.engine.timeutil import parse_iso
from tests.unit.engine.sim import FAIL, FAN, INSTANCES, Outcome, S, World, workflow


def test_exit_code_and_message_of_a_failed_node_are_recorded() -> None:
    world = World(workflow(nodes=[{"name": "a"}]))
    world.run(lambda i, a: Outcome(exit_code=3, message="disk full"))
    node = world.node("a")
    assert node.phase is NodePhase.FAILED
    assert node.exit_code == 3
    assert node.message == "exit code 3: disk full"


def test_deleted_job_fails_the_attempt_with_a_clear_message() -> None:
    world = World(workflow(nodes=[{"name": "a"}]))
    world.step()
    world.jobs.clear()
    world.step()
    assert world.node("a").phase is NodePhase.FAILED
    assert world.node("a").message == f"Job {world.job_name('a')} was deleted before it finished"


def test_running_instances_whose_jobs_an_older_operator_named_are_still_followed() -> None:
    world = World(
        workflow(
            nodes=[{"name": "t", "forEach": ["eu", "us"]}, {"name": "after", "dependsOn": ["t"]}]
        )
    )
    world.step()
    # An upgrade: the Jobs were made under the names the previous version gave them.
    world.jobs = {
        f"run1-t-{j.instance[2:4]}-1": replace(j, name=f"run1-t-{j.instance[2:4]}-1")
        for j in world.jobs.values()
    }
    world.step()
    assert world.phases() == {
        "t[eu]": NodePhase.RUNNING,
        "t[us]": NodePhase.RUNNING,
        "after": NodePhase.PENDING,
    }
    world.finish("t[eu]")
    world.finish("t[us]")
    world.step()
    assert world.node("t[eu]").phase is S
    assert world.active_instances() == ["after"]


def test_an_attempt_whose_pods_were_refused_fails_with_the_refusal_and_its_job_is_deleted() -> None:
    world = World(workflow(nodes=[{"name": "a", "retry": {"limit": 1, "backoffSeconds": 5}}]))
    world.step()
    refusal = 'Error creating: pods "run1-a-1-x" is forbidden: violates PodSecurity "restricted"'
    world.jobs[world.job_name("a", 1)] = replace(
        world.jobs[world.job_name("a", 1)],
        state=JobState.FAILED,
        reason=PODS_REFUSED_REASON,
        message=refusal,
    )
    world.step()
    assert world.node("a").phase is NodePhase.RETRYING
    assert f"the Job's pod could not be created: {refusal}" in (world.node("a").message or "")
    # Still active in the cluster: the Job controller would keep trying to make its pod.
    assert world.deleted == [world.job_name("a", 1)]
    world.advance(5)
    world.step()
    assert [c.name for c in world.created] == [world.job_name("a", 1), world.job_name("a", 2)]


def test_parallelism_queues_ready_nodes_in_declaration_order() -> None:
    world = World(workflow(parallelism=2, nodes=[{"name": n} for n in "abcde"]))
    world.step()
    assert world.active_instances() == ["a", "b"]
    assert world.node("c").phase is NodePhase.QUEUED
    world.finish("b")
    world.step()
    assert world.active_instances() == ["a", "c"]
    world.run()
    assert world.max_running_seen == 2


def test_restarted_planner_adopts_an_existing_job_instead_of_creating_another() -> None:
    world = World(workflow(nodes=[{"name": "a"}]))
    first = world.step()
    # The operator created the Job but crashed before saving the status.
    world.status = None
    world.step()
    assert world.last is not None and world.last.jobs_to_create == []
    assert len(first.jobs_to_create) == 1
    assert world.node("a").job == world.job_name("a", 1)


def test_a_pass_that_fails_a_node_at_start_keeps_the_jobs_it_just_asked_for() -> None:
    world = World(
        workflow(
            onFailure="continue",
            nodes=[
                {"name": "a"},
                {"name": "b", "dependsOn": ["a"], "args": ["{{ nodes.a.outputs.x }}"]},
                {"name": "c", "dependsOn": ["a"]},
            ],
        )
    )
    assert world.run() is RunPhase.FAILED
    assert world.node("b").message == "template: node 'a' has no output 'x'"
    assert world.node("c").phase is S


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


@pytest.mark.parametrize(
    ("job_state", "pod_state", "decided_state"),
    [
        (JobState.ACTIVE, None, JobState.ACTIVE),
        (JobState.ACTIVE, JobState.SUCCEEDED, JobState.SUCCEEDED),
        (JobState.ACTIVE, JobState.FAILED, JobState.FAILED),
        # Once the Job has ended, its own status stands (a deadline that raced the pod).
        (JobState.FAILED, JobState.SUCCEEDED, JobState.FAILED),
        (JobState.SUCCEEDED, JobState.FAILED, JobState.SUCCEEDED),
    ],
)
def test_an_ended_pod_decides_an_attempt_whose_job_is_still_active(
    job_state: JobState, pod_state: JobState | None, decided_state: JobState
) -> None:
    ended = datetime(2026, 11, 22, 2, 0, 4, tzinfo=UTC)
    job = JobObservation(
        "j", "a", 1, job_state, pod_state=pod_state, pod_finished_at=ended, pod_seen_at=ended
    )
    result = decided(job)
    assert result.state is decided_state
    if decided_state is not job_state:
        assert (result.finished_at, result.seen_at) == (ended, ended)


_ENDED = datetime(2026, 11, 22, 2, 0, 4, tzinfo=UTC)
_MARKED = datetime(2026, 11, 22, 2, 0, 5, tzinfo=UTC)
_RUNNING = JobObservation("j", "a", 1, JobState.ACTIVE)
_POD_SUCCEEDED = replace(
    _RUNNING, pod_state=JobState.SUCCEEDED, exit_code=0, pod_finished_at=_ENDED, pod_seen_at=_ENDED
)
_POD_FAILED = replace(
    _RUNNING, pod_state=JobState.FAILED, exit_code=3, pod_finished_at=_ENDED, pod_seen_at=_ENDED
)


def _marked(job: JobObservation, state: JobState, **fields: object) -> JobObservation:
    return replace(job, state=state, finished_at=_MARKED, seen_at=_MARKED, **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("before", "after", "deletes_finished_jobs", "matters"),
    [
        pytest.param(None, _RUNNING, False, True, id="a new Job"),
        pytest.param(
            _RUNNING, replace(_RUNNING, started_at=_ENDED), False, False, id="its start time"
        ),
        pytest.param(_RUNNING, _POD_SUCCEEDED, False, True, id="its pod ended"),
        pytest.param(
            _POD_SUCCEEDED,
            _marked(_POD_SUCCEEDED, JobState.SUCCEEDED),
            False,
            False,
            id="marked as its pod decided, Jobs retained",
        ),
        pytest.param(
            _POD_SUCCEEDED,
            _marked(_POD_SUCCEEDED, JobState.SUCCEEDED),
            True,
            True,
            id="marked as its pod decided, finished Jobs deleted",
        ),
        pytest.param(
            _POD_FAILED,
            _marked(_POD_FAILED, JobState.FAILED, reason="BackoffLimitExceeded"),
            False,
            False,
            id="failed as its pod decided",
        ),
        pytest.param(
            _POD_SUCCEEDED,
            _marked(_POD_SUCCEEDED, JobState.FAILED, reason="DeadlineExceeded"),
            False,
            True,
            id="a deadline raced its pod",
        ),
        pytest.param(
            _POD_SUCCEEDED,
            replace(_marked(_POD_SUCCEEDED, JobState.SUCCEEDED), deleting=True),
            False,
            True,
            id="marked and being deleted",
        ),
        pytest.param(
            _RUNNING, _marked(_RUNNING, JobState.SUCCEEDED), False, True, id="ended before its pod"
        ),
        pytest.param(_RUNNING, replace(_RUNNING, deleting=True), False, True, id="being deleted"),
        pytest.param(
            _RUNNING,
            replace(_RUNNING, pod_waiting="ImagePullBackOff"),
            False,
            True,
            id="its container cannot start",
        ),
    ],
)
def test_a_job_change_wakes_the_planner_only_when_it_could_plan_differently(
    before: JobObservation | None,
    after: JobObservation,
    deletes_finished_jobs: bool,
    matters: bool,
) -> None:
    assert job_change_matters(before, after, deletes_finished_jobs=deletes_finished_jobs) is matters
