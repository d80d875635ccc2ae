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
