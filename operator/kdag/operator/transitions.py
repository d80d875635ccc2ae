"""What a pass changed, as the planner reported it: counted and logged (SPEC §5)."""

from __future__ import annotations

import logging

from kdag.api import NodePhase
from kdag.engine.transitions import Transitions
from kdag.operator.metrics import Metrics
from kdag.operator.objects import RunKey

logger = logging.getLogger(__name__)


def record_transitions(metrics: Metrics, key: RunKey, changes: Transitions) -> None:
    """Count the transitions this pass made (never the ones found at start-up)."""
    extra = {"run": f"{key[0]}/{key[1]}"}
    if changes.started:
        metrics.runs_started.inc()
    if changes.phase_changed:
        logger.info("run %s/%s is %s: %s", *key, changes.phase, changes.message or "", extra=extra)
    if changes.finished and changes.phase is not None:
        metrics.run_finished(changes.phase, changes.seconds)
    for node in changes.nodes:
        if node.phase.terminal:
            metrics.node_finished(node.phase, node.seconds)
            logger.info(
                "node %s %s%s",
                node.name,
                node.phase,
                f": {node.message}" if node.message else "",
                extra={**extra, "node": node.name},
            )
        elif node.phase is NodePhase.RETRYING:
            metrics.node_retries.inc()
    metrics.track_run(key, changes.phase, changes.waiting_for_approval)
