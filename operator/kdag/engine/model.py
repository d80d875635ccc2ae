"""What the planner is given and what it returns: plain, immutable values.

The operator turns Kubernetes objects into these before planning and turns the actions back
into API calls after; the planner never sees a client.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from kdag.api import WorkflowRunSpec, WorkflowRunStatus, WorkflowSpec
from kdag.engine.transitions import Transitions

# Annotations users set on a run to steer it (SPEC §3).
APPROVE_PREFIX = "approve.kdag.dev/"
REJECT_PREFIX = "reject.kdag.dev/"
RERUN_ANNOTATION = "kdag.dev/rerun"

# Labels and annotations kdag puts on the Jobs it creates.
LABEL_RUN = "kdag.dev/run"
LABEL_NODE = "kdag.dev/node"
LABEL_ATTEMPT = "kdag.dev/attempt"
LABEL_WORKFLOW = "kdag.dev/workflow"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY = "kdag"
ANNOTATION_INSTANCE = "kdag.dev/node-instance"
# The run's full name: the `kdag.dev/run` label holds a shortened form of names over 63.
ANNOTATION_RUN = "kdag.dev/run-name"
ANNOTATION_READY_AT = "kdag.dev/ready-at"

SERVICE_ACCOUNT_USER = "system:serviceaccount"

JobRetentionPolicy = Literal["Retain", "DeleteSucceeded", "Delete"]
# Bytes of outputs (compact JSON) one run may keep in its status: with 5,000 nodes the run
# object still stays under 1 MiB (docs/limits.md).
DEFAULT_OUTPUT_BUDGET = 256 * 1024
# The reason of a failed attempt whose Job's pods the API server refused for good
# (PodSecurity, an admission webhook): the operator reads it from the Job's Events.
PODS_REFUSED_REASON = "PodsRefused"


@dataclass(frozen=True)
class ServiceAccountRef:
    """A ServiceAccount by namespace and name: the operator's own, which no node may use."""

    namespace: str
    name: str

    @classmethod
    def from_username(cls, username: str) -> ServiceAccountRef | None:
        """The account behind `system:serviceaccount:<namespace>:<name>`; None for any other
        user (an admin's or developer's kubeconfig has no ServiceAccount to protect)."""
        parts = username.split(":")
        if len(parts) != 4 or ":".join(parts[:2]) != SERVICE_ACCOUNT_USER or not all(parts):
            return None
        return cls(namespace=parts[2], name=parts[3])

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class RunContext:
    """The run as the planner needs it: identity, spec, annotations, and the workflow.

    `workflow` is the resolved Workflow spec (from workflowRef or inline); the planner only
    uses it until the run has taken its snapshot in status. `problem` carries an error found
    while resolving or parsing (unknown workflowRef, schema error), which makes the run Invalid.
    `operator_account` is the operator's own ServiceAccount, which no node's pods may use.
    """

    name: str
    namespace: str
    uid: str
    spec: WorkflowRunSpec
    workflow: WorkflowSpec | None = None
    workflow_name: str | None = None
    annotations: Mapping[str, str] = field(default_factory=dict)
    generation: int | None = None
    problem: str | None = None
    max_nodes: int = 10_000
    operator_account: ServiceAccountRef | None = None
    # Operator-wide defaults a workflow may override (--job-retention-policy) or not
    # (--max-run-output-bytes).
    job_retention_policy: JobRetentionPolicy = "Retain"
    output_budget: int = DEFAULT_OUTPUT_BUDGET


class JobState(StrEnum):
    ACTIVE = "Active"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


@dataclass(frozen=True)
class JobObservation:
    """A Job of this run as last seen, with its pod's container result folded in."""

    name: str
    instance: str
    attempt: int
    state: JobState
    reason: str | None = None  # Job condition reason: DeadlineExceeded, BackoffLimitExceeded
    message: str | None = None  # Job condition message
    exit_code: int | None = None
    termination_message: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    deleting: bool = False
    # When the operator first saw the Job in this state (its clock, not the Job's).
    seen_at: datetime | None = None
    # The attempt's pod once it ended (phase Succeeded or Failed, not being deleted): with
    # one pod per attempt and no Job-level retries, it decides the attempt a second before
    # the Job controller marks the Job finished. None while it runs or is being deleted.
    pod_state: JobState | None = None
    pod_reason: str | None = None  # the container's terminated reason: Error, OOMKilled, ...
    pod_finished_at: datetime | None = None
    pod_seen_at: datetime | None = None  # when the operator first saw the pod ended
    # Why its container cannot start (ImagePullBackOff: ...), while it cannot.
    pod_waiting: str | None = None


@dataclass(frozen=True)
class Observed:
    """Everything observed about a run's Jobs, keyed by Job name.

    `refused` holds the Jobs of this pass that the API server refused to create for now
    (a full ResourceQuota), by name, with its message: the planner keeps those nodes Queued
    and, while any create is refused, creates nothing else in the pass.
    """

    jobs: Mapping[str, JobObservation] = field(default_factory=dict)
    refused: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CreateJob:
    instance: str
    attempt: int
    manifest: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.manifest["metadata"]["name"])


@dataclass(frozen=True)
class DeleteJob:
    name: str
    reason: str


@dataclass(frozen=True)
class EmitEvent:
    type: Literal["Normal", "Warning"]
    reason: str
    message: str


@dataclass(frozen=True)
class RemoveAnnotations:
    """Answers that a rerun consumed (a reject must not fail the rerun gate again)."""

    keys: tuple[str, ...]


Action = CreateJob | DeleteJob | EmitEvent | RemoveAnnotations


@dataclass(frozen=True)
class PlanResult:
    status: WorkflowRunStatus
    actions: list[Action]
    requeue_at: datetime | None = None
    """When the run is due again: a rule's next deadline, or its TTL once it has ended."""
    transitions: Transitions | None = None
    """The phase changes the pass made (None: it was not planned, nothing changed)."""

    @property
    def jobs_to_create(self) -> list[CreateJob]:
        return [a for a in self.actions if isinstance(a, CreateJob)]

    @property
    def jobs_to_delete(self) -> list[DeleteJob]:
        return [a for a in self.actions if isinstance(a, DeleteJob)]

    @property
    def events(self) -> list[EmitEvent]:
        return [a for a in self.actions if isinstance(a, EmitEvent)]
