"""Approval gates (SPEC §3): wait, approve, reject, time out."""

from __future__ import annotations

from kdag.api import NodePhase, RunPhase
from tests.unit.engine.sim import S, World, workflow


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
