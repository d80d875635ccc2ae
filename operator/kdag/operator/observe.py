"""Kubernetes Job, Pod and Event objects -> what the cache and planner need (pure functions)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kdag.engine.jobs import CONTAINER_NAME
from kdag.engine.model import (
    ANNOTATION_INSTANCE,
    ANNOTATION_RUN,
    LABEL_ATTEMPT,
    LABEL_RUN,
    JobObservation,
    JobState,
)
from kdag.engine.timeutil import parse_iso

# Set by the Job controller on every pod it creates (the older `job-name` label too).
POD_JOB_LABEL = "batch.kubernetes.io/job-name"
LEGACY_POD_JOB_LABEL = "job-name"
# The reason of the Event the Job controller posts on a Job when a pod create fails.
FAILED_CREATE = "FailedCreate"
_TRANSIENT_REFUSALS = ("exceeded quota", "error looking up service account")


# Pod phases that end a pod whose containers never restart (restartPolicy Never).
_ENDED_PHASES = {"Succeeded": JobState.SUCCEEDED, "Failed": JobState.FAILED}


@dataclass(frozen=True)
class PodResult:
    """How the node's container ended, from its pod's status."""

    exit_code: int | None
    termination_message: str | None
    job_uid: str | None = None  # the Job that owns the pod; a same-named older Job must not count
    # The pod ended by itself (phase Succeeded/Failed, not being deleted): it decides the
    # attempt (`kdag.engine.rules.attempts.decided`). None for a pod being deleted: a Job
    # deadline or an eviction, which the Job's own status reports.
    pod_state: JobState | None = None
    reason: str | None = None
    finished_at: datetime | None = None
    seen_at: datetime | None = field(default=None, compare=False)


@dataclass(frozen=True)
class ObservedJob:
    """A Job of a run as the cache keeps it: which run it belongs to and what state it is in."""

    namespace: str
    run: str
    uid: str
    # The WorkflowRun that owns the Job: a deleted run may leave same-named Jobs behind.
    owner_uid: str | None
    resource_version: str
    observation: JobObservation
    awaiting_pods: bool = False  # see `awaiting_pods`


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return parse_iso(value)
    except ValueError:
        return None


def _true_condition(status: Mapping[str, Any], type_: str) -> Mapping[str, Any] | None:
    for condition in status.get("conditions") or []:
        if condition.get("type") == type_ and condition.get("status") == "True":
            return condition  # type: ignore[no-any-return]
    return None


def observe_job(job: Mapping[str, Any]) -> ObservedJob | None:
    """The Job as the planner sees it, or None when it is not a kdag node Job.

    Complete=True -> SUCCEEDED; Failed=True -> FAILED with the condition's reason and message
    (DeadlineExceeded when activeDeadlineSeconds was hit); anything else is still ACTIVE.
    """
    meta = job.get("metadata") or {}
    labels = meta.get("labels") or {}
    annotations = meta.get("annotations") or {}
    instance = annotations.get(ANNOTATION_INSTANCE)
    run = run_of(meta)
    try:
        attempt = int(labels.get(LABEL_ATTEMPT, ""))
    except ValueError:
        return None
    if not instance or not run or not meta.get("name"):
        return None
    status = job.get("status") or {}
    state, reason, message = JobState.ACTIVE, None, None
    finished_at = None
    if (complete := _true_condition(status, "Complete")) is not None:
        state = JobState.SUCCEEDED
        finished_at = _time(status.get("completionTime")) or _time(
            complete.get("lastTransitionTime")
        )
    elif (failed := _true_condition(status, "Failed")) is not None:
        state = JobState.FAILED
        reason = failed.get("reason")
        message = failed.get("message")
        finished_at = _time(failed.get("lastTransitionTime"))
    observation = JobObservation(
        name=meta["name"],
        instance=instance,
        attempt=attempt,
        state=state,
        reason=reason,
        message=message,
        started_at=_time(status.get("startTime")),
        finished_at=finished_at,
        deleting=meta.get("deletionTimestamp") is not None,
    )
    return ObservedJob(
        namespace=meta.get("namespace", ""),
        run=run,
        uid=str(meta.get("uid", "")),
        owner_uid=_controller_uid(meta),
        resource_version=str(meta.get("resourceVersion", "")),
        observation=observation,
        awaiting_pods=awaiting_pods(job),
    )


def run_of(meta: Mapping[str, Any]) -> str | None:
    """The name of the run a Job or pod belongs to: the annotation holds it in full; the
    label only when the name fits a label value (as on Jobs made before the annotation)."""
    name = (meta.get("annotations") or {}).get(ANNOTATION_RUN)
    if not name:
        name = (meta.get("labels") or {}).get(LABEL_RUN)
    return name if isinstance(name, str) and name else None


def _controller_uid(meta: Mapping[str, Any]) -> str | None:
    for owner in meta.get("ownerReferences") or []:
        if owner.get("controller"):
            uid = owner.get("uid")
            return str(uid) if uid else None
    return None


def awaiting_pods(job: Mapping[str, Any]) -> bool:
    """Whether the Job controller has taken the Job up (startTime) yet it has no pod at all,
    running or finished: the sign that its pod creates are being refused.

    A Job the controller could make its pod for is never in this state for long: the same
    status write that sets startTime counts the pod as active.
    """
    spec, status = job.get("spec") or {}, job.get("status") or {}
    if spec.get("suspend") or not status.get("startTime"):
        return False
    if _true_condition(status, "Complete") or _true_condition(status, "Failed"):
        return False
    uncounted = status.get("uncountedTerminatedPods") or {}
    counts = ("active", "ready", "succeeded", "failed", "terminating")
    return not any(status.get(c) for c in counts) and not any(uncounted.values())


def pod_refusal(event: Mapping[str, Any]) -> str | None:
    """The message of a Job controller `FailedCreate` Event that refuses the Job's pod for
    good (PodSecurity, an admission webhook), or None.

    A full ResourceQuota is not for good: it frees up as other pods finish, and the Job
    controller keeps trying. Neither is a ServiceAccount that does not exist yet.
    """
    if event.get("reason") != FAILED_CREATE:
        return None
    message = event.get("message")
    if not isinstance(message, str):
        return None
    if any(transient in message for transient in _TRANSIENT_REFUSALS):
        return None
    if "is forbidden" in message or "denied the request" in message:
        return message
    return None


def pod_job_name(pod: Mapping[str, Any]) -> str | None:
    """The Job that owns the pod, from the labels the Job controller sets."""
    labels = (pod.get("metadata") or {}).get("labels") or {}
    name = labels.get(POD_JOB_LABEL) or labels.get(LEGACY_POD_JOB_LABEL)
    return name if isinstance(name, str) and name else None


def pod_result(pod: Mapping[str, Any]) -> PodResult | None:
    """The node container's terminated state, or None while it has not terminated."""
    for container in (pod.get("status") or {}).get("containerStatuses") or []:
        if container.get("name") != CONTAINER_NAME:
            continue
        terminated = (container.get("state") or {}).get("terminated")
        if not terminated:
            return None
        code = terminated.get("exitCode")
        message = terminated.get("message")
        reason = terminated.get("reason")
        meta = pod.get("metadata") or {}
        ended = None if meta.get("deletionTimestamp") else _ENDED_PHASES.get(pod_phase(pod))
        return PodResult(
            exit_code=code if isinstance(code, int) else None,
            termination_message=message if isinstance(message, str) else None,
            job_uid=_controller_uid(meta),
            pod_state=ended,
            reason=reason if isinstance(reason, str) else None,
            finished_at=_time(terminated.get("finishedAt")),
        )
    return None


# A container waiting for one of these will not start by itself soon: its node says why.
# (ContainerCreating and PodInitializing are the usual short waits and say nothing.)
_STUCK_REASONS = frozenset(
    {
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "ErrImageNeverPull",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
    }
)
_WAITING_CHARS = 300


def pod_waiting(pod: Mapping[str, Any]) -> str | None:
    """Why the node's container cannot start ("ImagePullBackOff: Back-off pulling image
    ..."), or None while it is starting, running or ended."""
    for container in (pod.get("status") or {}).get("containerStatuses") or []:
        if container.get("name") != CONTAINER_NAME:
            continue
        waiting = (container.get("state") or {}).get("waiting") or {}
        reason = waiting.get("reason")
        if not isinstance(reason, str) or reason not in _STUCK_REASONS:
            return None
        message = waiting.get("message")
        text = f"{reason}: {message}" if isinstance(message, str) and message else str(reason)
        return text[:_WAITING_CHARS]
    return None


def pod_phase(pod: Mapping[str, Any]) -> str:
    phase = (pod.get("status") or {}).get("phase")
    return phase if isinstance(phase, str) else ""


def with_pod_result(observation: JobObservation, result: PodResult | None) -> JobObservation:
    """The observation with the container's exit code and termination message folded in."""
    if result is None:
        return observation
    return dataclasses.replace(
        observation,
        exit_code=result.exit_code,
        termination_message=result.termination_message,
        pod_state=result.pod_state,
        pod_reason=result.reason,
        pod_finished_at=result.finished_at,
        pod_seen_at=result.seen_at,
    )
