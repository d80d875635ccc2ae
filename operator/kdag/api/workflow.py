"""The Workflow kind: a reusable DAG template (SPEC §2).

Longer than most modules because every field carries the description `kubectl explain`
shows and its bounds; the fields of one kind read best in one place.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from kdag.api.base import (
    IDENTIFIER_PATTERN,
    FreeForm,
    NodeName,
    Quantity,
    SpecModel,
    StatusModel,
)
from kdag.api.common import Condition, ObjectMeta

# Most nodes in `nodes`, and in `finally`, of one workflow (fan-out instances not counted).
MAX_NODES = 500
# Most `dependsOn` entries of one node.
MAX_DEPENDENCIES = 100
# Longest `when`. Conditions are short; the operator also bounds what each one may cost to
# evaluate (kdag.engine.conditions), which length alone cannot: 135 characters of nested
# comprehensions cost millions of steps.
MAX_WHEN_LENGTH = 1024
# Upper bounds of the numeric fields (docs/limits.md). Durations are added to timestamps,
# which overflow past the year 9999: without a bound a huge value passed validation and then
# failed every pass. One year for deadlines and the TTL, one day between attempts.
MAX_DURATION_SECONDS = 365 * 24 * 3600
MAX_BACKOFF_SECONDS = 24 * 3600
MAX_RETRIES = 100
MAX_RETRY_FACTOR = 10.0
# More than any run can have running (fan-out is bounded by the operator's --max-nodes).
MAX_PARALLELISM = 1_000_000
MAX_HISTORY = 1000


class ParamSpec(SpecModel):
    """A declared input of the workflow."""

    name: str = Field(
        min_length=1,
        max_length=63,
        pattern=IDENTIFIER_PATTERN,
        description="Param name, used as {{ params.<name> }} in templates and params.<name> "
        "in CEL.",
    )
    default: str | None = Field(
        default=None,
        description="Value used when a run does not set this param; without one the param is "
        "required.",
    )
    description: str | None = Field(default=None, description="What the param means.")
    enum: list[str] | None = Field(
        default=None, description="If set, the only values a run may give this param."
    )


class EnvVar(SpecModel):
    """An environment variable of the node's container."""

    name: str = Field(min_length=1, description="Variable name.")
    value: str | None = Field(
        default=None, description="Value; {{ ... }} templates are substituted."
    )
    value_from: FreeForm | None = Field(
        default=None,
        description="A Kubernetes EnvVarSource (secretKeyRef, configMapKeyRef, fieldRef, ...), "
        "passed through unchanged.",
    )


class ResourceRequirements(SpecModel):
    """Compute resources of the node's container, as in a PodSpec."""

    requests: dict[str, Quantity] | None = Field(
        default=None, description="Minimum resources the scheduler reserves, e.g. cpu: 100m."
    )
    limits: dict[str, Quantity] | None = Field(
        default=None, description="Maximum resources the container may use, e.g. memory: 1Gi."
    )


class RetryPolicy(SpecModel):
    """How a failed or timed-out attempt is retried."""

    limit: int = Field(
        default=0, ge=0, le=MAX_RETRIES, description="Retries after the first attempt (0: none)."
    )
    backoff_seconds: int = Field(
        default=10,
        ge=0,
        le=MAX_BACKOFF_SECONDS,
        description="Wait before the first retry, in seconds (at most one day).",
    )
    factor: float = Field(
        default=2.0,
        ge=1.0,
        le=MAX_RETRY_FACTOR,
        description="Each further retry waits this many times longer.",
    )
    max_backoff_seconds: int = Field(
        default=300,
        ge=0,
        le=MAX_BACKOFF_SECONDS,
        description="Upper bound of the wait between attempts, in seconds (at most one day).",
    )


class ApprovalSpec(SpecModel):
    """Makes the node a gate that waits for a person instead of running a Job."""

    message: str | None = Field(default=None, description="The question shown to approvers.")
    timeout_seconds: int | None = Field(
        default=None,
        ge=1,
        le=MAX_DURATION_SECONDS,
        description="The gate fails if nobody answers within this many seconds (at most one year).",
    )
    approvers: list[str] | None = Field(
        default=None,
        description="Usernames or group:<name> entries allowed to answer; enforced when the "
        "chart's approval admission policy is enabled.",
    )


class PodMetadata(SpecModel):
    """Labels and annotations added to the node's pods."""

    labels: dict[str, str] | None = Field(default=None, description="Extra pod labels.")
    annotations: dict[str, str] | None = Field(default=None, description="Extra pod annotations.")


class Capabilities(SpecModel):
    """Linux capabilities added to or dropped from the node's container."""

    add: list[str] | None = Field(
        default=None, description="Capabilities to add, e.g. NET_BIND_SERVICE."
    )
    drop: list[str] | None = Field(
        default=None, description="Capabilities to drop; kdag drops ALL when unset."
    )


class SeccompProfile(SpecModel):
    """The seccomp profile of the node's container."""

    type: Literal["RuntimeDefault", "Localhost", "Unconfined"] = Field(
        description="RuntimeDefault (kdag's default), Localhost (a profile file on the node) "
        "or Unconfined."
    )
    localhost_profile: str | None = Field(
        default=None,
        min_length=1,
        description="With type Localhost: the profile's path, relative to the kubelet's "
        "seccomp directory.",
    )

    @model_validator(mode="after")
    def _localhost_needs_a_profile(self) -> SeccompProfile:
        if (self.type == "Localhost") != (self.localhost_profile is not None):
            raise ValueError("localhostProfile is required with type Localhost, and only then")
        return self


class SecurityContext(SpecModel):
    """The node container's securityContext: the Kubernetes SecurityContext fields kdag
    supports.

    kdag fills in a secure default for what is left unset: allowPrivilegeEscalation false,
    capabilities.drop [ALL] and seccompProfile RuntimeDefault, which is what the PodSecurity
    `restricted` level asks of a container, apart from runAsNonRoot, which only the workflow
    can promise (its image must run as a non-root user).
    """

    allow_privilege_escalation: bool | None = Field(
        default=None,
        description="Whether a process may gain more privileges than its parent; kdag sets "
        "false when unset (and the container is not privileged and adds no CAP_SYS_ADMIN).",
    )
    capabilities: Capabilities | None = Field(
        default=None, description="Capabilities to add and drop; kdag drops ALL when unset."
    )
    privileged: bool | None = Field(
        default=None, description="Run the container privileged (forbidden by baseline)."
    )
    read_only_root_filesystem: bool | None = Field(
        default=None, description="Mount the container's root filesystem read-only."
    )
    run_as_non_root: bool | None = Field(
        default=None,
        description="Refuse to start the container as root (uid 0); required by the "
        "PodSecurity restricted level.",
    )
    run_as_user: int | None = Field(
        default=None, ge=0, description="The uid the container's process runs as."
    )
    run_as_group: int | None = Field(
        default=None, ge=0, description="The gid the container's process runs as."
    )
    seccomp_profile: SeccompProfile | None = Field(
        default=None,
        description="The container's seccomp profile; kdag sets RuntimeDefault when unset "
        "here and in podTemplate.securityContext.",
    )


class NodeDefaults(SpecModel):
    """Settings merged into every node unless the node sets them itself."""

    image: str | None = Field(default=None, description="Container image.")
    command: list[str] | None = Field(default=None, description="Container entrypoint.")
    env: list[EnvVar] | None = Field(
        default=None, description="Environment variables, merged by name with the node's own."
    )
    resources: ResourceRequirements | None = Field(
        default=None, description="Resource requests and limits."
    )
    timeout_seconds: int | None = Field(
        default=None,
        ge=1,
        le=MAX_DURATION_SECONDS,
        description="Node deadline in seconds (at most one year): the Job's activeDeadlineSeconds.",
    )
    retry: RetryPolicy | None = Field(default=None, description="Retry policy of failed attempts.")
    pod_template: FreeForm | None = Field(
        default=None,
        description="A partial PodSpec (serviceAccountName, nodeSelector, tolerations, volumes, "
        "securityContext, ...) merged into each node's pod.",
    )
    pod_metadata: PodMetadata | None = Field(
        default=None, description="Labels and annotations added to each node's pod."
    )
    security_context: SecurityContext | None = Field(
        default=None,
        description="The securityContext of each node's container, merged field by field "
        "with the node's own; secure defaults fill what both leave unset.",
    )


class NodeSpec(SpecModel):
    """One step of the DAG: a Job, or an approval gate."""

    name: NodeName = Field(
        description="Node name, a DNS label (lowercase letters, digits, '-'), unique in the "
        "workflow."
    )
    # Bounded (like `nodes` and `finally` below) so the CRD's CEL rules fit the API server's
    # cost budget; see kdag.api.crd_rules.
    depends_on: list[NodeName] | None = Field(
        default=None,
        max_length=MAX_DEPENDENCIES,
        description="Nodes that must succeed (or be skipped by `when`) first.",
    )
    when: str | None = Field(
        default=None,
        max_length=MAX_WHEN_LENGTH,
        description="CEL condition over params, nodes and run; false skips the node. An "
        "evaluation that exceeds its cost budget fails the node.",
    )
    for_each: list[str] | None = Field(
        default=None,
        description="Fan-out: one instance of the node per item, named <node>[<item>]; "
        "{{ item }} is the item.",
    )
    for_each_from: str | None = Field(
        default=None,
        description="Fan-out over a JSON array known only at run time, usually "
        "{{ nodes.<n>.outputs.<key> }}.",
    )
    image: str | None = Field(default=None, description="Container image.")
    command: list[str] | None = Field(
        default=None, description="Container entrypoint; templates are substituted."
    )
    args: list[str] | None = Field(
        default=None, description="Container arguments; templates are substituted."
    )
    env: list[EnvVar] | None = Field(default=None, description="Environment variables.")
    resources: ResourceRequirements | None = Field(
        default=None, description="Resource requests and limits."
    )
    timeout_seconds: int | None = Field(
        default=None,
        ge=1,
        le=MAX_DURATION_SECONDS,
        description="Node deadline in seconds (at most one year): the Job's activeDeadlineSeconds.",
    )
    retry: RetryPolicy | None = Field(default=None, description="Retry policy of failed attempts.")
    approval: ApprovalSpec | None = Field(
        default=None, description="Makes this node an approval gate: no Job, waits for a person."
    )
    pod_template: FreeForm | None = Field(
        default=None, description="A partial PodSpec merged into the node's pod."
    )
    pod_metadata: PodMetadata | None = Field(
        default=None, description="Labels and annotations added to the node's pod."
    )
    security_context: SecurityContext | None = Field(
        default=None,
        description="The securityContext of the node's container; fields it leaves unset come "
        "from defaults.securityContext, then from kdag's secure defaults "
        "(allowPrivilegeEscalation false, capabilities.drop [ALL], seccompProfile "
        "RuntimeDefault).",
    )

    @property
    def dependencies(self) -> list[str]:
        return list(self.depends_on or [])

    @property
    def fans_out(self) -> bool:
        return self.for_each is not None or self.for_each_from is not None


class HistoryLimit(SpecModel):
    """How many finished scheduled runs are kept."""

    succeeded: int = Field(default=3, ge=0, le=MAX_HISTORY, description="Succeeded runs kept.")
    failed: int = Field(
        default=1, ge=0, le=MAX_HISTORY, description="Runs kept that did not succeed."
    )


class ScheduleSpec(SpecModel):
    """Creates runs of the workflow on a cron schedule, like a CronJob."""

    cron: str = Field(min_length=1, description="Five-field cron expression, e.g. '0 2 * * *'.")
    timezone: str | None = Field(
        default=None, description="IANA time zone of the cron expression; UTC when unset."
    )
    concurrency_policy: Literal["Allow", "Forbid", "Replace"] = Field(
        default="Allow",
        description="Allow: overlapping runs; Forbid: skip a tick while a run is active; "
        "Replace: cancel the active run and start the new one.",
    )
    history_limit: HistoryLimit | None = Field(
        default=None, description="Finished scheduled runs kept; older ones are deleted."
    )
    suspend: bool | None = Field(default=None, description="True pauses the schedule.")
    params: dict[str, str] | None = Field(
        default=None, description="Param values of scheduled runs."
    )


class WorkflowSpec(SpecModel):
    """A reusable DAG of nodes."""

    description: str | None = Field(default=None, description="What the workflow does.")
    params: list[ParamSpec] | None = Field(
        default=None, description="Declared inputs; a run may override their defaults."
    )
    defaults: NodeDefaults | None = Field(
        default=None, description="Settings merged into every node unless the node overrides."
    )
    parallelism: int | None = Field(
        default=None,
        ge=0,
        le=MAX_PARALLELISM,
        description="Most nodes of one run running at once; 0 or unset means unbounded.",
    )
    timeout_seconds: int | None = Field(
        default=None,
        ge=1,
        le=MAX_DURATION_SECONDS,
        description="Whole-run deadline in seconds (at most one year): running Jobs are deleted "
        "and the run ends TimedOut.",
    )
    on_failure: Literal["stop", "continue"] | None = Field(
        default=None,
        description="stop (default): start nothing new once a node fails; continue: run all "
        "that can run.",
    )
    nodes: list[NodeSpec] = Field(
        min_length=1, max_length=MAX_NODES, description="The nodes of the DAG."
    )
    finally_: list[NodeSpec] | None = Field(
        default=None,
        alias="finally",
        max_length=MAX_NODES,
        description="Nodes run after every other node is terminal, whatever the outcome.",
    )
    schedule: ScheduleSpec | None = Field(
        default=None, description="Create runs of this workflow on a cron schedule."
    )
    ttl_seconds_after_finished: int | None = Field(
        default=None,
        ge=0,
        le=MAX_DURATION_SECONDS,
        description="Finished runs of this workflow are deleted after this many seconds (at "
        "most one year).",
    )
    job_retention_policy: Literal["Retain", "DeleteSucceeded", "Delete"] | None = Field(
        default=None,
        description="What happens to a node's finished Jobs once their result is recorded in "
        "the run's status: Retain keeps them (until the run is deleted); DeleteSucceeded "
        "deletes succeeded ones and keeps failed ones for their logs; Delete deletes every "
        "finished Job. Deleting frees a count/jobs.batch ResourceQuota for the run's next "
        "nodes. Unset: the operator's --job-retention-policy (default Retain).",
    )

    @property
    def finally_nodes(self) -> list[NodeSpec]:
        return list(self.finally_ or [])

    @property
    def all_nodes(self) -> list[NodeSpec]:
        return [*self.nodes, *self.finally_nodes]

    @property
    def stops_on_failure(self) -> bool:
        return self.on_failure != "continue"


class WorkflowStatus(StatusModel):
    """What the operator observed about the workflow."""

    observed_generation: int | None = Field(
        default=None, description="The metadata.generation this status describes."
    )
    valid: bool | None = Field(default=None, description="Whether the workflow validates.")
    message: str | None = Field(default=None, description="Validation problems, if any.")
    node_count: int | None = Field(
        default=None, description="Nodes in the workflow, counting static fan-out instances."
    )
    last_run: str | None = Field(default=None, description="Name of the newest run.")
    last_schedule_time: str | None = Field(
        default=None, description="When the schedule last created a run."
    )
    active_runs: list[str] | None = Field(
        default=None, description="Scheduled runs that have not finished."
    )
    conditions: list[Condition] | None = Field(default=None, description="Standard conditions.")


class Workflow(SpecModel):
    """A kdag Workflow object."""

    api_version: Literal["kdag.dev/v1alpha1"] = Field(
        default="kdag.dev/v1alpha1", description="kdag.dev/v1alpha1"
    )
    kind: Literal["Workflow"] = Field(default="Workflow", description="Workflow")
    metadata: ObjectMeta = Field(default_factory=ObjectMeta, description="Standard metadata.")
    spec: WorkflowSpec = Field(description="The DAG template.")
    status: WorkflowStatus | None = Field(default=None, description="Observed state.")
