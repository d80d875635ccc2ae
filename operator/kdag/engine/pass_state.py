"""The mutable state of one planning pass, and the few helpers that change a node's phase.

Every phase change goes through `move`, `finish_node`, `skip_node`, `put_node` or
`remove_node`. All but `move` drop the cached node views, so templates and `when` never
read a stale phase or outputs. A non-terminal `move` keeps them: templates and `when` may
name only upstream nodes (validation enforces it), which are terminal by the time they are
read, and thousands of starts in one pass share one set of views.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from functools import partial
from typing import Any, Literal

from kdag.api import (
    NodePhase,
    NodeSpec,
    NodeStatus,
    RunPhase,
    SkipReason,
    WorkflowRunStatus,
    WorkflowSpec,
)
from kdag.engine import conditions, names, templating
from kdag.engine.graph import WorkflowGraph, graph_of
from kdag.engine.instance_keys import label_of, template_of
from kdag.engine.model import Action, EmitEvent, Observed, RunContext
from kdag.engine.node_views import NodeViews
from kdag.engine.run_summary import aggregate_phase
from kdag.engine.timeutil import to_iso


class PassState:
    """What one `plan()` call reads and builds: the run, its old and new status, the
    observed Jobs, the time, and what the rules have decided so far."""

    workflow: WorkflowSpec
    graph: WorkflowGraph
    # Declaration (topological) position per template: the stable start order.
    position: Mapping[str, int]
    specs: Mapping[str, NodeSpec]
    final_names: frozenset[str]
    main_names: tuple[str, ...]

    def __init__(
        self, ctx: RunContext, status: WorkflowRunStatus, observed: Observed, now: datetime
    ) -> None:
        self.ctx = ctx
        self.old = status
        # The given status is never changed. Node entries a pass may change are copied one
        # level deep (their fields are replaced, never mutated in place); finished and pending
        # ones, most of a big run and rarely changed, are shared until `writable` copies one.
        # The workflow snapshot is never modified, so it is shared too.
        self.status = status.model_copy()
        self.nodes: dict[str, NodeStatus] = {}
        self._shared: set[str] = set()
        for key, node in (status.nodes or {}).items():
            if node.phase.terminal or node.phase is NodePhase.PENDING:
                self.nodes[key] = node
                self._shared.add(key)
            else:
                self.nodes[key] = node.model_copy()
        self.status.nodes = self.nodes
        self.observed = observed
        self.now = now
        self.now_iso = to_iso(now)
        self.actions: list[Action] = []
        # Set when a node changed in a way its dependents have not seen yet in this pass (it
        # failed at start, or an adopted Job had already finished): the planner advances again.
        self.advance_again = False
        # Jobs this plan asks to create: active, though not observed yet.
        self.creating: set[str] = set()
        self.by_attempt: dict[tuple[str, int], str] | None = None
        # When the operator saw the Jobs of nodes that succeeded in this pass finish: their
        # dependents became ready then, not when this pass began (SPEC §8 measures from it).
        self.done_seen: dict[str, datetime] = {}
        self.views: NodeViews | None = None
        # Instance keys per template, from the start of each advance (kept current by it).
        self.by_template: dict[str, list[str]] = {}
        # Answers a rerun removes: ignored in this pass, gone from the run by the next one.
        self.consumed_answers: set[str] = set()
        # Bytes of outputs the run's status holds, counted when first needed.
        self.outputs_used: int | None = None
        self.refused: list[str] = []
        # What this pass has spent on `when`; once spent, the rest wait for the next pass.
        self.when_spent = conditions.PassBudget()
        self.when_deferred = False
        # Deadlines, each computed once per pass: the rule that acts on it and its `due` share it.
        self.run_deadline: datetime | None = None
        self.gate_deadlines: dict[str, datetime | None] = {}

    def bind(self, workflow: WorkflowSpec) -> None:
        """Take the run's workflow snapshot and what is derived from it."""
        self.workflow = workflow
        self.graph = graph_of(workflow)
        # Shared with every pass over the same snapshot: read, never changed.
        self.position = self.graph.position
        self.specs = self.graph.specs
        self.final_names = self.graph.final_names
        self.main_names = self.graph.main_names

    # ----------------------------------------------------------------- phase changes

    def writable(self, key: str) -> NodeStatus:
        """The node's entry, this pass's own copy: the one to change."""
        if key in self._shared:
            self._shared.discard(key)
            self.nodes[key] = self.nodes[key].model_copy()
        return self.nodes[key]

    def move(self, ns: NodeStatus, phase: NodePhase) -> None:
        """A non-terminal phase change (Queued, Running, Retrying, WaitingForApproval) of a
        writable entry."""
        ns.phase = phase

    def finish_node(
        self,
        key: str,
        phase: NodePhase,
        message: str | None,
        *,
        finished_at: str | None = None,
    ) -> None:
        """Make the node terminal. Never retries: callers that retry use retry.attempt_failed."""
        ns = self.writable(key)
        self.views = None
        ns.phase = phase
        ns.message = message
        ns.finished_at = finished_at or self.now_iso
        ns.next_attempt_at = None
        ns.ready_at = None
        ns.reason = None
        ns.refusals = None
        if phase in (NodePhase.FAILED, NodePhase.TIMED_OUT):
            self.event("Warning", f"Node{phase}", f"node {key} {phase_verb(phase)}: {message}")

    def skip_node(self, key: str, reason: SkipReason, message: str) -> None:
        """Skip a node that never ran (or whose retry or refusal is abandoned before a start)."""
        ns = self.writable(key)
        self.views = None
        ns.phase = NodePhase.SKIPPED
        ns.skip_reason = reason
        ns.message = message
        ns.reason = None
        ns.refusals = None
        ns.finished_at = self.now_iso
        ns.ready_at = None
        ns.next_attempt_at = None

    def put_node(self, key: str, ns: NodeStatus) -> None:
        """A new entry for `key`: a node or instance created, a rerun's reset, a fan-out
        found to have no items."""
        self.views = None
        self._shared.discard(key)
        self.nodes[key] = ns

    def remove_node(self, key: str) -> None:
        """Drop an entry (a fan-out's placeholder, replaced by its instances)."""
        self.views = None
        self._shared.discard(key)
        del self.nodes[key]

    def event(self, type_: Literal["Normal", "Warning"], reason: str, message: str) -> None:
        self.actions.append(EmitEvent(type_, reason, message))

    # ----------------------------------------------------------------- derived views

    def keys_by_template(self) -> dict[str, list[str]]:
        by_template: dict[str, list[str]] = {name: [] for name in self.graph.order}
        for key in self.nodes:
            # Most keys are a node's own name: no call to find it (every pass, every node).
            template = template_of(key) if "[" in key else key
            by_template.setdefault(template, []).append(key)
        for keys in by_template.values():
            if len(keys) > 1:  # a fan-out's instances, in item order
                keys.sort(key=lambda k: self.nodes[k].index or 0)
        return by_template

    def node_views(self) -> NodeViews:
        """Per workflow node: its phase and outputs; fanned-out outputs are lists.

        Kept until a node finishes: thousands of starts in one pass share one view.
        """
        if self.views is None:
            keys = self.by_template or self.keys_by_template()
            # Not a bound method: a view referring back to the pass would make the pass a
            # reference cycle, kept with its Job manifests until the garbage collector ran.
            self.views = NodeViews(partial(_view_of, self.specs, self.nodes), keys)
        return self.views

    def run_view(self) -> dict[str, str]:
        ending = self.status.ending_phase
        return {
            "name": self.ctx.name,
            "namespace": self.ctx.namespace,
            "uid": self.ctx.uid,
            "phase": str(ending) if ending is not None else str(RunPhase.RUNNING),
        }

    def template_context(self, item: str | None) -> templating.TemplateContext:
        return templating.TemplateContext(
            params=self.status.params or {},
            nodes=self.node_views(),
            run=self.run_view(),
            item=item,
        )

    def activation(self, item: str | None) -> dict[str, Any]:
        activation: dict[str, Any] = {
            "params": self.status.params or {},
            "nodes": dict(self.node_views()),
            "run": self.run_view(),
        }
        if item is not None:
            activation["item"] = item
        return activation

    def job_of(self, key: str, ns: NodeStatus) -> str | None:
        """The Job of the node's current attempt (fan-out instances don't store it)."""
        name = names.current_job(self.ctx.name, self.ctx.uid, key, ns.job, ns.attempt)
        if ns.job or not ns.attempt or name in self.observed.jobs or name in self.creating:
            return name
        # An instance started by an operator that named Jobs differently (before an upgrade)
        # is found by its instance and attempt, not taken for deleted.
        if self.by_attempt is None:
            self.by_attempt = {(j.instance, j.attempt): n for n, j in self.observed.jobs.items()}
        return self.by_attempt.get((key, ns.attempt), name)


def _view_of(
    specs: Mapping[str, NodeSpec], nodes: dict[str, NodeStatus], name: str, keys: list[str]
) -> dict[str, Any] | None:
    """What templates and `when` see of one workflow node (see `PassState.node_views`)."""
    spec = specs.get(name)
    if spec is None or not keys:
        return None
    statuses = [nodes[k] for k in keys]
    if spec.fans_out:
        merged: dict[str, list[str]] = {}
        for ns in statuses:
            for out_key, value in (ns.outputs or {}).items():
                merged.setdefault(out_key, []).append(value)
        return {"phase": aggregate_phase(statuses), "outputs": merged}
    return {"phase": str(statuses[0].phase), "outputs": statuses[0].outputs or {}}


def item_of(key: str, ns: NodeStatus) -> str | None:
    """A fan-out instance's item: stored when it differs from the key's label, else the label."""
    if ns.item is not None or ns.index is None:
        return ns.item
    return label_of(key)


def phase_verb(phase: NodePhase) -> str:
    return {
        NodePhase.FAILED: "failed",
        NodePhase.TIMED_OUT: "timed out",
        NodePhase.CANCELLED: "was cancelled",
        NodePhase.SKIPPED: "was skipped",
    }.get(phase, str(phase).lower())
