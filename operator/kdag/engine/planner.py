"""The planner: given a run, its status, the observed Jobs and the time, decide what happens.

`plan()` is a pure function. It returns the new status and the actions that bring the
cluster in line with it (create Job, delete Job, post Event, drop consumed annotations), plus
the time it wants to be called again. Calling it again with its own output and the Jobs it
asked for yields no new actions, which is what lets a restarted operator resume safely.

The rules themselves live in `kdag.engine.rules`, one module per SPEC §3 rule family; this
module runs one pass over them in order and asks each for its next due time.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from kdag.api import NodePhase, NodeStatus, RunPhase, WorkflowRunStatus
from kdag.engine.instance_keys import template_of
from kdag.engine.model import Observed, PlanResult, RunContext
from kdag.engine.pass_state import PassState
from kdag.engine.problems import Problem, describe
from kdag.engine.rules import (
    approval,
    attempts,
    expiry,
    fanout,
    finally_nodes,
    readiness,
    rerun,
    retention,
    retry,
    stop,
    timeouts,
)
from kdag.engine.rules.attempts import JOB_REFUSED
from kdag.engine.rules.outputs import OUTPUT_TOO_LARGE
from kdag.engine.rules.retention import recorded_jobs_to_delete, retention_policy
from kdag.engine.rules.retry import retry_delay
from kdag.engine.run_summary import run_conditions, summarize
from kdag.engine.timeutil import format_duration, parse_iso
from kdag.engine.transitions import transitions_between
from kdag.engine.validation import borrowed_account_problems, resolve_params, validate_workflow

# A pass advances the nodes again only when a start changed what dependents see (a node
# failed to render its templates, or a Job it adopted had already finished). Each such
# round settles at least one more node; the bound keeps a pathological workflow from holding
# the planner, and whatever is left is picked up by the next plan, which the status asks for.
_MAX_PASSES = 64

# The time a node in each phase wants the run planned again, per the rule that owns it.
_NODE_DUES: dict[NodePhase, Callable[[PassState, str, NodeStatus], datetime | None]] = {
    NodePhase.RETRYING: retry.node_due,
    NodePhase.QUEUED: attempts.node_due,
    NodePhase.WAITING_FOR_APPROVAL: approval.node_due,
}
# Run-wide due times: the run's deadline, and `when` conditions deferred to the next pass.
_RUN_DUES: tuple[Callable[[PassState], datetime | None], ...] = (timeouts.due, readiness.due)


def plan(
    ctx: RunContext, status: WorkflowRunStatus | None, observed: Observed, now: datetime
) -> PlanResult:
    """The next status of the run and the actions to get there (see module docstring)."""
    state = PassState(ctx, status or WorkflowRunStatus(), observed, now)
    old_phase = state.old.phase
    if old_phase is not None and old_phase.terminal:
        if not rerun.requested(state) or old_phase is RunPhase.INVALID:
            unchanged = transitions_between(state.old, state.old)
            return PlanResult(state.old, [], expiry.expires_at(state.old), unchanged)
        rerun.rerun(state)
    elif state.status.workflow is None:
        problems = _start(state)
        if problems:
            return _invalid(state, describe(problems))
    else:
        rerun.ignore_while_active(state)
    workflow = state.status.workflow
    assert workflow is not None
    state.bind(workflow)
    stop.cancel_if_requested(state)
    timeouts.enforce(state)
    for _ in range(_MAX_PASSES):
        state.advance_again = False
        _advance_all(state)
        attempts.schedule(state)
        if not state.advance_again:
            break
    attempts.report_refusals(state)
    _finish(state)
    cleanup_due = retention.clean_up_jobs(state)
    return _result(state, now if cleanup_due else _requeue_at(state))


def _result(state: PassState, requeue_at: datetime | None) -> PlanResult:
    changes = transitions_between(state.old, state.status)
    return PlanResult(state.status, state.actions, requeue_at, changes)


def _start(state: PassState) -> list[Problem]:
    """Validate and snapshot the workflow, resolve params, create the node entries."""
    ctx = state.ctx
    if ctx.problem is not None:
        # The operator's problem already names its field ("spec.workflowRef.name: ...").
        path, _, message = ctx.problem.partition(": ")
        return [Problem(path, message) if message else Problem("spec", path)]
    workflow = ctx.workflow
    if workflow is None:
        return [Problem("spec", "set workflowRef or an inline workflow")]
    problems = validate_workflow(workflow, max_nodes=ctx.max_nodes, output_budget=ctx.output_budget)
    problems += borrowed_account_problems(workflow, ctx.namespace, ctx.operator_account)
    params, param_problems = resolve_params(workflow, ctx.spec.params)
    if ctx.workflow_name and problems:
        problems = [Problem(f"workflow {ctx.workflow_name}: {p.path}", p.message) for p in problems]
    problems += param_problems
    if problems:
        return problems
    state.status.workflow = workflow
    state.status.workflow_name = ctx.workflow_name
    state.status.params = params
    state.status.started_at = state.now_iso
    for node in workflow.all_nodes:
        fanout.create_nodes(state, node)
    return []


def _invalid(state: PassState, message: str) -> PlanResult:
    state.status = WorkflowRunStatus(
        phase=RunPhase.INVALID,
        message=message,
        started_at=state.old.started_at or state.now_iso,
        finished_at=state.now_iso,
        observed_generation=state.ctx.generation,
        workflow_name=state.ctx.workflow_name,
        progress="0/0",
    )
    _set_conditions(state)
    if state.old.phase is not RunPhase.INVALID:
        state.event("Warning", "Invalid", message)
    return _result(state, None)


def _advance_all(state: PassState) -> None:
    """Advance every main node in dependency order; once they have all ended, the finally
    nodes."""
    state.by_template = state.keys_by_template()
    for name in state.main_names:
        _advance_template(state, name)
    stop.stop_after_failure(state)
    if finally_nodes.main_done(state):
        finally_nodes.decide_ending(state)
        for name in finally_nodes.final_names_in_order(state):
            _advance_template(state, name)


def _advance_template(state: PassState, name: str) -> None:
    # Dependencies come earlier in topological order, so their state is settled for
    # this pass: compute it once for all instances of the template.
    deps: readiness.Dependencies | None = None
    for key in list(state.by_template[name]):
        ns = state.nodes[key]
        phase = ns.phase
        if phase is NodePhase.RUNNING:
            attempts.observe(state, key, ns)
        elif phase is NodePhase.RETRYING:
            retry.queue_if_due(state, ns)
        elif phase is NodePhase.WAITING_FOR_APPROVAL:
            approval.check(state, key, ns)
        elif phase is NodePhase.PENDING:
            if deps is None:
                deps = readiness.dependency_state(state, name)
            readiness.advance_pending(state, key, ns, deps)


def _finish(state: PassState) -> None:
    """The run's phase, message, progress and conditions from its nodes."""
    status = state.status
    status.nodes = state.nodes
    status.observed_generation = state.ctx.generation
    summary = summarize(
        state.nodes,
        final_names=state.final_names,
        ending=status.ending_phase,
        suspended=stop.suspended(state),
        timeout_seconds=state.workflow.timeout_seconds,
    )
    status.phase = summary.phase
    status.message = summary.message
    status.progress = summary.progress
    if summary.finished:
        status.finished_at = status.finished_at or state.now_iso
        started = parse_iso(status.started_at or state.now_iso)
        elapsed = (parse_iso(status.finished_at) - started).total_seconds()
        status.duration = format_duration(elapsed)
    _set_conditions(state)
    if status.phase is not state.old.phase:
        is_bad = status.phase in (RunPhase.FAILED, RunPhase.TIMED_OUT)
        state.event("Warning" if is_bad else "Normal", str(status.phase), status.message or "")


def _set_conditions(state: PassState) -> None:
    phase = state.status.phase or RunPhase.PENDING
    waiting = any(ns.phase is NodePhase.WAITING_FOR_APPROVAL for ns in state.nodes.values())
    state.status.conditions = run_conditions(
        phase,
        state.status.message,
        waiting,
        state.old.conditions,
        state.now_iso,
        state.ctx.generation,
    )


def _requeue_at(state: PassState) -> datetime | None:
    """The earliest due time any rule has: one walk over the nodes, then the run's own; for
    a run that has ended, its TTL."""
    if state.status.phase is not None and state.status.phase.terminal:
        return expiry.expires_at(state.status)
    times: list[datetime] = []
    for key, ns in state.nodes.items():
        node_due = _NODE_DUES.get(ns.phase)
        if node_due is not None:
            due = node_due(state, key, ns)
            if due is not None:
                times.append(due)
    for run_due in _RUN_DUES:
        due = run_due(state)
        if due is not None:
            times.append(due)
    return min(times) if times else None


__all__ = [
    "JOB_REFUSED",
    "OUTPUT_TOO_LARGE",
    "plan",
    "recorded_jobs_to_delete",
    "retention_policy",
    "retry_delay",
    "template_of",
]
