"""The operator's identity in the integration tests: the chart's ServiceAccount, with exactly
the RBAC the chart grants it (docs/testing.md "RBAC modes").

`helm template charts/kdag` renders the chart's ServiceAccount, Roles, ClusterRoles and
bindings for a release unique to the test session; they are applied (nothing else of the
chart is), a token is minted for the ServiceAccount and written into a kubeconfig with the
admin kubeconfig's API server and CA, and the operator is started with that kubeconfig. A
request the chart does not allow is then refused exactly as in a real install, under the
same admission plugins (the local cluster has OwnerReferencesPermissionEnforcement on).

Two modes, as the chart has them (`KDAG_IT_RBAC_MODE`, default `cluster`):

- `cluster`: the chart's default values, a ClusterRole bound cluster-wide. The one addition
  is `namespaces: list, watch` (names only): the chart's operator serves
  `--all-namespaces`, which on a shared cluster would reconcile other sessions' runs, so the
  tests scope it with a namespace glob instead, and kopf needs to list namespaces to expand
  a glob.
- `namespaced`: `watchNamespaces`, a Role and RoleBinding in each served namespace, nothing
  added. Namespaces are made per test, so each one is granted (`grant`) as it is made,
  rendered by the chart with that namespace in `watchNamespaces`, before any operator serves
  it: the operator is given exact `--namespace` names, as the chart's Deployment does.

Everything cluster-scoped carries the release's instance label and is deleted when the
process exits, with the release's namespace; the Roles go with their test namespaces.
"""

from __future__ import annotations

import atexit
import base64
import functools
import json
import os
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from tests.support.cluster import REPO_ROOT, bin_dir, current_kubeconfig, kubectl, wait_for

CHART = REPO_ROOT / "charts" / "kdag"
MODE_ENV = "KDAG_IT_RBAC_MODE"
Mode = Literal["cluster", "namespaced"]
RBAC_KINDS = ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")
# The one grant the tests add in cluster mode (see the module docstring).
GLOB_NAMESPACE_READ = {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list", "watch"]}
# A rendering in namespaced mode needs some namespace; its Role is never applied.
_PLACEHOLDER_NAMESPACE = "kdag-it-placeholder"
# Longer than the whole suite, so the token never expires under a running operator.
TOKEN_DURATION = "12h"


def rbac_mode() -> Mode:
    """The session's RBAC mode, from `KDAG_IT_RBAC_MODE` (cluster or namespaced)."""
    mode = os.environ.get(MODE_ENV, "cluster") or "cluster"
    if mode not in ("cluster", "namespaced"):
        raise ValueError(f"{MODE_ENV}={mode!r}: expected cluster or namespaced")
    return mode  # type: ignore[return-value]


def service_account_kubeconfig(
    admin_kubeconfig: Path, namespace: str, service_account: str, path: Path
) -> Path:
    """Write a kubeconfig that authenticates as `namespace/service_account` (a bound token).

    Same API server and CA as `admin_kubeconfig`; only the credentials differ.
    """
    token = kubectl(
        "create", "token", service_account, "-n", namespace, f"--duration={TOKEN_DURATION}",
        kubeconfig=admin_kubeconfig,
    ).strip()  # fmt: skip
    view = json.loads(
        kubectl("config", "view", "--raw", "--minify", "-o", "json", kubeconfig=admin_kubeconfig)
    )
    cluster = dict(view["clusters"][0]["cluster"])
    ca = cluster.pop("certificate-authority", None)
    if ca:  # inline it, so the kubeconfig works from any directory
        cluster["certificate-authority-data"] = base64.b64encode(Path(ca).read_bytes()).decode()
    user = f"system:serviceaccount:{namespace}:{service_account}"
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "cluster", "cluster": cluster}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": "cluster", "user": user}}],
        "current-context": "sa",
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


@functools.cache
def _kube_version(admin_kubeconfig: Path) -> str:
    """The cluster's Kubernetes version: helm template checks the chart's kubeVersion."""
    found = json.loads(kubectl("version", "-o", "json", kubeconfig=admin_kubeconfig))
    version: str = found["serverVersion"]["gitVersion"]
    return version


def _server_of(kubeconfig: Path) -> str:
    config = yaml.safe_load(kubeconfig.read_text())
    current = config.get("current-context")
    contexts = {c["name"]: c["context"] for c in config["contexts"]}
    cluster = contexts[current]["cluster"] if current else config["clusters"][0]["name"]
    servers = {c["name"]: c["cluster"]["server"] for c in config["clusters"]}
    server: str = servers[cluster]
    return server


RuleFilter = Callable[[dict[str, Any]], dict[str, Any] | None]


@dataclass
class ChartIdentity:
    """The chart's ServiceAccount of one release, with the chart's RBAC in one mode."""

    mode: Mode
    values: Mapping[str, Any] = field(default_factory=dict)
    # Changes a rendered rule (or drops it: None); only for tests that show a rule is needed.
    rule_filter: RuleFilter | None = None
    admin_kubeconfig: Path = field(default_factory=current_kubeconfig)
    release: str = field(default_factory=lambda: f"kdag-it-{uuid.uuid4().hex[:6]}")
    _granted: set[str] = field(default_factory=set)
    _kubeconfig: Path | None = None
    _workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="kdag-it-sa-")))

    @property
    def namespace(self) -> str:
        """The release's namespace, where the ServiceAccount lives."""
        return f"{self.release}-system"

    @property
    def service_account(self) -> str:
        return self.release  # the chart's full name: the release name contains "kdag"

    @property
    def username(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.service_account}"

    # ------------------------------------------------------------------ rendering

    def render(self, watch: Iterable[str] = ()) -> list[dict[str, Any]]:
        """The chart's RBAC objects (and ServiceAccount) for this release and mode."""
        values: dict[str, Any] = {
            **self.values,
            # Those widen the built-in view/edit roles for everyone on the shared cluster;
            # they grant the operator nothing.
            "rbac": {"create": True, "aggregateToDefaultRoles": False},
        }
        if self.mode == "namespaced":
            values["watchNamespaces"] = list(watch) or [_PLACEHOLDER_NAMESPACE]
        values_file = self._workdir / f"values-{uuid.uuid4().hex[:6]}.yaml"
        values_file.write_text(yaml.safe_dump(values))
        proc = subprocess.run(
            [
                str(bin_dir() / "helm"), "template", self.release, str(CHART),
                "--namespace", self.namespace, "--values", str(values_file),
                "--kube-version", _kube_version(self.admin_kubeconfig),
            ],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if proc.returncode != 0:
            raise RuntimeError(f"helm template failed:\n{proc.stderr}")
        docs = [d for d in yaml.safe_load_all(proc.stdout) if d and d["kind"] in RBAC_KINDS]
        if self.rule_filter is not None:
            for doc in docs:
                if "rules" in doc:
                    kept = (self.rule_filter(dict(rule)) for rule in doc["rules"])
                    doc["rules"] = [rule for rule in kept if rule is not None]
        return docs

    def _apply(self, docs: list[dict[str, Any]]) -> None:
        items = {"apiVersion": "v1", "kind": "List", "items": docs}
        kubectl("apply", "-f", "-", input=json.dumps(items), kubeconfig=self.admin_kubeconfig)

    # ------------------------------------------------------------------ set-up

    def create(self) -> ChartIdentity:
        """Apply the ServiceAccount and everything cluster-scoped; mint the token."""
        kubectl("create", "namespace", self.namespace, kubeconfig=self.admin_kubeconfig)
        atexit.register(self.delete)
        # ...and the Roles in the release's own namespace (shards' Leases), as an install has.
        docs = [
            d
            for d in self.render()
            if d["kind"] in ("ServiceAccount", "ClusterRole", "ClusterRoleBinding")
            or (
                d["kind"] in ("Role", "RoleBinding")
                and d["metadata"].get("namespace") == self.namespace
            )
        ]
        if self.mode == "cluster":
            docs += self._glob_namespace_read()
        self._apply(docs)
        self._kubeconfig = service_account_kubeconfig(
            self.admin_kubeconfig,
            self.namespace,
            self.service_account,
            self._workdir / "kubeconfig",
        )
        # The RBAC authorizer learns of new bindings through a watch: wait until it has.
        probe = ("list", "customresourcedefinitions.apiextensions.k8s.io")
        wait_for(lambda: self.can(*probe), timeout=30, what=f"{self.username}'s ClusterRoles")
        return self

    def _glob_namespace_read(self) -> list[dict[str, Any]]:
        name = f"{self.release}-it-namespaces"
        labels = {"app.kubernetes.io/instance": self.release}
        return [
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRole",
                "metadata": {"name": name, "labels": labels},
                "rules": [GLOB_NAMESPACE_READ],
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": {"name": name, "labels": labels},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                            "name": name},
                "subjects": [{"kind": "ServiceAccount", "name": self.service_account,
                              "namespace": self.namespace}],
            },
        ]  # fmt: skip

    def grant(self, *namespaces: str) -> None:
        """Namespaced mode: the chart's Role and RoleBinding in each namespace, as a release
        with those namespaces in `watchNamespaces` has them. Cluster mode: nothing to do."""
        new = [ns for ns in namespaces if ns not in self._granted]
        if self.mode != "namespaced" or not new:
            return
        docs = [
            d
            for d in self.render(new)
            if d["kind"] in ("Role", "RoleBinding") and d["metadata"]["namespace"] in new
        ]
        self._apply(docs)
        self._granted.update(new)
        for ns in new:
            wait_for(
                # (A rule every test keeps; some take Job or finalizer rules away.)
                lambda ns=ns: self.can("get", "workflowruns.kdag.dev", "-n", ns),  # type: ignore[misc]
                timeout=30,
                what=f"{self.username}'s Role in {ns}",
            )

    def regrant(self, *namespaces: str) -> None:
        """Namespaced mode: apply the Roles of `namespaces` again as rendered now, e.g. after
        a test set `rule_filter` to None to give back what it had taken away."""
        self._granted.difference_update(namespaces)
        self.grant(*namespaces)

    def can(self, *args: str) -> bool:
        """`kubectl auth can-i` with the ServiceAccount's own token."""
        out = kubectl("auth", "can-i", *args, kubeconfig=self.kubeconfig, check=False).strip()
        return out == "yes"

    @property
    def kubeconfig(self) -> Path:
        assert self._kubeconfig is not None, "create() the identity first"
        return self._kubeconfig

    def kubeconfig_for(self, server_kubeconfig: Path) -> Path:
        """The ServiceAccount's kubeconfig, talking to the API server `server_kubeconfig`
        names (a test's private API server shares the cluster's CA and token keys)."""
        server = _server_of(server_kubeconfig)
        if server == _server_of(self.kubeconfig):
            return self.kubeconfig
        config = yaml.safe_load(self.kubeconfig.read_text())
        for entry in config["clusters"]:
            entry["cluster"]["server"] = server
        path = self._workdir / f"kubeconfig-{uuid.uuid4().hex[:6]}"
        path.write_text(yaml.safe_dump(config))
        path.chmod(0o600)
        return path

    def delete(self) -> None:
        kubectl(
            "delete", "clusterrolebindings,clusterroles", "-l",
            f"app.kubernetes.io/instance={self.release}", "--ignore-not-found", "--wait=false",
            kubeconfig=self.admin_kubeconfig, check=False,
        )  # fmt: skip
        kubectl(
            "delete", "namespace", self.namespace, "--ignore-not-found", "--wait=false",
            kubeconfig=self.admin_kubeconfig, check=False,
        )  # fmt: skip


# One identity per (mode, values) for the whole session; a dict rather than a global statement.
_identities: dict[str, ChartIdentity] = {}


def chart_identity(
    mode: Mode | None = None, values: Mapping[str, Any] | None = None
) -> ChartIdentity:
    """The session's chart identity for `mode` (default: `KDAG_IT_RBAC_MODE`) and chart
    `values`, created on first use and removed when the process exits."""
    chosen = mode or rbac_mode()
    key = json.dumps([chosen, values or {}], sort_keys=True)
    if key not in _identities:
        _identities[key] = ChartIdentity(chosen, dict(values or {})).create()
    return _identities[key]
