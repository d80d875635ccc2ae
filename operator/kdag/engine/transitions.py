"""What one pass changed: the run's and its nodes' phase changes (SPEC §5 metrics and logs).

The planner reports these with its result, so the shell counts and logs them without reading
node phases itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from kdag.api import NodePhase, RunPhase, WorkflowRunStatus
from kdag.engine.timeutil import parse_iso


class NodeTransition(NamedTuple):
    """A node whose phase this pass changed (or that this pass created)."""

    name: str
    phase: NodePhase
    message: str | None
    seconds: float | None
    """How long it ran, once it ended and both its start and end are known."""


@dataclass(frozen=True)
class Transitions:
    phase: RunPhase | None
    """The run's phase after the pass, changed or not."""
    message: str | None
    started: bool = False
    """The pass started the run (snapshotted its workflow)."""
    phase_changed: bool = False
    finished: bool = False
    """The run reached a terminal phase in this pass."""
    seconds: float | None = None
    """How long the run took, when it finished in this pass."""
    nodes: tuple[NodeTransition, ...] = ()
    waiting_for_approval: int = 0
    """Gates open after the pass."""


def transitions_between(old: WorkflowRunStatus, new: WorkflowRunStatus) -> Transitions:
    """The changes from the status a pass was given to the one it computed."""
    before = old.nodes or {}
    changed = []
    waiting = 0
    for name, node in (new.nodes or {}).items():
        if node.phase is NodePhase.WAITING_FOR_APPROVAL:
            waiting += 1
        previous = before.get(name)
        if previous is not None and previous.phase is node.phase:
            continue
        ended = node.phase.terminal
        seconds = seconds_between(node.started_at, node.finished_at) if ended else None
        changed.append(NodeTransition(name, node.phase, node.message, seconds))
    finished = (
        new.phase is not None
        and new.phase.terminal
        and (old.phase is None or not old.phase.terminal)
    )
    return Transitions(
        phase=new.phase,
        message=new.message,
        started=old.workflow is None and new.workflow is not None,
        phase_changed=new.phase is not None and new.phase is not old.phase,
        finished=finished,
        seconds=seconds_between(new.started_at, new.finished_at) if finished else None,
        nodes=tuple(changed),
        waiting_for_approval=waiting,
    )


def seconds_between(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    try:
        return (parse_iso(end) - parse_iso(start)).total_seconds()
    except ValueError:
        return None
