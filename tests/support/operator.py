"""The kdag operator as the integration tests run it, and helpers to drive runs like a user.

One operator process serves the whole test session (the `kdag-operator` console script); the
first test that asks for it applies the CRDs from `crds/` and starts it, and it is stopped
when the session's process exits. A test that kills it (to test resuming) starts it again
with `start()`.

It runs as the chart's ServiceAccount with exactly the chart's RBAC, never as the admin
(tests/support/chart_rbac.py), in the session's RBAC mode (`KDAG_IT_RBAC_MODE`):

- `cluster` (default): the chart's ClusterRole; the operator serves every namespace of this
  session through one glob, `--namespace 'kdag-run-<session>-*'`.
- `namespaced`: the chart's Role in each test namespace, granted when the namespace is made;
  the operator is restarted with the namespaces it serves as exact `--namespace` flags, as
  `helm upgrade` with a new `watchNamespaces` restarts the chart's Deployment.

The cluster is shared (other sessions may run tests, and operators, at the same time), so
the operator serves only this session's namespaces: `operator_namespace()` makes them under
a prefix unique to the process (`kdag-run-<session>-<test>`). Two operators on one run would
both reconcile it.

Runs and Workflows are written as manifests and handed to `kubectl apply/create`, as a user
would; the helpers below only read state back (`kubectl get`).
"""

from __future__ import annotations

import atexit
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import urllib.request
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from kdag.engine.names import run_label
from tests.support.chart_rbac import chart_identity, rbac_mode
from tests.support.cluster import (
    REPO_ROOT,
    Cluster,
    bin_dir,
    current_kubeconfig,
    fresh_namespace,
    kubectl,
    kubectl_json,
    wait_for,
)

OPERATOR = Path(sys.executable).parent / "kdag-operator"
CRDS = REPO_ROOT / "crds"
TERMINAL = ("Succeeded", "Failed", "Cancelled", "TimedOut", "Invalid")
# Generous: a pod that takes 300 ms on an idle cluster can take a minute when a benchmark
# saturates the shared cluster's Job controller. Waits end as soon as the state is reached.
WAIT_SECONDS = 240
NAMESPACE_PREFIX = f"kdag-run-{uuid.uuid4().hex[:6]}-"
# How the RBAC authorizer words a refusal (`User "..." cannot get resource "..."`), and the
# OwnerReferencesPermissionEnforcement plugin; kopf's words when it falls back for lack of a
# permission.
RBAC_DENIAL = re.compile(
    r'User "[^"]+" cannot \w+ resource|cannot set blockOwnerDeletion|Not enough permissions'
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class OperatorProcess:
    """`kdag-operator` running as a subprocess; its log is kept in a file for debugging."""

    def __init__(
        self,
        kubeconfig: Path,
        namespaces: Sequence[str] = (f"{NAMESPACE_PREFIX}*",),
        extra_args: Sequence[str] = (),
    ) -> None:
        self.kubeconfig = kubeconfig
        self.namespaces = tuple(namespaces)
        self.extra_args = tuple(extra_args)
        self.log_path = Path(tempfile.gettempdir()) / f"kdag-it-operator-{os.getpid()}.log"
        self.metrics_port = _free_port()
        self.liveness_port = _free_port()
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> None:
        self._log = self.log_path.open("ab")
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig)}
        self._proc = subprocess.Popen(
            [
                str(OPERATOR),
                *(f"--namespace={ns}" for ns in self.namespaces),
                "--metrics-port",
                str(self.metrics_port),
                "--liveness",
                f"http://127.0.0.1:{self.liveness_port}/healthz",
                *self.extra_args,
            ],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        wait_for(self._live, timeout=60, what="the operator's liveness endpoint")

    def _live(self) -> bool:
        assert self._proc is not None
        if self._proc.poll() is not None:
            raise RuntimeError(f"kdag-operator exited with {self._proc.returncode}: {self.tail()}")
        try:
            url = f"http://127.0.0.1:{self.liveness_port}/healthz"
            with urllib.request.urlopen(url, timeout=2) as answer:
                return bool(answer.status == 200)
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL: no graceful shutdown, as when a node dies."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGKILL)
            self._proc.wait()
        self._close_log()

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._close_log()

    def restart(self) -> None:
        self.kill()
        self.start()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def serve(self, namespaces: Sequence[str]) -> None:
        """Serve exactly `namespaces`: restarted (SIGTERM, as a rollout) when they change."""
        if tuple(namespaces) == self.namespaces and self.running:
            return
        self.stop()
        self.namespaces = tuple(namespaces)
        self.start()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except OSError:
            return 0

    def rbac_denials(self, since: int = 0) -> list[str]:
        """Log lines (from byte `since`) where the API server's RBAC refused a request: the
        operator logs some refusals and carries on, which no run's outcome would show."""
        try:
            with self.log_path.open("rb") as log:
                log.seek(since)
                text = log.read().decode(errors="replace")
        except OSError:
            return []
        return [line for line in text.splitlines() if RBAC_DENIAL.search(line)]

    def metrics(self) -> str:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as answer:
            return str(answer.read().decode())


# The session's operator; a dict rather than a global statement.
_session: dict[str, OperatorProcess] = {}


def apply_crds() -> None:
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRDS))
    kubectl(
        "wait", "--for=condition=Established", "crd/workflows.kdag.dev",
        "crd/workflowruns.kdag.dev", "--timeout=60s",
    )  # fmt: skip


def ensure_operator(cluster: Cluster) -> OperatorProcess:
    """The session's operator (with the CRDs applied), made on first use.

    In cluster mode it is started at once. In namespaced mode it has nothing to serve yet:
    `operator_namespace()` starts it, with the test's namespace.
    """
    if "operator" not in _session:
        apply_crds()
        identity = chart_identity()
        made = OperatorProcess(identity.kubeconfig_for(cluster.kubeconfig))
        if rbac_mode() == "cluster":
            made.start()
        atexit.register(made.stop)
        _session["operator"] = made
    return _session["operator"]


def operator_namespace(cluster: Cluster) -> Iterator[str]:
    """A fresh namespace that the session's operator serves; deleted afterwards.

    Integration tests get one as their `namespace` fixture by marking their module
    `pytestmark = pytest.mark.operator` (tests/integration/conftest.py).
    """
    operator = ensure_operator(cluster)
    namespaced = rbac_mode() == "namespaced"
    for name in fresh_namespace(NAMESPACE_PREFIX):
        if namespaced:
            # The Role first: a watch kopf starts in a namespace it may not read fails for
            # good, so the operator is only told of the namespace once it may.
            chart_identity().grant(name)
            operator.stop()
        # From here on the log is this test's, the operator's start-up included.
        since = operator.log_size()
        if namespaced:
            operator.serve([name])
        yield name
        denials = operator.rbac_denials(since)
        if namespaced:
            # While the operator may still remove an older version's finalizer from
            # scheduled Workflows (test_workflow_status.py puts one on): deleting the
            # namespace deletes the Role too, and the namespace would then wait for ever on
            # a finalizer nobody may remove.
            kubectl("delete", "workflows", "--all", "-n", name, "--timeout=60s")
        assert not denials, "the chart's RBAC refused the operator:\n" + "\n".join(denials)


# --------------------------------------------------------------------- manifests


def workflow(name: str, nodes: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    """A Workflow manifest; nodes default to a busybox image."""
    defaults = {"image": "busybox:1.36", **spec.pop("defaults", {})}
    return {
        "apiVersion": "kdag.dev/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": name},
        "spec": {"defaults": defaults, "nodes": nodes, **spec},
    }


def run_of(workflow_name: str, name: str | None = None, **spec: Any) -> dict[str, Any]:
    """A WorkflowRun manifest of a Workflow (generateName unless `name` is given)."""
    metadata = {"name": name} if name else {"generateName": f"{workflow_name}-"}
    return {
        "apiVersion": "kdag.dev/v1alpha1",
        "kind": "WorkflowRun",
        "metadata": metadata,
        "spec": {"workflowRef": {"name": workflow_name}, **spec},
    }


def sim(
    duration: str | None = None,
    exit_code: int | None = None,
    message: Mapping[str, str] | str | None = None,
    hang: bool = False,
) -> dict[str, Any]:
    """podMetadata steering the KWOK-simulated pod (docs/testing.md)."""
    annotations: dict[str, str] = {}
    if duration is not None:
        annotations["sim.kdag.dev/duration"] = duration
    if exit_code is not None:
        annotations["sim.kdag.dev/exit-code"] = str(exit_code)
    if message is not None:
        text = message if isinstance(message, str) else json.dumps(message)
        annotations["sim.kdag.dev/message"] = text
    if hang:
        annotations["sim.kdag.dev/hang"] = "true"
    return {"podMetadata": {"annotations": annotations}}


# --------------------------------------------------------------------- kubectl helpers


def apply(namespace: str, *manifests: Mapping[str, Any]) -> None:
    kubectl("apply", "-n", namespace, "-f", "-", input=_as_list(manifests))


def create(namespace: str, manifest: Mapping[str, Any]) -> str:
    """`kubectl create` one object; returns its name."""
    out = kubectl("create", "-n", namespace, "-f", "-", "-o", "name", input=json.dumps(manifest))
    return out.strip().split("/", 1)[1]


def _as_list(manifests: Iterable[Mapping[str, Any]]) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": list(manifests)})


def limit_jobs(namespace: str, count: int, name: str = "jobs") -> None:
    """A count/jobs.batch ResourceQuota of `count`, waited on until it is enforced."""
    quota = {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": name},
        "spec": {"hard": {"count/jobs.batch": str(count)}},
    }
    apply(namespace, quota)
    # Enforced once the quota controller has filled in what is used.
    wait_for(
        lambda: (
            kubectl_json("get", "resourcequota", name, "-n", namespace).get("status") or {}
        ).get("used"),
        timeout=30,
        what="the ResourceQuota to be in force",
    )


def get_run(namespace: str, name: str) -> dict[str, Any]:
    found: dict[str, Any] = kubectl_json("get", "workflowrun", name, "-n", namespace)
    return found


def status(namespace: str, name: str) -> dict[str, Any]:
    return dict(get_run(namespace, name).get("status") or {})


def wait_phase(
    namespace: str, name: str, *phases: str, timeout: float = WAIT_SECONDS
) -> dict[str, Any]:
    """Wait until the run's phase is one of `phases`; return its status."""

    def reached() -> dict[str, Any] | None:
        current = status(namespace, name)
        if current.get("phase") in phases:
            return current
        if current.get("phase") in TERMINAL:
            raise AssertionError(f"run {name} ended {current.get('phase')}: {current}")
        return None

    return wait_for(reached, timeout=timeout, interval=0.25, what=f"run {name} {phases}")


def wait_node(
    namespace: str, name: str, node: str, *phases: str, timeout: float = WAIT_SECONDS
) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        entry = (status(namespace, name).get("nodes") or {}).get(node) or {}
        return entry if entry.get("phase") in phases else None

    return wait_for(reached, timeout=timeout, interval=0.25, what=f"node {node} {phases}")


def jobs(namespace: str, run: str) -> list[dict[str, Any]]:
    found = kubectl_json("get", "jobs", "-n", namespace, "-l", f"kdag.dev/run={run_label(run)}")
    items: list[dict[str, Any]] = found["items"]
    return items


def pods(namespace: str, selector: str) -> list[dict[str, Any]]:
    found = kubectl_json("get", "pods", "-n", namespace, "-l", selector)
    items: list[dict[str, Any]] = found["items"]
    return items


def node_phases(run_status: Mapping[str, Any]) -> dict[str, str]:
    return {k: v["phase"] for k, v in (run_status.get("nodes") or {}).items()}


def release_pod(namespace: str, run: str, node: str, attempt: int, exit_code: int = 0) -> None:
    """End a hanging pod of one node attempt, successfully or with `exit_code`.

    All attempts of a node get the same pod template, so a test that wants attempt 1 to fail
    and attempt 2 to succeed makes the pods hang and then decides per pod, as a flaky
    dependency would.
    """
    selector = f"kdag.dev/run={run_label(run)},kdag.dev/node={node},kdag.dev/attempt={attempt}"
    found = wait_for(
        lambda: pods(namespace, selector), timeout=WAIT_SECONDS, what=f"pod of {node}#{attempt}"
    )
    name = found[0]["metadata"]["name"]
    kubectl(
        "annotate", "pod", name, "-n", namespace, "--overwrite",
        "sim.kdag.dev/hang=false", f"sim.kdag.dev/exit-code={exit_code}",
    )  # fmt: skip


@dataclass
class JobWatch:
    """`kubectl get jobs --watch` (or pods) on one run, recording every event in order."""

    namespace: str
    run: str
    resource: str = "jobs"
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    _proc: subprocess.Popen[str] | None = None
    _reader: threading.Thread | None = None

    def __enter__(self) -> JobWatch:
        self._proc = subprocess.Popen(
            [
                str(bin_dir() / "kubectl"), "--kubeconfig", str(current_kubeconfig()),
                "get", self.resource, "-n", self.namespace,
                "-l", f"kdag.dev/run={run_label(self.run)}",
                "--watch", "--output-watch-events", "-o", "json",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )  # fmt: skip
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        return self

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        decoder = json.JSONDecoder()
        buffer = ""
        for line in self._proc.stdout:
            buffer += line
            while buffer.strip():
                try:
                    event, end = decoder.raw_decode(buffer.lstrip())
                except ValueError:
                    break
                buffer = buffer.lstrip()[end:]
                self.events.append((event["type"], event["object"]))

    def __exit__(self, *exc: object) -> None:
        assert self._proc is not None
        self._proc.terminate()
        self._proc.wait()

    def max_unfinished(self) -> int:
        """Most objects seen existing and not yet finished at any point of the stream: Jobs
        without a Complete or Failed condition, pods not yet Succeeded or Failed."""
        unfinished: set[str] = set()
        most = 0
        for kind, obj in self.events:
            name = obj["metadata"]["name"]
            status = obj.get("status") or {}
            finished = status.get("phase") in ("Succeeded", "Failed") or any(
                c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
                for c in status.get("conditions") or []
            )
            if kind == "DELETED" or finished:
                unfinished.discard(name)
            else:
                unfinished.add(name)
            most = max(most, len(unfinished))
        return most

    def names(self) -> set[str]:
        return {job["metadata"]["name"] for _, job in self.events}
