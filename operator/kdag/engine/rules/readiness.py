"""Readiness (SPEC §3): when a pending node is ready, skipped, or waits, and its `when`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from kdag.api import NodePhase, NodeStatus, SkipReason
from kdag.engine import conditions
from kdag.engine.instance_keys import template_of
from kdag.engine.pass_state import PassState, item_of, phase_verb
from kdag.engine.rules import approval, fanout
from kdag.engine.timeutil import to_iso_precise


@dataclass(frozen=True)
class Dependencies:
    """How a template's dependencies stand in this pass."""

    state: Literal["ready", "waiting", "blocked"]
    blocker: str | None = None  # the node that blocks it
    ready_since: datetime | None = None  # when the last of them was seen done


_WAITING = Dependencies("waiting")  # the common answer, made once


def dependency_state(state: PassState, name: str) -> Dependencies:
    """Whether the template `name` is ready, waiting or blocked (and by which node)."""
    waiting = False
    last_done: datetime | None = None
    for dep in state.specs[name].dependencies:
        for key in state.by_template.get(dep, []):
            ns = state.nodes[key]
            if ns.phase.unsuccessful or (
                ns.phase is NodePhase.SKIPPED
                and not (ns.skip_reason and ns.skip_reason.lets_dependents_run)
            ):
                return Dependencies("blocked", blocker=key)
            if ns.phase is not NodePhase.SUCCEEDED and ns.phase is not NodePhase.SKIPPED:
                waiting = True
            seen = state.done_seen.get(key)
            if seen is not None and (last_done is None or seen > last_done):
                last_done = seen
    if waiting:
        return _WAITING
    ready_since = min(last_done, state.now) if last_done is not None else state.now
    return Dependencies("ready", ready_since=ready_since)


def advance_pending(state: PassState, key: str, ns: NodeStatus, deps: Dependencies) -> None:
    """Skip, expand, evaluate `when`, wait for approval or queue a pending node."""
    name = template_of(key)
    if deps.state == "waiting":
        return
    if deps.state == "blocked":
        blocker = deps.blocker
        assert blocker is not None
        phase = state.nodes[blocker].phase
        state.skip_node(key, SkipReason.UPSTREAM, f"upstream node {blocker} {phase_verb(phase)}")
        return
    spec = state.specs[name]
    if spec.for_each_from is not None and key == name:
        for instance in fanout.expand(state, name):
            advance_pending(state, instance, state.nodes[instance], deps)
        return
    if spec.when is not None and not _when_allows(state, key, ns, spec.when):
        return
    ns = state.writable(key)
    if spec.approval is not None:
        approval.request(state, key, ns, spec)
        return
    state.move(ns, NodePhase.QUEUED)
    ns.ready_at = to_iso_precise(deps.ready_since or state.now)


def _when_allows(state: PassState, key: str, ns: NodeStatus, when: str) -> bool:
    """True when `when` lets the node go on; else it is skipped, failed or deferred."""
    if state.when_spent.exhausted:
        state.when_deferred = True
        return False
    budget = conditions.Budget()
    try:
        run_it = conditions.evaluate(when, state.activation(item_of(key, ns)), budget)
    except conditions.ConditionError as exc:
        state.finish_node(key, NodePhase.FAILED, f"when: {exc}")
        return False
    finally:
        state.when_spent.add(budget)
    if not run_it:
        state.skip_node(key, SkipReason.WHEN_FALSE, f"when {when!r} was false")
        return False
    return True


def due(state: PassState) -> datetime | None:
    """Conditions deferred by the pass's `when` budget are due at once."""
    return state.now if state.when_deferred else None
