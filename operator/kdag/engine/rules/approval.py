"""Approval gates (SPEC §3): wait for an approve or reject annotation, or time out."""

from __future__ import annotations

from datetime import datetime, timedelta

from kdag.api import NodePhase, NodeSpec, NodeStatus
from kdag.engine.instance_keys import template_of
from kdag.engine.model import APPROVE_PREFIX, REJECT_PREFIX
from kdag.engine.pass_state import PassState
from kdag.engine.run_requests import gate_answer
from kdag.engine.timeutil import parse_iso


def request(state: PassState, key: str, ns: NodeStatus, spec: NodeSpec) -> None:
    """A ready gate starts waiting (no Job), says so in an Event, and takes a ready answer."""
    assert spec.approval is not None
    state.move(ns, NodePhase.WAITING_FOR_APPROVAL)
    ns.started_at = state.now_iso
    ns.message = spec.approval.message or "waiting for approval"
    state.event(
        "Normal",
        "ApprovalRequested",
        f"node {key} waits for approval: {ns.message} "
        f"(kubectl annotate workflowrun {state.ctx.name} {APPROVE_PREFIX}{key}=<you>)",
    )
    check(state, key, ns)


def check(state: PassState, key: str, ns: NodeStatus) -> None:
    """A rejection fails the gate, an approval succeeds it, an unanswered one may time out."""
    rejected = gate_answer(state.ctx.annotations, REJECT_PREFIX, key, state.consumed_answers)
    approved = gate_answer(state.ctx.annotations, APPROVE_PREFIX, key, state.consumed_answers)
    if rejected is not None:
        ns.rejected_by = rejected
        ns.answered_at = state.now_iso
        state.finish_node(key, NodePhase.FAILED, f"rejected: {rejected}")
        state.event("Warning", "ApprovalRejected", f"node {key} was rejected: {rejected}")
        return
    if approved is not None:
        ns.approved_by = approved
        ns.answered_at = state.now_iso
        state.finish_node(key, NodePhase.SUCCEEDED, f"approved by {approved}")
        state.event("Normal", "Approved", f"node {key} was approved by {approved}")
        return
    deadline = _deadline(state, key, ns)
    if deadline is not None and state.now >= deadline:
        reason = f"nobody answered within {_timeout(state, key)}s"
        state.finish_node(key, NodePhase.FAILED, f"approval timed out: {reason}")
        state.event("Warning", "ApprovalTimedOut", f"node {key}: {reason}")


def node_due(state: PassState, key: str, ns: NodeStatus) -> datetime | None:
    """A waiting gate is due at its timeout."""
    return _deadline(state, key, ns)


def _timeout(state: PassState, key: str) -> int | None:
    approval = state.specs[template_of(key)].approval
    assert approval is not None
    return approval.timeout_seconds


def _deadline(state: PassState, key: str, ns: NodeStatus) -> datetime | None:
    """When the waiting gate times out; computed once per pass, by whichever asks first."""
    if key not in state.gate_deadlines:
        timeout = _timeout(state, key)
        state.gate_deadlines[key] = (
            parse_iso(ns.started_at) + timedelta(seconds=timeout)
            if timeout and ns.started_at
            else None
        )
    return state.gate_deadlines[key]
