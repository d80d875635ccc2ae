"""Job requests in flight are shared fairly between runs: a wide run alone uses every slot,
and a small run that arrives meanwhile is not queued behind the wide run's whole batch in the
API client's shared, first-come worker pool."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest
from conftest import FakeKube, Harness, run_body

from kdag.engine.model import ANNOTATION_INSTANCE
from kdag.operator.kube import KubeError


class PooledKube(FakeKube):
    """The fake API behind a pool of `workers` served first come, first served, as the API
    client's thread pool is; records the order in which creates were served."""

    def __init__(self, workers: int) -> None:
        super().__init__()
        self._pool = asyncio.Semaphore(workers)
        self.served: list[str] = []
        self.in_flight = 0
        self.most_in_flight = 0

    async def create_job(self, namespace: str, manifest: Mapping[str, Any]) -> dict[str, Any]:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            async with self._pool:
                for _ in range(3):  # the request takes a while: others get to queue
                    await asyncio.sleep(0)
                self.served.append(manifest["metadata"]["labels"]["kdag.dev/run"])
                return await super().create_job(namespace, manifest)
        finally:
            self.in_flight -= 1


WIDE = [{"name": "fan", "forEach": [str(i) for i in range(24)]}]


def _harness(in_flight: int) -> tuple[Harness, PooledKube]:
    h = Harness(job_requests_in_flight=in_flight)
    kube = PooledKube(workers=4)
    h.kube = kube
    h.reconciler = h._new_reconciler()
    return h, kube


def test_a_wide_run_alone_uses_every_slot_and_no_more() -> None:
    h, kube = _harness(in_flight=3)
    key = h.create_run(run_body(nodes=WIDE))
    h.reconcile(key)
    assert len(kube.served) == 24
    assert kube.most_in_flight == 3


def test_a_small_runs_create_is_not_queued_behind_a_wide_runs_whole_pass() -> None:
    h, kube = _harness(in_flight=4)
    wide = h.create_run(run_body(name="wide", nodes=WIDE))
    small = h.create_run(run_body(name="small"))

    async def both() -> None:
        await asyncio.gather(h.reconciler.reconcile(wide), h.reconciler.reconcile(small))

    asyncio.run(both())
    assert len(kube.served) == 25
    assert kube.served.index("small") <= 5  # at the first freed slot, not the 25th


class CountingKube(PooledKube):
    """Also records the most asyncio tasks alive while any create is being served."""

    def __init__(self, workers: int) -> None:
        super().__init__(workers)
        self.most_tasks = 0

    async def create_job(self, namespace: str, manifest: Mapping[str, Any]) -> dict[str, Any]:
        self.most_tasks = max(self.most_tasks, len(asyncio.all_tasks()))
        return await super().create_job(namespace, manifest)


def test_a_wide_runs_creates_wait_in_as_many_lanes_as_there_are_slots_not_one_task_each() -> None:
    h = Harness(job_requests_in_flight=3)
    kube = CountingKube(workers=4)
    h.kube = kube
    h.reconciler = h._new_reconciler()
    key = h.create_run(run_body(nodes=[{"name": "fan", "forEach": [str(i) for i in range(200)]}]))
    h.reconcile(key)
    assert len(kube.served) == 200
    assert kube.most_in_flight == 3
    # The pass itself and its three lanes (one task per Job before: 200 and more).
    assert kube.most_tasks <= 3 + 2


class OneFailingKube(PooledKube):
    """Answers one chosen create with a 500, as an overloaded API server does."""

    def __init__(self, workers: int, failing: str) -> None:
        super().__init__(workers)
        self._failing = failing

    async def create_job(self, namespace: str, manifest: Mapping[str, Any]) -> dict[str, Any]:
        if manifest["metadata"]["annotations"][ANNOTATION_INSTANCE] == self._failing:
            raise KubeError(500, "InternalError", "etcdserver: request timed out")
        return await super().create_job(namespace, manifest)


def test_a_create_the_server_fails_does_not_stop_its_lane_and_the_pass_fails_to_be_retried() -> (
    None
):
    h = Harness(job_requests_in_flight=2)
    kube = OneFailingKube(workers=4, failing="fan[1]")
    h.kube = kube
    h.reconciler = h._new_reconciler()
    key = h.create_run(run_body(nodes=[{"name": "fan", "forEach": [str(i) for i in range(10)]}]))
    with pytest.raises(KubeError):
        h.reconcile(key)
    # Every other create was still made; the status was not written, so the next pass plans
    # the same starts again and adopts the Jobs that exist.
    assert len(kube.served) == 9
    assert not kube.status_patches
