"""The planner: given a run, its status, the observed Jobs and the time, decide what happens.

`plan()` is a pure function. It returns the new status and the actions that bring the
cluster in line with it (create Job, delete Job, post Event, drop consumed annotations), plus
the time it wants to be called again. Calling it again with its own output and the Jobs it
asked for yields no new actions, which is what lets a restarted operator resume safely.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from kdag.api import (
    NodePhase,
    NodeStatus,
    RunPhase,
    SkipReason,
    WorkflowRunStatus,
)
from kdag.engine import budget, conditions, jobs, names, templating
from kdag.engine.defaults import effective_node
from kdag.engine.graph import graph_of
from kdag.engine.instance_keys import template_of
from kdag.engine.model import (
    APPROVE_PREFIX,
    PODS_REFUSED_REASON,
    REJECT_PREFIX,
    RERUN_ANNOTATION,
    Action,
    CreateJob,
    DeleteJob,
    EmitEvent,
    JobRetentionPolicy,
    JobState,
    Observed,
    PlanResult,
    RemoveAnnotations,
    RunContext,
)
from kdag.engine.outputs import failure_message, parse_outputs
from kdag.engine.problems import Problem, describe
from kdag.engine.run_summary import (
    aggregate_phase,
    run_conditions,
    short_list,
    summarize,
)
from kdag.engine.timeutil import format_duration, parse_iso, to_iso, to_iso_precise
from kdag.engine.validation import borrowed_account_problems, resolve_params, validate_workflow

_MAX_PASSES = 64
# A Job the API server refuses for now (a full ResourceQuota) is tried again after 1 s,
# 2 s, 4 s, ... at most 30 s: the quota frees as Jobs are deleted, which the run cannot see.
REFUSAL_BACKOFF_SECONDS = 1
REFUSAL_MAX_BACKOFF_SECONDS = 30
JOB_REFUSED = "JobRefused"
OUTPUT_TOO_LARGE = "OutputTooLarge"


def plan(
    ctx: RunContext, status: WorkflowRunStatus | None, observed: Observed, now: datetime
) -> PlanResult:
    """The next status of the run and the actions to get there (see module docstring)."""
    return _Planner(ctx, status or WorkflowRunStatus(), observed, now).plan()


def retry_delay(backoff_seconds: int, factor: float, max_backoff: int, retry: int) -> float:
    """Seconds before retry number `retry` (1-based): min(backoff * factor^(n-1), max)."""
    return float(min(backoff_seconds * factor ** (retry - 1), max_backoff))


def retention_policy(status: WorkflowRunStatus, default: JobRetentionPolicy) -> JobRetentionPolicy:
    """The run's jobRetentionPolicy: its workflow's, else the operator's default."""
    workflow = status.workflow
    if workflow is not None and workflow.job_retention_policy is not None:
        return workflow.job_retention_policy
    return default


def recorded_jobs_to_delete(
    status: WorkflowRunStatus, observed: Observed, policy: JobRetentionPolicy
) -> list[DeleteJob]:
    """Finished Jobs whose result `status` already records, that the policy deletes.

    Only a status that is stored may be trusted with a Job's result: the planner passes the
    status it was given (written by an earlier pass), never the one it is computing, so a
    Job is deleted only after its outputs and exit code are safe. Its node is past Running
    by then, so the next pass never takes the missing Job for one deleted by hand.
    """
    if policy == "Retain":
        return []
    nodes = status.nodes or {}
    deletes = []
    for name, job in observed.jobs.items():
        if job.deleting or job.state is JobState.ACTIVE:
            continue
        if policy == "DeleteSucceeded" and job.state is not JobState.SUCCEEDED:
            continue
        ns = nodes.get(job.instance)
        if ns is None or not ns.attempt:
            continue
        if job.attempt < ns.attempt or (
            job.attempt == ns.attempt and ns.phase is not NodePhase.RUNNING
        ):
            deletes.append(DeleteJob(name, f"its result is recorded (jobRetentionPolicy {policy})"))
    return deletes


@dataclass(frozen=True)
class Dependencies:
    """How a template's dependencies stand in this pass."""

    state: Literal["ready", "waiting", "blocked"]
    blocker: str | None = None  # the node that blocks it
    ready_since: datetime | None = None  # when the last of them was seen done


class _NodeViews(Mapping[str, Mapping[str, Any]]):
    """The `nodes` a template or condition sees, each computed on first use: starting one
    node of a 500-node chain reads the views of its few upstream nodes, not all 500."""

    def __init__(
        self,
        view_of: Callable[[str, list[str]], dict[str, Any] | None],
        keys_by_template: dict[str, list[str]],
    ) -> None:
        self._view_of = view_of
        self._keys = keys_by_template
        self._views: dict[str, dict[str, Any] | None] = {}

    def _view(self, name: str) -> dict[str, Any] | None:
        if name not in self._views:
            self._views[name] = self._view_of(name, self._keys.get(name, []))
        return self._views[name]

    def __getitem__(self, name: str) -> Mapping[str, Any]:
        view = self._view(name)
        if view is None:
            raise KeyError(name)
        return view

    def __iter__(self) -> Iterator[str]:
        return (name for name in self._keys if self._view(name) is not None)

    def __len__(self) -> int:
        return sum(1 for _ in self)


class _Planner:
    def __init__(
        self, ctx: RunContext, status: WorkflowRunStatus, observed: Observed, now: datetime
    ) -> None:
        self.ctx = ctx
        self.old = status
        # Node entries are copied one level deep (their fields are replaced, never mutated in
        # place); the workflow snapshot is never modified, so it is shared, not copied.
        self.status = status.model_copy()
        self.nodes: dict[str, NodeStatus] = {
            k: v.model_copy() for k, v in (status.nodes or {}).items()
        }
        self.status.nodes = self.nodes
        self.observed = observed
        self.now = now
        self.now_iso = to_iso(now)
        self.actions: list[Action] = []
        self.start_failures = False
        # Jobs this plan asks to create: active, though not observed yet.
        self.creating: set[str] = set()
        self.by_attempt: dict[tuple[str, int], str] | None = None
        # When the operator saw the Jobs of nodes that succeeded in this pass finish: their
        # dependents became ready then, not when this pass began (SPEC §8 measures from it).
        self.done_seen: dict[str, datetime] = {}
        self.views: _NodeViews | None = None
        # Instance keys per template, from the start of `_advance_all` (kept current by it).
        self.by_template: dict[str, list[str]] = {}
        # Answers a rerun removes: ignored in this pass, gone from the run by the next one.
        self.consumed_answers: set[str] = set()
        # Bytes of outputs the run's status holds, counted when first needed.
        self.outputs_used: int | None = None
        self.refused: list[str] = []
        # What this pass has spent on `when`; once spent, the rest wait for the next pass.
        self.when_spent = conditions.PassBudget()
        self.when_deferred = False

    # ----------------------------------------------------------------- entry point

    def plan(self) -> PlanResult:
        old_phase = self.old.phase
        if old_phase is not None and old_phase.terminal:
            if not self._rerun_requested() or old_phase is RunPhase.INVALID:
                return PlanResult(self.old, [])
            self._rerun()
        elif self.status.workflow is None:
            problems = self._start()
            if problems:
                return self._invalid(describe(problems))
        else:
            self._ignore_rerun_while_active()
        workflow = self.status.workflow
        assert workflow is not None
        self.workflow = workflow
        self.graph = graph_of(workflow)
        self.position = {name: i for i, name in enumerate(self.graph.order)}
        self.specs = {n.name: n for n in workflow.all_nodes}
        self.final_names = {n.name for n in workflow.finally_nodes}
        self._abort_if_requested()
        for _ in range(_MAX_PASSES):
            self.start_failures = False
            self._advance_all()
            self._schedule()
            if not self.start_failures:
                break
        self._report_refusals()
        self._finish()
        cleanup_due = self._clean_up_jobs()
        requeue_at = self.now if cleanup_due else self._requeue_at()
        return PlanResult(self.status, self.actions, requeue_at)

    # ----------------------------------------------------------------- starting

    def _start(self) -> list[Problem]:
        """Validate and snapshot the workflow, resolve params, create the node entries."""
        if self.ctx.problem is not None:
            # The operator's problem already names its field ("spec.workflowRef.name: ...").
            path, _, message = self.ctx.problem.partition(": ")
            return [Problem(path, message) if message else Problem("spec", path)]
        workflow = self.ctx.workflow
        if workflow is None:
            return [Problem("spec", "set workflowRef or an inline workflow")]
        problems = validate_workflow(
            workflow, max_nodes=self.ctx.max_nodes, output_budget=self.ctx.output_budget
        )
        problems += borrowed_account_problems(
            workflow, self.ctx.namespace, self.ctx.operator_account
        )
        params, param_problems = resolve_params(workflow, self.ctx.spec.params)
        if self.ctx.workflow_name and problems:
            problems = [
                Problem(f"workflow {self.ctx.workflow_name}: {p.path}", p.message) for p in problems
            ]
        problems += param_problems
        if problems:
            return problems
        self.status.workflow = workflow
        self.status.workflow_name = self.ctx.workflow_name
        self.status.params = params
        self.status.started_at = self.now_iso
        for node in workflow.all_nodes:
            if node.for_each is None:
                self.nodes[node.name] = NodeStatus(phase=NodePhase.PENDING)
                continue
            labels = names.item_labels(node.for_each)
            for index, (item, label) in enumerate(zip(node.for_each, labels, strict=True)):
                key = names.instance_key(node.name, label)
                self.nodes[key] = _new_instance(item, label, index)
            if not node.for_each:
                self.nodes[node.name] = self._no_items_status()
        self.status.nodes = self.nodes
        return []

    def _no_items_status(self) -> NodeStatus:
        return NodeStatus(
            phase=NodePhase.SKIPPED,
            skip_reason=SkipReason.NO_ITEMS,
            message="forEach has no items",
            finished_at=self.now_iso,
        )

    def _invalid(self, message: str) -> PlanResult:
        self.status = WorkflowRunStatus(
            phase=RunPhase.INVALID,
            message=message,
            started_at=self.old.started_at or self.now_iso,
            finished_at=self.now_iso,
            observed_generation=self.ctx.generation,
            workflow_name=self.ctx.workflow_name,
            progress="0/0",
        )
        self._set_conditions()
        if self.old.phase is not RunPhase.INVALID:
            self._event("Warning", "Invalid", message)
        return PlanResult(self.status, self.actions)

    # ----------------------------------------------------------------- rerun

    def _rerun_requested(self) -> bool:
        token = self.ctx.annotations.get(RERUN_ANNOTATION)
        return token is not None and token != self.old.rerun_token

    def _ignore_rerun_while_active(self) -> None:
        if self._rerun_requested():
            self.status.rerun_token = self.ctx.annotations[RERUN_ANNOTATION]
            self._event(
                "Warning",
                "RerunIgnored",
                "the run has not finished; annotate kdag.dev/rerun again once it has",
            )

    def _rerun(self) -> None:
        """Reset failed, timed-out, cancelled and skipped nodes (and all finally nodes)."""
        self.status.rerun_token = self.ctx.annotations[RERUN_ANNOTATION]
        workflow = self.status.workflow
        assert workflow is not None
        finals = {n.name for n in workflow.finally_nodes}
        gates = {n.name for n in workflow.nodes if n.approval is not None}
        reset: list[str] = []
        for key, ns in self.nodes.items():
            is_final = template_of(key) in finals
            if is_final or ns.phase in (
                NodePhase.FAILED,
                NodePhase.TIMED_OUT,
                NodePhase.CANCELLED,
                NodePhase.SKIPPED,
            ):
                self.nodes[key] = NodeStatus(
                    phase=NodePhase.PENDING, attempt=ns.attempt, item=ns.item, index=ns.index
                )
                if not is_final:
                    reset.append(key)
        self.status.reruns = (self.status.reruns or 0) + 1
        # The run timeout measures this attempt of the run, not the first one.
        self.status.started_at = self.now_iso
        self.status.ending_phase = None
        self.status.finished_at = None
        self.status.duration = None
        self.status.phase = RunPhase.RUNNING
        self._event("Normal", "Rerun", f"rerunning {len(reset)} node(s): {short_list(reset)}")
        # A rerun gate asks again: every answer it had, approval or rejection, belongs to
        # the attempt that ended. The shell removes them before it records the rerun.
        consumed = tuple(
            prefix + key
            for key in reset
            if key in gates
            for prefix in (APPROVE_PREFIX, REJECT_PREFIX)
            if prefix + key in self.ctx.annotations
        )
        if consumed:
            self.actions.append(RemoveAnnotations(consumed))
            self.consumed_answers.update(consumed)

    # ----------------------------------------------------------------- cancel and timeout

    def _abort_if_requested(self) -> None:
        if self.status.ending_phase is not None:
            return
        if self.ctx.spec.cancel:
            self._abort(RunPhase.CANCELLED, "cancelled: spec.cancel is true")
            return
        timeout = self.workflow.timeout_seconds
        started = self.status.started_at
        if timeout and started and self.now >= parse_iso(started) + timedelta(seconds=timeout):
            self._abort(RunPhase.TIMED_OUT, f"the run exceeded its timeoutSeconds ({timeout}s)")

    def _abort(self, ending: RunPhase, reason: str) -> None:
        """Stop every unfinished main node; `finally` nodes still run."""
        self.status.ending_phase = ending
        for key, ns in self.nodes.items():
            if template_of(key) in self.final_names or ns.phase.terminal:
                continue
            job = self._job_of(key, ns)
            if ns.phase is NodePhase.RUNNING and job:
                self.actions.append(DeleteJob(job, reason))
                if ending is RunPhase.TIMED_OUT:
                    self._finish_node(key, NodePhase.TIMED_OUT, reason)
                    continue
            self._finish_node(key, NodePhase.CANCELLED, reason)
        self._event("Warning" if ending is RunPhase.TIMED_OUT else "Normal", str(ending), reason)

    # ----------------------------------------------------------------- advancing nodes

    def _keys_by_template(self) -> dict[str, list[str]]:
        by_template: dict[str, list[str]] = {name: [] for name in self.graph.order}
        for key in self.nodes:
            by_template.setdefault(template_of(key), []).append(key)
        for keys in by_template.values():
            keys.sort(key=lambda k: self.nodes[k].index or 0)
        return by_template

    def _advance_all(self) -> None:
        self.by_template = self._keys_by_template()
        main = [name for name in self.graph.order if name not in self.final_names]
        for name in main:
            self._advance_template(name)
        self._stop_after_failure()
        if all(self.nodes[k].phase.terminal for name in main for k in self.by_template[name]):
            if self.status.ending_phase is None:
                self.status.ending_phase = self._main_outcome(main)
            for name in self.graph.order:
                if name in self.final_names:
                    self._advance_template(name)

    def _main_outcome(self, main: list[str]) -> RunPhase:
        for name in main:
            for key in self.by_template[name]:
                if self.nodes[key].phase.unsuccessful:
                    return RunPhase.FAILED
        return RunPhase.SUCCEEDED

    def _advance_template(self, name: str) -> None:
        # Dependencies come earlier in topological order, so their state is settled for
        # this pass: compute it once for all instances of the template.
        deps: Dependencies | None = None
        for key in list(self.by_template[name]):
            if self.nodes[key].phase is NodePhase.PENDING and deps is None:
                deps = self._dependency_state(name)
            self._advance(key, deps)

    def _advance(self, key: str, deps: Dependencies | None) -> None:
        ns = self.nodes[key]
        if ns.phase is NodePhase.RUNNING:
            self._observe_job(key, ns)
        elif ns.phase is NodePhase.RETRYING:
            if ns.next_attempt_at and parse_iso(ns.next_attempt_at) <= self.now:
                ns.phase = NodePhase.QUEUED
                ns.next_attempt_at = None
        elif ns.phase is NodePhase.WAITING_FOR_APPROVAL:
            self._check_approval(key, ns)
        elif ns.phase is NodePhase.PENDING:
            assert deps is not None
            self._advance_pending(key, ns, deps)

    def _dependency_state(self, name: str) -> Dependencies:
        """Whether the template `name` is ready, waiting or blocked (and by which node)."""
        waiting = False
        last_done: datetime | None = None
        for dep in self.specs[name].dependencies:
            for key in self.by_template.get(dep, []):
                ns = self.nodes[key]
                if ns.phase.unsuccessful or (
                    ns.phase is NodePhase.SKIPPED
                    and not (ns.skip_reason and ns.skip_reason.lets_dependents_run)
                ):
                    return Dependencies("blocked", blocker=key)
                if ns.phase is not NodePhase.SUCCEEDED and ns.phase is not NodePhase.SKIPPED:
                    waiting = True
                seen = self.done_seen.get(key)
                if seen is not None and (last_done is None or seen > last_done):
                    last_done = seen
        if waiting:
            return Dependencies("waiting")
        ready_since = min(last_done, self.now) if last_done is not None else self.now
        return Dependencies("ready", ready_since=ready_since)

    def _advance_pending(self, key: str, ns: NodeStatus, deps: Dependencies) -> None:
        name = template_of(key)
        if deps.state == "waiting":
            return
        if deps.state == "blocked":
            blocker = deps.blocker
            assert blocker is not None
            self.views = None
            phase = self.nodes[blocker].phase
            ns.phase = NodePhase.SKIPPED
            ns.skip_reason = SkipReason.UPSTREAM
            ns.message = f"upstream node {blocker} {_phase_verb(phase)}"
            ns.finished_at = self.now_iso
            return
        spec = self.specs[name]
        if spec.for_each_from is not None and key == name:
            self._expand(name, deps)
            return
        if spec.when is not None:
            if self.when_spent.exhausted:
                self.when_deferred = True
                return
            budget = conditions.Budget()
            try:
                run_it = conditions.evaluate(spec.when, self._activation(_item_of(key, ns)), budget)
            except conditions.ConditionError as exc:
                self._finish_node(key, NodePhase.FAILED, f"when: {exc}")
                return
            finally:
                self.when_spent.add(budget)
            if not run_it:
                self.views = None
                ns.phase = NodePhase.SKIPPED
                ns.skip_reason = SkipReason.WHEN_FALSE
                ns.message = f"when {spec.when!r} was false"
                ns.finished_at = self.now_iso
                return
        if spec.approval is not None:
            ns.phase = NodePhase.WAITING_FOR_APPROVAL
            ns.started_at = self.now_iso
            ns.message = spec.approval.message or "waiting for approval"
            self._event(
                "Normal",
                "ApprovalRequested",
                f"node {key} waits for approval: {ns.message} "
                f"(kubectl annotate workflowrun {self.ctx.name} {APPROVE_PREFIX}{key}=<you>)",
            )
            self._check_approval(key, ns)
            return
        ns.phase = NodePhase.QUEUED
        ns.ready_at = to_iso_precise(deps.ready_since or self.now)

    def _expand(self, name: str, deps: Dependencies) -> None:
        """Fan out over the JSON array that forEachFrom renders to, now that it is known."""
        spec = self.specs[name]
        assert spec.for_each_from is not None
        try:
            text = templating.render(spec.for_each_from, self._template_context(None))
            items = json.loads(text)
        except templating.TemplateError as exc:
            self._finish_node(name, NodePhase.FAILED, f"forEachFrom: {exc}")
            return
        except ValueError:
            self._finish_node(
                name, NodePhase.FAILED, f"forEachFrom: {text[:200]!r} is not a JSON array"
            )
            return
        if not isinstance(items, list):
            self._finish_node(name, NodePhase.FAILED, "forEachFrom: the value is not a JSON array")
            return
        room = self.ctx.max_nodes - len(self.nodes) + 1
        if len(items) > room:
            self._finish_node(
                name,
                NodePhase.FAILED,
                f"forEachFrom: {len(items)} items would exceed the maximum of "
                f"{self.ctx.max_nodes} nodes per run",
            )
            return
        too_big = self._expansion_too_big(len(items))
        if too_big is not None:
            self._finish_node(name, NodePhase.FAILED, f"forEachFrom: {too_big}")
            return
        if not items:
            self.nodes[name] = self._no_items_status()
            return
        values = [i if isinstance(i, str) else json.dumps(i, separators=(",", ":")) for i in items]
        del self.nodes[name]
        keys = []
        for index, (item, label) in enumerate(zip(values, names.item_labels(values), strict=True)):
            key = names.instance_key(name, label)
            self.nodes[key] = _new_instance(item, label, index)
            keys.append(key)
        self.by_template[name] = keys
        self.views = None
        for key in keys:
            self._advance_pending(key, self.nodes[key], deps)

    def _expansion_too_big(self, count: int) -> str | None:
        """Why `count` more instances would let the run's object outgrow the API server's
        limit (with its output budget filled), or None."""
        named = sum(1 for ns in self.nodes.values() if ns.index is None) - 1
        instances = len(self.nodes) - 1 - named + count
        size = budget.fixed_bytes(self.workflow, named, instances) + self.ctx.output_budget
        if size <= budget.MAX_RUN_OBJECT_BYTES:
            return None
        return (
            f"{count} items would make the run's object about {size // 1024} KiB with its "
            f"output budget, more than the {budget.MAX_RUN_OBJECT_BYTES // 1024} KiB it may take"
        )

    # ----------------------------------------------------------------- approvals

    def _answer(self, annotation: str) -> str | None:
        if annotation in self.consumed_answers:
            return None
        return self.ctx.annotations.get(annotation)

    def _check_approval(self, key: str, ns: NodeStatus) -> None:
        rejected = self._answer(REJECT_PREFIX + key)
        approved = self._answer(APPROVE_PREFIX + key)
        if rejected is not None:
            ns.rejected_by = rejected
            ns.answered_at = self.now_iso
            self._finish_node(key, NodePhase.FAILED, f"rejected: {rejected}")
            self._event("Warning", "ApprovalRejected", f"node {key} was rejected: {rejected}")
            return
        if approved is not None:
            ns.approved_by = approved
            ns.answered_at = self.now_iso
            self._finish_node(key, NodePhase.SUCCEEDED, f"approved by {approved}")
            self._event("Normal", "Approved", f"node {key} was approved by {approved}")
            return
        spec = self.specs[template_of(key)].approval
        assert spec is not None
        if spec.timeout_seconds and ns.started_at:
            deadline = parse_iso(ns.started_at) + timedelta(seconds=spec.timeout_seconds)
            if self.now >= deadline:
                reason = f"nobody answered within {spec.timeout_seconds}s"
                self._finish_node(key, NodePhase.FAILED, f"approval timed out: {reason}")
                self._event("Warning", "ApprovalTimedOut", f"node {key}: {reason}")

    # ----------------------------------------------------------------- Jobs

    def _observe_job(self, key: str, ns: NodeStatus) -> None:
        name = self._job_of(key, ns)
        if name in self.creating:
            return  # asked for in this plan: it cannot have been deleted yet
        job = self.observed.jobs.get(name or "")
        if job is None or job.deleting:
            self._attempt_failed(
                key, ns, NodePhase.FAILED, f"Job {name} was deleted before it finished", None
            )
            return
        if job.state is JobState.ACTIVE:
            return
        if job.reason == PODS_REFUSED_REASON:
            # Still active: the Job controller would go on trying until the deadline, and
            # start a pod for this finished attempt should the refusal end.
            self.actions.append(DeleteJob(job.name, "its pods were refused"))
        finished = to_iso(job.finished_at) if job.finished_at else self.now_iso
        if job.state is JobState.SUCCEEDED:
            outputs, note = parse_outputs(job.termination_message)
            exit_code = job.exit_code if job.exit_code is not None else 0
            # Fan-out instances stay compact: thousands of them share one run object.
            ns.exit_code = exit_code if ns.index is None or exit_code else None
            over = self._over_output_budget(outputs)
            if over is not None:
                # Not retried: another attempt would print the same outputs.
                self._finish_node(key, NodePhase.FAILED, over, finished_at=finished)
                ns.reason = OUTPUT_TOO_LARGE
                return
            ns.outputs = outputs
            self._finish_node(key, NodePhase.SUCCEEDED, note, finished_at=finished)
            if job.seen_at is not None:
                self.done_seen[key] = job.seen_at
            return
        timed_out = job.reason == "DeadlineExceeded"
        self._attempt_failed(
            key,
            ns,
            NodePhase.TIMED_OUT if timed_out else NodePhase.FAILED,
            failure_message(job, timed_out),
            job.exit_code,
            finished,
        )

    def _over_output_budget(self, outputs: dict[str, str] | None) -> str | None:
        """Why storing `outputs` would exceed the run's output budget, or None (and then
        they are counted as stored)."""
        size = budget.output_bytes(outputs)
        if not size:
            return None
        if self.outputs_used is None:
            self.outputs_used = sum(budget.output_bytes(ns.outputs) for ns in self.nodes.values())
        total = self.outputs_used + size
        if total > self.ctx.output_budget:
            return (
                f"{OUTPUT_TOO_LARGE}: its outputs ({size} bytes) would bring the run's outputs "
                f"to {total} bytes, over its budget of {self.ctx.output_budget} bytes "
                "(--max-run-output-bytes); they were not recorded"
            )
        self.outputs_used = total
        return None

    def _attempt_failed(
        self,
        key: str,
        ns: NodeStatus,
        phase: Literal[NodePhase.FAILED, NodePhase.TIMED_OUT],
        message: str,
        exit_code: int | None,
        finished_at: str | None = None,
    ) -> None:
        ns.exit_code = exit_code
        retry = effective_node(self.workflow, self.specs[template_of(key)]).retry
        used = ns.retries or 0
        if retry is not None and used < retry.limit:
            delay = retry_delay(
                retry.backoff_seconds, retry.factor, retry.max_backoff_seconds, used + 1
            )
            ns.retries = used + 1
            ns.phase = NodePhase.RETRYING
            ns.next_attempt_at = to_iso(self.now + timedelta(seconds=math.ceil(delay)))
            ns.message = (
                f"attempt {ns.attempt} {_phase_verb(phase)}: {message}; "
                f"retry {used + 1}/{retry.limit} at {ns.next_attempt_at}"
            )
            self._event("Normal", "NodeRetrying", f"node {key}: {ns.message}")
            return
        self._finish_node(key, phase, message, finished_at=finished_at)

    def _finish_node(
        self,
        key: str,
        phase: NodePhase,
        message: str | None,
        *,
        finished_at: str | None = None,
    ) -> None:
        """Make the node terminal. Never retries: callers that retry use _attempt_failed."""
        ns = self.nodes[key]
        self.views = None
        ns.phase = phase
        ns.message = message
        ns.finished_at = finished_at or self.now_iso
        ns.next_attempt_at = None
        ns.ready_at = None
        ns.reason = None
        ns.refusals = None
        if phase in (NodePhase.FAILED, NodePhase.TIMED_OUT):
            self._event("Warning", f"Node{phase}", f"node {key} {_phase_verb(phase)}: {message}")

    # ----------------------------------------------------------------- scheduling

    def _suspended(self) -> bool:
        if not self.ctx.spec.suspend:
            return False
        # A cancelled or timed-out run still runs its finally nodes, suspended or not.
        return self.status.ending_phase not in (RunPhase.CANCELLED, RunPhase.TIMED_OUT)

    def _schedule(self) -> None:
        if self._suspended():
            return
        limit = self.workflow.parallelism or math.inf
        active = sum(1 for ns in self.nodes.values() if ns.phase is NodePhase.RUNNING)
        queued = [k for k, ns in self.nodes.items() if ns.phase is NodePhase.QUEUED]
        queued.sort(key=lambda k: (self.position[template_of(k)], self.nodes[k].index or 0))
        for key in queued:
            if active >= limit:
                break
            due = self.nodes[key].next_attempt_at
            if due and parse_iso(due) > self.now:
                continue  # its Job was refused for now: it backs off
            if self._start_node(key):
                active += 1

    def _start_node(self, key: str) -> bool:
        ns = self.nodes[key]
        if self.observed.refused:
            # The namespace has no room for Jobs now: adopt what this pass made, make nothing.
            name = names.job_name(self.ctx.name, self.ctx.uid, key, (ns.attempt or 0) + 1)
            if name not in self.observed.jobs:
                refusal = self.observed.refused.get(name)
                if refusal is not None:
                    self._refuse(key, ns, refusal)
                return False
        node = effective_node(self.workflow, self.specs[template_of(key)])
        ctx = self._template_context(_item_of(key, ns))
        try:
            command = [templating.render(t, ctx) for t in node.command] if node.command else None
            args = [templating.render(t, ctx) for t in node.args] if node.args else None
            env = [
                e.model_copy(update={"value": templating.render(e.value, ctx)})
                if e.value is not None
                else e
                for e in node.env or []
            ]
        except templating.TemplateError as exc:
            self._finish_node(key, NodePhase.FAILED, f"template: {exc}")
            self.start_failures = True
            return False
        attempt = (ns.attempt or 0) + 1
        manifest = jobs.build_job(
            run_name=self.ctx.name,
            run_namespace=self.ctx.namespace,
            run_uid=self.ctx.uid,
            workflow_name=self.status.workflow_name or self.ctx.name,
            instance=key,
            attempt=attempt,
            node=node,
            command=command,
            args=args,
            env=env,
            ready_at=ns.ready_at,
        )
        name = manifest["metadata"]["name"]
        existing = self.observed.jobs.get(name)
        if existing is None:
            self.actions.append(CreateJob(key, attempt, manifest))
            self.creating.add(name)
        ns.phase = NodePhase.RUNNING
        ns.attempt = attempt
        ns.job = name if ns.index is None else None  # instances: derivable, kept out of status
        ns.started_at = to_iso(existing.started_at) if existing and existing.started_at else None
        ns.started_at = ns.started_at or self.now_iso
        ns.ready_at = None
        ns.message = None
        ns.reason = None
        ns.refusals = None
        ns.next_attempt_at = None
        ns.exit_code = None
        if existing is not None and existing.state is not JobState.ACTIVE:
            self.start_failures = True  # adopted a finished Job: observe it in another pass
        return True

    def _refuse(self, key: str, ns: NodeStatus, message: str) -> None:
        """Its Job was refused for now: stay Queued, back off, and say why. Not an attempt."""
        refusals = (ns.refusals or 0) + 1
        delay = retry_delay(REFUSAL_BACKOFF_SECONDS, 2, REFUSAL_MAX_BACKOFF_SECONDS, refusals)
        ns.refusals = refusals
        ns.reason = JOB_REFUSED
        ns.next_attempt_at = to_iso(self.now + timedelta(seconds=math.ceil(delay)))
        ns.message = f"the API server refused its Job for now: {message}"
        self.refused.append(key)

    def _report_refusals(self) -> None:
        if self.refused:
            message = self.observed.refused[next(iter(self.observed.refused))]
            self._event(
                "Warning",
                JOB_REFUSED,
                f"{len(self.refused)} Job(s) refused for now, trying again with backoff "
                f"({short_list(self.refused)}): {message}",
            )

    def _clean_up_jobs(self) -> bool:
        """Delete the finished Jobs the stored status already records (jobRetentionPolicy);
        True when this pass records more, which the next pass is to delete."""
        policy = retention_policy(self.status, self.ctx.job_retention_policy)
        if policy == "Retain":
            return False
        deleting = set()
        if self.old.workflow is not None:
            for action in recorded_jobs_to_delete(self.old, self.observed, policy):
                self.actions.append(action)
                deleting.add(action.name)
        pending = recorded_jobs_to_delete(self.status, self.observed, policy)
        return any(action.name not in deleting for action in pending)

    def _job_of(self, key: str, ns: NodeStatus) -> str | None:
        """The Job of the node's current attempt (fan-out instances don't store it)."""
        name = names.current_job(self.ctx.name, self.ctx.uid, key, ns.job, ns.attempt)
        if ns.job or not ns.attempt or name in self.observed.jobs or name in self.creating:
            return name
        # An instance started by an operator that named Jobs differently (before an upgrade)
        # is found by its instance and attempt, not taken for deleted.
        if self.by_attempt is None:
            self.by_attempt = {(j.instance, j.attempt): n for n, j in self.observed.jobs.items()}
        return self.by_attempt.get((key, ns.attempt), name)

    # ----------------------------------------------------------------- templates and CEL

    def _node_views(self) -> _NodeViews:
        """Per workflow node: its phase and outputs; fanned-out outputs are lists.

        Kept until a node finishes: thousands of starts in one pass share one view.
        """
        if self.views is None:
            keys = self.by_template or self._keys_by_template()
            self.views = _NodeViews(self._view_of, keys)
        return self.views

    def _view_of(self, name: str, keys: list[str]) -> dict[str, Any] | None:
        spec = self.specs.get(name)
        if spec is None or not keys:
            return None
        statuses = [self.nodes[k] for k in keys]
        if spec.fans_out:
            merged: dict[str, list[str]] = {}
            for ns in statuses:
                for out_key, value in (ns.outputs or {}).items():
                    merged.setdefault(out_key, []).append(value)
            return {"phase": aggregate_phase(statuses), "outputs": merged}
        return {"phase": str(statuses[0].phase), "outputs": statuses[0].outputs or {}}

    def _run_view(self) -> dict[str, str]:
        ending = self.status.ending_phase
        return {
            "name": self.ctx.name,
            "namespace": self.ctx.namespace,
            "uid": self.ctx.uid,
            "phase": str(ending) if ending is not None else str(RunPhase.RUNNING),
        }

    def _template_context(self, item: str | None) -> templating.TemplateContext:
        return templating.TemplateContext(
            params=self.status.params or {},
            nodes=self._node_views(),
            run=self._run_view(),
            item=item,
        )

    def _activation(self, item: str | None) -> dict[str, Any]:
        activation: dict[str, Any] = {
            "params": self.status.params or {},
            "nodes": dict(self._node_views()),
            "run": self._run_view(),
        }
        if item is not None:
            activation["item"] = item
        return activation

    # ----------------------------------------------------------------- stop after failure

    def _stop_after_failure(self) -> None:
        """onFailure: stop — once a main node fails, nothing new starts."""
        if not self.workflow.stops_on_failure or self.status.ending_phase is not None:
            return
        failed = next(
            (
                k
                for k, ns in self.nodes.items()
                if template_of(k) not in self.final_names
                and ns.phase in (NodePhase.FAILED, NodePhase.TIMED_OUT)
            ),
            None,
        )
        if failed is None:
            return
        reason = f"not started: node {failed} failed and onFailure is stop"
        for key, ns in self.nodes.items():
            if template_of(key) in self.final_names:
                continue
            if ns.phase in (NodePhase.PENDING, NodePhase.QUEUED, NodePhase.WAITING_FOR_APPROVAL):
                ns.phase = NodePhase.SKIPPED
                ns.skip_reason = SkipReason.STOPPED
                ns.message = reason
                ns.reason = None
                ns.refusals = None
                ns.finished_at = self.now_iso
                ns.ready_at = None
                ns.next_attempt_at = None
            elif ns.phase is NodePhase.RETRYING:
                self._finish_node(
                    key,
                    NodePhase.FAILED,
                    f"{ns.message}; retry abandoned: node {failed} failed and onFailure is stop",
                )

    # ----------------------------------------------------------------- run phase

    def _finish(self) -> None:
        status = self.status
        status.nodes = self.nodes
        status.observed_generation = self.ctx.generation
        summary = summarize(
            self.nodes,
            final_names=self.final_names,
            ending=status.ending_phase,
            suspended=self._suspended(),
            timeout_seconds=self.workflow.timeout_seconds,
        )
        status.phase = summary.phase
        status.message = summary.message
        status.progress = summary.progress
        if summary.finished:
            status.finished_at = status.finished_at or self.now_iso
            started = parse_iso(status.started_at or self.now_iso)
            elapsed = (parse_iso(status.finished_at) - started).total_seconds()
            status.duration = format_duration(elapsed)
        self._set_conditions()
        if status.phase is not self.old.phase:
            is_bad = status.phase in (RunPhase.FAILED, RunPhase.TIMED_OUT)
            self._event("Warning" if is_bad else "Normal", str(status.phase), status.message or "")

    def _set_conditions(self) -> None:
        phase = self.status.phase or RunPhase.PENDING
        waiting = any(ns.phase is NodePhase.WAITING_FOR_APPROVAL for ns in self.nodes.values())
        self.status.conditions = run_conditions(
            phase,
            self.status.message,
            waiting,
            self.old.conditions,
            self.now_iso,
            self.ctx.generation,
        )

    # ----------------------------------------------------------------- requeue and events

    def _requeue_at(self) -> datetime | None:
        if self.status.phase is not None and self.status.phase.terminal:
            return None
        times: list[datetime] = []
        for key, ns in self.nodes.items():
            if ns.phase is NodePhase.RETRYING and ns.next_attempt_at:
                times.append(parse_iso(ns.next_attempt_at))
            elif ns.phase is NodePhase.QUEUED and ns.next_attempt_at:
                # Only a future time: a refused node that is due but waits for a slot (or
                # for the run to resume) is started by the pass that frees it.
                due = parse_iso(ns.next_attempt_at)
                if due > self.now:
                    times.append(due)
            elif ns.phase is NodePhase.WAITING_FOR_APPROVAL and ns.started_at:
                approval = self.specs[template_of(key)].approval
                if approval is not None and approval.timeout_seconds:
                    times.append(
                        parse_iso(ns.started_at) + timedelta(seconds=approval.timeout_seconds)
                    )
        timeout = self.workflow.timeout_seconds
        if timeout and self.status.started_at and self.status.ending_phase is None:
            times.append(parse_iso(self.status.started_at) + timedelta(seconds=timeout))
        if self.when_deferred:
            times.append(self.now)
        return min(times) if times else None

    def _event(self, type_: Literal["Normal", "Warning"], reason: str, message: str) -> None:
        self.actions.append(EmitEvent(type_, reason, message))


def _item_of(key: str, ns: NodeStatus) -> str | None:
    """A fan-out instance's item: stored when it differs from the key's label, else the label."""
    if ns.item is not None or ns.index is None:
        return ns.item
    return key[key.index("[") + 1 : -1]


def _new_instance(item: str, label: str, index: int) -> NodeStatus:
    return NodeStatus(phase=NodePhase.PENDING, item=None if item == label else item, index=index)


def _phase_verb(phase: NodePhase) -> str:
    return {
        NodePhase.FAILED: "failed",
        NodePhase.TIMED_OUT: "timed out",
        NodePhase.CANCELLED: "was cancelled",
        NodePhase.SKIPPED: "was skipped",
    }.get(phase, str(phase).lower())


__all__ = ["plan", "retry_delay", "template_of"]
