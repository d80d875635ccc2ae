"""Two operator replicas with kopf peering: SIGKILL the active one, the standby finishes the
runs (docs/install.md "peering").

Both replicas serve only this test's namespace, through a KopfPeering object there (kopf's
peering CRDs as the chart ships them). The higher-priority replica works, the other pauses.
A SIGKILLed replica leaves no goodbye: kopf on the standby notices it only when the dead
peer's keep-alive expires (kopf's peering lifetime, 60 s), then resumes, lists everything
afresh and carries on from each run's status and Jobs. No (node, attempt) may get two Jobs,
neither while both replicas are alive nor across the takeover.
"""

from __future__ import annotations

from tests.support.chart_rbac import chart_identity
from tests.support.cluster import Cluster, kubectl_json, wait_for
from tests.support.faults import (
    JobLedger,
    RunHistory,
    Shape,
    chain_shape,
    ensure_kopf_peering,
    fan_out_shape,
    finish_and_check,
    operator_for,
    own_namespace,
    retries_shape,
)
from tests.support.operator import apply, create, run_of, sim, workflow
from tests.support.operator_process import ScopedOperator

PEERING = "kdag-fault"


def _peers(namespace: str) -> dict[str, object]:
    found = kubectl_json("get", "kopfpeering", PEERING, "-n", namespace)
    return dict(found.get("status") or {})


# kopf's peering lifetime (60 s) plus the time the runs themselves take.
TAKEOVER_TIMEOUT = 300


def test_the_standby_replica_finishes_every_run_when_the_active_one_is_killed(
    cluster: Cluster,
) -> None:
    shapes = [chain_shape(step="1500ms"), fan_out_shape(), retries_shape()]
    peering = [f"--peering={PEERING}"]
    # A peered operator on named namespaces: the chart's namespaced mode with replicas > 1,
    # whose Roles grant kopf's KopfPeering.
    identity = chart_identity("namespaced", {"replicas": 2})
    with own_namespace("fault") as namespace:
        ensure_kopf_peering(namespace, PEERING)
        with (
            JobLedger(namespace, cluster.kubeconfig) as ledger,
            RunHistory(namespace, cluster.kubeconfig) as history,
            operator_for(
                cluster.kubeconfig, [namespace], [*peering, "--priority=2"], identity
            ) as active,
            operator_for(
                cluster.kubeconfig, [namespace], [*peering, "--priority=1"], identity
            ) as standby,
        ):
            # Both keep-alives are in the peering object: the standby knows of the active one.
            # (kdag logs kopf's messages from WARNING up, so "Pausing operations" is not seen.)
            wait_for(
                lambda: len(_peers(namespace)) == 2,
                timeout=60,
                what="both replicas to join the peering",
            )
            apply(namespace, *(shape.manifest for shape in shapes))
            runs: dict[str, Shape] = {}
            for shape in (*shapes, *shapes):
                runs[create(namespace, run_of(shape.manifest["metadata"]["name"]))] = shape
            assert ledger.wait_count(len(runs), timeout=120), active.tail(40)
            assert standby.sample("kdag_kube_requests_total", verb="create", resource="jobs") == 0

            active.kill()
            finish_and_check(namespace, runs, ledger, history, standby, TAKEOVER_TIMEOUT)
            created = standby.sample("kdag_kube_requests_total", verb="create", resource="jobs")
            assert created > 0, standby.tail(40)


def _gate_times_out_shape() -> Shape:
    """a -> gate (nobody answers, it times out) -> after: a timer decides this run."""
    nodes = [
        {"name": "a", **sim(duration="1s")},
        {"name": "gate", "dependsOn": ["a"], "approval": {"timeoutSeconds": 20}},
        {"name": "after", "dependsOn": ["gate"]},
    ]
    return Shape(
        name="gate",
        manifest=workflow("gate", nodes),
        phase="Failed",
        node_phases={"a": "Succeeded", "gate": "Failed", "after": "Skipped"},
        attempts={"a": [1]},
    )


def _writes(operator: ScopedOperator) -> float:
    """The operator's writes to runs and Jobs (Events are a courtesy, not state)."""
    return sum(
        operator.sample("kdag_kube_requests_total", verb=verb, resource=resource)
        for verb in ("create", "patch", "delete")
        for resource in ("jobs", "workflowruns", "workflowruns/status")
    )


def test_a_replica_paused_mid_run_writes_nothing_while_the_other_finishes(
    cluster: Cluster,
) -> None:
    """The active replica is paused (a peer of higher priority joins) while its runs wait
    on retry backoffs, an approval timeout and running Jobs: from then on it must not write,
    neither from its timers nor from its resync loop; the new active replica finishes."""
    retry = {"limit": 2, "backoffSeconds": 6, "factor": 1}
    retrying = Shape(
        name="retries",
        manifest=workflow(
            "retries",
            [
                {"name": "flaky", "retry": retry, **sim(duration="300ms", exit_code=1)},
                {"name": "after", "dependsOn": ["flaky"]},
            ],
        ),
        phase="Failed",
        node_phases={"flaky": "Failed", "after": "Skipped"},
        attempts={"flaky": [1, 2, 3]},
    )
    shapes = [chain_shape(step="2s", length=6), retrying, _gate_times_out_shape()]
    peering = [f"--peering={PEERING}", "--resync-seconds=2"]
    # Peering needs the chart's namespaced mode with replicas > 1 (its Roles grant KopfPeering).
    identity = chart_identity("namespaced", {"replicas": 2})
    with own_namespace("pause") as namespace:
        ensure_kopf_peering(namespace, PEERING)
        with (
            JobLedger(namespace, cluster.kubeconfig) as ledger,
            RunHistory(namespace, cluster.kubeconfig) as history,
            operator_for(
                cluster.kubeconfig, [namespace], [*peering, "--priority=1"], identity
            ) as first,
        ):
            wait_for(lambda: len(_peers(namespace)) == 1, timeout=60, what="the first replica")
            apply(namespace, *(shape.manifest for shape in shapes))
            runs: dict[str, Shape] = {}
            for shape in shapes:
                runs[create(namespace, run_of(shape.manifest["metadata"]["name"]))] = shape
            assert ledger.wait_count(len(runs), timeout=120), first.tail(40)
            with operator_for(
                cluster.kubeconfig, [namespace], [*peering, "--priority=2"], identity
            ) as second:
                wait_for(
                    lambda: "paused by kopf peering" in first.logs(),
                    timeout=60,
                    what="the first replica to pause",
                )
                # The second acts: anything the first had in flight is long answered.
                wait_for(lambda: _writes(second) > 0, timeout=120, what="the second replica to act")
                paused_at = _writes(first)
                finish_and_check(namespace, runs, ledger, history, second, TAKEOVER_TIMEOUT)
                assert _writes(first) == paused_at, first.tail(60)
