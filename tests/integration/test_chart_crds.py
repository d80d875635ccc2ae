"""The chart's CRDs on real API servers: the Kubernetes version they need, and their upgrade
path with Helm (docs/chart.md, "Kubernetes versions" and "CRDs").

Each test runs its own kube-apiserver (the cached binary, tests/support/faults.py
PrivateApiServer) on the shared cluster's etcd under an etcd prefix of its own, so its CRDs
are not the shared cluster's: the suite applies those itself, and no test release may own or
delete them. The prefix is deleted from etcd afterwards. No controller runs against these
servers, which is all these tests need: CRDs are created, upgraded and deleted by the API
server itself.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.cluster import REPO_ROOT, Cluster, KubectlError, kubectl, kubectl_json
from tests.support.faults import PrivateApiServer
from tests.support.helm_release import CHART, helm

CRDS = REPO_ROOT / "crds"
KDAG_CRDS = ("workflows.kdag.dev", "workflowruns.kdag.dev")
RELEASE, NAMESPACE = "kdag", "kdag-system"


def _delete_etcd_prefix(etcd: str, prefix: str) -> int:
    """Delete every key under `prefix` (which ends in "/") through etcd's JSON gateway."""
    assert prefix.startswith("/kdag-test-chart-") and prefix.endswith("/"), prefix
    range_end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    body = {
        "key": base64.b64encode(prefix.encode()).decode(),
        "range_end": base64.b64encode(range_end.encode()).decode(),
    }
    request = urllib.request.Request(
        f"{etcd}/v3/kv/deleterange",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return int(json.load(response).get("deleted", 0))


@contextmanager
def isolated_apiserver(
    cluster: Cluster, workdir: Path, emulate: str | None = None
) -> Iterator[PrivateApiServer]:
    """A kube-apiserver with an empty cluster of its own (its own etcd prefix), emulating
    Kubernetes `emulate` (major.minor) if given."""
    prefix = f"/kdag-test-chart-{uuid.uuid4().hex[:8]}"
    server = PrivateApiServer(cluster.kubeconfig, workdir)
    server.command = [
        *(a for a in server.command if not a.startswith("--etcd-prefix=")),
        f"--etcd-prefix={prefix}",
        *([f"--emulated-version=kube={emulate}"] if emulate else []),
    ]
    (etcd,) = [a.split("=", 1)[1].split(",")[0] for a in server.command if "--etcd-servers=" in a]
    try:
        server.start()
        yield server
    finally:
        server.kill()
        _delete_etcd_prefix(etcd, f"{prefix}/")


def helm_at(
    cluster: Cluster, server: PrivateApiServer, *args: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    return helm(cluster, *args, check=check, kubeconfig=server.kubeconfig)


def _install(
    cluster: Cluster, server: PrivateApiServer, chart: Path, *args: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    return helm_at(
        cluster, server, "install", RELEASE, str(chart), "--namespace", NAMESPACE,
        "--create-namespace", *args, check=check,
    )  # fmt: skip


def _crd(server: PrivateApiServer, name: str) -> dict[str, Any]:
    return kubectl_json("get", "crd", name, kubeconfig=server.kubeconfig)


def _crd_names(server: PrivateApiServer) -> set[str]:
    found = kubectl("get", "crd", "-o", "name", kubeconfig=server.kubeconfig).split()
    return {name.removeprefix("customresourcedefinition.apiextensions.k8s.io/") for name in found}


def _established(server: PrivateApiServer) -> None:
    kubectl(
        "wait", "--for=condition=Established", *(f"crd/{c}" for c in KDAG_CRDS),
        "--timeout=60s", kubeconfig=server.kubeconfig,
    )  # fmt: skip


# ----------------------------------------------------------------------------- versions


@pytest.mark.parametrize(("emulate", "accepted"), [("1.33", True), ("1.32", False)])
def test_the_crds_need_kubernetes_1_33_as_the_chart_says(
    cluster: Cluster, tmp_path: Path, emulate: str, accepted: bool
) -> None:
    # The chart's floor is this one.
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["kubeVersion"] == ">=1.33.0-0"
    with isolated_apiserver(cluster, tmp_path, emulate=emulate) as server:
        # The generated CRDs, as `kubectl apply` gives them to the API server...
        for name in KDAG_CRDS:
            proc = subprocess.run(
                [str(cluster.kubectl), "--kubeconfig", str(server.kubeconfig), "create",
                 "-f", str(CRDS / f"{name}.yaml")],
                capture_output=True, text=True, check=False,
            )  # fmt: skip
            if accepted:
                assert proc.returncode == 0, proc.stderr
            else:
                # Refused for the CEL two-variable comprehension, nothing else.
                assert proc.returncode != 0, f"Kubernetes {emulate} accepted {name}"
                assert "undeclared reference to 'transformMapEntry'" in proc.stderr, proc.stderr
        if accepted:
            _established(server)
            # ...and their rules work there: a Workflow whose dependsOn names no node.
            bad = {
                "apiVersion": "kdag.dev/v1alpha1",
                "kind": "Workflow",
                "metadata": {"name": "bad", "namespace": "default"},
                "spec": {"nodes": [{"name": "a", "image": "busybox", "dependsOn": ["nope"]}]},
            }
            with pytest.raises(KubectlError, match="depends on nope"):
                kubectl("create", "-f", "-", input=json.dumps(bad), kubeconfig=server.kubeconfig)


# ----------------------------------------------------------------------------- upgrades


def _older_chart(tmp_path: Path) -> Path:
    """The chart as an earlier version could have been: a WorkflowRun CRD without
    spec.cancel (copied with the CRD symlinks resolved, as `helm package` does)."""
    old = tmp_path / "kdag-old"
    shutil.copytree(CHART, old, symlinks=False)
    path = old / "files" / "crds" / "workflowruns.kdag.dev.yaml"
    crd = yaml.safe_load(path.read_text())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    del spec["properties"]["cancel"]
    path.write_text(yaml.safe_dump(crd))
    chart = yaml.safe_load((old / "Chart.yaml").read_text())
    chart["version"] = "0.0.1"
    (old / "Chart.yaml").write_text(yaml.safe_dump(chart))
    return old


def _kubectl_at(
    cluster: Cluster, server: PrivateApiServer, *args: str, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(cluster.kubectl), "--kubeconfig", str(server.kubeconfig), *args],
        input=input, capture_output=True, text=True, check=False,
    )  # fmt: skip


def _create_cancelled_run(
    cluster: Cluster, server: PrivateApiServer
) -> subprocess.CompletedProcess[str]:
    """A WorkflowRun that sets spec.cancel, created the way a user does (kubectl asks for
    strict field validation: an unknown field is an error, not silently dropped)."""
    run = {
        "apiVersion": "kdag.dev/v1alpha1",
        "kind": "WorkflowRun",
        "metadata": {"generateName": "r-", "namespace": "default"},
        "spec": {"workflowRef": {"name": "w"}, "cancel": True},
    }
    return _kubectl_at(cluster, server, "create", "-f", "-", input=json.dumps(run))


def _has_cancel(server: PrivateApiServer) -> bool:
    crd = _crd(server, "workflowruns.kdag.dev")
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    return "cancel" in spec["properties"]


def test_helm_upgrade_upgrades_the_crds_and_uninstall_keeps_them(
    cluster: Cluster, tmp_path: Path
) -> None:
    with isolated_apiserver(cluster, tmp_path) as server:
        _install(cluster, server, _older_chart(tmp_path))
        _established(server)
        assert not _has_cancel(server)
        refused = _create_cancelled_run(cluster, server)
        assert refused.returncode != 0 and 'unknown field "spec.cancel"' in refused.stderr

        helm_at(cluster, server, "upgrade", RELEASE, str(CHART), "--namespace", NAMESPACE)
        assert _has_cancel(server), "helm upgrade left the old CRD on the server"
        crd = _crd(server, "workflowruns.kdag.dev")
        version = yaml.safe_load((CHART / "Chart.yaml").read_text())["version"]
        assert crd["metadata"]["labels"]["helm.sh/chart"] == f"kdag-{version}"
        created = _create_cancelled_run(cluster, server)
        assert created.returncode == 0, created.stderr
        run = created.stdout.split()[0]  # workflowrun.kdag.dev/r-xxxxx created

        # Uninstalling the operator keeps the CRDs, and so every run.
        helm_at(cluster, server, "uninstall", RELEASE, "--namespace", NAMESPACE, "--wait")
        assert set(KDAG_CRDS) <= _crd_names(server)
        kept = _kubectl_at(cluster, server, "get", run, "-n", "default", "-o", "name")
        assert kept.returncode == 0 and kept.stdout.strip() == run, kept.stderr
        assert not kubectl(
            "get", "deployments", "-n", NAMESPACE, "-o", "name", kubeconfig=server.kubeconfig
        ), "the release's other objects should be gone"


def test_without_keep_uninstall_deletes_the_crds(cluster: Cluster, tmp_path: Path) -> None:
    with isolated_apiserver(cluster, tmp_path) as server:
        _install(cluster, server, CHART, "--set", "crds.keep=false")
        _established(server)
        helm_at(cluster, server, "uninstall", RELEASE, "--namespace", NAMESPACE, "--wait")
        kubectl(
            "wait", "--for=delete", *(f"crd/{c}" for c in KDAG_CRDS), "--timeout=60s",
            kubeconfig=server.kubeconfig,
        )  # fmt: skip
        assert not set(KDAG_CRDS) & _crd_names(server)


def test_crds_applied_by_hand_are_adopted_as_documented_and_do_not_fight_kubectl(
    cluster: Cluster, tmp_path: Path
) -> None:
    with isolated_apiserver(cluster, tmp_path) as server:
        # As the test suite applies them (tests/support/operator.py apply_crds), or as a
        # chart that installed them from crds/ left them.
        apply = ("apply", "--server-side", "--force-conflicts", "-f", str(CRDS))
        kubectl(*apply, kubeconfig=server.kubeconfig)
        refused = _install(cluster, server, CHART, check=False)
        assert refused.returncode != 0
        assert "invalid ownership metadata" in refused.stderr, refused.stderr
        helm_at(cluster, server, "uninstall", RELEASE, "--namespace", NAMESPACE, check=False)

        # docs/chart.md ("CRDs"): label and annotate them for the release, then install.
        for crd in KDAG_CRDS:
            kubectl(
                "label", "crd", crd, "app.kubernetes.io/managed-by=Helm", "--overwrite",
                kubeconfig=server.kubeconfig,
            )  # fmt: skip
            kubectl(
                "annotate", "crd", crd, f"meta.helm.sh/release-name={RELEASE}",
                f"meta.helm.sh/release-namespace={NAMESPACE}", "--overwrite",
                kubeconfig=server.kubeconfig,
            )  # fmt: skip
        _install(cluster, server, CHART)
        crd = _crd(server, "workflows.kdag.dev")
        assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"

        # kubectl's server-side apply of the same files and helm's upgrades alternate
        # without either refusing the other, and the CRDs stay the generated ones.
        kubectl(*apply, kubeconfig=server.kubeconfig)
        helm_at(cluster, server, "upgrade", RELEASE, str(CHART), "--namespace", NAMESPACE)
        kubectl(*apply, kubeconfig=server.kubeconfig)
        for name in KDAG_CRDS:
            generated = yaml.safe_load((CRDS / f"{name}.yaml").read_text())
            assert _crd(server, name)["spec"]["versions"] == generated["spec"]["versions"]
