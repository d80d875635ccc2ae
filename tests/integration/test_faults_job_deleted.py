"""Jobs (and pods) deleted by hand mid-run (SPEC §3 Jobs, docs/semantics.md "Jobs").

A node whose Job disappears before it finished fails that attempt with
`Job <name> was deleted before it finished`, and is retried if it has retries left; the run
never hangs waiting for a Job that is gone, also when the deletion happened while the
operator was down, or while only its watches were (the periodic resync notices it, under the
chart's RBAC).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.support.chart_rbac import chart_identity
from tests.support.cluster import Cluster, job_of, kubectl, wait_for
from tests.support.faults import (
    JobLedger,
    local_apiserver_available,
    operator_for,
    own_namespace,
    private_apiserver,
    release_when_started,
)
from tests.support.operator import (
    apply,
    create,
    node_phases,
    pods,
    run_of,
    sim,
    wait_node,
    wait_phase,
    workflow,
)
from tests.support.operator_process import ScopedOperator

RETRY = {"limit": 1, "backoffSeconds": 1, "factor": 1}


@dataclass(frozen=True)
class Env:
    namespace: str
    operator: ScopedOperator
    ledger: JobLedger


@pytest.fixture(scope="module")
def env(cluster: Cluster) -> Iterator[Env]:
    with (
        own_namespace("fault") as namespace,
        JobLedger(namespace, cluster.kubeconfig) as ledger,
        operator_for(cluster.kubeconfig, [namespace]) as operator,
    ):
        apply(
            namespace,
            workflow("once", [{"name": "a", **sim(hang=True)}, {"name": "b", "dependsOn": ["a"]}]),
            workflow("twice", [{"name": "a", "retry": RETRY, **sim(hang=True)}]),
            workflow(
                "steady", [{"name": "a", **sim(duration="3s")}, {"name": "b", "dependsOn": ["a"]}]
            ),
        )
        yield Env(namespace, operator, ledger)


def _delete_job(namespace: str, name: str) -> None:
    kubectl("delete", "job", name, "-n", namespace, "--wait=false")


def test_a_deleted_job_fails_its_node_with_a_clear_message_and_the_run_ends(env: Env) -> None:
    run = create(env.namespace, run_of("once"))
    wait_node(env.namespace, run, "a", "Running")
    _delete_job(env.namespace, job_of(env.namespace, run, "a"))
    done = wait_phase(env.namespace, run, "Failed", timeout=240)
    assert node_phases(done) == {"a": "Failed", "b": "Skipped"}
    message = f"Job {job_of(env.namespace, run, 'a')} was deleted before it finished"
    assert done["nodes"]["a"]["message"] == message
    assert message in done["message"]
    assert env.ledger.attempts(run) == {"a": [1]}


def test_a_deleted_job_is_retried_when_the_node_has_retries_left(env: Env) -> None:
    run = create(env.namespace, run_of("twice"))
    wait_node(env.namespace, run, "a", "Running")
    _delete_job(env.namespace, job_of(env.namespace, run, "a"))
    retrying = wait_node(env.namespace, run, "a", "Retrying", "Running")
    assert retrying.get("retries", 1) == 1
    release_when_started(env.namespace, run, "a", attempt=2)
    done = wait_phase(env.namespace, run, "Succeeded", timeout=240)
    assert done["nodes"]["a"]["attempt"] == 2
    assert env.ledger.attempts(run) == {"a": [1, 2]}


def test_a_job_deleted_while_the_operator_is_down_is_noticed_after_it_restarts(
    env: Env,
) -> None:
    run = create(env.namespace, run_of("once"))
    wait_node(env.namespace, run, "a", "Running")
    env.operator.kill()
    try:
        _delete_job(env.namespace, job_of(env.namespace, run, "a"))
        kubectl(
            "wait",
            "--for=delete",
            f"job/{job_of(env.namespace, run, 'a')}",
            "-n",
            env.namespace,
            "--timeout=120s",
        )
    finally:
        env.operator.start()
    done = wait_phase(env.namespace, run, "Failed", timeout=240)
    assert (
        done["nodes"]["a"]["message"]
        == f"Job {job_of(env.namespace, run, 'a')} was deleted before it finished"
    )
    assert env.ledger.attempts(run) == {"a": [1]}


def test_under_the_charts_namespaced_rbac_the_resync_notices_a_job_deleted_while_watches_were_down(
    cluster: Cluster,
) -> None:
    # The operator stays up; only its API server (a private one) goes, so its watches break
    # and, on reconnecting, replay what exists but not the deletion. Only the periodic
    # resync, which re-reads the run (`get` on workflowruns) and lists its Jobs, can notice.
    if not local_apiserver_available():
        pytest.skip("needs the local kwokctl cluster (hack/cluster-up.sh) to copy its API server")
    with (
        own_namespace("fault") as namespace,
        private_apiserver(cluster.kubeconfig) as server,
        operator_for(
            server.kubeconfig,
            [namespace],
            ["--resync-seconds=2"],
            identity=chart_identity("namespaced"),
        ),
    ):
        apply(namespace, workflow("once", [{"name": "a", **sim(hang=True)}]))
        run = create(namespace, run_of("once"))
        wait_node(namespace, run, "a", "Running")
        job = job_of(namespace, run, "a")
        server.kill()
        _delete_job(namespace, job)
        kubectl("wait", "--for=delete", f"job/{job}", "-n", namespace, "--timeout=120s")
        server.start()
        # Some resync periods, and the shared cluster's latency. (No check that nothing was
        # refused: a fresh API server refuses requests until its RBAC caches have synced.)
        done = wait_phase(namespace, run, "Failed", timeout=90)
        assert done["nodes"]["a"]["message"] == f"Job {job} was deleted before it finished"


def test_a_pod_deleted_by_hand_does_not_leave_the_run_hanging(env: Env) -> None:
    # The Job controller decides what a lost pod means: a kubelet marks a deleted pod Failed
    # (the Job fails: backoffLimit 0); KWOK removes it at once and the Job makes a new pod.
    # Either way the node finishes with its one Job, and the run ends.
    run = create(env.namespace, run_of("steady"))
    wait_node(env.namespace, run, "a", "Running")
    selector = f"job-name={job_of(env.namespace, run, 'a')}"
    wait_for(
        lambda: pods(env.namespace, selector),
        timeout=240,
        what=f"the pod of {job_of(env.namespace, run, 'a')}",
    )
    kubectl("delete", "pod", "-n", env.namespace, "-l", selector, "--wait=false")
    done = wait_phase(env.namespace, run, "Succeeded", "Failed", timeout=240)
    if done["phase"] == "Failed":
        assert done["nodes"]["a"]["message"], done
    assert env.ledger.attempts(run)["a"] == [1]


def test_no_node_attempt_got_two_jobs(env: Env) -> None:
    env.ledger.catch_up()
    assert not env.ledger.duplicates()
