"""The planner, rule by rule (SPEC §3). Each test names the behaviour it pins down."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest

from kdag.api import NodePhase, RunPhase, SkipReason
from kdag.engine import conditions
from kdag.engine.model import (
    ANNOTATION_READY_AT,
    PODS_REFUSED_REASON,
    DeleteJob,
    JobState,
    Observed,
    RemoveAnnotations,
)
from kdag.engine.planner import plan, retry_delay
from kdag.engine.timeutil import to_iso_precise
from tests.unit.engine.sim import FAIL, OK, TIMEOUT, Outcome, World, chain, workflow

S = NodePhase.SUCCEEDED


# ---------------------------------------------------------------- readiness and ordering


def test_linear_chain_runs_one_node_after_another() -> None:
    world = World(workflow(nodes=chain("a", "b", "c")))
    world.step()
    assert world.active_instances() == ["a"]
    assert world.phases() == {
        "a": NodePhase.RUNNING,
        "b": NodePhase.PENDING,
        "c": NodePhase.PENDING,
    }
    world.finish("a")
    world.step()
    assert world.active_instances() == ["b"]
    assert world.run() is RunPhase.SUCCEEDED
    assert [c.instance for c in world.created] == ["a", "b", "c"]


def test_diamond_starts_both_branches_then_joins() -> None:
    world = World(
        workflow(
            nodes=[
                {"name": "top"},
                {"name": "left", "dependsOn": ["top"]},
                {"name": "right", "dependsOn": ["top"]},
                {"name": "bottom", "dependsOn": ["left", "right"]},
            ]
        )
    )
    world.step()
    world.finish("top")
    world.step()
    assert world.active_instances() == ["left", "right"]
    world.finish("left")
    world.step()
    assert world.node("bottom").phase is NodePhase.PENDING
    world.finish("right")
    world.step()
    assert world.active_instances() == ["bottom"]


def test_dependent_is_ready_from_when_its_dependency_was_seen_done() -> None:
    # Scheduling latency (SPEC §8) starts when the operator learns the dependency is done,
    # not when the pass that acts on it begins: the wait for that pass counts.
    world = World(workflow(nodes=chain("a", "b")))
    world.step()
    world.finish("a")
    seen = world.now
    world.advance(2.5)
    world.step()
    assert ready_at_of(world, "b") == to_iso_precise(seen)


def test_dependent_of_a_fan_out_is_ready_from_its_last_instance_seen_done() -> None:
    world = World(
        workflow(
            nodes=[{"name": "fan", "forEach": ["x", "y"]}, {"name": "join", "dependsOn": ["fan"]}]
        )
    )
    world.step()
    world.finish("fan[x]")
    world.advance(1)
    world.finish("fan[y]")
    last = world.now
    world.advance(3)
    world.step()
    assert ready_at_of(world, "join") == to_iso_precise(last)


def test_node_ready_without_a_job_event_is_ready_from_the_pass() -> None:
    world = World(workflow(nodes=[{"name": "a", "when": "true"}]))
    world.step()
    assert ready_at_of(world, "a") == to_iso_precise(world.now)


def ready_at_of(world: World, instance: str) -> str:
    (create,) = [c for c in world.created if c.instance == instance]
    return str(create.manifest["metadata"]["annotations"][ANNOTATION_READY_AT])


def test_node_never_starts_before_its_dependencies_succeed() -> None:
    world = World(workflow(nodes=chain("a", "b")))
    world.step()
    world.step()
    assert world.active_instances() == ["a"]


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


# ---------------------------------------------------------------- failure handling


def test_failed_dependency_skips_downstream() -> None:
    world = World(workflow(onFailure="continue", nodes=chain("a", "b", "c")))
    phase = world.run(lambda i, a: FAIL if i == "a" else OK)
    assert phase is RunPhase.FAILED
    assert world.node("b").phase is NodePhase.SKIPPED
    assert world.node("b").skip_reason is SkipReason.UPSTREAM
    assert world.node("c").skip_reason is SkipReason.UPSTREAM
    assert "upstream node a failed" in (world.node("b").message or "")


def test_failure_under_stop_starts_nothing_new_but_lets_running_nodes_finish() -> None:
    world = World(
        workflow(
            nodes=[{"name": "bad"}, {"name": "slow"}, {"name": "later", "dependsOn": ["slow"]}]
        )
    )
    world.step()
    assert world.active_instances() == ["bad", "slow"]
    world.finish("bad", FAIL)
    world.step()
    assert world.node("slow").phase is NodePhase.RUNNING
    assert world.node("later").phase is NodePhase.SKIPPED
    assert world.node("later").skip_reason is SkipReason.STOPPED
    assert world.jobs  # slow was not deleted
    world.finish("slow")
    world.step()
    assert world.phase is RunPhase.FAILED
    assert "node bad failed" in (world.status.message if world.status else "")


def test_failure_under_continue_runs_everything_that_can_run() -> None:
    world = World(
        workflow(
            onFailure="continue",
            nodes=[{"name": "bad"}, {"name": "slow"}, {"name": "later", "dependsOn": ["slow"]}],
        )
    )
    assert world.run(lambda i, a: FAIL if i == "bad" else OK) is RunPhase.FAILED
    assert world.node("later").phase is S


def test_exit_code_and_message_of_a_failed_node_are_recorded() -> None:
    world = World(workflow(nodes=[{"name": "a"}]))
    world.run(lambda i, a: Outcome(exit_code=3, message="disk full"))
    node = world.node("a")
    assert node.phase is NodePhase.FAILED
    assert node.exit_code == 3
    assert node.message == "exit code 3: disk full"


# ---------------------------------------------------------------- retries and timeouts


def test_retry_succeeds_on_second_attempt_after_backoff() -> None:
    world = World(
        workflow(nodes=[{"name": "a", "retry": {"limit": 2, "backoffSeconds": 10, "factor": 2}}])
    )
    world.step()
    world.finish("a", FAIL)
    result = world.step()
    node = world.node("a")
    assert node.phase is NodePhase.RETRYING
    assert node.next_attempt_at == "2026-11-22T02:00:10Z"
    assert result.requeue_at is not None and result.requeue_at.isoformat().startswith(
        "2026-11-22T02:00:10"
    )
    world.advance(5)
    world.step()
    assert world.active_jobs() == []  # backoff not over yet
    world.advance(5)
    world.step()
    assert world.node("a").attempt == 2
    assert world.active_jobs()[0].name == world.job_name("a", 2)
    world.finish("a")
    world.step()
    assert world.phase is RunPhase.SUCCEEDED


def test_retries_stop_at_the_limit() -> None:
    world = World(workflow(nodes=[{"name": "a", "retry": {"limit": 2, "backoffSeconds": 1}}]))
    assert world.run(lambda i, a: FAIL) is RunPhase.FAILED
    assert world.node("a").attempt == 3
    assert [c.name for c in world.created] == [
        world.job_name("a", 1),
        world.job_name("a", 2),
        world.job_name("a", 3),
    ]


@pytest.mark.parametrize(
    ("backoff", "factor", "maximum", "retry", "expected"),
    [
        (10, 2, 300, 1, 10),
        (10, 2, 300, 2, 20),
        (10, 2, 300, 3, 40),
        (10, 2, 300, 10, 300),
        (5, 1, 300, 4, 5),
        (0, 2, 300, 3, 0),
    ],
)
def test_retry_backoff_is_exponential_and_capped(
    backoff: int, factor: float, maximum: int, retry: int, expected: float
) -> None:
    assert retry_delay(backoff, factor, maximum, retry) == expected


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


# ---------------------------------------------------------------- parallelism and fan-out


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


def test_fan_out_creates_one_instance_per_item() -> None:
    world = World(
        workflow(
            nodes=[{"name": "t", "forEach": ["eu", "us", "ap"], "args": ["--region", "{{ item }}"]}]
        )
    )
    world.step()
    assert world.active_instances() == ["t[ap]", "t[eu]", "t[us]"]
    args = {
        c.instance: c.manifest["spec"]["template"]["spec"]["containers"][0]["args"]
        for c in world.created
    }
    assert args["t[us]"] == ["--region", "us"]


def test_fan_in_waits_for_every_instance_and_sees_outputs_as_a_list() -> None:
    world = World(
        workflow(
            nodes=[
                {"name": "t", "forEach": ["a", "b"]},
                {"name": "sum", "dependsOn": ["t"], "args": ["{{ nodes.t.outputs.n }}"]},
            ]
        )
    )
    world.step()
    world.finish("t[a]", Outcome(message='{"n": "1"}'))
    world.step()
    assert world.node("sum").phase is NodePhase.PENDING
    world.finish("t[b]", Outcome(message='{"n": "2"}'))
    world.step()
    sum_job = world.created[-1]
    assert sum_job.manifest["spec"]["template"]["spec"]["containers"][0]["args"] == ['["1","2"]']


def test_fan_out_over_an_upstream_output_known_only_at_run_time() -> None:
    world = World(
        workflow(
            nodes=[
                {"name": "list"},
                {
                    "name": "each",
                    "dependsOn": ["list"],
                    "forEachFrom": "{{ nodes.list.outputs.regions }}",
                    "args": ["{{ item }}"],
                },
                {"name": "after", "dependsOn": ["each"]},
            ]
        )
    )
    world.step()
    assert "each" in world.phases()
    world.finish("list", Outcome(message=json.dumps({"regions": json.dumps(["x", "y"])})))
    world.step()
    assert world.active_instances() == ["each[x]", "each[y]"]
    assert "each" not in world.phases()
    assert world.run() is RunPhase.SUCCEEDED
    assert world.node("after").phase is S


def test_fan_out_over_an_empty_list_skips_without_blocking_dependents() -> None:
    world = World(
        workflow(nodes=[{"name": "each", "forEach": []}, {"name": "after", "dependsOn": ["each"]}])
    )
    assert world.run() is RunPhase.SUCCEEDED
    assert world.node("each").skip_reason is SkipReason.NO_ITEMS
    assert world.node("after").phase is S


def test_fan_out_from_something_that_is_not_a_list_fails_the_node() -> None:
    world = World(
        workflow(
            onFailure="continue",
            nodes=[
                {"name": "list"},
                {
                    "name": "each",
                    "dependsOn": ["list"],
                    "forEachFrom": "{{ nodes.list.outputs.x }}",
                },
            ],
        )
    )
    assert world.run(lambda i, a: Outcome(message='{"x": "nope"}')) is RunPhase.FAILED
    assert "not a JSON array" in (world.node("each").message or "")


def test_fan_out_beyond_the_node_maximum_fails_the_node() -> None:
    world = World(
        workflow(
            nodes=[
                {"name": "list"},
                {
                    "name": "each",
                    "dependsOn": ["list"],
                    "forEachFrom": "{{ nodes.list.outputs.x }}",
                },
            ]
        ),
        max_nodes=5,
    )
    items = json.dumps([str(i) for i in range(10)])
    assert world.run(lambda i, a: Outcome(message=json.dumps({"x": items}))) is RunPhase.FAILED
    assert "exceed the maximum of 5" in (world.node("each").message or "")


def test_fan_out_items_that_are_not_name_safe_are_keyed_by_index() -> None:
    world = World(workflow(nodes=[{"name": "t", "forEach": ["a b", "c/d"]}]))
    world.step()
    assert sorted(world.phases()) == ["t[0]", "t[1]"]
    assert world.node("t[1]").item == "c/d"


# ---------------------------------------------------------------- when, templates, outputs


def test_when_false_skips_the_node_and_lets_dependents_run() -> None:
    world = World(
        workflow(
            params=[{"name": "go", "default": "no"}],
            nodes=[
                {"name": "maybe", "when": "params.go == 'yes'"},
                {"name": "after", "dependsOn": ["maybe"]},
            ],
        )
    )
    assert world.run() is RunPhase.SUCCEEDED
    assert world.node("maybe").skip_reason is SkipReason.WHEN_FALSE
    assert world.node("after").phase is S


def _load_when_rows() -> World:
    """count -> load, where load runs only if count output rows > 0."""
    return World(
        workflow(
            nodes=[
                {"name": "count"},
                {
                    "name": "load",
                    "dependsOn": ["count"],
                    "when": "int(nodes.count.outputs.rows) > 0",
                },
            ]
        )
    )


def test_when_true_runs_the_node() -> None:
    world = _load_when_rows()
    assert world.run(lambda i, a: Outcome(message='{"rows": "120"}')) is RunPhase.SUCCEEDED
    assert world.node("load").phase is S


def test_when_that_fails_to_evaluate_fails_the_node_with_the_message() -> None:
    world = _load_when_rows()
    assert world.run() is RunPhase.FAILED
    assert (world.node("load").message or "").startswith("when: evaluating")


def test_when_over_its_cost_budget_fails_the_node_and_the_run_goes_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Steps decide here, not the wall-clock backstop, whatever the machine's load.
    monkeypatch.setattr(conditions, "WHEN_DEADLINE_SECONDS", math.inf)
    # Four nested maps over ten items: ~220,000 steps, a few seconds of the planning thread.
    ten = "[0,1,2,3,4,5,6,7,8,9]"
    costly = "1"
    for level in range(4):
        costly = f"{ten}.map(v{level}, {costly})"
    world = World(
        workflow(
            onFailure="continue",
            nodes=[
                {"name": "costly", "when": f"size({costly}) > 0"},
                {"name": "plain"},
            ],
        )
    )
    assert world.run() is RunPhase.FAILED
    assert world.node("costly").phase is NodePhase.FAILED
    assert world.node("costly").message == (
        "when: evaluation exceeded its cost budget of 50000 steps"
    )
    assert world.node("plain").phase is S


def test_a_pass_spends_a_bounded_amount_on_when_and_plans_the_rest_next_pass(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(conditions, "WHEN_DEADLINE_SECONDS", math.inf)
    monkeypatch.setattr(conditions, "WHEN_PASS_SECONDS", math.inf)
    # Each instance's condition costs ~22,000 steps, within its own budget; five of them
    # would hold the planning thread for five budgets. A pass stops evaluating once it has
    # spent one budget, and asks to be planned again at once, behind other runs' passes.
    ten = "[0,1,2,3,4,5,6,7,8,9]"
    costly = f"size({ten}.map(a, {ten}.map(b, {ten}.map(c, 1)))) > 0"
    world = World(
        workflow(nodes=[{"name": "fan", "forEach": ["1", "2", "3", "4", "5"], "when": costly}])
    )
    first = world.step()
    assert world.active_instances() == ["fan[1]", "fan[2]", "fan[3]"]
    assert world.node("fan[4]").phase is NodePhase.PENDING
    assert first.requeue_at == world.now
    second = world.step()
    assert world.active_instances() == [f"fan[{i}]" for i in range(1, 6)]
    assert second.requeue_at is None
    assert world.run() is RunPhase.SUCCEEDED


def test_outputs_are_read_from_the_termination_message() -> None:
    world = World(workflow(nodes=[{"name": "a"}]))
    world.run(lambda i, a: Outcome(message='{"rows": "120", "n": 3}'))
    assert world.node("a").outputs == {"rows": "120", "n": "3"}


def test_a_termination_message_that_is_not_json_gives_no_outputs_and_says_why() -> None:
    world = World(workflow(nodes=[{"name": "a"}]))
    world.run(lambda i, a: Outcome(message="hello"))
    assert world.node("a").outputs is None
    assert "not JSON" in (world.node("a").message or "")


def test_templates_substitute_params_outputs_and_run_name() -> None:
    world = World(
        workflow(
            params=[{"name": "day"}],
            nodes=[
                {"name": "a"},
                {
                    "name": "b",
                    "dependsOn": ["a"],
                    "command": ["echo", "{{ params.day }}"],
                    "args": ["{{ nodes.a.outputs.rows }}", "{{ run.name }}"],
                    "env": [{"name": "DAY", "value": "day={{ params.day }}"}],
                },
            ],
        ),
        params={"day": "2026-11-22"},
    )
    world.run(lambda i, a: Outcome(message='{"rows": "7"}'))
    container = world.created[-1].manifest["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["echo", "2026-11-22"]
    assert container["args"] == ["7", "run1"]
    assert container["env"] == [{"name": "DAY", "value": "day=2026-11-22"}]


def test_reference_to_a_missing_output_fails_the_node_naming_it() -> None:
    world = World(
        workflow(
            nodes=[
                {"name": "a"},
                {"name": "b", "dependsOn": ["a"], "args": ["{{ nodes.a.outputs.x }}"]},
            ]
        )
    )
    assert world.run() is RunPhase.FAILED
    assert world.node("b").message == "template: node 'a' has no output 'x'"


# ---------------------------------------------------------------- finally


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


# ---------------------------------------------------------------- approvals


def _gated() -> World:
    return World(
        workflow(
            nodes=[
                {"name": "build"},
                {
                    "name": "publish",
                    "dependsOn": ["build"],
                    "approval": {"message": "Ship?", "timeoutSeconds": 3600},
                },
                {"name": "load", "dependsOn": ["publish"]},
            ]
        )
    )


def test_approval_gate_waits_and_the_run_shows_waiting_for_approval() -> None:
    world = _gated()
    world.step()
    world.finish("build")
    world.step()
    assert world.node("publish").phase is NodePhase.WAITING_FOR_APPROVAL
    assert world.phase is RunPhase.WAITING_FOR_APPROVAL
    assert any(e.reason == "ApprovalRequested" for e in world.events)
    conditions = {c.type: c.status for c in world.status.conditions or []} if world.status else {}
    assert conditions["WaitingForApproval"] == "True"


def test_approve_annotation_lets_the_run_continue_and_records_who() -> None:
    world = _gated()
    world.step()
    world.finish("build")
    world.step()
    world.annotations["approve.kdag.dev/publish"] = "alice"
    world.step()
    gate = world.node("publish")
    assert gate.phase is S
    assert gate.approved_by == "alice"
    assert gate.answered_at is not None
    assert world.active_instances() == ["load"]


def test_reject_annotation_fails_the_gate_with_the_reason_and_skips_downstream() -> None:
    world = _gated()
    world.step()
    world.finish("build")
    world.step()
    world.annotations["reject.kdag.dev/publish"] = "numbers look wrong"
    world.step()
    assert world.node("publish").phase is NodePhase.FAILED
    assert world.node("publish").message == "rejected: numbers look wrong"
    assert world.node("load").phase is NodePhase.SKIPPED
    assert world.phase is RunPhase.FAILED


def test_rejected_gate_is_never_retried() -> None:
    world = World(
        workflow(
            defaults={"image": "busybox", "retry": {"limit": 3}},
            nodes=[{"name": "gate", "approval": {}}],
        ),
        annotations={"reject.kdag.dev/gate": "no"},
    )
    assert world.run() is RunPhase.FAILED
    assert world.created == []


def test_unanswered_gate_fails_when_its_timeout_passes() -> None:
    world = _gated()
    world.step()
    world.finish("build")
    result = world.step()
    assert result.requeue_at is not None
    world.now = result.requeue_at
    world.step()
    assert world.node("publish").phase is NodePhase.FAILED
    assert "approval timed out" in (world.node("publish").message or "")


# ---------------------------------------------------------------- suspend, cancel, rerun


def test_suspend_starts_nothing_new_and_resume_continues() -> None:
    world = World(workflow(nodes=chain("a", "b")))
    world.step()
    world.suspend = True
    world.finish("a")
    world.step()
    assert world.phase is RunPhase.SUSPENDED
    assert world.node("b").phase is NodePhase.QUEUED
    assert world.active_jobs() == []
    world.suspend = False
    world.step()
    assert world.active_instances() == ["b"]
    assert world.phase is RunPhase.RUNNING


def test_cancel_deletes_running_jobs_cancels_the_rest_and_runs_finally() -> None:
    world = World(
        workflow(
            nodes=[{"name": "a"}, {"name": "b", "dependsOn": ["a"]}], **{"finally": [{"name": "f"}]}
        )
    )
    world.step()
    world.cancel = True
    world.step()
    assert world.deleted == [world.job_name("a", 1)]
    assert world.node("a").phase is NodePhase.CANCELLED
    assert world.node("b").phase is NodePhase.CANCELLED
    assert world.active_instances() == ["f"]
    world.finish("f")
    world.step()
    assert world.phase is RunPhase.CANCELLED


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


# ---------------------------------------------------------------- invalid input


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


# ---------------------------------------------------------------- status bookkeeping


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
