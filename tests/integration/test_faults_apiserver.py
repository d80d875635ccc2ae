"""The operator's kube-apiserver is killed mid-run and restarted (docs/faults.md).

The shared cluster's API server serves every session on this machine, so the test does not
restart that one: it starts a second kube-apiserver on the same etcd (same binary, flags and
certificates, its own port; `PrivateApiServer` in tests/support/faults.py), points the
operator at it, and SIGKILLs it while runs are in flight. The rest of the control plane
(the Job controller, KWOK) keeps going through the shared API server, so Jobs finish while
the operator is cut off; after the restart the operator must reconnect its watches, catch up
on what it missed, and finish every run correctly, with no Job made twice.
"""

from __future__ import annotations

import pytest

from tests.support.cluster import Cluster, job_of, kubectl
from tests.support.faults import (
    JobLedger,
    RunHistory,
    Shape,
    chain_shape,
    fan_out_shape,
    finish_and_check,
    is_running,
    local_apiserver_available,
    operator_for,
    own_namespace,
    private_apiserver,
)
from tests.support.operator import apply, create, run_of


def test_the_operator_reconnects_after_its_kube_apiserver_is_killed_and_finishes_every_run(
    cluster: Cluster,
) -> None:
    if not local_apiserver_available():
        pytest.skip("needs the local kwokctl cluster (hack/cluster-up.sh) to copy its API server")
    chain, fan_out = chain_shape(step="1s"), fan_out_shape()
    with (
        own_namespace("fault") as namespace,
        JobLedger(namespace, cluster.kubeconfig) as ledger,
        RunHistory(namespace, cluster.kubeconfig) as history,
        private_apiserver(cluster.kubeconfig) as server,
        operator_for(server.kubeconfig, [namespace]) as operator,
    ):
        apply(namespace, chain.manifest, fan_out.manifest)
        runs: dict[str, Shape] = {}
        for shape in (chain, chain, fan_out, fan_out):
            runs[create(namespace, run_of(shape.manifest["metadata"]["name"]))] = shape
        assert ledger.wait_count(len(runs), timeout=120), "the operator started no Jobs"

        server.kill()
        # Cut off, the operator misses Jobs finishing: wait for one chain's first node.
        first = next(run for run, shape in runs.items() if shape is chain)
        job = job_of(namespace, first, "a")
        kubectl("wait", "--for=condition=Complete", f"job/{job}", "-n", namespace,
                "--timeout=240s")  # fmt: skip
        assert is_running(operator), operator.tail(40)

        server.start()
        finish_and_check(namespace, runs, ledger, history, operator)
        assert is_running(operator), operator.tail(40)
