"""A finished run's time to live (SPEC §2 `ttlSecondsAfterFinished`): when it is deleted."""

from __future__ import annotations

from datetime import datetime, timedelta

from kdag.api import RunPhase, WorkflowRunStatus
from kdag.engine.timeutil import parse_iso_or_none


def expires_at(status: WorkflowRunStatus) -> datetime | None:
    """When the run is to be deleted: its end plus its workflow's TTL; None while it runs
    or when its workflow keeps it."""
    workflow = status.workflow
    ttl = workflow.ttl_seconds_after_finished if workflow is not None else None
    return expiry_time(status.phase, status.finished_at, ttl)


def expiry_time(
    phase: RunPhase | None, finished_at: object, ttl_seconds: object
) -> datetime | None:
    """The rule itself, for a status read as models or straight from the object (a settled
    run's status is not parsed just to learn its TTL)."""
    if phase is None or not phase.terminal:
        return None
    if not isinstance(ttl_seconds, int) or isinstance(ttl_seconds, bool):
        return None
    finished = parse_iso_or_none(finished_at)
    return None if finished is None else finished + timedelta(seconds=ttl_seconds)
