"""The running operator's parts, wired together once and handed to kopf handlers via memo."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kdag.operator.cache import Cache
from kdag.operator.config import OperatorConfig
from kdag.operator.events import EventPoster
from kdag.operator.fence import FencedKube
from kdag.operator.identity import GuardedKubeClient, own_service_account
from kdag.operator.kube import KubeClient, load_client_configuration
from kdag.operator.metrics import Metrics
from kdag.operator.objects import RunKey
from kdag.operator.reconciler import Reconciler
from kdag.operator.refusals import RefusalFinder
from kdag.operator.shards import OwnedRuns, Shards
from kdag.operator.workflow_runs import WorkflowRuns


@dataclass
class Operator:
    config: OperatorConfig
    metrics: Metrics
    kube: KubeClient
    cache: Cache
    events: EventPoster
    reconciler: Reconciler
    refusals: RefusalFinder
    # Other parts' pause and resume (the Workflow controller's, registered at kopf startup).
    pausables: list[tuple[Callable[[], Awaitable[None]], Callable[[], None]]] = field(
        default_factory=list
    )
    # Active-active shards (--shards): this replica's membership; None without shards.
    shards: Shards | None = None
    # Called when this replica becomes the one that drives the Workflows (shards); the
    # Workflow controller registers it at kopf startup.
    workflows_gained: Callable[[], None] = lambda: None
    # The runs of each Workflow, from the run watch: the Workflow controller's view of them.
    workflow_runs: WorkflowRuns = field(default_factory=WorkflowRuns)
    # Each run event, for the Workflow controller (registered at kopf startup).
    run_changed: Callable[[str | None, Mapping[str, Any]], None] = lambda _type, _body: None

    @classmethod
    async def build(cls, config: OperatorConfig) -> Operator:
        """The parts, wired; asks the API server once which ServiceAccount the operator runs
        as, so that no run's pods may use it (`kdag.operator.identity`)."""
        metrics = Metrics()
        kube = GuardedKubeClient(
            load_client_configuration(config.api_workers),
            metrics.observe_request,
            workers=config.api_workers,
        )
        try:
            kube.operator_account = await own_service_account(kube)
        except BaseException:
            await kube.close()
            raise
        cache = Cache()
        events = EventPoster(kube, metrics)
        shards = _shards(config, metrics)
        owns = shards.owns_run if shards is not None else None
        reconciler = Reconciler(
            FencedKube(kube, shards.owns_run) if shards is not None else kube,
            cache,
            metrics,
            events,
            max_nodes=config.max_nodes,
            operator_account=kube.operator_account,
            job_retention_policy=config.job_retention_policy,
            output_budget=config.max_run_output_bytes,
            workers=config.reconcile_workers,
            resync_seconds=config.resync_seconds,
            status_hold_seconds=config.status_hold_seconds,
            owns=owns,
            # As many as the API client has workers, shared fairly between runs.
            job_requests_in_flight=config.api_workers,
        )
        refusals = RefusalFinder(kube, cache, reconciler.enqueue)
        app = cls(config, metrics, kube, cache, events, reconciler, refusals, shards=shards)
        if shards is not None:
            shards.on_change = OwnedRuns(
                cache.run_keys, reconciler.take_over, reconciler.forget, app._workflows_gained
            )
        return app

    def owns_run(self, key: RunKey) -> bool:
        return self.shards is None or self.shards.owns_run(key)

    def owns_workflows(self) -> bool:
        """Whether this replica drives the Workflows (every replica without shards)."""
        return self.shards is None or self.shards.owns_workflows()

    def _workflows_gained(self) -> None:
        self.workflows_gained()

    def start(self) -> None:
        if self.config.metrics_port:
            self.metrics.serve(self.config.metrics_port, self.config.metrics_address)
        self.events.start()
        self.reconciler.start()
        if self.shards is not None:
            self.shards.start()

    async def pause(self) -> None:
        """kopf's peering paused this replica: nothing of kdag's may act either."""
        await self.refusals.stop()  # its checks start again from the watches after resume
        await self.reconciler.pause()
        for pause, _ in self.pausables:
            await pause()

    async def resume(self) -> None:
        for _, resume in self.pausables:
            resume()
        self.reconciler.resume()

    async def stop(self) -> None:
        await self.refusals.stop()
        await self.reconciler.stop()
        await self.events.stop()
        if self.shards is not None:
            # After the work stopped and its last requests were answered: deleting the Lease
            # hands this replica's runs over at once.
            await self.kube.drain()
            await self.shards.stop(leave=True)
        await self.kube.close()


def _shards(config: OperatorConfig, metrics: Metrics) -> Shards | None:
    """The shard membership, on a client of its own: renewals must not queue behind the
    reconciler's requests (a late renewal fences the replica)."""
    if config.shards is None:
        return None
    lease_client = KubeClient(load_client_configuration(2), metrics.observe_request, workers=2)
    shards = Shards(
        lease_client,
        namespace=config.shard_namespace,
        group=config.shards,
        identity=config.shard_identity,
        lease_seconds=config.shard_lease_seconds,
        renew_seconds=config.shard_renew_seconds,
        close=lease_client.close,
    )
    shards.on_members = metrics.shard_members.set
    return shards
