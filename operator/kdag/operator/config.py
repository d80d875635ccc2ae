"""The operator's own settings (`kdag-operator` flags) and the kopf settings derived from them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal, cast

import kopf
from pydantic import BaseModel, ConfigDict, Field, model_validator

from kdag.api import GROUP, RUNS, VERSION
from kdag.engine.model import DEFAULT_OUTPUT_BUDGET
from kdag.engine.shard_ring import MAX_LEASE_SECONDS

# Streamed past kopf's handlers (`kdag.operator.object_watches`), so named in full.
RUNS_RESOURCE = kopf.Resource(GROUP, VERSION, RUNS, kind="WorkflowRun", namespaced=True)
JOBS_RESOURCE = kopf.Resource("batch", "v1", "jobs", kind="Job", namespaced=True)
PODS_RESOURCE = kopf.Resource("", "v1", "pods", kind="Pod", namespaced=True)
# Server-side filters: the operator never receives (or holds) other Jobs and pods.
JOBS_SELECTOR = "app.kubernetes.io/managed-by=kdag"
PODS_SELECTOR = "kdag.dev/run"


# Kinds kdag watches through kopf with raw-event handlers and indexes only, so kopf never
# diffs them.
WATCH_ONLY_KINDS = frozenset({("kdag.dev/v1alpha1", "Workflow")})


class WatchOnlyDiffBaseStorage(kopf.AnnotationsDiffBaseStorage):
    """kopf's annotation diff base, skipped for kinds nothing diffs.

    kopf builds a diff base (a deep copy of the whole object, status included) for every
    watch event of every kind, even one served only by `on.event` handlers that never look at
    it. The benchmark's profile found that copying at 35% of the event loop's CPU, delaying
    Job creation. Every kind kdag watches through kopf is served by raw-event handlers and
    indexes only, so each gets an empty essence instead; a kind with handlers that do diff
    would not.
    """

    def build(
        self,
        *,
        body: kopf.Body,
        extra_fields: Iterable[Any] | None = None,
    ) -> kopf.BodyEssence:
        if (body.get("apiVersion"), body.get("kind")) in WATCH_ONLY_KINDS:
            return cast(kopf.BodyEssence, {})
        return super().build(body=body, extra_fields=extra_fields)


class OperatorConfig(BaseModel):
    """Everything `kdag-operator` can be told; see `kdag.operator.main` for the flags."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    namespaces: tuple[str, ...] = Field(
        default=(), description="Namespaces (or kopf globs) to serve; empty with all_namespaces."
    )
    all_namespaces: bool = Field(default=False, description="Serve every namespace.")
    metrics_port: int = Field(default=8080, ge=0, le=65535, description="0 disables /metrics.")
    metrics_address: str = Field(default="0.0.0.0", description="Address /metrics binds to.")
    liveness: str | None = Field(
        default="http://0.0.0.0:8081/healthz", description="kopf liveness endpoint URL or None."
    )
    peering: str | None = Field(
        default=None, description="kopf peering object name; None runs standalone."
    )
    priority: int = Field(default=0, description="kopf peering priority of this replica.")
    shards: str | None = Field(
        default=None,
        description="Active-active shard group name (replicas share the runs through Leases); "
        "None: no shards. Exclusive with peering.",
    )
    shard_namespace: str = Field(
        default="default", description="Namespace of the shard Leases (the operator's own)."
    )
    shard_identity: str = Field(default="", description="This replica's name among the shards.")
    shard_lease_seconds: int = Field(
        default=15,
        ge=2,
        le=MAX_LEASE_SECONDS,
        description="A shard Lease's duration: how long a silent member lives.",
    )
    shard_renew_seconds: float = Field(
        default=5.0, gt=0, description="How often a replica renews its shard Lease."
    )
    log_format: Literal["json", "text"] = Field(default="text", description="Log line format.")
    verbose: bool = Field(default=False, description="Debug logging.")
    max_nodes: int = Field(
        default=10_000, ge=1, description="Most nodes (after fan-out) one run may have."
    )
    job_retention_policy: Literal["Retain", "DeleteSucceeded", "Delete"] = Field(
        default="Retain",
        description="What happens to a node's finished Jobs once their result is recorded, for "
        "workflows that do not set jobRetentionPolicy.",
    )
    max_run_output_bytes: int = Field(
        default=DEFAULT_OUTPUT_BUDGET,
        ge=0,
        description="Bytes of node outputs one run may keep in its status; a node whose "
        "outputs would exceed it fails with reason OutputTooLarge.",
    )
    # More workers than API threads: a pass mostly waits on the API (Job create, status
    # patch), and with fewer workers than threads a busy cluster left API threads idle while
    # runs queued for a worker (seconds of scheduling latency at p99 with 100 runs).
    reconcile_workers: int = Field(default=32, ge=1, description="Runs reconciled concurrently.")
    api_workers: int = Field(default=16, ge=1, description="Concurrent Kubernetes API requests.")
    resync_seconds: float = Field(
        default=300,
        ge=0,
        description="How often active runs and their Jobs are re-read from the API, to catch "
        "deletions a watch missed while it was down; 0 never.",
    )
    status_hold_seconds: float = Field(
        default=2.0,
        ge=0,
        description="A run's progress (nodes finishing and starting) is written to its status "
        "at most this often; a change of the run's phase is written at once; 0 every change.",
    )
    watch_server_timeout: int = Field(
        default=300, ge=10, description="Seconds before the API server ends a watch request."
    )

    @model_validator(mode="after")
    def _namespaces_chosen(self) -> OperatorConfig:
        if self.all_namespaces == bool(self.namespaces):
            raise ValueError("give --namespace (one or more) or --all-namespaces, not both")
        if self.shards is not None and self.peering is not None:
            raise ValueError("--shards and --peering are exclusive: pick one way to run replicas")
        if self.shards is not None and not self.shard_identity:
            raise ValueError("--shards needs this replica's --shard-identity")
        # A renewal may fail once and the replica still acts; the fence's margin is one renew.
        if self.shard_renew_seconds * 2 > self.shard_lease_seconds:
            raise ValueError("--shard-renew-seconds must be at most half of --shard-lease-seconds")
        return self


def kopf_settings(config: OperatorConfig) -> kopf.OperatorSettings:
    """kopf configured to watch and stay out of the way.

    kdag registers only raw-event handlers, so kopf never writes its progress or diff-base
    annotations nor finalizers onto runs; posting is off because kdag posts its own Events.
    """
    settings = kopf.OperatorSettings()
    settings.posting.enabled = False
    settings.persistence.diffbase_storage = WatchOnlyDiffBaseStorage()
    settings.watching.label_selectors["batch", "v1", "jobs"] = JOBS_SELECTOR
    settings.watching.label_selectors["v1", "pods"] = PODS_SELECTOR
    # Watches end server-side on schedule and reconnect; the client timeout only catches a
    # connection that died silently.
    settings.watching.server_timeout = config.watch_server_timeout
    settings.watching.client_timeout = config.watch_server_timeout + 60
    settings.watching.connect_timeout = 10
    settings.networking.request_timeout = 60
    settings.networking.connect_timeout = 10
    settings.peering.standalone = config.peering is None
    settings.peering.name = config.peering or "default"
    settings.peering.priority = config.priority
    settings.peering.clusterwide = config.all_namespaces
    settings.peering.mandatory = config.peering is not None
    return settings
