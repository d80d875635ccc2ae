"""Installing the kdag chart on the local cluster the way a user does, for the Helm tests.

Other tests may share the cluster, so every release gets unique names: release `kdag-<id>`
(the chart names its cluster-scoped objects after it) in namespace `kdag-system-<id>`, and
workload namespaces `kdag-helm-<id>-<n>`. Everything is removed afterwards. The releases leave
the CRDs to the suite (crds.install false), which applies them for every test.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.support.cluster import REPO_ROOT, Cluster, kubectl, namespace_policy, wait_for
from tests.support.operator import apply_crds

CHART = REPO_ROOT / "charts" / "kdag"


def helm(
    cluster: Cluster, *args: str, check: bool = True, kubeconfig: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """The cached helm against the cluster (or another API server's `kubeconfig`)."""
    proc = subprocess.run(
        [str(cluster.helm), "--kubeconfig", str(kubeconfig or cluster.kubeconfig), *args],
        capture_output=True,
        text=True,
        check=False,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


@dataclass(frozen=True)
class Release:
    name: str
    namespace: str
    workloads: tuple[str, ...]  # namespaces created for runs (not necessarily watched)

    @property
    def service_account(self) -> str:
        return self.name  # the chart's full name, as the release name contains "kdag"

    @property
    def username(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.service_account}"


def create_namespace(name: str) -> None:
    kubectl("create", "namespace", name)
    kubectl("label", "namespace", name, "kdag.dev/test=true")
    # Pods (and so Jobs' pods) are admitted once the namespace's default ServiceAccount exists.
    kubectl("wait", "--for=create", "serviceaccount/default", "-n", name, "--timeout=60s")


@contextmanager
def installed(
    cluster: Cluster,
    tmp_path: Path,
    values: dict[str, Any] | None = None,
    workloads: int = 1,
    watch: Sequence[int] | None = None,
) -> Iterator[Release]:
    """`helm install` the chart; `watch` picks which workload namespaces it serves (by index;
    None: cluster-wide). Uninstalls and deletes the namespaces afterwards."""
    uid = uuid.uuid4().hex[:6]
    release = Release(
        name=f"kdag-{uid}",
        namespace=f"kdag-system-{uid}",
        workloads=tuple(f"kdag-helm-{uid}-{n}" for n in range(workloads)),
    )
    merged: dict[str, Any] = {
        # KWOK plays the kubelet: the operator pod "runs" without any image being pulled, and
        # the tests run the operator process themselves.
        "image": {"pullPolicy": "Never"},
        # The suite applies the CRDs itself (tests/support/operator.py apply_crds) and every
        # release here shares them: a release that owned them would refuse the next one's
        # install, and its uninstall could take them away from the other tests.
        "crds": {"install": False},
        **(values or {}),
    }
    if watch is not None:
        merged["watchNamespaces"] = [release.workloads[i] for i in watch]
    values_file = tmp_path / f"values-{uid}.yaml"
    values_file.write_text(yaml.safe_dump(merged))
    apply_crds()
    for ns in release.workloads:
        create_namespace(ns)
    try:
        helm(
            cluster, "install", release.name, str(CHART),
            "--namespace", release.namespace, "--create-namespace",
            "--values", str(values_file), "--wait", "--timeout", "3m",
        )  # fmt: skip
        yield release
    finally:
        helm(cluster, "uninstall", release.name, "--namespace", release.namespace, check=False)
        for ns in (*release.workloads, release.namespace):
            kubectl("delete", "namespace", ns, "--wait=false", "--ignore-not-found")


def can_i(user: str, *args: str) -> bool:
    """`kubectl auth can-i ... --as=user` (the API server's RBAC answer)."""
    out = kubectl("auth", "can-i", *args, f"--as={user}", check=False).strip()
    assert out in ("yes", "no"), out
    return out == "yes"


@contextmanager
def only_identity_may_act(namespace: str, username: str) -> Iterator[None]:
    """Within `namespace`, only `username` may create Jobs or write a run's status.

    Another test's operator may serve every namespace of the shared cluster; this fence
    makes sure whatever completes a run here is the operator under test, so a finished run
    proves that identity's permissions are enough. (Admission applies even to the admin.)
    """
    name = f"kdag-helm-fence-{uuid.uuid4().hex[:6]}"
    rules = [
        {"apiGroups": ["batch"], "apiVersions": ["*"], "operations": ["CREATE"],
         "resources": ["jobs"]},
        {"apiGroups": ["kdag.dev"], "apiVersions": ["*"], "operations": ["UPDATE"],
         "resources": ["workflowruns/status"]},
    ]  # fmt: skip
    validations = [
        {
            "expression": f"request.userInfo.username == {json.dumps(username)}",
            "message": f"in this test namespace only {username} may do this",
        }
    ]

    def in_force() -> bool:
        # Policies take a moment to reach the admission plugin; a server-side dry run goes
        # through admission, so a refused one shows the fence is up.
        probe = kubectl(
            "create", "job", "fence-probe", "--image=busybox", "-n", namespace,
            "--dry-run=server", check=False,
        )  # fmt: skip
        return not probe

    with namespace_policy(name, namespace, rules, validations):
        wait_for(in_force, timeout=30, what=f"the fence policy {name}")
        yield
