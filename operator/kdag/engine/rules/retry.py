"""Retries (SPEC §3): a failed or timed-out attempt waits its backoff in Retrying, then queues."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Literal

from kdag.api import NodePhase, NodeStatus
from kdag.engine.backoff import exponential_delay
from kdag.engine.defaults import effective_node
from kdag.engine.instance_keys import template_of
from kdag.engine.pass_state import PassState, phase_verb
from kdag.engine.timeutil import parse_iso, to_iso


def retry_delay(backoff_seconds: int, factor: float, max_backoff: int, retry: int) -> float:
    """Seconds before retry number `retry` (1-based): min(backoff * factor^(n-1), max)."""
    return exponential_delay(backoff_seconds, factor, max_backoff, retry)


def attempt_failed(
    state: PassState,
    key: str,
    ns: NodeStatus,
    phase: Literal[NodePhase.FAILED, NodePhase.TIMED_OUT],
    message: str,
    exit_code: int | None,
    finished_at: str | None = None,
) -> None:
    """Retry the node after its backoff if its retry limit allows, else finish it."""
    ns.exit_code = exit_code
    retry = effective_node(state.workflow, state.specs[template_of(key)]).retry
    used = ns.retries or 0
    if retry is not None and used < retry.limit:
        delay = retry_delay(
            retry.backoff_seconds, retry.factor, retry.max_backoff_seconds, used + 1
        )
        ns.retries = used + 1
        state.move(ns, NodePhase.RETRYING)
        ns.next_attempt_at = to_iso(state.now + timedelta(seconds=math.ceil(delay)))
        ns.message = (
            f"attempt {ns.attempt} {phase_verb(phase)}: {message}; "
            f"retry {used + 1}/{retry.limit} at {ns.next_attempt_at}"
        )
        state.event("Normal", "NodeRetrying", f"node {key}: {ns.message}")
        return
    state.finish_node(key, phase, message, finished_at=finished_at)


def queue_if_due(state: PassState, ns: NodeStatus) -> None:
    """A Retrying node whose backoff has passed queues for its next attempt."""
    if ns.next_attempt_at and parse_iso(ns.next_attempt_at) <= state.now:
        state.move(ns, NodePhase.QUEUED)
        ns.next_attempt_at = None


def node_due(state: PassState, key: str, ns: NodeStatus) -> datetime | None:
    """A Retrying node is due at its nextAttemptAt."""
    return parse_iso(ns.next_attempt_at) if ns.next_attempt_at else None
