"""A status the API server will never store (SPEC §8 size limits): the run ends Failed.

Retrying the same write forever would leave the run Running for good, so the run is ended
with a small status (phase, message, times, conditions) and its running Jobs are stopped.
"""

from __future__ import annotations

from datetime import datetime

from kdag.api import RunPhase, WorkflowRunStatus
from kdag.engine.model import Action, DeleteJob, EmitEvent, JobState, Observed, PlanResult
from kdag.engine.run_summary import run_conditions
from kdag.engine.timeutil import to_iso
from kdag.engine.transitions import transitions_between

STATUS_TOO_LARGE = "StatusTooLarge"


def fail_run(
    old: WorkflowRunStatus,
    observed: Observed,
    server_message: str,
    now: datetime,
    generation: int | None,
) -> PlanResult:
    """The run ended Failed; the result's status holds only the fields to write (a merge
    patch of it leaves the stored nodes as they are)."""
    message = (
        f"the run's status is too large for the API server to store ({server_message}); "
        "stopped. Lower the nodes' outputs or the fan-out width, "
        "or the operator's --max-run-output-bytes"
    )
    now_iso = to_iso(now)
    status = WorkflowRunStatus(
        phase=RunPhase.FAILED,
        message=message,
        started_at=old.started_at,
        finished_at=now_iso,
        conditions=run_conditions(
            RunPhase.FAILED, message, False, old.conditions, now_iso, generation
        ),
    )
    actions: list[Action] = [
        DeleteJob(name, "its run's status is too large to store")
        for name, job in observed.jobs.items()
        if job.state is JobState.ACTIVE and not job.deleting
    ]
    actions.append(EmitEvent("Warning", STATUS_TOO_LARGE, message))
    return PlanResult(status, actions, None, transitions_between(old, status))
