"""Stopping a run (SPEC §3): cancel, suspend, and `onFailure: stop`."""

from __future__ import annotations

from kdag.api import NodePhase, RunPhase, SkipReason
from kdag.engine.instance_keys import template_of
from kdag.engine.model import DeleteJob
from kdag.engine.pass_state import PassState


def cancel_if_requested(state: PassState) -> None:
    if state.status.ending_phase is None and state.ctx.spec.cancel:
        abort(state, RunPhase.CANCELLED, "cancelled: spec.cancel is true")


def abort(state: PassState, ending: RunPhase, reason: str) -> None:
    """Stop every unfinished main node; `finally` nodes still run."""
    state.status.ending_phase = ending
    for key, ns in state.nodes.items():
        if template_of(key) in state.final_names or ns.phase.terminal:
            continue
        job = state.job_of(key, ns)
        if ns.phase is NodePhase.RUNNING and job:
            state.actions.append(DeleteJob(job, reason))
            if ending is RunPhase.TIMED_OUT:
                state.finish_node(key, NodePhase.TIMED_OUT, reason)
                continue
        state.finish_node(key, NodePhase.CANCELLED, reason)
    state.event("Warning" if ending is RunPhase.TIMED_OUT else "Normal", str(ending), reason)


def suspended(state: PassState) -> bool:
    """spec.suspend holds new starts, except a cancelled or timed-out run's finally nodes."""
    if not state.ctx.spec.suspend:
        return False
    return state.status.ending_phase not in (RunPhase.CANCELLED, RunPhase.TIMED_OUT)


def stop_after_failure(state: PassState) -> None:
    """onFailure: stop — once a main node fails, nothing new starts."""
    if not state.workflow.stops_on_failure or state.status.ending_phase is not None:
        return
    failed = next(
        (
            k
            for k, ns in state.nodes.items()
            if ns.phase in (NodePhase.FAILED, NodePhase.TIMED_OUT)
            and template_of(k) not in state.final_names
        ),
        None,
    )
    if failed is None:
        return
    reason = f"not started: node {failed} failed and onFailure is stop"
    for key, ns in state.nodes.items():
        if template_of(key) in state.final_names:
            continue
        if ns.phase in (NodePhase.PENDING, NodePhase.QUEUED, NodePhase.WAITING_FOR_APPROVAL):
            state.skip_node(key, SkipReason.STOPPED, reason)
        elif ns.phase is NodePhase.RETRYING:
            state.finish_node(
                key,
                NodePhase.FAILED,
                f"{ns.message}; retry abandoned: node {failed} failed and onFailure is stop",
            )
