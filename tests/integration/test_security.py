"""Security on the real API server with the Helm chart's RBAC (SPEC §3, §6).

The chart is installed with its defaults (cluster-wide), and the operator runs as the chart's
ServiceAccount (a token kubeconfig, nothing of the admin's), scoped with --namespace to this
module's namespaces; an admission fence makes sure no other operator on the shared cluster
acts there. What is proved:

- Job pods run as the ServiceAccount and with the security context their workflow names
  (`podTemplate`, from `defaults` or the node), and a node without one gets the namespace's
  `default` ServiceAccount: never the operator's.
- The operator's identity cannot escalate: no Secrets (by API or by token request), no pod
  exec/attach/logs, no impersonation, no RBAC or admission-policy writes, no Job updates.
  (tests/integration/test_helm_install.py covers the basic rows, including both install
  modes; approval authorization is covered by tests/integration/test_helm_admission.py.)
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.cluster import Cluster, KubectlError, job_of, kubectl, wait_for
from tests.support.helm_release import Release, can_i, installed, only_identity_may_act
from tests.support.operator import apply, create, jobs, pods, run_of, wait_phase, workflow
from tests.support.operator_process import scoped_operator, service_account_kubeconfig

RESTRICTED = {
    "runAsNonRoot": True,
    "runAsUser": 10001,
    "runAsGroup": 10001,
    "fsGroup": 10001,
    "seccompProfile": {"type": "RuntimeDefault"},
}


@dataclass(frozen=True)
class Env:
    release: Release
    namespace: str  # a workload namespace the operator serves


@contextmanager
def _let_list_namespaces(release: Release) -> Iterator[None]:
    """kopf lists namespaces whenever it is given --namespace, which the chart grants only
    with watchNamespaces; the cluster-wide Deployment never needs it. Namespace names only."""
    name = f"{release.name}-test-namespaces"
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": name},
        "rules": [{"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list", "watch"]}],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
        "subjects": [
            {
                "kind": "ServiceAccount",
                "name": release.service_account,
                "namespace": release.namespace,
            }
        ],
    }
    kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List",
                                                  "items": [role, binding]}))  # fmt: skip
    try:
        yield
    finally:
        kubectl("delete", "clusterrolebinding,clusterrole", name, "--ignore-not-found")


@pytest.fixture(scope="module")
def env(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    tmp = tmp_path_factory.mktemp("security")
    with installed(cluster, tmp) as release:
        (namespace,) = release.workloads
        served = [namespace, release.namespace]
        kubeconfig = service_account_kubeconfig(
            cluster.kubeconfig, release.namespace, release.service_account, tmp / "sa"
        )
        for name in ("loader", "publisher"):
            kubectl("create", "serviceaccount", name, "-n", namespace)
        with (
            _let_list_namespaces(release),
            only_identity_may_act(namespace, release.username),
            only_identity_may_act(release.namespace, release.username),
            scoped_operator(kubeconfig, served),
        ):
            yield Env(release, namespace)


def _pod_spec(namespace: str, job: str) -> dict[str, Any]:
    found = wait_for(
        lambda: pods(namespace, f"job-name={job}"), timeout=240, what=f"the pod of {job}"
    )
    spec: dict[str, Any] = found[0]["spec"]
    return spec


def _job_pod_spec(namespace: str, run: str, node: str) -> dict[str, Any]:
    (job,) = [j for j in jobs(namespace, run) if j["metadata"]["labels"]["kdag.dev/node"] == node]
    spec: dict[str, Any] = job["spec"]["template"]["spec"]
    return spec


def test_job_pods_run_as_the_service_account_and_security_context_their_workflow_names(
    env: Env,
) -> None:
    nodes: list[dict[str, Any]] = [
        {"name": "extract"},  # from defaults
        {"name": "publish", "dependsOn": ["extract"],
         "podTemplate": {"serviceAccountName": "publisher", "automountServiceAccountToken": False}},
    ]  # fmt: skip
    defaults = {"podTemplate": {"serviceAccountName": "loader", "securityContext": RESTRICTED}}
    apply(env.namespace, workflow("identities", nodes, defaults=defaults))
    run = create(env.namespace, run_of("identities"))
    wait_phase(env.namespace, run, "Succeeded", timeout=240)

    for node, account in (("extract", "loader"), ("publish", "publisher")):
        template = _job_pod_spec(env.namespace, run, node)
        assert template["serviceAccountName"] == account
        assert template["securityContext"] == RESTRICTED
        pod = _pod_spec(env.namespace, job_of(env.namespace, run, node))
        assert pod["serviceAccountName"] == account
        assert pod["securityContext"] == RESTRICTED
        assert pod["serviceAccountName"] != env.release.service_account
    # The node that asked for no token has none mounted.
    publish = _pod_spec(env.namespace, job_of(env.namespace, run, "publish"))
    assert publish["automountServiceAccountToken"] is False
    assert not [v for v in publish.get("volumes") or [] if v["name"].startswith("kube-api-access")]


def test_a_node_without_pod_template_runs_as_the_namespace_default_service_account(
    env: Env,
) -> None:
    apply(env.namespace, workflow("plain", [{"name": "a"}]))
    run = create(env.namespace, run_of("plain"))
    wait_phase(env.namespace, run, "Succeeded", timeout=240)
    assert "serviceAccountName" not in _job_pod_spec(env.namespace, run, "a")
    pod = _pod_spec(env.namespace, job_of(env.namespace, run, "a"))
    assert pod["serviceAccountName"] == "default"
    assert pod["serviceAccountName"] != env.release.service_account


@pytest.mark.parametrize(
    ("where", "field"),
    [
        ("node", "nodes[a].podTemplate.serviceAccountName"),
        # The deprecated alias, which the API server still honours.
        ("defaults", "defaults.podTemplate.serviceAccount"),
    ],
)
def test_a_workflow_cannot_borrow_the_operators_own_service_account(
    env: Env, where: str, field: str
) -> None:
    # With the default (cluster-wide) install the operator serves its own namespace too,
    # where its ServiceAccount lives: anyone who may create runs there must not get its token.
    namespace, account = env.release.namespace, env.release.service_account
    template = {"podTemplate": {field.rsplit(".", 1)[1]: account}}
    node, defaults = (
        ({"name": "a", **template}, {}) if where == "node" else ({"name": "a"}, template)
    )
    apply(namespace, workflow(f"borrow-{where}", [node], defaults=defaults))
    run = create(namespace, run_of(f"borrow-{where}"))
    done = wait_phase(namespace, run, "Succeeded", "Failed", "Invalid", timeout=240)
    created = [j["metadata"]["name"] for j in jobs(namespace, run)]
    assert not created, f"{run} created Jobs in the operator's namespace: {created}"
    assert done["phase"] == "Invalid", done
    assert f"{field}: '{account}' is the operator's own ServiceAccount" in done["message"], done
    assert f"({namespace}/{account})" in done["message"], done


def test_an_account_named_like_the_operators_in_another_namespace_is_usable(env: Env) -> None:
    account = env.release.service_account
    kubectl("create", "serviceaccount", account, "-n", env.namespace)
    nodes = [{"name": "a", "podTemplate": {"serviceAccountName": account}}]
    apply(env.namespace, workflow("namesake", nodes))
    run = create(env.namespace, run_of("namesake"))
    wait_phase(env.namespace, run, "Succeeded", timeout=240)
    pod = _pod_spec(env.namespace, job_of(env.namespace, run, "a"))
    assert pod["serviceAccountName"] == account  # env.namespace's own account of that name


ESCALATIONS = [
    ("get", "secrets"),
    ("watch", "secrets"),
    ("create", "serviceaccounts/token"),
    ("create", "pods"),
    ("create", "pods/exec"),
    ("create", "pods/attach"),
    ("get", "pods/log"),
    ("patch", "jobs.batch"),
    ("create", "rolebindings.rbac.authorization.k8s.io"),
    ("bind", "clusterroles.rbac.authorization.k8s.io"),
    ("escalate", "roles.rbac.authorization.k8s.io"),
    ("impersonate", "users"),
    ("impersonate", "serviceaccounts"),
    ("update", "workflows.kdag.dev"),
]
CLUSTER_ESCALATIONS = [
    ("delete", "validatingadmissionpolicies.admissionregistration.k8s.io"),
    ("patch", "validatingadmissionpolicybindings.admissionregistration.k8s.io"),
    ("create", "clusterrolebindings.rbac.authorization.k8s.io"),
    ("update", "customresourcedefinitions.apiextensions.k8s.io"),
    ("create", "certificatesigningrequests.certificates.k8s.io"),
]


@pytest.mark.parametrize(("verb", "resource"), ESCALATIONS, ids=[" ".join(e) for e in ESCALATIONS])
def test_the_operator_identity_cannot_escalate_in_a_served_namespace(
    env: Env, verb: str, resource: str
) -> None:
    assert not can_i(env.release.username, verb, resource, "-n", env.namespace)


@pytest.mark.parametrize(
    ("verb", "resource"), CLUSTER_ESCALATIONS, ids=[" ".join(e) for e in CLUSTER_ESCALATIONS]
)
def test_the_operator_identity_cannot_escalate_cluster_wide(
    env: Env, verb: str, resource: str
) -> None:
    assert not can_i(env.release.username, verb, resource)


def test_the_operators_token_cannot_mint_tokens_for_other_service_accounts(
    cluster: Cluster, env: Env, tmp_path: Path
) -> None:
    kubeconfig = service_account_kubeconfig(
        cluster.kubeconfig, env.release.namespace, env.release.service_account, tmp_path / "sa"
    )
    with pytest.raises(KubectlError, match=r"(?i)forbidden"):
        kubectl("create", "token", "loader", "-n", env.namespace, kubeconfig=kubeconfig)
