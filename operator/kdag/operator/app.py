"""The running operator's parts, wired together once and handed to kopf handlers via memo."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from kdag.operator.cache import Cache
from kdag.operator.config import OperatorConfig
from kdag.operator.events import EventPoster
from kdag.operator.identity import GuardedKubeClient, own_service_account
from kdag.operator.kube import KubeClient, load_client_configuration
from kdag.operator.metrics import Metrics
from kdag.operator.reconciler import Reconciler
from kdag.operator.refusals import RefusalFinder


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
            kube.close()
            raise
        cache = Cache()
        events = EventPoster(kube, metrics)
        reconciler = Reconciler(
            kube,
            cache,
            metrics,
            events,
            max_nodes=config.max_nodes,
            operator_account=kube.operator_account,
            job_retention_policy=config.job_retention_policy,
            output_budget=config.max_run_output_bytes,
            workers=config.reconcile_workers,
            resync_seconds=config.resync_seconds,
            # Half the API client's workers: the other half stays free for other runs.
            job_requests_in_flight=max(1, config.api_workers // 2),
        )
        refusals = RefusalFinder(kube, cache, reconciler.enqueue)
        return cls(config, metrics, kube, cache, events, reconciler, refusals)

    def start(self) -> None:
        if self.config.metrics_port:
            self.metrics.serve(self.config.metrics_port, self.config.metrics_address)
        self.events.start()
        self.reconciler.start()

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
        self.kube.close()
