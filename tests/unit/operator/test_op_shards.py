"""Active-active shards' shell (kdag.operator.shards) against a fake Lease store, and what the
reconciler and the fence do with its answer: replicas split the runs and never share one,
whatever the API does to their Leases (403, 409, 500), however their clocks are skewed,
however long a replica is frozen; a replica that leaves cleanly hands over at once."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from conftest import Harness, run_body
from workflow_harness import FakeApi

from kdag.engine import shard_ring as ring
from kdag.operator.fence import FencedKube, NotOwnerError
from kdag.operator.kube import KubeError
from kdag.operator.main import parse_config
from kdag.operator.objects import RunKey
from kdag.operator.shards import GROUP_LABEL, OwnedRuns, Shards, lease_name, member_of
from kdag.operator.workflow_controller import WorkflowController

KEYS: list[RunKey] = [("team", f"run-{i}") for i in range(30)]
LEASE = 15
RENEW = 5.0


class FakeLeases:
    """An in-memory Lease store with resourceVersions, and failures to inject."""

    def __init__(self) -> None:
        self.leases: dict[str, dict[str, Any]] = {}
        self.version = 0
        self.refuse: dict[str, int] = {}  # identity -> HTTP status refused for its writes
        self.calls: list[tuple[str, str]] = []

    def _stamp(self, lease: Mapping[str, Any]) -> dict[str, Any]:
        self.version += 1
        stored = copy.deepcopy(dict(lease))
        stored["metadata"]["resourceVersion"] = str(self.version)
        self.leases[stored["metadata"]["name"]] = stored
        return copy.deepcopy(stored)

    def _check(self, lease: Mapping[str, Any]) -> None:
        status = self.refuse.get(lease["spec"]["holderIdentity"])
        if status:
            raise KubeError(status, "Refused", "injected")

    async def get_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.calls.append(("get", name))
        found = self.leases.get(name)
        return copy.deepcopy(found) if found else None

    async def create_lease(self, namespace: str, lease: Mapping[str, Any]) -> dict[str, Any]:
        self.calls.append(("create", lease["metadata"]["name"]))
        self._check(lease)
        if lease["metadata"]["name"] in self.leases:
            raise KubeError(409, "AlreadyExists", "exists")
        return self._stamp(lease)

    async def replace_lease(
        self, namespace: str, name: str, lease: Mapping[str, Any]
    ) -> dict[str, Any]:
        self.calls.append(("replace", name))
        self._check(lease)
        stored = self.leases.get(name)
        if stored is None:
            raise KubeError(404, "NotFound", "gone")
        if lease["metadata"].get("resourceVersion") != stored["metadata"]["resourceVersion"]:
            raise KubeError(409, "Conflict", "the object has been modified")
        return self._stamp(lease)

    async def list_leases(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        label, value = selector.split("=")
        return [
            copy.deepcopy(lease)
            for lease in self.leases.values()
            if lease["metadata"]["labels"].get(label) == value
        ]

    async def delete_lease(self, namespace: str, name: str) -> bool:
        self.calls.append(("delete", name))
        return self.leases.pop(name, None) is not None


class Time:
    """One monotonic clock shared by the replicas (each may see a skewed wall clock)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def replica(
    store: FakeLeases, name: str, time: Time, wall_skew: timedelta = timedelta(0)
) -> Shards:
    return Shards(
        store,
        namespace="kdag-system",
        group="g",
        identity=name,
        lease_seconds=LEASE,
        renew_seconds=RENEW,
        clock=time,
        wall=lambda: datetime(2026, 11, 30, tzinfo=UTC) + timedelta(seconds=time.now) + wall_skew,
    )


def owned(shards: Shards) -> set[RunKey]:
    return {k for k in KEYS if shards.owns_run(k)}


def rounds(time: Time, replicas: list[Shards], seconds: float) -> None:
    """Every replica cycles every renew period for `seconds`, checking at each step that no
    run is owned twice."""

    async def go() -> None:
        end = time.now + seconds
        while time.now < end:
            for r in replicas:
                await r.cycle()
            for _ in range(10):
                time.now += RENEW / 10
                for r in replicas:
                    r.apply()
                assert_disjoint(replicas)

    asyncio.run(go())


def assert_disjoint(replicas: list[Shards]) -> None:
    seen: dict[RunKey, str] = {}
    for r in replicas:
        for k in owned(r):
            assert k not in seen, f"{k} owned by {seen[k]} and {r.identity}"
            seen[k] = r.identity


def test_two_replicas_split_the_runs_after_the_grace_and_never_share_one() -> None:
    store, time = FakeLeases(), Time()
    a, b = replica(store, "a", time), replica(store, "b", time)
    rounds(time, [a, b], 10)
    assert owned(a) == owned(b) == set()  # within the grace: nobody acts yet
    rounds(time, [a, b], 10)
    assert owned(a) and owned(b)
    assert owned(a) | owned(b) == set(KEYS)
    assert a.members == b.members == frozenset({"a", "b"})


def test_a_third_replica_joins_the_others_drop_its_share_first() -> None:
    store, time = FakeLeases(), Time()
    a, b = replica(store, "a", time), replica(store, "b", time)
    rounds(time, [a, b], 25)
    c = replica(store, "c", time)
    rounds(time, [a, b, c], 10)
    assert owned(c) == set()
    rounds(time, [a, b, c], 15)
    assert owned(c) and owned(a) | owned(b) | owned(c) == set(KEYS)


@pytest.mark.parametrize("status", [403, 500, 409])
def test_a_replica_whose_lease_writes_fail_stops_before_its_lease_expires(status: int) -> None:
    """403 (RBAC), 500 (API trouble), 409 (always a conflict): the fence runs out a renew
    period before the Lease would expire in others' eyes, and the others take over only
    after it."""
    store, time = FakeLeases(), Time()
    a, b = replica(store, "a", time), replica(store, "b", time)
    rounds(time, [a, b], 25)
    mine = owned(a)
    assert mine
    store.refuse["a"] = status
    stopped_at = None

    async def go() -> None:
        nonlocal stopped_at
        for _ in range(8):
            assert not await a.cycle()
            await b.cycle()
            for _ in range(10):
                time.now += RENEW / 10
                a.apply()
                b.apply()
                if stopped_at is None and not owned(a):
                    stopped_at = time.now
                assert_disjoint([a, b])

    refused_from = time.now
    asyncio.run(go())
    assert stopped_at is not None and stopped_at - refused_from <= LEASE - RENEW + 0.01
    assert owned(b) == set(KEYS)


def test_a_conflict_on_renewal_is_read_again_and_renewed_in_the_same_cycle() -> None:
    """A 409 because our Lease was written meanwhile (by hand, or our own write whose answer
    was lost): the replica reads it and renews at once, so one conflict costs nothing."""
    store, time = FakeLeases(), Time()
    a = replica(store, "a", time)
    rounds(time, [a], 20)
    stored = store.leases[lease_name("a")]
    store._stamp(stored)  # someone else's write: a new resourceVersion
    assert asyncio.run(a.cycle())
    assert ("get", lease_name("a")) in store.calls


def test_a_frozen_replica_owns_nothing_on_waking_and_waits_a_grace_after_renewing() -> None:
    """SIGSTOP longer than the lease: it must not resume driving runs it lost meanwhile."""
    store, time = FakeLeases(), Time()
    a, b = replica(store, "a", time), replica(store, "b", time)
    rounds(time, [a, b], 25)
    assert owned(a)
    rounds(time, [b], 40)  # a is frozen; b takes everything
    assert owned(b) == set(KEYS)
    assert owned(a) == set()  # a wakes: its first question says no, before any cycle
    rounds(time, [a, b], 10)
    assert owned(a) == set()  # renewed, but within its grace; b dropped a's share already
    rounds(time, [a, b], 10)
    assert owned(a) and owned(a) | owned(b) == set(KEYS)


def test_clock_skew_between_replicas_changes_nothing() -> None:
    """renewTime is written by each replica's own wall clock; b's is hours off."""
    store, time = FakeLeases(), Time()
    a = replica(store, "a", time)
    b = replica(store, "b", time, wall_skew=timedelta(hours=-5))
    c = replica(store, "c", time, wall_skew=timedelta(hours=7))
    rounds(time, [a, b, c], 30)
    assert owned(a) and owned(b) and owned(c)


def test_a_replica_that_leaves_deletes_its_lease_and_the_others_take_over_at_once() -> None:
    store, time = FakeLeases(), Time()
    a, b = replica(store, "a", time), replica(store, "b", time)
    rounds(time, [a, b], 25)
    theirs = owned(b)
    asyncio.run(b.stop(leave=True))
    assert lease_name("b") not in store.leases
    assert owned(b) == set()
    asyncio.run(a.cycle())
    assert owned(a) == set(KEYS)
    assert theirs


def test_owned_runs_tells_the_reconciler_what_it_lost_and_gained() -> None:
    store, time = FakeLeases(), Time()
    taken: list[RunKey] = []
    released: list[RunKey] = []
    workflows: list[bool] = []
    a, b = replica(store, "a", time), replica(store, "b", time)
    a.on_change = OwnedRuns(
        lambda: KEYS, taken.append, released.append, lambda: workflows.append(True)
    )
    rounds(time, [a, b], 25)
    assert set(taken) == owned(a) and not released
    assert workflows == ([True] if a.owns_workflows() else [])
    had = owned(a)
    taken.clear()
    c = replica(store, "c", time)
    rounds(time, [a, b, c], 10)  # a lists c's Lease in its next cycle
    to_c = {k for k in had if ring.owner(ring.run_key(*k), ["a", "b", "c"]) == "c"}
    assert to_c and set(released) == to_c and not taken


def test_a_malformed_lease_is_ignored() -> None:
    assert member_of({"spec": {"holderIdentity": "", "leaseDurationSeconds": 15}}) is None
    assert member_of({"spec": {"holderIdentity": "x", "leaseDurationSeconds": 0}}) is None
    assert member_of({"spec": {"holderIdentity": "x", "leaseDurationSeconds": 15}}) is not None


def test_a_lease_declaring_an_absurd_duration_is_ignored_not_waited_for() -> None:
    # Every member waits the longest declared lease before taking runs: 10^12 s would keep
    # them all idle for good.
    huge = {"spec": {"holderIdentity": "x", "renewTime": "t", "leaseDurationSeconds": 10**12}}
    assert member_of(huge) is None


def test_a_huge_shard_lease_flag_is_refused_naming_it(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_config(["-n", "a", "--shards", "kdag", "--shard-lease-seconds", str(10**12)])
    assert "--shard-lease-seconds: Input should be less than or equal to 3600" in (
        capsys.readouterr().err
    )


def test_lease_names_are_valid_and_distinct() -> None:
    assert lease_name("kdag-7d9f-abc") != lease_name("KDAG-7d9f-abc")
    assert lease_name("pod_1.local").startswith("kdag-shard-pod-1-local-")
    assert len(lease_name("x" * 300)) <= 63
    assert GROUP_LABEL == "kdag.dev/shard-group"


# ------------------------------------------------------------------ the reconciler and fence


def test_the_reconciler_neither_queues_nor_plans_a_run_it_does_not_own() -> None:
    mine: set[RunKey] = set()
    h = Harness(owns=lambda key: key in mine)
    key = h.create_run(run_body())
    h.reconciler.enqueue(key)
    assert h.reconciler.idle
    h.reconcile(key)
    assert h.kube.calls == []
    mine.add(key)
    h.reconcile(key)
    assert any(c[0] == "create_job" for c in h.kube.calls)


def test_a_run_taken_over_is_read_again_and_its_jobs_listed_before_it_is_planned() -> None:
    mine: set[RunKey] = set()
    h = Harness(owns=lambda key: key in mine)
    key = h.create_run(run_body(nodes=[{"name": "a"}, {"name": "b", "dependsOn": ["a"]}]))
    mine.add(key)
    h.reconcile(key)  # as the former owner would have
    h.kube.finish_job("ns", h.job(key, "a", 1))
    h.kube.calls.clear()
    h.reconciler.take_over(key)
    h.reconcile(key)
    kinds = [c[0] for c in h.kube.calls]
    assert kinds[:3] == ["get_run", "list_jobs", "list_pods"], kinds
    assert ("create_job", h.job(key, "b", 1)) in h.kube.calls


def test_the_fence_refuses_a_runs_writes_once_it_is_not_owned(h: Harness) -> None:
    owner: dict[str, bool] = {"now": True}

    def owns(key: RunKey) -> bool:
        return owner["now"]

    fenced = FencedKube(h.kube, owns)  # type: ignore[arg-type]
    job = {"metadata": {"name": "j", "ownerReferences": [{"kind": "WorkflowRun", "name": "r"}]}}
    owner["now"] = False

    async def writes() -> list[Callable[[], Any]]:
        return [
            lambda: fenced.create_job("ns", job),
            lambda: fenced.patch_run_status("ns", "r", {}),
            lambda: fenced.patch_run("ns", "r", {}),
            lambda: fenced.delete_run("ns", "r", "uid"),
        ]

    async def go() -> None:
        for write in await writes():
            with pytest.raises(NotOwnerError) as refused:
                await write()
            assert refused.value.transient  # the pass fails and is retried, not recorded

    asyncio.run(go())
    assert h.kube.calls == []


def test_a_pass_cut_short_by_a_handover_writes_nothing_more() -> None:
    """Ownership is lost while the pass awaits the API: its status write is refused, and
    its retry finds the run not owned and does nothing."""
    mine = {"yes": True}
    h = Harness(owns=lambda key: mine["yes"])
    h.reconciler = type(h.reconciler)(
        FencedKube(h.kube, lambda key: mine["yes"]),  # type: ignore[arg-type]
        h.cache,
        h.metrics,
        h.events,
        clock=h.clock,
        plan_in_thread=False,
        owns=lambda key: mine["yes"],
    )
    key = h.create_run(run_body())
    original = h.kube.create_job

    async def create_then_lose(namespace: str, manifest: Mapping[str, Any]) -> dict[str, Any]:
        created = await original(namespace, manifest)
        mine["yes"] = False  # the handover lands while the create is answered
        return created

    h.kube.create_job = create_then_lose  # type: ignore[method-assign]
    h.reconcile_safely(key)
    kinds = [c[0] for c in h.kube.calls]
    assert kinds == ["create_job"], kinds  # no status patch after the handover
    h.reconcile_safely(key)
    assert [c[0] for c in h.kube.calls] == ["create_job"]


# ------------------------------------------------------------------ flags


def test_shards_flags_default_and_exclusive_with_peering() -> None:
    config = parse_config(["-n", "a", "--shards", "kdag", "--shard-identity", "pod-1"])
    assert (config.shards, config.shard_identity) == ("kdag", "pod-1")
    assert (config.shard_lease_seconds, config.shard_renew_seconds) == (15, 5.0)
    assert config.peering is None
    with pytest.raises(SystemExit):
        parse_config(["-n", "a", "--shards", "kdag", "--peering", "p"])
    with pytest.raises(SystemExit):  # a renewal must be allowed to fail once
        parse_config(["-n", "a", "--shards", "kdag", "--shard-renew-seconds", "10"])


def test_the_workflow_controller_does_nothing_on_a_replica_that_does_not_drive_them() -> None:
    class NoView:
        def workflow(self, key: object) -> None:
            raise AssertionError("a replica that does not drive Workflows reads none")

        def runs(self, key: object) -> list[object]:
            return []

    controller = WorkflowController(
        FakeApi(),
        NoView(),
        max_nodes=10,
        owns=lambda: False,  # type: ignore[arg-type]
    )
    result = asyncio.run(controller.reconcile(("ns", "wf")))
    assert result.requeue_at is None


def test_a_restarted_replica_adopts_its_own_lease_and_the_old_process_stops() -> None:
    """Same identity (a restarted container of one pod): the new process finds the Lease,
    renews it under its own acquireTime; a process still renewing it then finds it taken,
    stops renewing, and its fence stops it before the new one ends its grace."""
    store, time = FakeLeases(), Time()
    old = replica(store, "a", time)
    rounds(time, [old], 20)
    assert owned(old)
    time.now += 1e-3
    new = replica(store, "a", time)
    new._acquired = "2026-11-30T00:00:01.000000Z"  # started later than the old one
    assert asyncio.run(new.cycle())
    assert ("create", lease_name("a")) in store.calls and ("get", lease_name("a")) in store.calls
    assert not asyncio.run(old.cycle())  # 409, then the Lease names another process
    assert not asyncio.run(old.cycle())  # and it never renews again

    async def go() -> None:
        for _ in range(4):
            await new.cycle()
            for _ in range(10):
                time.now += RENEW / 10
                old.apply()
                new.apply()
                assert not (owned(old) and owned(new))

    asyncio.run(go())
    assert owned(new) == set(KEYS) and owned(old) == set()


def test_the_member_count_is_reported_as_it_changes() -> None:
    store, time = FakeLeases(), Time()
    counts: list[int] = []
    a, b = replica(store, "a", time), replica(store, "b", time)
    a.on_members = counts.append
    rounds(time, [a, b], 25)
    store.refuse["a"] = 500
    rounds(time, [a, b], 15)
    assert counts == [2, 0]


def test_the_workflow_controller_passes_over_every_workflow_when_it_gains_them() -> None:
    drives = {"now": False}
    controller = WorkflowController(FakeApi(), None, max_nodes=10, owns=lambda: drives["now"])  # type: ignore[arg-type]
    drives["now"] = True
    controller.take_over([("ns", "a"), ("ns", "b")])
    assert controller.queue._queued == {("ns", "a"), ("ns", "b")}


def test_a_former_owners_late_status_write_is_refused_not_laid_over_a_newer_status() -> None:
    h = Harness(owns=lambda key: True)
    key = h.create_run(run_body(nodes=[{"name": "a"}, {"name": "b", "dependsOn": ["a"]}]))
    h.reconcile(key)
    planned_from = h.kube.runs[key]["metadata"]["resourceVersion"]
    # The new owner has written meanwhile; this replica's cache has not seen it yet.
    h.kube._patch(key[0], key[1], {"status": {"message": "the new owner's"}})
    job = h.job_of(key, "a")
    h.kube.finish_job(key[0], job)
    h.cache.put_job(copy.deepcopy(h.kube.jobs[(key[0], job)]))  # only the Job's event came
    h.reconcile_safely(key)
    assert h.kube.status_patches[-1]["metadata"] == {"resourceVersion": planned_from}
    assert h.status(key)["message"] == "the new owner's"  # refused with 409: not laid over
    # The next pass reads the run first and plans from what the server holds.
    h.reconcile(key)
    assert h.status(key)["nodes"]["b"]["phase"] == "Running"


def test_without_shards_a_status_write_carries_no_version_precondition(h: Harness) -> None:
    key = h.create_run(run_body())
    h.reconcile(key)
    assert h.kube.status_patches and all("metadata" not in p for p in h.kube.status_patches)
