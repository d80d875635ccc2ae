"""The chart's RBAC under the admission plugins a real cluster has (docs/testing.md "RBAC
modes", docs/install.md "RBAC").

The local cluster runs OwnerReferencesPermissionEnforcement, as OpenShift does: an object
whose owner reference sets `blockOwnerDeletion` is refused unless its creator may update the
owner's finalizers. Every Job kdag makes sets it on its WorkflowRun owner, so the chart must
grant `update` on `workflowruns/finalizers`. These tests check that the plugin really is
on, that a run succeeds under the chart's RBAC in both modes, and that without that one
rule the operator's Job creates are refused.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest

from tests.support.chart_rbac import ChartIdentity, Mode
from tests.support.cluster import Cluster, KubectlError, kubectl, kubectl_json, wait_for
from tests.support.faults import operator_for, own_namespace
from tests.support.operator import (
    apply,
    apply_crds,
    create,
    jobs,
    node_phases,
    run_of,
    sim,
    status,
    workflow,
)
from tests.support.operator_process import ScopedOperator

FINALIZERS = "workflowruns/finalizers"
NODES = [{"name": "a", **sim(duration="200ms")}, {"name": "b", "dependsOn": ["a"]}]


@pytest.fixture(scope="module", autouse=True)
def crds(cluster: Cluster) -> None:
    apply_crds()


@pytest.fixture
def namespace(cluster: Cluster) -> Iterator[str]:
    # One no other operator serves: what happens here is the doing of the test's operator.
    with own_namespace("rbac") as name:
        yield name


def _job_owned_by(run: dict[str, Any], name: str, block: bool) -> dict[str, Any]:
    owner = {
        "apiVersion": "kdag.dev/v1alpha1",
        "kind": "WorkflowRun",
        "name": run["metadata"]["name"],
        "uid": run["metadata"]["uid"],
        "controller": True,
        **({"blockOwnerDeletion": True} if block else {}),
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "ownerReferences": [owner]},
        "spec": {
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "c", "image": "busybox:1.36"}],
                }
            }
        },
    }


def _grant(namespace: str, name: str, rules: list[dict[str, Any]]) -> None:
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": name}, "rules": rules}  # fmt: skip
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": "probe", "namespace": namespace}],
    }
    items = {"apiVersion": "v1", "kind": "List", "items": [role, binding]}
    kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(items))


def test_owner_references_permission_enforcement_is_on(namespace: str) -> None:
    user = f"system:serviceaccount:{namespace}:probe"
    kubectl("create", "serviceaccount", "probe", "-n", namespace)
    jobs_rule = {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["create", "delete"]}
    _grant(namespace, "probe-jobs", [jobs_rule])
    wait_for(
        lambda: kubectl("auth", "can-i", "create", "jobs", "-n", namespace, f"--as={user}",
                        check=False).strip() == "yes",
        timeout=30, what="the probe's Role",
    )  # fmt: skip
    apply(namespace, workflow("w", [{"name": "a"}]))
    run = kubectl_json("get", "workflowrun", create(namespace, run_of("w")), "-n", namespace)

    def create_as_probe(job: dict[str, Any]) -> None:
        kubectl("create", "-n", namespace, f"--as={user}", "-f", "-", input=json.dumps(job))

    # RBAC lets the probe create Jobs; only the plugin refuses the blocking owner reference.
    with pytest.raises(KubectlError, match="cannot set blockOwnerDeletion") as refused:
        create_as_probe(_job_owned_by(run, "blocking", block=True))
    assert "finalizers" in refused.value.stderr
    create_as_probe(_job_owned_by(run, "not-blocking", block=False))
    finalizers = {"apiGroups": ["kdag.dev"], "resources": [FINALIZERS], "verbs": ["update"]}
    _grant(namespace, "probe-finalizers", [finalizers])
    wait_for(
        lambda: kubectl("auth", "can-i", "update", "workflowruns.kdag.dev",
                        "--subresource=finalizers", "-n", namespace, f"--as={user}",
                        check=False).strip() == "yes",
        timeout=30, what="the probe's finalizers Role",
    )  # fmt: skip
    create_as_probe(_job_owned_by(run, "blocking", block=True))


def _job_creates(operator: ScopedOperator, code: str) -> float:
    return operator.sample("kdag_kube_requests_total", verb="create", resource="jobs", code=code)


@pytest.mark.parametrize("mode", ["cluster", "namespaced"])
def test_a_run_succeeds_under_the_charts_rbac_with_the_plugin_on(
    cluster: Cluster, namespace: str, mode: Mode
) -> None:
    identity = ChartIdentity(mode).create()
    try:
        with operator_for(cluster.kubeconfig, [namespace], identity=identity) as operator:
            apply(namespace, workflow("two", NODES))
            run = create(namespace, run_of("two"))

            def ended() -> dict[str, Any]:
                # A refused Job create fails the test at once rather than at the timeout.
                assert _job_creates(operator, "403") == 0, operator.tail(20)
                found = status(namespace, run)
                return found if found.get("phase") in ("Succeeded", "Failed") else {}

            done = wait_for(ended, timeout=240, interval=0.5, what=f"run {run} to end")
            assert node_phases(done) == {"a": "Succeeded", "b": "Succeeded"}, done
            assert _job_creates(operator, "201") == 2
            assert operator.sample("kdag_kube_requests_total", code="403") == 0, operator.tail()
    finally:
        identity.delete()


def test_without_update_on_workflowruns_finalizers_the_operators_job_create_is_refused(
    cluster: Cluster, namespace: str
) -> None:
    dropped: list[dict[str, Any]] = []

    def without_finalizers(rule: dict[str, Any]) -> dict[str, Any] | None:
        if FINALIZERS not in rule["resources"]:
            return rule
        dropped.append(rule)
        rest = [r for r in rule["resources"] if r != FINALIZERS]
        return {**rule, "resources": rest} if rest else None

    identity = ChartIdentity("namespaced", rule_filter=without_finalizers).create()
    try:
        with operator_for(cluster.kubeconfig, [namespace], identity=identity) as operator:
            # The chart has the rule: this identity is the chart's less exactly that.
            assert dropped, "the chart grants no update on workflowruns/finalizers"
            assert not identity.can(
                "update", "workflowruns.kdag.dev", "--subresource=finalizers", "-n", namespace
            )
            apply(namespace, workflow("two", NODES))
            run = create(namespace, run_of("two"))
            wait_for(
                lambda: _job_creates(operator, "403"), timeout=120, what="a refused Job create"
            )
            assert "blockOwnerDeletion" in operator.logs(), operator.tail(20)
            assert not jobs(namespace, run)
    finally:
        identity.delete()


def _refused_job_lists(operator: ScopedOperator) -> list[datetime]:
    """When the operator's Job watch had its listing refused (kopf logs each attempt)."""
    return [
        datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
        for line in operator.logs().splitlines()
        if "Request attempt" in line and 'cannot list resource "jobs"' in line
    ]


def test_a_job_watch_the_rbac_refuses_is_retried_with_backoff_and_resumes_once_granted(
    cluster: Cluster, namespace: str
) -> None:
    # Jobs and pods are watched by kdag's own streams (operator/object_watches.py): a watch
    # refused must neither end the operator nor retry in a tight loop, and must come back
    # by itself once the permission is given.
    def without_job_and_pod_reads(rule: dict[str, Any]) -> dict[str, Any] | None:
        if not {"jobs", "pods"} & set(rule["resources"]):
            return rule
        verbs = [v for v in rule["verbs"] if v not in ("list", "watch")]
        return {**rule, "verbs": verbs} if verbs else None

    identity = ChartIdentity("namespaced", rule_filter=without_job_and_pod_reads).create()
    try:
        with operator_for(cluster.kubeconfig, [namespace], identity=identity) as operator:
            assert not identity.can("list", "jobs.batch", "-n", namespace)
            apply(namespace, workflow("two", NODES))
            run = create(namespace, run_of("two"))
            refused = wait_for(
                lambda: (found := _refused_job_lists(operator))[3:] and found,
                timeout=60,
                what="four refused Job listings",
            )
            # Backed off: 1 + 1 + 2 s between the first four (a tight loop: milliseconds).
            assert (refused[3] - refused[0]).total_seconds() >= 3.5, refused
            assert operator.running, operator.tail(20)

            identity.rule_filter = None
            identity.regrant(namespace)
            done = wait_for(
                lambda: (
                    (found := status(namespace, run)).get("phase") in ("Succeeded", "Failed")
                    and found
                ),
                timeout=180,
                interval=0.5,
                what=f"run {run} to end once the watch is granted",
            )
            assert node_phases(done) == {"a": "Succeeded", "b": "Succeeded"}, done
            assert operator.running, operator.tail(20)
    finally:
        identity.delete()
