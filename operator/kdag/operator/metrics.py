"""Prometheus metrics of SPEC §5: prefix `kdag_`, no per-run labels, bounded cardinality.

Labels only ever carry run phases, node phases, API verbs, resources and HTTP codes, each a
small fixed set. Gauges that describe all runs (active runs, pending approvals) are kept per
run in memory and summed, so they stay right however runs come and go.
"""

from __future__ import annotations

import platform
from collections import Counter as Tally
from collections.abc import Mapping

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    start_http_server,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from kdag import __version__
from kdag.api import NodePhase, RunPhase

# Scheduling and reconciling are fast paths: fine buckets at the low end.
FAST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# Nodes and runs take seconds to days.
SLOW_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400)

RunKey = tuple[str, str]


class Metrics:
    """All of kdag's metrics, on their own registry (tests create as many as they like)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        # Counters' `*_created` series double every counter and histogram on /metrics and
        # mean nothing to kdag's alerts or dashboard.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = registry or CollectorRegistry()
        r = self.registry
        # The process (CPU, memory, file descriptors) and the Python runtime (GC, version),
        # as every Prometheus client exposes them; the default registry's are not used.
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        self.build_info = Gauge(
            "kdag_build_info",
            "Always 1; the operator's version and Python version as labels.",
            ["version", "python_version"],
            registry=r,
        )
        self.build_info.labels(version=__version__, python_version=platform.python_version()).set(1)
        self.runs_started = Counter("kdag_runs_started", "Runs that started executing.", registry=r)
        self.runs_finished = Counter(
            "kdag_runs_finished", "Runs that finished, by final phase.", ["phase"], registry=r
        )
        self.runs_active = Gauge(
            "kdag_runs_active", "Runs not finished, by phase.", ["phase"], registry=r
        )
        self.run_duration = Histogram(
            "kdag_run_duration_seconds",
            "Wall time of finished runs, by final phase.",
            ["phase"],
            buckets=SLOW_BUCKETS,
            registry=r,
        )
        self.nodes_finished = Counter(
            "kdag_nodes_finished", "Nodes that became terminal, by phase.", ["phase"], registry=r
        )
        self.node_duration = Histogram(
            "kdag_node_duration_seconds",
            "Time from a node's start to its end, by final phase.",
            ["phase"],
            buckets=SLOW_BUCKETS,
            registry=r,
        )
        self.node_retries = Counter(
            "kdag_node_retries", "Failed node attempts that will be retried.", registry=r
        )
        self.approvals_pending = Gauge(
            "kdag_approvals_pending", "Approval gates waiting for an answer.", registry=r
        )
        self.scheduling_latency = Histogram(
            "kdag_scheduling_latency_seconds",
            "From a node's dependencies being done to its Job being created.",
            buckets=FAST_BUCKETS,
            registry=r,
        )
        self.reconcile_duration = Histogram(
            "kdag_reconcile_duration_seconds",
            "Time of one reconcile of a run (plan and apply).",
            buckets=FAST_BUCKETS,
            registry=r,
        )
        self.reconcile_errors = Counter(
            "kdag_reconcile_errors", "Reconciles that failed and will be retried.", registry=r
        )
        # Shards (--shards): this replica's view of its group; 0 without shards.
        self.shard_members = Gauge(
            "kdag_shard_members",
            "Live shard replicas this replica shares the runs with (itself included); 0 while "
            "it drives nothing (starting, or its Lease not renewed).",
            registry=r,
        )
        self.kube_requests = Counter(
            "kdag_kube_requests",
            "Kubernetes API requests, by verb, resource and HTTP code.",
            ["verb", "resource", "code"],
            registry=r,
        )
        self.events_dropped = Counter(
            "kdag_events_dropped",
            "Kubernetes Events not posted because the API was overloaded or refused them.",
            registry=r,
        )
        self._run_phases: dict[RunKey, RunPhase] = {}
        self._approvals: dict[RunKey, int] = {}
        for phase in RunPhase:
            if not phase.terminal:
                self.runs_active.labels(phase=str(phase)).set(0)

    def serve(self, port: int, address: str = "0.0.0.0") -> None:
        """Serve /metrics from a background thread."""
        start_http_server(port, addr=address, registry=self.registry)

    def observe_request(self, verb: str, resource: str, code: str) -> None:
        self.kube_requests.labels(verb=verb, resource=resource, code=code).inc()

    def track_run(self, run: RunKey, phase: RunPhase | None, approvals: int) -> None:
        """Record the run's current phase and open gates (gauges)."""
        if phase is None or phase.terminal:
            self._run_phases.pop(run, None)
        else:
            self._run_phases[run] = phase
        if approvals:
            self._approvals[run] = approvals
        else:
            self._approvals.pop(run, None)
        self._refresh_gauges()

    def forget_run(self, run: RunKey) -> None:
        self._run_phases.pop(run, None)
        self._approvals.pop(run, None)
        self._refresh_gauges()

    def _refresh_gauges(self) -> None:
        counts: Mapping[RunPhase, int] = Tally(self._run_phases.values())
        for phase in RunPhase:
            if not phase.terminal:
                self.runs_active.labels(phase=str(phase)).set(counts.get(phase, 0))
        self.approvals_pending.set(sum(self._approvals.values()))

    def run_finished(self, phase: RunPhase, seconds: float | None) -> None:
        self.runs_finished.labels(phase=str(phase)).inc()
        if seconds is not None:
            self.run_duration.labels(phase=str(phase)).observe(max(seconds, 0.0))

    def node_finished(self, phase: NodePhase, seconds: float | None) -> None:
        self.nodes_finished.labels(phase=str(phase)).inc()
        if seconds is not None:
            self.node_duration.labels(phase=str(phase)).observe(max(seconds, 0.0))
