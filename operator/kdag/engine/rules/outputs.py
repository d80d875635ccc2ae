"""Outputs (SPEC §3): a succeeded Job's termination message, within the run's output budget."""

from __future__ import annotations

from kdag.api import NodePhase, NodeStatus
from kdag.engine import budget
from kdag.engine.model import JobObservation
from kdag.engine.outputs import parse_outputs
from kdag.engine.pass_state import PassState

OUTPUT_TOO_LARGE = "OutputTooLarge"


def record_success(
    state: PassState, key: str, ns: NodeStatus, job: JobObservation, finished: str
) -> None:
    """The node succeeded: keep its outputs and exit code, unless they overrun the budget."""
    outputs, note = parse_outputs(job.termination_message)
    exit_code = job.exit_code if job.exit_code is not None else 0
    # Fan-out instances stay compact: thousands of them share one run object.
    ns.exit_code = exit_code if ns.index is None or exit_code else None
    over = _over_budget(state, outputs)
    if over is not None:
        # Not retried: another attempt would print the same outputs.
        state.finish_node(key, NodePhase.FAILED, over, finished_at=finished)
        ns.reason = OUTPUT_TOO_LARGE
        return
    ns.outputs = outputs
    state.finish_node(key, NodePhase.SUCCEEDED, note, finished_at=finished)
    if job.seen_at is not None:
        state.done_seen[key] = job.seen_at


def _over_budget(state: PassState, outputs: dict[str, str] | None) -> str | None:
    """Why storing `outputs` would exceed the run's output budget, or None (and then
    they are counted as stored)."""
    size = budget.output_bytes(outputs)
    if not size:
        return None
    if state.outputs_used is None:
        state.outputs_used = sum(budget.output_bytes(ns.outputs) for ns in state.nodes.values())
    total = state.outputs_used + size
    if total > state.ctx.output_budget:
        return (
            f"{OUTPUT_TOO_LARGE}: its outputs ({size} bytes) would bring the run's outputs "
            f"to {total} bytes, over its budget of {state.ctx.output_budget} bytes "
            "(--max-run-output-bytes); they were not recorded"
        )
    state.outputs_used = total
    return None
