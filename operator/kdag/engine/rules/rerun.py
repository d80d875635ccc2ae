"""Rerun (SPEC §3): a finished run reruns its failed, timed-out, cancelled and skipped nodes."""

from __future__ import annotations

from kdag.api import NodePhase, NodeStatus, RunPhase
from kdag.engine.instance_keys import template_of
from kdag.engine.model import RemoveAnnotations
from kdag.engine.pass_state import PassState
from kdag.engine.run_requests import answer_annotations, rerun_requested, rerun_token
from kdag.engine.run_summary import short_list

_RERUN_PHASES = (NodePhase.FAILED, NodePhase.TIMED_OUT, NodePhase.CANCELLED, NodePhase.SKIPPED)


def requested(state: PassState) -> bool:
    return rerun_requested(state.ctx.annotations, state.old.rerun_token)


def ignore_while_active(state: PassState) -> None:
    """A rerun asked of an unfinished run is recorded as seen, and refused with an Event."""
    if requested(state):
        state.status.rerun_token = rerun_token(state.ctx.annotations)
        state.event(
            "Warning",
            "RerunIgnored",
            "the run has not finished; annotate kdag.dev/rerun again once it has",
        )


def rerun(state: PassState) -> None:
    """Reset failed, timed-out, cancelled and skipped nodes (and all finally nodes)."""
    state.status.rerun_token = rerun_token(state.ctx.annotations)
    workflow = state.status.workflow
    assert workflow is not None
    finals = {n.name for n in workflow.finally_nodes}
    gates = {n.name for n in workflow.nodes if n.approval is not None}
    reset: list[str] = []
    for key, ns in list(state.nodes.items()):
        is_final = template_of(key) in finals
        if is_final or ns.phase in _RERUN_PHASES:
            state.put_node(
                key,
                NodeStatus(
                    phase=NodePhase.PENDING, attempt=ns.attempt, item=ns.item, index=ns.index
                ),
            )
            if not is_final:
                reset.append(key)
    state.status.reruns = (state.status.reruns or 0) + 1
    # The run timeout measures this attempt of the run, not the first one.
    state.status.started_at = state.now_iso
    state.status.ending_phase = None
    state.status.finished_at = None
    state.status.duration = None
    state.status.phase = RunPhase.RUNNING
    state.event("Normal", "Rerun", f"rerunning {len(reset)} node(s): {short_list(reset)}")
    # A rerun gate asks again: every answer it had, approval or rejection, belongs to
    # the attempt that ended. The shell removes them before it records the rerun.
    consumed = tuple(
        annotation
        for key in reset
        if key in gates
        for annotation in answer_annotations(state.ctx.annotations, key)
    )
    if consumed:
        state.actions.append(RemoveAnnotations(consumed))
        state.consumed_answers.update(consumed)
