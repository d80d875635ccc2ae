"""What a pass changed, counted and logged: run and node phase changes (SPEC §5)."""

from __future__ import annotations

import logging

from kdag.api import NodePhase, WorkflowRunStatus
from kdag.engine.timeutil import parse_iso
from kdag.operator.metrics import Metrics
from kdag.operator.objects import RunKey

logger = logging.getLogger(__name__)


def record_transitions(
    metrics: Metrics, key: RunKey, old: WorkflowRunStatus | None, new: WorkflowRunStatus
) -> None:
    """Count the transitions this pass made (never the ones found at start-up)."""
    extra = {"run": f"{key[0]}/{key[1]}"}
    old_phase = old.phase if old else None
    if (old is None or old.workflow is None) and new.workflow is not None:
        metrics.runs_started.inc()
    if new.phase is not None and new.phase is not old_phase:
        logger.info("run %s/%s is %s: %s", *key, new.phase, new.message or "", extra=extra)
        if new.phase.terminal and (old_phase is None or not old_phase.terminal):
            metrics.run_finished(new.phase, _seconds_between(new.started_at, new.finished_at))
    before = (old.nodes or {}) if old else {}
    approvals = 0
    for name, node in (new.nodes or {}).items():
        if node.phase is NodePhase.WAITING_FOR_APPROVAL:
            approvals += 1
        previous = before.get(name)
        if previous is not None and previous.phase is node.phase:
            continue
        if node.phase.terminal:
            metrics.node_finished(node.phase, _seconds_between(node.started_at, node.finished_at))
            logger.info(
                "node %s %s%s",
                name,
                node.phase,
                f": {node.message}" if node.message else "",
                extra={**extra, "node": name},
            )
        elif node.phase is NodePhase.RETRYING:
            metrics.node_retries.inc()
    metrics.track_run(key, new.phase, approvals)


def _seconds_between(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    try:
        return (parse_iso(end) - parse_iso(start)).total_seconds()
    except ValueError:
        return None
