"""The run-level view of its nodes: phase, message, progress and conditions (pure)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass

from kdag.api import Condition, NodePhase, NodeStatus, RunPhase
from kdag.engine.instance_keys import template_of
from kdag.engine.status_conditions import ConditionState, updated_conditions

ACTIVE_PHASES = frozenset({NodePhase.RUNNING, NodePhase.QUEUED, NodePhase.RETRYING})


def count_phases(statuses: Iterable[NodeStatus]) -> dict[NodePhase, int]:
    counts: dict[NodePhase, int] = {}
    for ns in statuses:
        counts[ns.phase] = counts.get(ns.phase, 0) + 1
    return counts


def short_list(keys: list[str], limit: int = 5) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def aggregate_phase(statuses: list[NodeStatus]) -> str:
    """One phase for all instances of a fanned-out node, as CEL and templates see it."""
    phases = {ns.phase for ns in statuses}
    if any(p.unsuccessful for p in phases):
        return str(NodePhase.FAILED)
    if all(p.terminal for p in phases):
        return str(NodePhase.SKIPPED if phases == {NodePhase.SKIPPED} else NodePhase.SUCCEEDED)
    return str(NodePhase.RUNNING)


@dataclass(frozen=True)
class Summary:
    phase: RunPhase
    message: str
    progress: str
    finished: bool


def summarize(
    nodes: Mapping[str, NodeStatus],
    *,
    final_names: AbstractSet[str],
    ending: RunPhase | None,
    suspended: bool,
    timeout_seconds: int | None,
) -> Summary:
    """The run's phase and message from its nodes; `ending` is decided once main nodes end."""
    counts = count_phases(nodes.values())
    terminal = sum(n for phase, n in counts.items() if phase.terminal)
    progress = f"{terminal}/{len(nodes)}"
    if terminal == len(nodes):
        phase = ending or RunPhase.SUCCEEDED
        message = _final_message(nodes, phase, counts, final_names, timeout_seconds)
        return Summary(phase, message, progress, finished=True)
    if suspended:
        running = counts.get(NodePhase.RUNNING, 0)
        message = f"suspended: {running} running node(s) finish, no new nodes start"
        return Summary(RunPhase.SUSPENDED, message, progress, finished=False)
    if not any(counts.get(p) for p in ACTIVE_PHASES) and counts.get(NodePhase.WAITING_FOR_APPROVAL):
        gates = [k for k, ns in nodes.items() if ns.phase is NodePhase.WAITING_FOR_APPROVAL]
        message = f"waiting for approval of {short_list(gates)}"
        return Summary(RunPhase.WAITING_FOR_APPROVAL, message, progress, finished=False)
    return Summary(RunPhase.RUNNING, _running_message(counts), progress, finished=False)


def _running_message(counts: dict[NodePhase, int]) -> str:
    parts = [
        f"{counts[p]} {p.lower()}"
        for p in (NodePhase.RUNNING, NodePhase.QUEUED, NodePhase.RETRYING)
        if counts.get(p)
    ]
    if counts.get(NodePhase.WAITING_FOR_APPROVAL):
        parts.append(f"{counts[NodePhase.WAITING_FOR_APPROVAL]} waiting for approval")
    return ", ".join(parts) or "running"


def _final_message(
    nodes: Mapping[str, NodeStatus],
    ending: RunPhase,
    counts: dict[NodePhase, int],
    final_names: AbstractSet[str],
    timeout_seconds: int | None,
) -> str:
    summary = ", ".join(f"{n} {phase.lower()}" for phase, n in sorted(counts.items()))
    if ending is RunPhase.SUCCEEDED:
        failed_finals = [
            k for k, ns in nodes.items() if template_of(k) in final_names and ns.phase.unsuccessful
        ]
        note = f"; finally node(s) {short_list(failed_finals)} failed" if failed_finals else ""
        return f"{summary}{note}"
    if ending is RunPhase.FAILED:
        failed = [
            k
            for k, ns in nodes.items()
            if ns.phase in (NodePhase.FAILED, NodePhase.TIMED_OUT)
            and template_of(k) not in final_names
        ]
        if not failed:
            return f"failed ({summary})"
        first = nodes[failed[0]]
        detail = f": {first.message}" if first.message else ""
        return f"node {failed[0]} failed{detail} ({summary})"
    if ending is RunPhase.CANCELLED:
        return f"cancelled: spec.cancel is true ({summary})"
    return f"the run exceeded its timeoutSeconds ({timeout_seconds}s) ({summary})"


def run_conditions(
    phase: RunPhase,
    message: str | None,
    waiting_for_approval: bool,
    previous: list[Condition] | None,
    now_iso: str,
    generation: int | None,
) -> list[Condition]:
    """`Succeeded` (Unknown while running, as Tekton) and `WaitingForApproval`, so
    `kubectl wait --for=condition=...` works; transition times move only on change."""
    succeeded: ConditionState
    if phase is RunPhase.SUCCEEDED:
        succeeded = ConditionState("True", "Succeeded", message)
    elif phase.terminal:
        succeeded = ConditionState("False", str(phase), message)
    else:
        succeeded = ConditionState("Unknown", str(phase), message)
    gate = (
        ConditionState("True", "GatePending", None)
        if waiting_for_approval
        else ConditionState("False", "NoGatePending", None)
    )
    return updated_conditions(
        {"Succeeded": succeeded, "WaitingForApproval": gate},
        previous or [],
        now_iso=now_iso,
        generation=generation,
    )
