"""Deleting finished Jobs whose result the stored status records (jobRetentionPolicy)."""

from __future__ import annotations

from kdag.api import NodePhase, WorkflowRunStatus
from kdag.engine.model import DeleteJob, JobRetentionPolicy, JobState, Observed
from kdag.engine.pass_state import PassState


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


def clean_up_jobs(state: PassState) -> bool:
    """Delete the finished Jobs the stored status already records; True when this pass
    records more, which the next pass is to delete (so the run is due again at once)."""
    policy = retention_policy(state.status, state.ctx.job_retention_policy)
    if policy == "Retain":
        return False
    deleting = set()
    if state.old.workflow is not None:
        for action in recorded_jobs_to_delete(state.old, state.observed, policy):
            state.actions.append(action)
            deleting.add(action.name)
    pending = recorded_jobs_to_delete(state.status, state.observed, policy)
    return any(action.name not in deleting for action in pending)
