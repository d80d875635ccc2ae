"""A reconcile pass cut off between two Job creates, made deterministic (SPEC §3 Jobs).

This is the window the random kills of test_faults_operator_kill.py aim at: the operator
has created some of a pass's Jobs and not recorded them in the run's status when it is
stopped. Here a ResourceQuota with room for one more Job does the cutting: the pass that
starts three fan-out instances gets one Job made and the other two refused as "exceeded
quota", which the operator waits out (retrying the pass) without writing the status. The
Job that was made then finishes. When the quota goes, the next pass must adopt the finished
Job (its result, not a second Job) and create the other two: every instance once.
"""

from __future__ import annotations

from typing import Any

from tests.support.cluster import Cluster, kubectl, kubectl_json, wait_for
from tests.support.faults import (
    JobLedger,
    JobRecord,
    RunHistory,
    Shape,
    finish_and_check,
    operator_for,
    own_namespace,
)
from tests.support.operator import apply, create, run_of, status

NODES: list[dict[str, Any]] = [
    {"name": "split"},
    {"name": "t", "dependsOn": ["split"], "forEach": ["x", "y", "z"]},
    {"name": "join", "dependsOn": ["t"]},
]
INSTANCES = ["split", "t[x]", "t[y]", "t[z]", "join"]
SHAPE = Shape.succeeding("cut", NODES, INSTANCES)


def _room_for_jobs(namespace: str, count: int) -> None:
    quota = {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": "jobs"},
        "spec": {"hard": {"count/jobs.batch": str(count)}},
    }
    apply(namespace, quota)
    # Enforced once the quota controller has filled in what is used.
    wait_for(
        lambda: (
            kubectl_json("get", "resourcequota", "jobs", "-n", namespace).get("status") or {}
        ).get("used"),
        timeout=30,
        what="the ResourceQuota to be in force",
    )


def test_a_pass_cut_off_between_job_creates_adopts_the_made_job_and_creates_the_rest(
    cluster: Cluster,
) -> None:
    with (
        own_namespace("fault") as namespace,
        JobLedger(namespace, cluster.kubeconfig) as ledger,
        RunHistory(namespace, cluster.kubeconfig) as history,
        operator_for(cluster.kubeconfig, [namespace]) as operator,
    ):
        _room_for_jobs(namespace, 2)  # split's Job and one instance's
        apply(namespace, SHAPE.manifest)
        run = create(namespace, run_of("cut"))

        def instance_job() -> list[JobRecord]:
            return [r for r in ledger.records if r.instance.startswith("t[")]

        (made,) = wait_for(instance_job, timeout=240, what="the one instance Job the quota allows")
        kubectl("wait", "--for=condition=Complete", f"job/{made.name}", "-n", namespace,
                "--timeout=240s")  # fmt: skip
        # The cut-off pass recorded nothing: the status does not know the Job was made.
        recorded = (status(namespace, run).get("nodes") or {}).get(made.instance) or {}
        assert recorded.get("phase") != "Running", recorded

        kubectl("delete", "resourcequota", "jobs", "-n", namespace)
        finish_and_check(namespace, {run: SHAPE}, ledger, history, operator)
