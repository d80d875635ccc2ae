"""Helpers for tests that run against kdag's local Kubernetes control plane.

The cluster itself is made by ``hack/cluster-up.sh`` (``make cluster-up``); the
binaries by ``hack/build-cluster-bins.sh`` (``make cluster-bins``). Where those
live is decided in one place, ``hack/cluster-env.sh``, which this module asks
rather than repeating the versions and paths here.

Tests drive the cluster the way a user does: through ``kubectl`` (and ``helm``)
from the cache, with the cluster's kubeconfig.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from kdag.engine.names import job_name

REPO_ROOT = Path(__file__).resolve().parents[2]
HACK = REPO_ROOT / "hack"

T = TypeVar("T")


@dataclass(frozen=True)
class Cluster:
    """A reachable cluster and the tools to drive it."""

    kubeconfig: Path
    bin_dir: Path

    @property
    def kubectl(self) -> Path:
        return self.bin_dir / "kubectl"

    @property
    def helm(self) -> Path:
        return self.bin_dir / "helm"


@dataclass(frozen=True)
class _Env:
    bin_dir: Path
    kubeconfig: Path


@functools.cache
def _env() -> _Env:
    """Read the binary dir and default kubeconfig path from hack/cluster-env.sh."""
    out = subprocess.run(
        [
            "bash",
            "-c",
            'source "$1" && printf "%s\\n%s\\n" "$KDAG_BIN" "$KDAG_KUBECONFIG"',
            "bash",
            str(HACK / "cluster-env.sh"),
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.splitlines()
    return _Env(bin_dir=Path(out[0]), kubeconfig=Path(out[1]))


def bin_dir() -> Path:
    """The cache directory holding kubectl, helm, kwokctl and the control plane."""
    return _env().bin_dir


def default_kubeconfig() -> Path:
    """Where ``make cluster-up`` writes the local cluster's kubeconfig."""
    return _env().kubeconfig


def current_kubeconfig() -> Path:
    """``$KUBECONFIG`` if set, else the local cluster's kubeconfig."""
    env = os.environ.get("KUBECONFIG")
    return Path(env) if env else default_kubeconfig()


class KubectlError(subprocess.CalledProcessError):
    """A failed kubectl run; ``str()`` includes kubectl's stderr."""

    def __str__(self) -> str:
        return f"{super().__str__()}\nstderr:\n{self.stderr}"


def kubectl(
    *args: str,
    input: str | None = None,  # same name as subprocess.run's
    check: bool = True,
    kubeconfig: Path | None = None,
) -> str:
    """Run the cached kubectl against the cluster and return its stdout.

    With ``check`` (the default) a non-zero exit raises :class:`KubectlError`
    whose ``stderr`` holds kubectl's message (for example ``Forbidden``).
    """
    cmd = [
        str(bin_dir() / "kubectl"),
        "--kubeconfig",
        str(kubeconfig or current_kubeconfig()),
        *args,
    ]
    proc = subprocess.run(cmd, input=input, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise KubectlError(proc.returncode, cmd, proc.stdout, proc.stderr)
    return proc.stdout


def kubectl_json(*args: str, **kwargs: Any) -> Any:
    """``kubectl ... -o json``, parsed."""
    return json.loads(kubectl(*args, "-o", "json", **kwargs))


def wait_for(
    predicate: Callable[[], T],
    timeout: float = 60.0,
    interval: float = 0.2,
    what: str | None = None,
) -> T:
    """Poll ``predicate`` until it returns something truthy, and return that.

    Raises ``TimeoutError`` (naming ``what`` and the last value seen) when it
    has not within ``timeout`` seconds. Exceptions from the predicate
    propagate: use ``kubectl(..., check=False)`` for "may not exist yet".
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(
                f"timed out after {timeout}s waiting for "
                f"{what or getattr(predicate, '__name__', 'condition')}; last value: {value!r}"
            )
        time.sleep(interval)


def ensure_bins() -> Path:
    """Build the cluster binaries if the cache lacks them (seconds when warm)."""
    subprocess.run(
        ["bash", str(HACK / "build-cluster-bins.sh")], check=True, stdout=subprocess.DEVNULL
    )
    return bin_dir()


def cluster_up() -> Cluster:
    """Start (or reuse) the local cluster; return it once it is ready."""
    ensure_bins()
    out = subprocess.run(
        ["bash", str(HACK / "cluster-up.sh")], check=True, stdout=subprocess.PIPE, text=True
    ).stdout
    last = out.strip().splitlines()[-1]
    prefix = "export KUBECONFIG="
    if not last.startswith(prefix):
        raise RuntimeError(f"unexpected last line from cluster-up.sh: {last!r}")
    return Cluster(kubeconfig=Path(last.removeprefix(prefix)), bin_dir=bin_dir())


def cluster_down() -> None:
    """Stop and delete the local cluster."""
    subprocess.run(["bash", str(HACK / "cluster-down.sh")], check=True)


def fresh_namespace(prefix: str) -> Iterator[str]:
    """A new namespace named `<prefix><random>`, ready for pods, deleted afterwards.

    For fixtures: `yield from fresh_namespace("kdag-test-")`.
    """
    name = f"{prefix}{uuid.uuid4().hex[:8]}"
    kubectl("create", "namespace", name)
    kubectl("label", "namespace", name, "kdag.dev/test=true")
    # Pods are only admitted once the serviceaccount controller has made the
    # namespace's `default` ServiceAccount.
    kubectl("wait", "--for=create", "serviceaccount/default", "-n", name, "--timeout=60s")
    yield name
    # Don't wait: the namespace controller finishes the deletion in the background and the
    # next test has its own namespace.
    kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found")


@contextmanager
def namespace_policy(
    name: str,
    namespace: str,
    resource_rules: list[dict[str, Any]],
    validations: list[dict[str, str]],
) -> Iterator[None]:
    """A ValidatingAdmissionPolicy (Deny) bound to one namespace, removed afterwards.

    The API server picks it up asynchronously: callers wait until it bites.
    """
    policy = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": name},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": resource_rules},
            "validations": validations,
        },
    }
    binding = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": name},
        "spec": {
            "policyName": name,
            "validationActions": ["Deny"],
            "matchResources": {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}
            },
        },
    }
    items = {"apiVersion": "v1", "kind": "List", "items": [policy, binding]}
    kubectl("apply", "-f", "-", input=json.dumps(items))
    try:
        yield
    finally:
        kubectl(
            "delete", "validatingadmissionpolicybinding,validatingadmissionpolicy", name,
            "--ignore-not-found",
        )  # fmt: skip


def job_of(namespace: str, run: str, node: str, attempt: int = 1) -> str:
    """The name of the Job kdag makes for a node attempt of the run (it hashes the run's uid)."""
    uid = kubectl("get", "workflowrun", run, "-n", namespace, "-o", "jsonpath={.metadata.uid}")
    return job_name(run, uid, node, attempt)


def wait_job_deleted(namespace: str, run: str, node: str, attempt: int = 1) -> None:
    """Until the Job of that node attempt is gone (kubectl wait --for=delete)."""
    job = job_of(namespace, run, node, attempt)
    kubectl("wait", "--for=delete", f"job/{job}", "-n", namespace, "--timeout=240s")
