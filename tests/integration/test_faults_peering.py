"""Two operator replicas with kopf peering: SIGKILL the active one, the standby finishes the
runs (issue 6 item 2, docs/install.md "peering").

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
from tests.support.operator import apply, create, run_of

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
