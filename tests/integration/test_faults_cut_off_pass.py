"""A reconcile pass cut off between creating Jobs and recording them (SPEC §3 Jobs).

This is the window the random kills of test_faults_operator_kill.py aim at: the operator
has created some of a pass's Jobs and not recorded them in the run's status when it is
stopped. Here two things do the cutting: a ResourceQuota with room for one more Job lets
the pass that starts three fan-out instances make one Job (the other two wait Queued for
room), and a ValidatingAdmissionPolicy refuses every status write that records an
instance as Running, so the pass fails after its creates and is retried without the
status ever knowing the Job was made. The Job then finishes. When both go, the next pass
must adopt the finished Job (its result, not a second Job) and create the other two:
every instance once.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

from tests.support.cluster import Cluster, KubectlError, kubectl, namespace_policy, wait_for
from tests.support.faults import (
    JobLedger,
    JobRecord,
    RunHistory,
    Shape,
    finish_and_check,
    operator_for,
    own_namespace,
)
from tests.support.operator import apply, create, limit_jobs, run_of, status

NODES: list[dict[str, Any]] = [
    {"name": "split"},
    {"name": "t", "dependsOn": ["split"], "forEach": ["x", "y", "z"]},
    {"name": "join", "dependsOn": ["t"]},
]
INSTANCES = ["split", "t[x]", "t[y]", "t[z]", "join"]
SHAPE = Shape.succeeding("cut", NODES, INSTANCES)


# Denies a run's status write that records a `t` instance Running: the cut.
NO_RUNNING_INSTANCE = (
    "!has(object.status) || !has(object.status.nodes) || !object.status.nodes.exists(k, "
    "k.startsWith('t[') && object.status.nodes[k].phase == 'Running')"
)


@contextmanager
def status_writes_cut_off(namespace: str) -> Iterator[None]:
    name = f"kdag-fault-cut-{uuid.uuid4().hex[:8]}"
    rules = [
        {"apiGroups": ["kdag.dev"], "apiVersions": ["v1alpha1"], "operations": ["UPDATE"],
         "resources": ["workflowruns/status"]},
    ]  # fmt: skip
    validations = [{"expression": NO_RUNNING_INSTANCE, "message": "kdag fault test: cut off"}]
    with namespace_policy(name, namespace, rules, validations):
        # The API server picks the policy up asynchronously: probe until it bites, on a run
        # no operator serves yet.
        probe = create(namespace, run_of("cut", name="probe"))
        patch = json.dumps({"status": {"nodes": {"t[x]": {"phase": "Running"}}}})

        def bites() -> bool:
            try:
                kubectl("patch", "workflowrun", probe, "-n", namespace,
                        "--subresource=status", "--type=merge", "-p", patch)  # fmt: skip
            except KubectlError as err:
                return "cut off" in err.stderr
            return False

        wait_for(bites, timeout=30, what="the status policy to be in force")
        kubectl("delete", "workflowrun", probe, "-n", namespace)
        yield


def test_a_pass_cut_off_between_job_creates_adopts_the_made_job_and_creates_the_rest(
    cluster: Cluster,
) -> None:
    with (
        own_namespace("fault") as namespace,
        JobLedger(namespace, cluster.kubeconfig) as ledger,
        RunHistory(namespace, cluster.kubeconfig) as history,
        ExitStack() as cut,
    ):
        limit_jobs(namespace, 2)  # split's Job and one instance's
        apply(namespace, SHAPE.manifest)
        cut.enter_context(status_writes_cut_off(namespace))
        with operator_for(cluster.kubeconfig, [namespace]) as operator:
            run = create(namespace, run_of("cut"))

            def instance_job() -> list[JobRecord]:
                return [r for r in ledger.records if r.instance.startswith("t[")]

            (made,) = wait_for(
                instance_job, timeout=240, what="the one instance Job the quota allows"
            )
            kubectl("wait", "--for=condition=Complete", f"job/{made.name}", "-n", namespace,
                    "--timeout=240s")  # fmt: skip
            # The cut-off pass recorded nothing: the status does not know the Job was made.
            recorded = (status(namespace, run).get("nodes") or {}).get(made.instance) or {}
            assert recorded.get("phase") != "Running", recorded

            kubectl("delete", "resourcequota", "jobs", "-n", namespace)
            cut.close()  # status writes go through again
            finish_and_check(namespace, {run: SHAPE}, ledger, history, operator)
