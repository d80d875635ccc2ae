"""Stopping a run (SPEC §3): onFailure, suspend and cancel."""

from __future__ import annotations

from kdag.api import NodePhase, RunPhase, SkipReason
from tests.unit.engine.sim import FAIL, OK, S, World, chain, workflow


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


def test_finally_nodes_see_the_nodes_onfailure_stop_skipped_in_the_same_pass() -> None:
    # `check` reads every node's view when it becomes ready, in the pass where `bad` fails;
    # `queued` is skipped after that, and the finally node renders its phase in that pass.
    world = World(
        workflow(
            parallelism=2,
            nodes=[
                {"name": "bad"},
                {"name": "good"},
                {"name": "queued"},
                {"name": "check", "dependsOn": ["good"], "when": "true"},
            ],
            **{"finally": [{"name": "report", "args": ["{{ nodes.queued.phase }}"]}]},
        )
    )
    world.step()
    assert world.active_instances() == ["bad", "good"]
    world.finish("bad", FAIL)
    world.finish("good")
    world.step()
    assert world.node("queued").skip_reason is SkipReason.STOPPED
    (report,) = [c for c in world.created if c.instance == "report"]
    container = report.manifest["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["Skipped"]
