"""The Helm chart `charts/kdag`, rendered with the real `helm` (SPEC §6, docs/install.md).

`helm lint` and `helm template` for every meaningful combination of values, asserting on
the rendered objects: least-privilege RBAC in both modes, the pod's security settings,
kopf peering for replicas > 1, the monitoring objects against the metrics the operator
really exports, the approval admission policy, the values schema, and CRDs that are the
generated files under crds/ themselves, never copies.

helm comes from `make cluster-bins` (the cache in hack/cluster-env.sh). Without it these
tests skip, except under CI, where a missing helm is a failure rather than a silent gap.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import celpy
import pytest
import yaml

from kdag.api import WorkflowSpec
from kdag.engine.defaults import effective_node
from kdag.engine.jobs import build_job
from kdag.operator.metrics import Metrics
from tests.support.cluster import REPO_ROOT, bin_dir

CHART = REPO_ROOT / "charts" / "kdag"
CRD_DIR = REPO_ROOT / "crds"
KUBE_VERSION = "1.34.0"  # what the local cluster runs (hack/cluster-env.sh)
RELEASE, NAMESPACE = "kdag", "kdag-system"
OPERATOR_USER = f"system:serviceaccount:{NAMESPACE}:kdag"


def _helm_path() -> Path:
    helm = bin_dir() / "helm"
    if not helm.exists():
        reason = f"helm is not built ({helm} is missing): run `make cluster-bins`"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return helm


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(_helm_path()), *args], capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def _values_args(values: dict[str, Any] | None, tmp: Path) -> list[str]:
    if not values:
        return []
    path = tmp / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    return ["--values", str(path)]


@functools.cache
def _render(values_json: str, include_crds: bool) -> tuple[dict[str, Any], ...]:
    with tempfile.TemporaryDirectory() as tmp:
        args = _values_args(json.loads(values_json), Path(tmp))
        out = helm(
            "template",
            RELEASE,
            str(CHART),
            "--namespace",
            NAMESPACE,
            "--kube-version",
            KUBE_VERSION,
            "--skip-tests",  # the `helm test` pod: test_helm_test_pod_asks_the_metrics_service
            *(["--include-crds"] if include_crds else []),
            *args,
        ).stdout
    return tuple(doc for doc in yaml.safe_load_all(out) if doc)


def render(
    values: dict[str, Any] | None = None, include_crds: bool = False
) -> list[dict[str, Any]]:
    """The chart's objects for these values (parsed; cached per values)."""
    return list(_render(json.dumps(values or {}, sort_keys=True), include_crds))


def kinds(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in kinds(docs, kind) if name is None or d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name or ''}, got {len(found)}"
    return found[0]


def container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    (only,) = pod["containers"]
    return only


def rules_of(role: dict[str, Any]) -> dict[tuple[str, str], set[str]]:
    """{(apiGroup, resource): verbs} of a Role or ClusterRole."""
    out: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        assert not rule.get("resourceNames"), rule
        assert not rule.get("nonResourceURLs"), rule
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                out.setdefault((group, resource), set()).update(rule["verbs"])
    return out


# What the operator does in a namespace it serves: exactly this, nothing more.
NAMESPACED_RULES = {
    ("kdag.dev", "workflowruns"): {"get", "list", "watch", "create", "patch", "delete"},
    # Jobs' owner references set blockOwnerDeletion (OwnerReferencesPermissionEnforcement).
    ("kdag.dev", "workflowruns/finalizers"): {"update"},
    ("kdag.dev", "workflowruns/status"): {"patch"},
    ("kdag.dev", "workflows"): {"get", "list", "watch", "patch"},
    ("kdag.dev", "workflows/status"): {"patch"},
    ("batch", "jobs"): {"get", "list", "watch", "create", "delete"},
    ("", "pods"): {"list", "watch"},
    ("", "events"): {"create", "patch", "list"},
}
CRD_READ = {("apiextensions.k8s.io", "customresourcedefinitions"): {"list", "watch"}}
PEERING_VERBS = {"get", "list", "watch", "patch"}
# Namespaced mode: kopf, given --namespace, lists and watches namespaces (names only).
NAMESPACED_MODE_CLUSTER_READ = {**CRD_READ, ("", "namespaces"): {"list", "watch"}}


def operator_roles(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every Role and ClusterRole bound to the operator's ServiceAccount."""
    bound = set()
    for binding in kinds(docs, "RoleBinding") + kinds(docs, "ClusterRoleBinding"):
        subjects = binding["subjects"]
        if any(s["kind"] == "ServiceAccount" and s["name"] == "kdag" for s in subjects):
            ns = binding["metadata"].get("namespace")
            bound.add((binding["roleRef"]["kind"], binding["roleRef"]["name"], ns))
    roles = [
        r
        for r in kinds(docs, "Role") + kinds(docs, "ClusterRole")
        if (
            r["kind"],
            r["metadata"]["name"],
            r["metadata"].get("namespace") if r["kind"] == "Role" else None,
        )
        in bound
    ]
    assert len(roles) == len(bound), "a binding refers to a role the chart does not create"
    return roles


# ----------------------------------------------------------------------------- lint


VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "namespaced": {"watchNamespaces": ["team-a", "team-b"]},
    "peering": {"replicas": 2},
    "peering-namespaced": {"replicas": 3, "watchNamespaces": ["team-a", "team-b"]},
    "monitoring": {
        "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
        "prometheusRule": {"enabled": True},
        "grafanaDashboard": {"enabled": True},
    },
    "admission": {"admissionPolicy": {"enabled": True}},
    "admission-namespaced": {
        "admissionPolicy": {"enabled": True, "exemptUsers": ["ci-bot"]},
        "watchNamespaces": ["team-a"],
    },
}


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_helm_lint_is_clean(name: str, tmp_path: Path) -> None:
    args = _values_args(VALUE_SETS[name], tmp_path)
    out = helm("lint", "--strict", "--kube-version", KUBE_VERSION, str(CHART), *args)
    assert "1 chart(s) linted, 0 chart(s) failed" in out.stdout


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_every_object_is_labelled_and_namespaced_correctly(name: str) -> None:
    cluster_scoped = {
        "CustomResourceDefinition",
        "ClusterRole",
        "ClusterRoleBinding",
        "ClusterKopfPeering",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    }
    for doc in render(VALUE_SETS[name]):
        meta = doc["metadata"]
        assert meta["labels"]["app.kubernetes.io/instance"] == RELEASE, doc["kind"]
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "Helm", doc["kind"]
        if doc["kind"] in cluster_scoped:
            assert "namespace" not in meta, doc["kind"]
        else:
            assert meta.get("namespace"), f"{doc['kind']} {meta['name']} has no namespace"


# ----------------------------------------------------------------------------- CRDs


def test_chart_crds_are_the_generated_files_not_copies() -> None:
    generated = sorted(p.name for p in CRD_DIR.glob("*.yaml"))
    assert generated, "crds/ is empty: run `make crds`"
    # kdag's own CRDs are templates (so helm upgrade upgrades them) made from files/crds/...
    assert sorted(p.name for p in (CHART / "files" / "crds").iterdir()) == generated
    for name in generated:
        link = CHART / "files" / "crds" / name
        assert link.is_symlink(), f"charts/kdag/files/crds/{name} must be a symlink to crds/{name}"
        assert link.resolve() == (CRD_DIR / name).resolve()
    # ...and crds/, which Helm installs once and never upgrades, holds only kopf's generic
    # peering CRDs, which must exist before the templates' peering objects can be created.
    assert sorted(p.name for p in (CHART / "crds").iterdir()) == ["kopf-peering.yaml"]


def _without_release_metadata(crd: dict[str, Any]) -> dict[str, Any]:
    meta = dict(crd["metadata"])
    meta.pop("annotations", None)
    generated = {"app.kubernetes.io/name", "app.kubernetes.io/part-of"}
    meta["labels"] = {k: v for k, v in meta["labels"].items() if k in generated}
    return {**crd, "metadata": meta}


def test_rendered_and_packaged_crds_are_the_generated_files(tmp_path: Path) -> None:
    helm("package", str(CHART), "--destination", str(tmp_path))
    (archive,) = tmp_path.glob("kdag-*.tgz")
    with tarfile.open(archive) as tar:
        for path in CRD_DIR.glob("*.yaml"):
            member = tar.extractfile(f"kdag/files/crds/{path.name}")
            assert member is not None, f"the packaged chart lacks files/crds/{path.name}"
            assert member.read() == path.read_bytes(), f"packaged files/crds/{path.name} differs"
    rendered = {d["metadata"]["name"]: d for d in kinds(render(), "CustomResourceDefinition")}
    generated = [yaml.safe_load(path.read_text()) for path in CRD_DIR.glob("*.yaml")]
    assert sorted(rendered) == sorted(g["metadata"]["name"] for g in generated)
    for crd in generated:
        # Only the release's labels and Helm's keep policy are added.
        assert _without_release_metadata(rendered[crd["metadata"]["name"]]) == crd


def test_crds_are_kept_on_uninstall_and_labelled_as_the_release() -> None:
    for crd in kinds(render(), "CustomResourceDefinition"):
        assert crd["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
        assert crd["metadata"]["labels"]["app.kubernetes.io/instance"] == RELEASE
        assert crd["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"


@pytest.mark.parametrize(
    ("crds", "expected"),
    [
        ({"install": False}, None),
        ({"keep": False}, {}),
        ({"annotations": {"example.com/owner": "platform"}},
         {"example.com/owner": "platform", "helm.sh/resource-policy": "keep"}),
        ({"keep": False, "annotations": {"example.com/owner": "platform"}},
         {"example.com/owner": "platform"}),
    ],
)  # fmt: skip
def test_crd_values(crds: dict[str, Any], expected: dict[str, str] | None) -> None:
    found = kinds(render({"crds": crds}), "CustomResourceDefinition")
    if expected is None:
        assert found == []
        return
    assert len(found) == len(list(CRD_DIR.glob("*.yaml")))
    for crd in found:
        assert crd["metadata"].get("annotations", {}) == expected


# ----------------------------------------------------------------------------- defaults


def test_defaults_render_the_operator_cluster_wide_and_unpeered() -> None:
    docs = render()
    assert sorted({d["kind"] for d in docs}) == [
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "Deployment",
        "Service",
        "ServiceAccount",
    ]
    assert not kinds(docs, "PodDisruptionBudget")
    deployment = one(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    main = container(docs)
    assert main["image"] == "kdag-operator:0.1.0"
    assert "command" not in main  # the image's ENTRYPOINT, kdag-operator
    assert main["args"] == [
        "--all-namespaces",
        "--standalone",
        "--metrics-port=8080",
        "--liveness=http://0.0.0.0:8081/healthz",
        "--log-format=json",
        "--max-nodes=10000",
        "--job-retention-policy=Retain",
        "--max-run-output-bytes=262144",
    ]
    assert one(docs, "ServiceAccount")["metadata"]["name"] == "kdag"


def test_job_retention_and_output_budget_reach_the_operator() -> None:
    docs = render({"operator": {"jobRetentionPolicy": "Delete", "maxRunOutputBytes": 2000000}})
    args = container(docs)["args"]
    assert "--job-retention-policy=Delete" in args
    assert "--max-run-output-bytes=2000000" in args


def test_pod_is_locked_down() -> None:
    docs = render()
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "kdag"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = container(docs)["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["runAsNonRoot"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert not pod.get("hostNetwork") and not pod.get("hostPID")
    # The only writable path is an emptyDir at /tmp.
    assert container(docs)["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    assert pod["volumes"] == [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}]


def test_readiness_probe_asks_kopfs_endpoint_with_its_own_timing() -> None:
    main = container(render({"readiness": {"periodSeconds": 7, "failureThreshold": 2}}))
    probe = main["readinessProbe"]
    expected = {"path": "/healthz", "port": "healthz"}
    assert probe["httpGet"] == main["livenessProbe"]["httpGet"] == expected
    assert (probe["periodSeconds"], probe["failureThreshold"]) == (7, 2)
    assert main["livenessProbe"]["periodSeconds"] == 15  # the liveness values, not these


def test_resources_and_liveness_probe() -> None:
    main = container(render())
    assert set(main["resources"]) == {"requests", "limits"}
    assert {"cpu", "memory"} <= set(main["resources"]["requests"])
    assert "memory" in main["resources"]["limits"]
    ports = {p["name"]: p["containerPort"] for p in main["ports"]}
    assert ports == {"metrics": 8080, "healthz": 8081}
    probe = main["livenessProbe"]["httpGet"]
    assert probe == {"path": "/healthz", "port": "healthz"}
    # The probe and kopf's liveness endpoint agree.
    assert f"--liveness=http://0.0.0.0:{ports['healthz']}{probe['path']}" in main["args"]


def test_metrics_service() -> None:
    docs = render()
    service = one(docs, "Service")
    assert service["metadata"]["name"] == "kdag-metrics"
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": 8080, "targetPort": "metrics", "protocol": "TCP"}
    ]
    pod_labels = one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()


def test_image_values() -> None:
    digest = "sha256:" + "a" * 64
    main = container(render({"image": {"repository": "reg.example/kdag", "tag": "1.2.3"}}))
    assert main["image"] == "reg.example/kdag:1.2.3"
    main = container(render({"image": {"repository": "reg.example/kdag", "digest": digest}}))
    assert main["image"] == f"reg.example/kdag@{digest}"
    main = container(render({"image": {"repository": "r/k", "pullPolicy": "Always"}}))
    assert main["imagePullPolicy"] == "Always"


# ----------------------------------------------------------------------------- RBAC


def _assert_least_privilege(docs: list[dict[str, Any]]) -> None:
    for role in kinds(docs, "Role") + kinds(docs, "ClusterRole"):
        for rule in role["rules"]:
            for field in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule.get(field, []), f"{role['metadata']['name']}: {rule}"
            assert not {"secrets", "configmaps"} & set(rule["resources"]), rule
            assert not {"escalate", "bind", "impersonate"} & set(rule["verbs"]), rule


def test_cluster_wide_rbac_is_exactly_what_the_operator_needs() -> None:
    docs = render()
    _assert_least_privilege(docs)
    roles = {r["metadata"]["name"]: rules_of(r) for r in operator_roles(docs)}
    assert roles == {"kdag": NAMESPACED_RULES, "kdag-cluster": CRD_READ}
    assert not kinds(docs, "Role")


def test_namespaced_rbac_has_a_role_in_each_namespace_and_nothing_cluster_wide() -> None:
    docs = render({"watchNamespaces": ["team-a", "team-b"]})
    _assert_least_privilege(docs)
    roles = operator_roles(docs)
    namespaced = {r["metadata"]["namespace"]: rules_of(r) for r in roles if r["kind"] == "Role"}
    assert namespaced == {"team-a": NAMESPACED_RULES, "team-b": NAMESPACED_RULES}
    cluster = [rules_of(r) for r in roles if r["kind"] == "ClusterRole"]
    assert cluster == [NAMESPACED_MODE_CLUSTER_READ]  # read-only: no namespaced kind
    bindings = kinds(docs, "RoleBinding")
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    for binding in bindings:
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "kdag", "namespace": NAMESPACE}
        ]
    args = container(docs)["args"]
    assert args[:2] == ["--namespace=team-a", "--namespace=team-b"]
    assert "--all-namespaces" not in args


def test_the_operator_may_set_block_owner_deletion_on_the_jobs_it_makes() -> None:
    # OwnerReferencesPermissionEnforcement (OpenShift) refuses an object whose
    # blockOwnerDeletion owner the creator may not update the finalizers of.
    spec = WorkflowSpec.model_validate({"defaults": {"image": "busybox"}, "nodes": [{"name": "a"}]})
    node = effective_node(spec, spec.nodes[0])
    job = build_job(
        run_name="r", run_namespace="ns", run_uid="u", workflow_name="w", instance="a",
        attempt=1, node=node, command=None, args=None, env=[],
    )  # fmt: skip
    blocking = [o for o in job["metadata"]["ownerReferences"] if o.get("blockOwnerDeletion")]
    assert blocking, "no blocking owner reference: then this rule could go"
    for values in ({}, {"watchNamespaces": ["team-a"]}):
        for role in operator_roles(render(values)):
            if role["metadata"]["name"] != "kdag":
                continue
            rules = rules_of(role)
            for owner in blocking:
                group = owner["apiVersion"].split("/")[0]
                assert owner["kind"] == "WorkflowRun"
                assert "update" in rules.get((group, "workflowruns/finalizers"), set()), values
            # ...and the Jobs themselves: the plugin also asks whether it may delete them.
            assert "delete" in rules[("batch", "jobs")]


def test_aggregated_user_roles_extend_view_and_edit() -> None:
    docs = render({"rbac": {"aggregateToDefaultRoles": True}})
    view = one(docs, "ClusterRole", "kdag-view")
    edit = one(docs, "ClusterRole", "kdag-edit")
    assert view["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"] == "true"
    assert edit["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-edit"] == "true"
    assert "rbac.authorization.k8s.io/aggregate-to-view" not in edit["metadata"]["labels"]
    # Nobody's default role may write the status, the operator's checkpoint.
    assert all("/" not in res for _, res in {**rules_of(view), **rules_of(edit)})
    docs = render({"rbac": {"aggregateToDefaultRoles": False}})
    assert {r["metadata"]["name"] for r in kinds(docs, "ClusterRole")} == {"kdag", "kdag-cluster"}


def test_rbac_and_service_account_can_be_left_out() -> None:
    docs = render({"rbac": {"create": False}, "serviceAccount": {"create": False, "name": "ops"}})
    assert not kinds(docs, "ClusterRole") and not kinds(docs, "ServiceAccount")
    assert one(docs, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "ops"


# ----------------------------------------------------------------------------- peering


def test_replicas_above_one_turn_on_kopf_peering_with_distinct_priorities() -> None:
    docs = render({"replicas": 2})
    deployment = one(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    main = container(docs)
    assert "--peering=kdag" in main["args"] and "--standalone" not in main["args"]
    # Each replica draws its own priority: kopf pauses all replicas that share one.
    assert main["command"][:2] == ["/bin/sh", "-c"]
    assert 'exec kdag-operator --priority="$(shuf' in main["command"][2]
    assert main["command"][3] == "kdag-operator"  # $0; the args are "$@"
    peering = one(docs, "ClusterKopfPeering")
    assert peering["apiVersion"] == "kopf.dev/v1"
    assert peering["metadata"]["name"] == "kdag"
    roles = {r["metadata"]["name"]: rules_of(r) for r in operator_roles(docs)}
    assert roles["kdag-cluster"] == {
        **CRD_READ,
        ("kopf.dev", "clusterkopfpeerings"): PEERING_VERBS,
    }
    assert roles["kdag"] == NAMESPACED_RULES
    _assert_least_privilege(docs)


def test_sharding_runs_every_replica_as_a_shard_with_leases_in_the_release_namespace() -> None:
    for values in ({}, {"watchNamespaces": ["team-a"]}):
        docs = render({**values, "replicas": 3, "sharding": {"enabled": True}})
        _assert_least_privilege(docs)
        main = container(docs)
        assert "--shards=kdag" in main["args"]
        assert "--shard-lease-seconds=15" in main["args"]
        assert "--shard-renew-seconds=5" in main["args"]
        assert not any(a.startswith("--peering") for a in main["args"])
        assert "command" not in main  # no random kopf priority
        assert {
            "name": "POD_NAMESPACE",
            "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
        } in main["env"]
        assert not kinds(docs, "ClusterKopfPeering") and not kinds(docs, "KopfPeering")
        role = one(docs, "Role", "kdag-shards")
        assert role["metadata"]["namespace"] == NAMESPACE
        assert rules_of(role) == {
            ("coordination.k8s.io", "leases"): {
                "get",
                "list",
                "watch",
                "create",
                "update",
                "delete",
            }
        }
        binding = one(docs, "RoleBinding", "kdag-shards")
        assert binding["metadata"]["namespace"] == NAMESPACE
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "kdag", "namespace": NAMESPACE}
        ]
        deployment = one(docs, "Deployment")
        assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
        assert one(docs, "PodDisruptionBudget")
        assert _anti_affinity(docs)
    # Off: no Lease permission at all.
    assert not [r for r in kinds(render(), "Role") if r["metadata"]["name"] == "kdag-shards"]


def _anti_affinity(docs: list[dict[str, Any]]) -> dict[str, Any] | None:
    return one(docs, "Deployment")["spec"]["template"]["spec"].get("affinity")


def test_replicas_above_one_get_a_disruption_budget_and_spread_over_nodes() -> None:
    docs = render({"replicas": 2})
    pdb = one(docs, "PodDisruptionBudget")
    assert pdb["apiVersion"] == "policy/v1"
    assert pdb["spec"]["maxUnavailable"] == 1
    pod_labels = one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    affinity = _anti_affinity(docs)
    assert affinity is not None
    (term,) = affinity["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    selector = term["podAffinityTerm"]["labelSelector"]["matchLabels"]
    assert selector.items() <= pod_labels.items()


@pytest.mark.parametrize(
    ("values", "pdb", "affinity"),
    [
        ({}, False, None),  # one operator: nothing to spare, nowhere to spread
        ({"replicas": 2, "podDisruptionBudget": {"enabled": False}}, False, "preferred"),
        ({"replicas": 2, "podDisruptionBudget": {"maxUnavailable": "50%"}}, True, "preferred"),
        ({"replicas": 3, "podAntiAffinity": "hard"}, True, "required"),
        ({"replicas": 2, "podAntiAffinity": "none"}, True, None),
        ({"replicas": 2, "affinity": {"nodeAffinity": {"x": 1}}}, True, "own"),
    ],
)
def test_disruption_budget_and_anti_affinity_values(
    values: dict[str, Any], pdb: bool, affinity: str | None
) -> None:
    docs = render(values)
    assert bool(kinds(docs, "PodDisruptionBudget")) is pdb
    found = _anti_affinity(docs)
    if affinity is None:
        assert found is None
    elif affinity == "own":
        assert found == values["affinity"]
    else:
        terms = found["podAntiAffinity"]
        key = f"{affinity}DuringSchedulingIgnoredDuringExecution"
        assert list(terms) == [key]
    if pdb and "maxUnavailable" in values.get("podDisruptionBudget", {}):
        budget = one(docs, "PodDisruptionBudget")["spec"]["maxUnavailable"]
        assert budget == values["podDisruptionBudget"]["maxUnavailable"]


def test_namespaced_peering_has_a_kopfpeering_in_each_namespace() -> None:
    docs = render({"replicas": 2, "watchNamespaces": ["team-a", "team-b"]})
    peerings = kinds(docs, "KopfPeering")
    assert sorted(p["metadata"]["namespace"] for p in peerings) == ["team-a", "team-b"]
    assert not kinds(docs, "ClusterKopfPeering")
    for role in kinds(docs, "Role"):
        assert rules_of(role) == {**NAMESPACED_RULES, ("kopf.dev", "kopfpeerings"): PEERING_VERBS}
    cluster = [rules_of(r) for r in operator_roles(docs) if r["kind"] == "ClusterRole"]
    assert cluster == [NAMESPACED_MODE_CLUSTER_READ]


def test_peering_crds_ship_with_the_chart() -> None:
    crds = {
        d["metadata"]["name"]: d
        for d in kinds(render(include_crds=True), "CustomResourceDefinition")
    }
    assert crds["clusterkopfpeerings.kopf.dev"]["spec"]["scope"] == "Cluster"
    assert crds["kopfpeerings.kopf.dev"]["spec"]["scope"] == "Namespaced"


# ----------------------------------------------------------------------------- monitoring


def _exported_metric_names() -> set[str]:
    """Every series name the operator's /metrics can expose, from kdag.operator.metrics."""
    names = {"up"}
    suffixes = {"counter": ["_total"], "gauge": [""], "histogram": ["_bucket", "_sum", "_count"]}
    for family in Metrics().registry.collect():
        names.update(family.name + s for s in suffixes[family.type])
    return names


def _metric_names(promql: str) -> set[str]:
    names = set(re.findall(r"\bkdag_[a-z_]+", promql))
    return names | ({"up"} if re.search(r"\bup\{", promql) else set())


def test_monitoring_objects() -> None:
    docs = render(VALUE_SETS["monitoring"])
    monitor = one(docs, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    service = one(docs, "Service")
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}


def test_alerts_use_only_metrics_the_operator_exports() -> None:
    rule = one(render(VALUE_SETS["monitoring"]), "PrometheusRule")
    alerts = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}
    assert set(alerts) == {
        "KdagRunsFailing",
        "KdagApprovalPendingTooLong",
        "KdagReconcileErrors",
        "KdagOperatorAbsent",
    }
    exported = _exported_metric_names()
    for name, alert in alerts.items():
        used = _metric_names(alert["expr"])
        assert used, f"{name}: no metric found in {alert['expr']!r}"
        assert used <= exported, f"{name} uses unknown metrics {used - exported}"
        assert alert["labels"]["severity"] in {"info", "warning", "critical"}
        assert alert["annotations"]["summary"] and alert["annotations"]["description"]
    assert "kdag_runs_finished_total" in alerts["KdagRunsFailing"]["expr"]
    assert "kdag_approvals_pending" in alerts["KdagApprovalPendingTooLong"]["expr"]
    assert "kdag_reconcile_errors_total" in alerts["KdagReconcileErrors"]["expr"]
    assert alerts["KdagOperatorAbsent"]["expr"] == (
        'absent(up{job="kdag-metrics", namespace="kdag-system"} == 1)'
    )


def test_alert_rules_and_dashboard_queries_pass_promtool(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian package `prometheus`)")
    rule = one(render(VALUE_SETS["monitoring"]), "PrometheusRule")
    path = tmp_path / "rules.yaml"
    # The dashboard's queries too, as recording rules, with Grafana's variables filled in.
    dashboard = json.loads(one(render(VALUE_SETS["monitoring"]), "ConfigMap")["data"]["kdag.json"])
    queries = [
        {
            "record": f"kdag:dashboard_query_{i}",
            "expr": re.sub(r"\$(job|namespace|instance)\b", ".*", t["expr"]).replace(
                "$__rate_interval", "5m"
            ),
        }
        for i, t in enumerate(t for p in dashboard["panels"] for t in p["targets"])
    ]
    groups = [*rule["spec"]["groups"], {"name": "dashboard", "rules": queries}]
    path.write_text(yaml.safe_dump({"groups": groups}))
    proc = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("alert_labels", "expected"),
    [
        ({}, {"warning", "info", "critical"}),
        ({"team": "data"}, {"warning", "info", "critical"}),
        ({"severity": "page", "team": "data"}, {"page"}),
    ],
)
def test_alert_labels_add_to_and_may_replace_the_severity(
    alert_labels: dict[str, str], expected: set[str], tmp_path: Path
) -> None:
    values = {"prometheusRule": {"enabled": True, "alertLabels": alert_labels}}
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    out = helm(
        "template", RELEASE, str(CHART), "--kube-version", KUBE_VERSION, "--values", str(path),
        "--show-only", "templates/prometheusrule.yaml",
    ).stdout  # fmt: skip
    # A duplicate key is invalid YAML that PyYAML would silently collapse: count the text.
    assert out.count("severity:") == 4, out
    rule = yaml.safe_load(out)
    alerts = [r for g in rule["spec"]["groups"] for r in g["rules"]]
    assert {a["labels"]["severity"] for a in alerts} == expected
    for alert in alerts:
        assert alert["labels"].items() >= alert_labels.items()


def _runbook_anchors() -> set[str]:
    """GitHub's anchors of docs/runbooks.md's headings."""
    text = (REPO_ROOT / "docs" / "runbooks.md").read_text()
    return {
        re.sub(r"[^a-z0-9 -]", "", h.strip().lower()).replace(" ", "-")
        for h in re.findall(r"^#+ (.+)$", text, flags=re.M)
    }


def test_every_alert_links_its_runbook() -> None:
    rule = one(render(VALUE_SETS["monitoring"]), "PrometheusRule")
    alerts = [r for g in rule["spec"]["groups"] for r in g["rules"]]
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    anchors = _runbook_anchors()
    for alert in alerts:
        url = alert["annotations"]["runbook_url"]
        page, anchor = url.split("#")
        assert page == f"{chart['home']}/blob/main/docs/runbooks.md"
        assert anchor == alert["alert"].lower() and anchor in anchors, (url, anchors)
    values = {"prometheusRule": {"enabled": True, "runbookBaseURL": "https://wiki.example/kdag"}}
    rule = one(render(values), "PrometheusRule")
    urls = {r["annotations"]["runbook_url"] for g in rule["spec"]["groups"] for r in g["rules"]}
    assert urls == {f"https://wiki.example/kdag#{a['alert'].lower()}" for a in alerts}


def test_dashboard_filters_by_namespace_and_instance_and_describes_every_panel() -> None:
    configmap = one(render(VALUE_SETS["monitoring"]), "ConfigMap", "kdag-dashboard")
    dashboard = json.loads(configmap["data"]["kdag.json"])
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert {"datasource", "job", "namespace", "instance"} <= set(variables)
    for name in ("namespace", "instance"):
        assert variables[name]["includeAll"] and variables[name]["multi"]
        assert f", {name})" in variables[name]["definition"]
    for panel in dashboard["panels"]:
        assert panel.get("description"), f"panel {panel['title']!r} has no description"
        for target in panel["targets"]:
            for name in ("job", "namespace", "instance"):
                assert f'{name}=~"${name}"' in target["expr"], (panel["title"], target["expr"])


def test_grafana_dashboard_configmap() -> None:
    docs = render(VALUE_SETS["monitoring"])
    configmap = one(docs, "ConfigMap", "kdag-dashboard")
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(configmap["data"]["kdag.json"])
    assert dashboard["title"] == "kdag" and dashboard["uid"]
    exported = _exported_metric_names()
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 10
    used = set().union(*(_metric_names(e) for e in exprs))
    assert used <= exported, f"the dashboard queries unknown metrics {used - exported}"
    for needed in (
        "kdag_runs_finished_total",
        "kdag_approvals_pending",
        "kdag_scheduling_latency_seconds_bucket",
    ):
        assert needed in used
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    elsewhere = render({"grafanaDashboard": {"enabled": True, "namespace": "monitoring"}})
    assert one(elsewhere, "ConfigMap")["metadata"]["namespace"] == "monitoring"


def test_monitoring_is_off_by_default() -> None:
    docs = render()
    assert not kinds(docs, "ServiceMonitor") and not kinds(docs, "PrometheusRule")
    assert not kinds(docs, "ConfigMap")


# ----------------------------------------------------------------------------- admission


def _policy(docs: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    return (
        one(docs, "ValidatingAdmissionPolicy", "kdag-approvals"),
        one(docs, "ValidatingAdmissionPolicyBinding", "kdag-approvals"),
    )


def test_admission_policy_is_off_by_default() -> None:
    docs = render()
    assert not kinds(docs, "ValidatingAdmissionPolicy")
    assert not kinds(docs, "ValidatingAdmissionPolicyBinding")


def test_admission_policy_matches_run_updates_and_exempts_the_operator() -> None:
    policy, binding = _policy(render(VALUE_SETS["admission"]))
    assert policy["apiVersion"] == binding["apiVersion"] == "admissionregistration.k8s.io/v1"
    spec = policy["spec"]
    assert spec["failurePolicy"] == "Fail"
    assert spec["matchConstraints"]["resourceRules"] == [
        {
            "apiGroups": ["kdag.dev"],
            "apiVersions": ["*"],
            "operations": ["CREATE", "UPDATE"],
            "resources": ["workflowruns"],
        }
    ]
    conditions = {c["name"]: c["expression"] for c in spec["matchConditions"]}
    assert json.dumps([OPERATOR_USER], separators=(",", ":")) in conditions["not-exempt"]
    assert 'startsWith("approve.kdag.dev/")' in conditions["answers-a-gate"]
    assert len(spec["validations"]) == 4
    for validation in spec["validations"]:
        assert validation["reason"] == "Forbidden"
        assert validation["message"] and validation["messageExpression"]
    assert binding["spec"]["policyName"] == "kdag-approvals"
    assert binding["spec"]["validationActions"] == ["Deny"]
    assert "matchResources" not in binding["spec"]  # every namespace


def test_admission_policy_follows_the_watched_namespaces_and_exempt_users() -> None:
    policy, binding = _policy(render(VALUE_SETS["admission-namespaced"]))
    conditions = {c["name"]: c["expression"] for c in policy["spec"]["matchConditions"]}
    assert json.dumps([OPERATOR_USER, "ci-bot"], separators=(",", ":")) in conditions["not-exempt"]
    assert binding["spec"]["matchResources"]["namespaceSelector"] == {
        "matchExpressions": [
            {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["team-a"]}
        ]
    }
    selector = {"matchLabels": {"kdag.dev/approvals": "enforced"}}
    _, binding = _policy(
        render({"admissionPolicy": {"enabled": True, "namespaceSelector": selector}})
    )
    assert binding["spec"]["matchResources"]["namespaceSelector"] == selector


def _cel_expressions(policy: dict[str, Any]) -> Iterator[tuple[str, str]]:
    spec = policy["spec"]
    for c in spec["matchConditions"]:
        yield c["name"], c["expression"]
    for v in spec["variables"]:
        yield v["name"], v["expression"]
    for i, v in enumerate(spec["validations"]):
        yield f"validations[{i}]", v["expression"]
        yield f"validations[{i}].messageExpression", v["messageExpression"]


def test_admission_policy_cel_parses() -> None:
    # Only the syntax: the API server type-checks and runs the policy in
    # tests/integration/test_helm_admission.py.
    policy, _ = _policy(render(VALUE_SETS["admission"]))
    env = celpy.Environment()
    for name, expression in _cel_expressions(policy):
        try:
            env.compile(expression)
        except celpy.CELParseError as exc:  # pragma: no cover - the message is the point
            pytest.fail(f"{name}: {exc}\n{expression}")


# ----------------------------------------------------------------------------- schema


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["--set", "replicas=two"], "replicas"),
        (["--set", "replicas=-1"], "replicas"),
        (["--set", "nosuchvalue=1"], "nosuchvalue"),
        (["--set", "image.nosuchfield=x"], "nosuchfield"),
        (["--set", "watchNamespaces[0]=Not_A_Namespace"], "watchNamespaces"),
        (["--set", "operator.logFormat=xml"], "logFormat"),
        (["--set", "operator.jobRetentionPolicy=Sometimes"], "jobRetentionPolicy"),
        (["--set", "operator.maxRunOutputBytes=-1"], "maxRunOutputBytes"),
        (["--set", "admissionPolicy.validationActions[0]=Block"], "validationActions"),
        (["--set", "prometheusRule.approvalPendingFor=soon"], "approvalPendingFor"),
    ],
)
def test_values_schema_rejects_bad_values(args: list[str], complaint: str) -> None:
    proc = helm("template", RELEASE, str(CHART), "--kube-version", KUBE_VERSION, *args, check=False)
    assert proc.returncode != 0, f"helm accepted {args}"
    assert "schema" in proc.stderr and complaint in proc.stderr, proc.stderr


# Each wrong value, and the field helm's schema check must name when refusing it.
WRONG_VALUES: list[tuple[dict[str, Any], str]] = [
    ({"crds": {"install": "yes"}}, "/crds/install"),
    ({"crds": {"keep": 1}}, "/crds/keep"),
    ({"crds": {"instal": True}}, "instal"),
    ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
    ({"image": {"digest": "sha256:short"}}, "/image/digest"),
    ({"imagePullSecrets": ["regcred"]}, "/imagePullSecrets/0"),
    ({"replicas": "2"}, "/replicas"),
    ({"operator": {"verbose": "true"}}, "/operator/verbose"),
    ({"operator": {"extraArgs": "--verbose"}}, "/operator/extraArgs"),
    ({"operator": {"extraEnv": [{"value": "x"}]}}, "/operator/extraEnv/0"),
    ({"operator": {"extraEnv": [{"name": "A", "valu": "x"}]}}, "valu"),
    ({"metrics": {"port": 70000}}, "/metrics/port"),
    ({"metrics": {"service": {"type": "Ingress"}}}, "/metrics/service/type"),
    ({"liveness": {"periodSeconds": 0}}, "/liveness/periodSeconds"),
    ({"readiness": {"timeoutSeconds": "5s"}}, "/readiness/timeoutSeconds"),
    ({"resources": {"requests": {"cpu": "one"}}}, "/resources/requests/cpu"),
    ({"resources": {"limits": {"memory": "512 MB"}}}, "/resources/limits/memory"),
    ({"resources": {"limits": {"memory": True}}}, "/resources/limits/memory"),
    ({"resources": {"limits": {"cpu": -1}}}, "/resources/limits/cpu"),
    ({"resources": {"request": {"cpu": "1"}}}, "request"),
    ({"serviceAccount": {"create": "false"}}, "/serviceAccount/create"),
    ({"rbac": {"create": 0}}, "/rbac/create"),
    ({"podSecurityContext": {"runAsNonRoot": "true"}}, "/podSecurityContext/runAsNonRoot"),
    ({"podSecurityContext": {"runAsUser": -1}}, "/podSecurityContext/runAsUser"),
    ({"securityContext": {"readOnlyRootFileSystem": True}}, "readOnlyRootFileSystem"),
    ({"securityContext": {"capabilities": {"drop": "ALL"}}}, "/securityContext/capabilities/drop"),
    ({"podDisruptionBudget": {"maxUnavailable": "half"}}, "/podDisruptionBudget/maxUnavailable"),
    ({"podDisruptionBudget": {"maxUnavailable": 0}}, "/podDisruptionBudget/maxUnavailable"),
    ({"podAntiAffinity": "strict"}, "/podAntiAffinity"),
    ({"podAnnotations": {"a": 1}}, "/podAnnotations/a"),
    ({"nodeSelector": ["disktype=ssd"]}, "/nodeSelector"),
    ({"tolerations": {"key": "x"}}, "/tolerations"),
    ({"tolerations": ["dedicated"]}, "/tolerations/0"),
    ({"tolerations": [{"key": "x", "effect": "NoWay"}]}, "/tolerations/0/effect"),
    ({"tolerations": [{"tolerationSeconds": "60"}]}, "/tolerations/0/tolerationSeconds"),
    ({"affinity": {"podAntiAfinity": {}}}, "podAntiAfinity"),
    ({"topologySpreadConstraints": [{"maxSkew": 1}]}, "/topologySpreadConstraints/0"),
    ({"serviceMonitor": {"enabled": "true"}}, "/serviceMonitor/enabled"),
    ({"serviceMonitor": {"interval": 30}}, "/serviceMonitor/interval"),
    ({"prometheusRule": {"failedRunRatio": 25}}, "/prometheusRule/failedRunRatio"),
    ({"prometheusRule": {"alertLabels": {"severity": 1}}}, "/prometheusRule/alertLabels/severity"),
    ({"prometheusRule": {"runbookBaseURL": "docs/runbooks.md"}}, "/prometheusRule/runbookBaseURL"),
    ({"grafanaDashboard": {"labels": {"grafana_dashboard": 1}}}, "/grafanaDashboard/labels"),
    ({"admissionPolicy": {"enabled": "on"}}, "/admissionPolicy/enabled"),
    ({"admissionPolicy": {"failurePolicy": "Deny"}}, "/admissionPolicy/failurePolicy"),
    ({"admissionPolicy": {"exemptUsers": "ci-bot"}}, "/admissionPolicy/exemptUsers"),
    ({"tests": {"enabled": "no"}}, "/tests/enabled"),
    ({"sharding": {"leaseSeconds": 86400}}, "/sharding/leaseSeconds"),
]


@pytest.mark.parametrize(("values", "field"), WRONG_VALUES, ids=[f for _, f in WRONG_VALUES])
def test_values_schema_refuses_wrong_values_naming_the_field(
    values: dict[str, Any], field: str, tmp_path: Path
) -> None:
    args = _values_args(values, tmp_path)
    for command in ("template", "lint"):
        proc = helm(
            command, *([RELEASE] if command == "template" else []), str(CHART),
            "--kube-version", KUBE_VERSION, *args, check=False,
        )  # fmt: skip
        output = proc.stdout + proc.stderr
        assert proc.returncode != 0, f"helm {command} accepted {values}"
        assert "schema" in output and field in output, output


# Right values the schema must not refuse (the types the wrong ones get wrong).
RIGHT_VALUES: list[dict[str, Any]] = [
    {"resources": {"requests": {"cpu": 0.5, "memory": "128Mi", "ephemeral-storage": "1Gi"}}},
    {"resources": {"limits": {"cpu": 2, "memory": "1e9", "nvidia.com/gpu": 1}}},
    {"tolerations": [{"key": "dedicated", "operator": "Equal", "value": "kdag",
                      "effect": "NoSchedule"}, {"operator": "Exists"}]},
    {"replicas": 2, "podDisruptionBudget": {"maxUnavailable": "50%"}},
    {"topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
                                    "whenUnsatisfiable": "ScheduleAnyway"}]},
    {"operator": {"extraEnv": [{"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "x"}}}]}},
]  # fmt: skip


@pytest.mark.parametrize("values", RIGHT_VALUES)
def test_values_schema_accepts_right_values(values: dict[str, Any]) -> None:
    assert kinds(render(values), "Deployment")


def _schema_properties(
    schema: dict[str, Any], path: str = ""
) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, sub in schema.get("properties", {}).items():
        yield f"{path}{name}", sub
        yield from _schema_properties(sub, f"{path}{name}.")
        if isinstance(sub.get("items"), dict):
            yield from _schema_properties(sub["items"], f"{path}{name}[].")


def test_every_value_has_a_description_and_a_type() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    found = list(_schema_properties(schema))
    assert len(found) > 100
    for path, sub in found:
        assert sub.get("description"), f"{path} has no description"
        assert "type" in sub or "enum" in sub or "$ref" in sub, f"{path} has no type"
        if sub.get("type") == "object" and "properties" in sub:
            assert sub.get("additionalProperties") is False, f"{path} lets typos through"


def test_every_default_value_is_in_the_schema() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())

    def walk(value: Any, sub: dict[str, Any], path: str) -> None:
        if isinstance(value, dict) and "properties" in sub:
            for key, inner in value.items():
                assert key in sub["properties"], f"{path}{key} is not in the schema"
                walk(inner, sub["properties"][key], f"{path}{key}.")

    walk(defaults, schema, "")


def test_chart_readme_lists_every_value_and_is_up_to_date() -> None:
    script = REPO_ROOT / "hack" / "chart-readme.py"
    proc = subprocess.run(
        [sys.executable, str(script), "--check"], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    readme = (CHART / "README.md").read_text()
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    for key in defaults:
        assert f"| `{key}" in readme, f"the README's table lacks {key}"


def test_values_schema_is_strict_json() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["additionalProperties"] is False
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    assert set(defaults) <= set(schema["properties"])


@pytest.mark.parametrize(("version", "accepted"), [("1.32.9", False), ("1.33.0", True)])
def test_chart_needs_what_the_crds_cel_needs(version: str, accepted: bool) -> None:
    # The CRDs' rules use CEL two-variable comprehensions, accepted in new CRD rules from
    # 1.33 (tests/integration/test_chart_crds.py proves it on the API server).
    proc = helm("template", RELEASE, str(CHART), "--kube-version", version, check=False)
    assert (proc.returncode == 0) is accepted, proc.stderr
    if not accepted:
        assert "kubeVersion" in proc.stderr and ">=1.33" in proc.stderr
    cel = "".join(path.read_text() for path in CRD_DIR.glob("*.yaml"))
    assert "transformMapEntry(" in cel, "no two-variable comprehension left: lower kubeVersion"


# ----------------------------------------------------------------------------- helm test


def test_helm_test_pod_asks_the_metrics_service() -> None:
    out = helm(
        "template", RELEASE, str(CHART), "--namespace", NAMESPACE, "--kube-version",
        KUBE_VERSION, "--show-only", "templates/tests/operator-answers.yaml",
    ).stdout  # fmt: skip
    pod = yaml.safe_load(out)
    assert pod["kind"] == "Pod"
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert pod["spec"]["restartPolicy"] == "Never"
    (main,) = pod["spec"]["containers"]
    assert main["image"] == "busybox:1.36"
    script = main["command"][-1]
    assert f"http://kdag-metrics.{NAMESPACE}.svc:8080/metrics" in script
    assert "grep -q '^kdag_'" in script
    # It passes PodSecurity "restricted", like the operator's pod.
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert main["securityContext"]["allowPrivilegeEscalation"] is False
    assert main["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    proc = helm(
        "template", RELEASE, str(CHART), "--kube-version", KUBE_VERSION, "--set",
        "tests.enabled=false", "--show-only", "templates/tests/operator-answers.yaml",
        check=False,
    )  # fmt: skip
    assert proc.returncode != 0 and "could not find template" in proc.stderr


def _helm_test_script() -> str:
    out = helm(
        "template", RELEASE, str(CHART), "--namespace", NAMESPACE, "--kube-version",
        KUBE_VERSION, "--show-only", "templates/tests/operator-answers.yaml",
    ).stdout  # fmt: skip
    return yaml.safe_load(out)["spec"]["containers"][0]["command"][-1]


@pytest.mark.parametrize(
    ("body", "passes"),
    [
        (b'# HELP kdag_runs_active Runs.\nkdag_runs_active{phase="Running"} 0.0\n', True),
        (b"# HELP go_goroutines Goroutines.\ngo_goroutines 7\n", False),  # not kdag's
    ],
)
def test_helm_test_script_passes_only_on_kdag_metrics(
    body: bytes, passes: bool, tmp_path: Path
) -> None:
    """The test pod's script, run by busybox as in the busybox image, against a local server
    in place of the Service (on KWOK the pod itself never runs: docs/chart.md)."""
    busybox = shutil.which("busybox")
    if busybox is None:
        pytest.skip("busybox is not installed (Debian package `busybox`)")
    for applet in ("sh", "wget", "grep", "sleep", "timeout"):
        (tmp_path / applet).symlink_to(busybox)

    class Metrics(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/metrics" else 404)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Metrics)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        service = f"http://kdag-metrics.{NAMESPACE}.svc:8080/metrics"
        script = _helm_test_script()
        assert service in script
        # Only the address and the pause between attempts differ from the pod's script.
        script = script.replace(service, f"http://127.0.0.1:{server.server_port}/metrics")
        script = script.replace("sleep 5", "sleep 0")
        proc = subprocess.run(
            [str(tmp_path / "sh"), "-c", script], capture_output=True, text=True, timeout=60,
            env={"PATH": str(tmp_path)}, cwd=tmp_path, check=False,
        )  # fmt: skip
    finally:
        server.shutdown()
    assert (proc.returncode == 0) is passes, proc.stdout + proc.stderr


# ----------------------------------------------------------------------------- metadata


def test_artifact_hub_metadata() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    annotations = chart["annotations"]
    assert annotations["artifacthub.io/license"] == "Apache-2.0"
    assert annotations["artifacthub.io/operator"] == "true"
    crds = yaml.safe_load(annotations["artifacthub.io/crds"])
    generated = {
        yaml.safe_load(p.read_text())["metadata"]["name"]: yaml.safe_load(p.read_text())
        for p in CRD_DIR.glob("*.yaml")
    }
    assert {c["name"] for c in crds} == set(generated)
    for entry in crds:
        crd = generated[entry["name"]]
        assert entry["kind"] == crd["spec"]["names"]["kind"]
        assert entry["version"] in [v["name"] for v in crd["spec"]["versions"]]
        assert entry["description"]
    # The examples are valid objects of those kinds, by the operator's own models.
    examples = yaml.safe_load(annotations["artifacthub.io/crdsExamples"])
    assert {e["kind"] for e in examples} == {c["kind"] for c in crds}
    for example in examples:
        if example["kind"] == "Workflow":
            WorkflowSpec.model_validate(example["spec"])
    for entry in yaml.safe_load(annotations["artifacthub.io/changes"]):
        assert entry["kind"] in {"added", "changed", "deprecated", "removed", "fixed", "security"}
    images = {i["name"]: i["image"] for i in yaml.safe_load(annotations["artifacthub.io/images"])}
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert images["kdag-operator"] == f"{values['image']['repository']}:{chart['appVersion']}"
    assert images["helm-test"] == values["tests"]["image"]


def test_the_cached_helm_renders_the_chart_without_kube_version_like_a_released_helm() -> None:
    # A helm built without its release ldflags assumes Kubernetes 1.20 and refuses the chart.
    proc = helm("template", RELEASE, str(CHART), check=False)
    assert proc.returncode == 0, proc.stderr
    # The release stamps are there. Its git commit is stamped only when the Go module proxy
    # records the module's origin, which not every proxy does: not checked.
    stamps = helm("version", "--template", "{{ .Version }} {{ .GitTreeState }}").stdout
    assert re.fullmatch(r"v3\.\d+\.\d+ clean", stamps), stamps


def test_the_operator_is_named_by_its_pod_not_by_a_user_name_its_uid_may_not_have() -> None:
    """kopf names a replica by POD_ID, else by the OS user's name: the image's uid 65532 has
    no passwd entry, and without POD_ID the operator exited at start
    (tests/e2e_real/test_chart_on_real_node.py runs the image)."""
    pod_id = {"name": "POD_ID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}
    assert container(render())["env"] == [pod_id]
    extra = {"name": "HTTPS_PROXY", "value": "http://proxy:3128"}
    assert container(render({"operator": {"extraEnv": [extra]}}))["env"] == [pod_id, extra]
