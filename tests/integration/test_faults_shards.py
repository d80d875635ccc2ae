"""Active-active shards (docs/install.md "Shards"): replicas split the runs; one SIGKILLed
while ownership is being rebalanced loses its runs to the others, and no (node, attempt)
ever gets two Jobs.

The replicas run under the chart's RBAC with `sharding.enabled` (their Lease permissions
come from the chart's Role in the release's namespace), on one test namespace, with a short
lease (6 s, renewed every 2 s) so that the handovers take seconds, not the default 15.
"""

from __future__ import annotations

import os
import signal
import time
import uuid

import pytest

from kdag.engine import shard_ring as ring
from tests.support.chart_rbac import chart_identity
from tests.support.cluster import Cluster, kubectl_json, namespace_policy, wait_for
from tests.support.faults import (
    JobLedger,
    RunHistory,
    Shape,
    chain_shape,
    fan_out_shape,
    finish_and_check,
    operator_for,
    own_namespace,
    retries_shape,
)
from tests.support.operator import apply, apply_crds, create, run_of
from tests.support.operator_process import ScopedOperator

LEASE = 6
RENEW = 2
GROUP = "kdag-it-shards"
# The longest run's own time: a chain of six 2-second steps.
RUN_SECONDS = 12
# Generous slack for a 2-CPU machine whose control plane starts pods in seconds under load.
SLACK = 90


@pytest.fixture(autouse=True)
def _crds(cluster: Cluster) -> None:
    apply_crds()  # this module may run alone, before any test that applies them


def _shard_args(namespace: str, identity: str) -> list[str]:
    return [
        f"--shards={GROUP}",
        f"--shard-namespace={namespace}",
        f"--shard-identity={identity}",
        f"--shard-lease-seconds={LEASE}",
        f"--shard-renew-seconds={RENEW}",
        "--resync-seconds=5",
    ]


def _acting_with(operator: ScopedOperator, *members: str) -> bool:
    return f"shards: acting (members: {', '.join(members)})" in operator.logs()


def _job_creates(operator: ScopedOperator) -> float:
    return operator.sample("kdag_kube_requests_total", verb="create", resource="jobs")


def _writes(operator: ScopedOperator) -> float:
    """The replica's writes to runs and Jobs (Events are a courtesy, not state)."""
    return sum(
        operator.sample("kdag_kube_requests_total", verb=verb, resource=resource)
        for verb in ("create", "patch", "delete")
        for resource in ("jobs", "workflowruns", "workflowruns/status")
    )


def _leases(namespace: str) -> set[str]:
    found = kubectl_json("get", "leases", "-n", namespace, "-l", f"kdag.dev/shard-group={GROUP}")
    return {lease["spec"]["holderIdentity"] for lease in found["items"]}


def _split_runs(
    namespace: str,
    shapes: list[Shape],
    ledger: JobLedger,
    first: ScopedOperator,
    second: ScopedOperator,
    members: list[str],
    rounds: int = 6,
) -> dict[str, Shape]:
    """Once both replicas act knowing each other, create `rounds` runs of every shape (more
    if the hash gave one replica none) and wait until each run has its first Job; both
    replicas must have created some."""
    wait_for(
        lambda: _acting_with(first, *members) and _acting_with(second, *members),
        timeout=60,
        what="both replicas to act",
    )
    apply(namespace, *(shape.manifest for shape in shapes))
    runs: dict[str, Shape] = {}
    owners: set[str | None] = set()
    while len(runs) < rounds * len(shapes) or len(owners) < len(members):
        for shape in shapes:
            run = create(namespace, run_of(shape.manifest["metadata"]["name"]))
            runs[run] = shape
            owners.add(ring.owner(ring.run_key(namespace, run), members))
    # Every run's own first Job: a fast replica's later Jobs must not stand in for the
    # other's first ones.
    wait_for(
        lambda: set(runs) <= {record.run for record in ledger.records},
        timeout=120,
        what="every run's first Job",
    )
    assert _job_creates(first) > 0 and _job_creates(second) > 0
    return runs


def test_runs_are_split_and_a_replica_killed_while_rebalancing_is_taken_over(
    cluster: Cluster,
) -> None:
    shapes = [chain_shape(step="2s", length=6), fan_out_shape(), retries_shape()]
    identity = chart_identity(values={"replicas": 3, "sharding": {"enabled": True}})
    home = identity.namespace
    with (
        own_namespace("shards") as namespace,
        JobLedger(namespace, cluster.kubeconfig) as ledger,
        RunHistory(namespace, cluster.kubeconfig) as history,
        operator_for(cluster.kubeconfig, [namespace], _shard_args(home, "a"), identity) as first,
        operator_for(cluster.kubeconfig, [namespace], _shard_args(home, "b"), identity) as second,
    ):
        wait_for(
            lambda: _acting_with(first, "a", "b") and _acting_with(second, "a", "b"),
            timeout=60,
            what="both replicas to act, each knowing the other",
        )
        assert _leases(home) == {"a", "b"}
        apply(namespace, *(shape.manifest for shape in shapes))
        runs: dict[str, Shape] = {}
        for _ in range(8):
            for shape in shapes:
                runs[create(namespace, run_of(shape.manifest["metadata"]["name"]))] = shape
        assert ledger.wait_count(len(runs), timeout=120), first.tail(40)
        # Each replica drove a share: both created Jobs.
        by_first, by_second = _job_creates(first), _job_creates(second)
        assert by_first > 0 and by_second > 0, (by_first, by_second)

        with operator_for(
            cluster.kubeconfig, [namespace], _shard_args(home, "c"), identity
        ) as third:
            # The rebalancing: a has listed c's Lease and dropped c's share, c is still
            # in its grace, and b may not have seen c yet. Now a dies without a word.
            wait_for(
                lambda: "members: a, b, c" in first.logs(),
                timeout=30,
                interval=0.1,
                what="the first replica to see the third",
            )
            first.kill()
            killed_at = time.monotonic()
            # Within a lease (plus a renewal) the survivors count a gone, then c's grace.
            bound = LEASE + RENEW + LEASE + RUN_SECONDS + SLACK
            finish_and_check(namespace, runs, ledger, history, second, bound)
            took = time.monotonic() - killed_at
            assert took < bound, took
            assert _acting_with(second, "b", "c") and _acting_with(third, "b", "c")
            # The survivors split what a left: both wrote after the kill.
            assert _job_creates(second) + _job_creates(third) > by_second, third.tail(40)
        # c stopped cleanly: its Lease is gone; a's stays until someone deletes it.
        wait_for(lambda: "c" not in _leases(home), timeout=30, what="c's Lease to go")
        assert ledger.duplicates() == {}


def test_a_replica_that_stops_cleanly_hands_its_runs_over_at_once(cluster: Cluster) -> None:
    """SIGTERM: the replica stops its work, deletes its Lease, and the other takes its runs
    at its next renewal instead of a lease duration later."""
    shapes = [chain_shape(step="2s", length=5)]
    identity = chart_identity(values={"replicas": 2, "sharding": {"enabled": True}})
    home = identity.namespace
    with (
        own_namespace("shards") as namespace,
        JobLedger(namespace, cluster.kubeconfig) as ledger,
        RunHistory(namespace, cluster.kubeconfig) as history,
        operator_for(cluster.kubeconfig, [namespace], _shard_args(home, "p"), identity) as staying,
    ):
        with operator_for(
            cluster.kubeconfig, [namespace], _shard_args(home, "q"), identity
        ) as leaving:
            wait_for(
                lambda: _acting_with(staying, "p", "q") and _acting_with(leaving, "p", "q"),
                timeout=60,
                what="both replicas to act",
            )
            apply(namespace, *(shape.manifest for shape in shapes))
            runs: dict[str, Shape] = {}
            for _ in range(10):
                runs[create(namespace, run_of(shapes[0].manifest["metadata"]["name"]))] = shapes[0]
            assert ledger.wait_count(len(runs), timeout=120), leaving.tail(40)
            assert _job_creates(leaving) > 0
            mark = len(staying.logs())
        left_at = time.monotonic()
        # leaving.stop() (SIGTERM) returned: its Lease is already deleted.
        assert _leases(home) == {"p"}
        wait_for(
            lambda: "shards: acting (members: p)" in staying.logs()[mark:],
            timeout=LEASE,
            interval=0.1,
            what="the staying replica to take everything",
        )
        assert time.monotonic() - left_at < RENEW + 3
        finish_and_check(namespace, runs, ledger, history, staying, RUN_SECONDS * 2 + SLACK)


def test_a_replica_whose_lease_writes_are_refused_stops_before_others_take_its_runs(
    cluster: Cluster,
) -> None:
    """The API server refuses one replica's Lease renewals (403 from an admission policy):
    within a lease minus a renewal it drives nothing, and from the moment the other replica
    counts it gone it has written nothing to any run or Job; the other finishes every run."""
    shapes = [chain_shape(step="2s", length=6), retries_shape()]
    identity = chart_identity(values={"replicas": 3, "sharding": {"enabled": True}})
    home = identity.namespace
    refused, steady = f"x-{uuid.uuid4().hex[:6]}", f"y-{uuid.uuid4().hex[:6]}"
    with (
        own_namespace("shards") as namespace,
        JobLedger(namespace, cluster.kubeconfig) as ledger,
        RunHistory(namespace, cluster.kubeconfig) as history,
        operator_for(
            cluster.kubeconfig, [namespace], _shard_args(home, refused), identity
        ) as cut_off,
        operator_for(cluster.kubeconfig, [namespace], _shard_args(home, steady), identity) as other,
    ):
        members = sorted([refused, steady])
        runs = _split_runs(namespace, shapes, ledger, cut_off, other, members)
        rules = [
            {"apiGroups": ["coordination.k8s.io"], "apiVersions": ["v1"],
             "operations": ["UPDATE"], "resources": ["leases"]},
        ]  # fmt: skip
        validations = [
            {
                "expression": f"object.spec.holderIdentity != '{refused}'",
                "message": "kdag fault test: lease refused",
                "reason": "Forbidden",
            }
        ]
        with namespace_policy(f"kdag-shards-{refused}", home, rules, validations):
            wait_for(
                lambda: "lease refused" in cut_off.logs(),
                timeout=60,
                interval=0.2,
                what="the API server to refuse the replica's renewal",
            )
            first_refusal = time.monotonic()
            wait_for(
                lambda: "not acting: owns nothing" in cut_off.logs(),
                timeout=LEASE,
                interval=0.1,
                what="the refused replica to fence itself",
            )
            # Fenced within a lease minus a renewal of its last good cycle (<= LEASE after
            # the first refusal, which came at most a renewal after that cycle).
            assert time.monotonic() - first_refusal < LEASE
            wait_for(
                lambda: _acting_with(other, steady),
                timeout=LEASE + RENEW + 5,
                interval=0.2,
                what="the other replica to count it gone",
            )
            frozen = _writes(cut_off)
            finish_and_check(namespace, runs, ledger, history, other, RUN_SECONDS * 3 + SLACK)
            assert _writes(cut_off) == frozen, cut_off.tail(40)
            assert "shards: acting" not in cut_off.logs().split("not acting: owns nothing")[-1]


def test_a_replica_frozen_longer_than_its_lease_rechecks_before_it_drives_again(
    cluster: Cluster,
) -> None:
    """SIGSTOP past its lease: the other replica takes everything; on SIGCONT the frozen
    one first finds it owns nothing (it wrote nothing since), renews, waits a whole lease,
    and only then takes its share back; every run finishes, no duplicate Job."""
    shapes = [chain_shape(step="2s", length=8), fan_out_shape()]
    identity = chart_identity(values={"replicas": 3, "sharding": {"enabled": True}})
    home = identity.namespace
    frozen_id, steady_id = f"f-{uuid.uuid4().hex[:6]}", f"s-{uuid.uuid4().hex[:6]}"
    members = sorted([frozen_id, steady_id])
    with (
        own_namespace("shards") as namespace,
        JobLedger(namespace, cluster.kubeconfig) as ledger,
        RunHistory(namespace, cluster.kubeconfig) as history,
        operator_for(cluster.kubeconfig, [namespace], _shard_args(home, frozen_id), identity) as f,
        operator_for(cluster.kubeconfig, [namespace], _shard_args(home, steady_id), identity) as s,
    ):
        runs = _split_runs(namespace, shapes, ledger, f, s, members)
        pid = f._proc.pid  # type: ignore[union-attr]
        mark = len(f.logs())
        os.kill(pid, signal.SIGSTOP)
        try:
            wait_for(
                lambda: _acting_with(s, steady_id),
                timeout=LEASE + RENEW + 10,
                interval=0.2,
                what="the steady replica to count the frozen one gone",
            )
            # Frozen a while longer: the steady one drives its runs meanwhile.
            ledger.wait_count(ledger.count() + 4, timeout=3 * LEASE)
        finally:
            os.kill(pid, signal.SIGCONT)
        woke = f.logs()[mark:]
        wait_for(
            lambda: "not acting: owns nothing" in f.logs()[mark:],
            timeout=10,
            interval=0.1,
            what="the woken replica to find it owns nothing",
        )
        after_waking = f.logs()[mark:]
        assert "shards: acting" not in after_waking.split("not acting: owns nothing")[0], woke
        quiet = _writes(f)
        # The steady replica lists the woken one's renewal and drops its share, while the
        # woken one is still in its grace: nothing written meanwhile.
        wait_for(
            lambda: s.logs().count(f"acting (members: {', '.join(members)})") >= 2,
            timeout=LEASE,
            interval=0.1,
            what="the steady replica to see the woken one again",
        )
        assert "shards: acting" not in f.logs()[mark:].split("not acting: owns nothing")[-1]
        assert _writes(f) == quiet, f.tail(40)
        finish_and_check(namespace, runs, ledger, history, s, RUN_SECONDS * 3 + SLACK)
