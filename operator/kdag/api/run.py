"""The WorkflowRun kind: one execution of a workflow (SPEC §2)."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import Field, model_validator

from kdag.api.base import SpecModel, StatusModel
from kdag.api.common import Condition, ObjectMeta
from kdag.api.workflow import WorkflowSpec


class RunPhase(StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    SUSPENDED = "Suspended"
    WAITING_FOR_APPROVAL = "WaitingForApproval"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    CANCELLED = "Cancelled"
    TIMED_OUT = "TimedOut"
    INVALID = "Invalid"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_RUN_PHASES


TERMINAL_RUN_PHASES = frozenset(
    {RunPhase.SUCCEEDED, RunPhase.FAILED, RunPhase.CANCELLED, RunPhase.TIMED_OUT, RunPhase.INVALID}
)


class NodePhase(StrEnum):
    PENDING = "Pending"
    QUEUED = "Queued"
    RUNNING = "Running"
    RETRYING = "Retrying"
    WAITING_FOR_APPROVAL = "WaitingForApproval"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    TIMED_OUT = "TimedOut"
    SKIPPED = "Skipped"
    CANCELLED = "Cancelled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_NODE_PHASES

    @property
    def unsuccessful(self) -> bool:
        return self in UNSUCCESSFUL_NODE_PHASES


TERMINAL_NODE_PHASES = frozenset(
    {
        NodePhase.SUCCEEDED,
        NodePhase.FAILED,
        NodePhase.TIMED_OUT,
        NodePhase.SKIPPED,
        NodePhase.CANCELLED,
    }
)
UNSUCCESSFUL_NODE_PHASES = frozenset({NodePhase.FAILED, NodePhase.TIMED_OUT, NodePhase.CANCELLED})


class SkipReason(StrEnum):
    """Why a node was skipped: only a `when` skip lets dependents run."""

    WHEN_FALSE = "WhenFalse"
    NO_ITEMS = "NoItems"
    UPSTREAM = "Upstream"
    STOPPED = "RunStopping"

    @property
    def lets_dependents_run(self) -> bool:
        return self in (SkipReason.WHEN_FALSE, SkipReason.NO_ITEMS)


class WorkflowRef(SpecModel):
    """Names the Workflow, in the run's namespace, that the run executes."""

    name: str = Field(min_length=1, max_length=253, description="Workflow name.")


class WorkflowRunSpec(SpecModel):
    """What to run and how to steer it."""

    workflow_ref: WorkflowRef | None = Field(
        default=None, description="The Workflow to run; or give `workflow` inline instead."
    )
    workflow: WorkflowSpec | None = Field(
        default=None, description="An inline workflow spec, instead of workflowRef."
    )
    params: dict[str, str] | None = Field(
        default=None, description="Param values; declared params not given use their default."
    )
    suspend: bool | None = Field(
        default=None, description="True: start no new nodes; running ones finish. False resumes."
    )
    cancel: bool | None = Field(
        default=None,
        description="True: delete running Jobs, mark the rest Cancelled, run `finally`.",
    )

    @model_validator(mode="after")
    def _one_workflow_source(self) -> WorkflowRunSpec:
        if (self.workflow_ref is None) == (self.workflow is None):
            raise ValueError("set exactly one of workflowRef and workflow")
        return self


class NodeStatus(StatusModel):
    """Progress of one node (or one fan-out instance) of the run."""

    phase: NodePhase = Field(description="Node phase.")
    attempt: int | None = Field(
        default=None, description="Attempts started so far (Job names carry the number)."
    )
    retries: int | None = Field(
        default=None, description="Retries used since the node was last (re)started."
    )
    job: str | None = Field(default=None, description="Job of the current or last attempt.")
    started_at: str | None = Field(default=None, description="When the current phase began.")
    finished_at: str | None = Field(default=None, description="When the node became terminal.")
    ready_at: str | None = Field(
        default=None, description="When the node's dependencies were done."
    )
    next_attempt_at: str | None = Field(
        default=None,
        description="When a Retrying node starts its next attempt, or a Queued node whose "
        "Job the API server refused for now (a full ResourceQuota) tries again.",
    )
    refusals: int | None = Field(
        default=None,
        description="Times the API server refused to create this node's Job for now (e.g. a "
        "full ResourceQuota) since it was last started; these are not attempts.",
    )
    exit_code: int | None = Field(default=None, description="Exit code of the last attempt.")
    outputs: dict[str, str] | None = Field(
        default=None, description="Outputs from the container's termination message."
    )
    message: str | None = Field(default=None, description="Why the node is in its phase.")
    reason: str | None = Field(
        default=None,
        description="A machine-readable reason for the node's phase, when there is one: "
        "OutputTooLarge (its outputs would exceed the run's output budget), JobRefused (Queued: "
        "the API server refused its Job for now).",
    )
    skip_reason: SkipReason | None = Field(default=None, description="Why the node was skipped.")
    approved_by: str | None = Field(default=None, description="Who approved the gate.")
    rejected_by: str | None = Field(default=None, description="Who rejected the gate.")
    answered_at: str | None = Field(default=None, description="When the gate was answered.")
    item: str | None = Field(default=None, description="The fan-out item of this instance.")
    index: int | None = Field(default=None, description="The fan-out index of this instance.")


class WorkflowRunStatus(StatusModel):
    """Observed state of the run; also the checkpoint a restarted operator resumes from."""

    phase: RunPhase | None = Field(default=None, description="Run phase.")
    progress: str | None = Field(default=None, description="Terminal nodes / total nodes.")
    started_at: str | None = Field(default=None, description="When the run started.")
    finished_at: str | None = Field(default=None, description="When the run finished.")
    duration: str | None = Field(default=None, description="Wall time of a finished run.")
    message: str | None = Field(default=None, description="Why the run is in its phase.")
    observed_generation: int | None = Field(
        default=None, description="The metadata.generation this status describes."
    )
    conditions: list[Condition] | None = Field(default=None, description="Standard conditions.")
    # Atomic for server-side field tracking: managedFields then records `f:nodes` once instead
    # of every field of every node, which for a 5,000-node run would double the object.
    nodes: dict[str, NodeStatus] | None = Field(
        default=None,
        description="Per-node progress, keyed by node name (fan-out: name[item]).",
        json_schema_extra={"x-kubernetes-map-type": "atomic"},
    )
    workflow_name: str | None = Field(default=None, description="The Workflow that was run.")
    workflow: WorkflowSpec | None = Field(
        default=None,
        description="Snapshot of the workflow taken when the run started; later edits of the "
        "Workflow do not affect the run.",
        json_schema_extra={"x-kubernetes-map-type": "atomic"},
    )
    params: dict[str, str] | None = Field(
        default=None, description="Resolved param values (defaults applied)."
    )
    ending_phase: RunPhase | None = Field(
        default=None,
        description="While `finally` nodes run: the phase the run will end in.",
    )
    rerun_token: str | None = Field(
        default=None, description="The kdag.dev/rerun annotation value last acted on."
    )
    reruns: int | None = Field(default=None, description="How many times the run was rerun.")


class WorkflowRun(SpecModel):
    """A kdag WorkflowRun object."""

    api_version: Literal["kdag.dev/v1alpha1"] = Field(
        default="kdag.dev/v1alpha1", description="kdag.dev/v1alpha1"
    )
    kind: Literal["WorkflowRun"] = Field(default="WorkflowRun", description="WorkflowRun")
    metadata: ObjectMeta = Field(default_factory=ObjectMeta, description="Standard metadata.")
    spec: WorkflowRunSpec = Field(description="What to run.")
    status: WorkflowRunStatus | None = Field(default=None, description="Observed state.")
