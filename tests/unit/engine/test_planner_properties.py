"""Properties of the planner over random DAGs and random Job outcomes (hypothesis)."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kdag.api import NodePhase, RunPhase, SkipReason
from kdag.engine.model import Observed
from kdag.engine.planner import plan, template_of
from tests.unit.engine.sim import FAIL, OK, TIMEOUT, Outcome, World, workflow


@st.composite
def random_workflows(draw: st.DrawFn) -> dict[str, Any]:
    count = draw(st.integers(min_value=1, max_value=9))
    nodes: list[dict[str, Any]] = []
    annotations: dict[str, str] = {}
    for i in range(count):
        name = f"n{i}"
        node: dict[str, Any] = {"name": name}
        if i:
            deps = draw(st.sets(st.integers(min_value=0, max_value=i - 1), max_size=3))
            if deps:
                node["dependsOn"] = [f"n{d}" for d in sorted(deps)]
        kind = draw(st.sampled_from(["job", "job", "job", "fanout", "when", "gate"]))
        if kind == "fanout":
            node["forEach"] = draw(st.lists(st.sampled_from("abcd"), unique=True, max_size=3))
        elif kind == "when":
            node["when"] = draw(st.sampled_from(["true", "false", "params.flag == 'on'"]))
        elif kind == "gate":
            node["approval"] = {"timeoutSeconds": 600}
            answer = draw(st.sampled_from(["approve", "reject", "none"]))
            if answer != "none":
                annotations[f"{answer}.kdag.dev/{name}"] = "alice"
        if kind != "gate" and draw(st.booleans()):
            node["retry"] = {"limit": draw(st.integers(0, 2)), "backoffSeconds": 5}
        nodes.append(node)
    spec: dict[str, Any] = {
        "params": [{"name": "flag", "default": draw(st.sampled_from(["on", "off"]))}],
        "parallelism": draw(st.integers(min_value=0, max_value=3)),
        "onFailure": draw(st.sampled_from(["stop", "continue"])),
        "nodes": nodes,
    }
    if draw(st.booleans()):
        spec["finally"] = [{"name": "cleanup"}]
    return {"spec": spec, "annotations": annotations}


outcomes = st.sampled_from([OK, OK, OK, FAIL, TIMEOUT, Outcome(message='{"k": "v"}')])


def _dependency_ok(world: World, instance: str) -> bool:
    assert world.status is not None and world.status.workflow is not None
    specs = {n.name: n for n in world.status.workflow.all_nodes}
    template = template_of(instance)
    finals = {n.name for n in world.status.workflow.finally_nodes}
    nodes = world.status.nodes or {}
    if template in finals:
        main_done = all(
            ns.phase.terminal for k, ns in nodes.items() if template_of(k) not in finals
        )
        if not main_done:
            return False
    for dep in specs[template].dependencies:
        for key, ns in nodes.items():
            if template_of(key) != dep:
                continue
            skipped_ok = ns.phase is NodePhase.SKIPPED and ns.skip_reason in (
                SkipReason.WHEN_FALSE,
                SkipReason.NO_ITEMS,
            )
            if ns.phase is not NodePhase.SUCCEEDED and not skipped_ok:
                return False
    return True


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=random_workflows(), data=st.data())
def test_random_runs_respect_dependencies_parallelism_and_terminate(
    case: dict[str, Any], data: st.DataObject
) -> None:
    world = World(workflow(**case["spec"]), annotations=dict(case["annotations"]))
    limit = case["spec"]["parallelism"] or 10**9
    drawn: dict[tuple[str, int], Outcome] = {}

    def outcome(instance: str, attempt: int) -> Outcome:
        if (instance, attempt) not in drawn:
            drawn[(instance, attempt)] = data.draw(outcomes, label=f"{instance}#{attempt}")
        return drawn[(instance, attempt)]

    for _ in range(500):
        before = len(world.created)
        result = world.step()
        # A node never starts before its dependencies succeed.
        for created in world.created[before:]:
            assert _dependency_ok(world, created.instance), created.instance
        # Parallelism is never exceeded.
        assert len(world.active_jobs()) <= limit
        # Progress and counts agree with node phases.
        assert world.status is not None and world.status.nodes is not None
        terminal = sum(1 for ns in world.status.nodes.values() if ns.phase.terminal)
        assert world.status.progress == f"{terminal}/{len(world.status.nodes)}"
        # Planning again on its own output and the Jobs it asked for changes nothing.
        again = plan(world.context(), world.status, Observed(dict(world.jobs)), world.now)
        assert again.actions == []
        assert again.status == world.status
        if world.phase is not None and world.phase.terminal:
            break
        if not world.settle(result, outcome):
            raise AssertionError(f"run is stuck in {world.phase}: {world.phases()}")
    # A run always reaches a terminal phase once its Jobs terminate.
    assert world.phase is not None and world.phase.terminal
    assert all(ns.phase.terminal for ns in (world.status.nodes or {}).values())
    assert world.active_jobs() == []
    # No node attempt ever got two Jobs.
    names = [c.name for c in world.created]
    assert len(names) == len(set(names))
    if world.phase is RunPhase.SUCCEEDED:
        finals = (
            {n.name for n in world.status.workflow.finally_nodes}
            if world.status.workflow
            else set()
        )
        assert not any(
            ns.phase.unsuccessful
            for k, ns in (world.status.nodes or {}).items()
            if template_of(k) not in finals
        )


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=random_workflows(), quota=st.integers(min_value=1, max_value=3), data=st.data())
def test_random_runs_under_a_job_quota_finish_when_finished_jobs_are_deleted(
    case: dict[str, Any], quota: int, data: st.DataObject
) -> None:
    world = World(
        workflow(**case["spec"]),
        annotations=dict(case["annotations"]),
        job_quota=quota,
        job_retention_policy="Delete",
    )
    drawn: dict[tuple[str, int], Outcome] = {}

    def outcome(instance: str, attempt: int) -> Outcome:
        if (instance, attempt) not in drawn:
            drawn[(instance, attempt)] = data.draw(outcomes, label=f"{instance}#{attempt}")
        return drawn[(instance, attempt)]

    for _ in range(2000):
        before = len(world.created)
        result = world.step()
        for created in world.created[before:]:
            assert _dependency_ok(world, created.instance), created.instance
        # The quota holds: a Job is only ever made when there is room.
        assert len(world.jobs) <= quota
        if world.phase is not None and world.phase.terminal:
            break
        if not world.settle(result, outcome):
            raise AssertionError(f"run is stuck in {world.phase}: {world.phases()}")
    assert world.phase is not None and world.phase.terminal
    names = [c.name for c in world.created]
    assert len(names) == len(set(names))
    # Refusals are not attempts: each node's Jobs are attempts 1, 2, ... without gaps.
    attempts: dict[str, list[int]] = {}
    for created in world.created:
        attempts.setdefault(created.instance, []).append(created.attempt)
    for instance, seen in attempts.items():
        assert seen == list(range(1, len(seen) + 1)), (instance, seen)
