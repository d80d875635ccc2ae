"""Fault injection for the fault, bad-input and security tests (docs/faults.md).

- `own_namespace`: a namespace of the test's own, named so that no other operator on the
  shared cluster serves it (the session operator of tests/support/operator.py serves
  `kdag-test-*`; these are `kdag-fault-*`, `kdag-badin-*`, ...).
- `JobLedger`: every kdag Job ever created in a namespace, seen through a watch that starts
  from a list (so nothing created after `__enter__` can be missed), keyed by uid. A
  duplicate is two Jobs (two uids) for one (run, node instance, attempt), whatever their
  names, so a Job created, deleted and created again under the same name counts too.
- `operator_for`: a `kdag-operator` process scoped to given namespaces, as the chart's
  ServiceAccount (SIGKILL and restart it at will; its log is kept).
- `PrivateApiServer`: a second kube-apiserver on the shared cluster's etcd, on a port of its
  own, that an operator talks to and a test kills and restarts without disturbing anyone else
  on the shared cluster.
- `KillSchedule`: seeded random kill points (after a random delay, or right after the n-th
  Job the operator creates).
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import tempfile
import threading
import uuid
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import kubernetes
import yaml

from kdag.engine.names import run_label
from tests.support.chart_rbac import ChartIdentity, chart_identity
from tests.support.cluster import (
    REPO_ROOT,
    KubectlError,
    current_kubeconfig,
    default_kubeconfig,
    kubectl,
    kubectl_json,
    wait_for,
)
from tests.support.operator import TERMINAL, pods, release_pod, sim, workflow
from tests.support.operator_process import ScopedOperator

LABEL_RUN = "kdag.dev/run"
LABEL_NODE = "kdag.dev/node"
LABEL_ATTEMPT = "kdag.dev/attempt"
ANNOTATION_INSTANCE = "kdag.dev/node-instance"
MANAGED_BY = "app.kubernetes.io/managed-by=kdag"
KOPF_PEERING_CRDS = REPO_ROOT / "charts" / "kdag" / "crds" / "kopf-peering.yaml"


# --------------------------------------------------------------------- namespaces


def create_own_namespace(prefix: str) -> str:
    """`kdag-<prefix>-<hex>`, labelled as a test namespace, with its default ServiceAccount."""
    assert not f"kdag-{prefix}".startswith("kdag-test"), "kdag-test-* is the session operator's"
    name = f"kdag-{prefix}-{uuid.uuid4().hex[:6]}"
    kubectl("create", "namespace", name)
    kubectl("label", "namespace", name, "kdag.dev/test=true")
    # Pods are admitted once the serviceaccount controller has made `default`.
    kubectl("wait", "--for=create", "serviceaccount/default", "-n", name, "--timeout=60s")
    return name


@contextmanager
def own_namespace(prefix: str) -> Iterator[str]:
    """A fresh namespace no other operator serves; deleted afterwards (without waiting)
    unless `KDAG_KEEP_NAMESPACES=1` keeps it for a post-mortem."""
    name = create_own_namespace(prefix)
    try:
        yield name
    finally:
        if os.environ.get("KDAG_KEEP_NAMESPACES") != "1":
            kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found")


# --------------------------------------------------------------------- the Job ledger


@dataclass(frozen=True)
class JobRecord:
    uid: str
    name: str
    run: str
    instance: str
    attempt: int
    labels: Mapping[str, str]

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.run, self.instance, self.attempt)


def _record(job: Mapping[str, Any]) -> JobRecord:
    meta = job["metadata"]
    labels = meta.get("labels") or {}
    annotations = meta.get("annotations") or {}
    return JobRecord(
        uid=meta["uid"],
        name=meta["name"],
        run=labels.get(LABEL_RUN, ""),
        # The exact status key (`t[eu]`); the node label is its sanitised form.
        instance=annotations.get(ANNOTATION_INSTANCE) or labels.get(LABEL_NODE, ""),
        attempt=int(labels.get(LABEL_ATTEMPT, "0")),
        labels=dict(labels),
    )


class NamespaceWatch:
    """A list, then a watch from the list's resourceVersion, of one kind in one namespace,
    in a thread: nothing that happens after `__enter__` returns can be missed."""

    def __init__(self, namespace: str, kubeconfig: Path, what: str) -> None:
        self.namespace = namespace
        self.what = what
        self._client = kubernetes.config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=str(kubeconfig)
        )
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None

    def _list(self, **kwargs: Any) -> Any:
        raise NotImplementedError

    def _on_event(self, kind: str, raw: Mapping[str, Any]) -> None:
        """Record one object (kind: ADDED, MODIFIED, DELETED); called under the lock."""
        raise NotImplementedError

    def __enter__(self) -> NamespaceWatch:
        listed = self._list(_preload_content=False)
        found = json.loads(listed.data)
        with self._changed:
            for item in found["items"]:
                self._on_event("ADDED", item)
        self._thread = threading.Thread(
            target=self._watch, args=(found["metadata"]["resourceVersion"],), daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=15)

    def _watch(self, resource_version: str) -> None:
        watcher = kubernetes.watch.Watch()  # type: ignore[no-untyped-call]
        try:
            while not self._stop.is_set():
                # Short server-side timeouts so that closing is prompt; each new request
                # resumes exactly where the last one ended.
                for event in watcher.stream(  # type: ignore[no-untyped-call]
                    self._list,
                    resource_version=resource_version,
                    allow_watch_bookmarks=True,
                    timeout_seconds=5,
                ):
                    raw = event["raw_object"]
                    if event["type"] == "ERROR":
                        raise RuntimeError(f"the watch of {self.what} failed: {raw}")
                    resource_version = raw["metadata"]["resourceVersion"]
                    if event["type"] in ("ADDED", "MODIFIED", "DELETED"):
                        with self._changed:
                            self._on_event(event["type"], raw)
                            self._changed.notify_all()
                    if self._stop.is_set():
                        break
        except BaseException as exc:  # surfaced by check(): a gap would hide what we look for
            self._error = exc
            with self._changed:
                self._changed.notify_all()

    def check(self) -> None:
        """Raise if the watch broke: then it may have missed something."""
        if self._error is not None:
            raise AssertionError(f"the watch of {self.what} broke") from self._error


class RunHistory(NamespaceWatch):
    """Every version of every WorkflowRun's status in `namespace`, for post-mortems."""

    def __init__(self, namespace: str, kubeconfig: Path) -> None:
        super().__init__(namespace, kubeconfig, f"WorkflowRuns in {namespace}")
        self._api = kubernetes.client.CustomObjectsApi(self._client)
        self._versions: dict[str, list[str]] = defaultdict(list)

    def __enter__(self) -> RunHistory:
        super().__enter__()
        return self

    def _list(self, **kwargs: Any) -> Any:
        return self._api.list_namespaced_custom_object(
            "kdag.dev", "v1alpha1", self.namespace, "workflowruns", **kwargs
        )

    def _on_event(self, kind: str, raw: Mapping[str, Any]) -> None:
        status = raw.get("status") or {}
        nodes = {k: v.get("phase") for k, v in (status.get("nodes") or {}).items()}
        line = (
            f"{kind} rv={raw['metadata']['resourceVersion']} phase={status.get('phase')} "
            f"nodes={nodes} message={status.get('message')!r}"
        )
        self._versions[raw["metadata"]["name"]].append(line)

    def describe(self, run: str) -> str:
        with self._changed:
            return "\n".join(f"  {line}" for line in self._versions.get(run, []))


class JobLedger(NamespaceWatch):
    """Every kdag Job created in `namespace` while the ledger is open, by uid."""

    def __init__(self, namespace: str, kubeconfig: Path) -> None:
        super().__init__(namespace, kubeconfig, f"kdag Jobs in {namespace}")
        self._api = kubernetes.client.BatchV1Api(self._client)
        self._records: dict[str, JobRecord] = {}
        self._deleted: dict[str, str] = {}  # uid -> name

    def __enter__(self) -> JobLedger:
        super().__enter__()
        return self

    def _list(self, **kwargs: Any) -> Any:
        return self._api.list_namespaced_job(self.namespace, label_selector=MANAGED_BY, **kwargs)

    def _on_event(self, kind: str, raw: Mapping[str, Any]) -> None:
        record = _record(raw)
        self._records.setdefault(record.uid, record)
        if kind == "DELETED":
            self._deleted[record.uid] = record.name

    @property
    def records(self) -> list[JobRecord]:
        with self._changed:
            return list(self._records.values())

    def deleted(self) -> list[str]:
        """Names of the Jobs that were deleted while the ledger was open."""
        with self._changed:
            return sorted(self._deleted.values())

    def count(self) -> int:
        with self._changed:
            return len(self._records)

    def wait_count(self, count: int, timeout: float) -> bool:
        """Wait until `count` Jobs have been created in all; False after `timeout`."""
        with self._changed:
            return self._changed.wait_for(
                lambda: len(self._records) >= count or self._error is not None, timeout
            )

    def catch_up(self, timeout: float = 30) -> None:
        """Wait until every kdag Job that exists now has been seen by the watch."""
        listed = kubectl_json("get", "jobs", "-n", self.namespace, "-l", MANAGED_BY)
        uids = {job["metadata"]["uid"] for job in listed["items"]}

        def seen() -> bool:
            self.check()
            with self._changed:
                return uids <= self._records.keys()

        wait_for(seen, timeout=timeout, what=f"the Job watch of {self.namespace} to catch up")

    def duplicates(self) -> dict[tuple[str, str, int], list[str]]:
        """(run, instance, attempt) that got more than one Job: the Jobs' names and uids."""
        by_key: dict[tuple[str, str, int], list[JobRecord]] = defaultdict(list)
        for record in self.records:
            by_key[record.key].append(record)
        return {
            key: [f"{r.name} ({r.uid})" for r in found]
            for key, found in by_key.items()
            if len(found) > 1
        }

    def attempts(self, run: str) -> dict[str, list[int]]:
        """The attempts that got a Job, per node instance of `run`."""
        found: dict[str, list[int]] = defaultdict(list)
        for record in self.records:
            if record.run == run:
                found[record.instance].append(record.attempt)
        return {instance: sorted(attempts) for instance, attempts in found.items()}


# --------------------------------------------------------------------- the operator


@contextmanager
def operator_for(
    kubeconfig: Path,
    namespaces: Sequence[str],
    extra_args: Sequence[str] = (),
    identity: ChartIdentity | None = None,
) -> Iterator[ScopedOperator]:
    """A `kdag-operator` serving only `namespaces`; stopped (or found dead) afterwards.

    It talks to the API server of `kubeconfig` (the cluster's, or a test's private one) as
    the chart's ServiceAccount: `identity`, or the session's one (tests/support/chart_rbac.py),
    which is first granted the namespaces in namespaced mode.
    """
    identity = identity or chart_identity()
    identity.grant(*namespaces)
    debug = ["--verbose"] if os.environ.get("KDAG_OPERATOR_VERBOSE") == "1" else []
    operator = ScopedOperator(
        identity.kubeconfig_for(kubeconfig), namespaces, [*extra_args, *debug]
    )
    operator.start()
    try:
        yield operator
    finally:
        operator.stop()


def is_running(operator: ScopedOperator) -> bool:
    proc = operator._proc
    return proc is not None and proc.poll() is None


def runs_in(namespace: str) -> dict[str, dict[str, Any]]:
    """Every WorkflowRun of the namespace, by name."""
    found = kubectl_json("get", "workflowruns", "-n", namespace)
    return {r["metadata"]["name"]: r for r in found["items"]}


def all_finished(namespace: str, names: Sequence[str]) -> bool:
    runs = runs_in(namespace)
    return all(
        ((runs.get(name) or {}).get("status") or {}).get("phase") in TERMINAL for name in names
    )


def ensure_kopf_peering(namespace: str, name: str) -> None:
    """kopf's peering CRDs (as the chart ships them) and a KopfPeering `name` in `namespace`."""
    if kubectl("get", "crd", "kopfpeerings.kopf.dev", "--ignore-not-found", "-o", "name") == "":
        try:
            kubectl("create", "-f", str(KOPF_PEERING_CRDS))
        except KubectlError as exc:  # another session created them meanwhile
            if "AlreadyExists" not in exc.stderr:
                raise
    kubectl("wait", "--for=condition=Established", "crd/kopfpeerings.kopf.dev", "--timeout=60s")
    peering = {"apiVersion": "kopf.dev/v1", "kind": "KopfPeering", "metadata": {"name": name}}
    kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(peering))


# --------------------------------------------------------------------- kill points


@dataclass
class KillSchedule:
    """Seeded random points at which to SIGKILL the operator.

    Each point is either a delay after the operator came up (anywhere in its work) or "right
    after the operator's n-th new Job appears" (between creating a Job and recording it in
    the run's status: the window where a careless operator would create a duplicate).
    """

    seed: int
    rng: random.Random = field(init=False)
    log: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    @classmethod
    def from_env(cls) -> KillSchedule:
        """`KDAG_FAULT_SEED` reproduces a run; otherwise a fresh seed (printed by the test)."""
        seed = os.environ.get("KDAG_FAULT_SEED")
        return cls(int(seed) if seed else random.SystemRandom().randrange(2**32))

    def wait_for_kill_point(self, ledger: JobLedger) -> str:
        """Block until the next kill point; returns what it was."""
        if self.rng.random() < 0.5:
            delay = round(self.rng.uniform(0.2, 3.0), 2)
            # Not a wait for a condition: the point in time itself is the random input.
            self._pause(delay)
            point = f"after {delay}s"
        else:
            nth = self.rng.randint(1, 4)
            seen = ledger.wait_count(ledger.count() + nth, timeout=8)
            point = f"after Job +{nth}" if seen else f"after Job +{nth} (none within 8s)"
        self.log.append(point)
        return point

    def downtime(self) -> float:
        """How long the operator stays dead (Jobs go on finishing unobserved meanwhile)."""
        return round(self.rng.uniform(0.0, 1.5), 2)

    @staticmethod
    def _pause(seconds: float) -> None:
        threading.Event().wait(seconds)


# --------------------------------------------------------------------- a private kube-apiserver


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _shared_apiserver_pid() -> int:
    """The local cluster's kube-apiserver, from kwokctl's pid file (hack/cluster-up.sh)."""
    workdir = (
        default_kubeconfig().parent / "kwok" / "clusters" / os.environ.get("KDAG_CLUSTER", "kdag")
    )
    return int((workdir / "pids" / "kube-apiserver.pid").read_text().strip())


def local_apiserver_available() -> bool:
    """Whether the tests run on the local kwokctl cluster, whose kube-apiserver we can copy."""
    if current_kubeconfig() != default_kubeconfig():
        return False
    try:
        return Path(f"/proc/{_shared_apiserver_pid()}/cmdline").exists()
    except (OSError, ValueError):
        return False


def shared_apiserver_command() -> list[str]:
    """The shared cluster's kube-apiserver command line (kwokctl's binary runtime)."""
    cmdline = Path(f"/proc/{_shared_apiserver_pid()}/cmdline").read_bytes()
    return [part.decode() for part in cmdline.split(b"\0") if part]


class PrivateApiServer:
    """Another kube-apiserver on the shared cluster's etcd, for one test's operator.

    Same binary, certificates and etcd as the shared one (so it serves the same objects),
    its own port, and no endpoint reconciler (it leaves the `kubernetes` Service alone).
    Killing and restarting it cuts off only the operator that talks to it: the shared
    cluster's controllers (the Job controller, KWOK) go on through the shared API server,
    so Jobs finish while the operator is cut off, which it must then catch up on.
    """

    def __init__(self, admin_kubeconfig: Path, workdir: Path) -> None:
        self.port = _free_port()
        base = [a for a in shared_apiserver_command() if not a.startswith("--secure-port=")]
        self.command = [*base, f"--secure-port={self.port}", "--endpoint-reconciler-type=none"]
        self.cwd = Path(f"/proc/{_shared_apiserver_pid()}/cwd").resolve()
        self.log_path = workdir / "private-kube-apiserver.log"
        self.kubeconfig = workdir / "private-apiserver.kubeconfig"
        config = yaml.safe_load(admin_kubeconfig.read_text())
        for entry in config["clusters"]:
            entry["cluster"]["server"] = f"https://127.0.0.1:{self.port}"
        self.kubeconfig.write_text(yaml.safe_dump(config))
        self.kubeconfig.chmod(0o600)
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> None:
        self._log = self.log_path.open("ab")
        self._proc = subprocess.Popen(
            self.command, cwd=self.cwd, stdout=self._log, stderr=subprocess.STDOUT
        )
        wait_for(self._ready, timeout=120, interval=0.5, what="the private kube-apiserver")

    def _ready(self) -> bool:
        assert self._proc is not None
        if self._proc.poll() is not None:
            raise RuntimeError(f"kube-apiserver exited {self._proc.returncode}: {self.tail()}")
        probe = kubectl(
            "get", "--raw=/readyz", "--request-timeout=5s", kubeconfig=self.kubeconfig, check=False
        )
        return probe.strip() == "ok"

    def kill(self) -> None:
        """SIGKILL: connections drop without a goodbye, as when the host dies."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGKILL)
            self._proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@contextmanager
def private_apiserver(admin_kubeconfig: Path) -> Iterator[PrivateApiServer]:
    with tempfile.TemporaryDirectory(prefix="kdag-apiserver-") as tmp:
        server = PrivateApiServer(admin_kubeconfig, Path(tmp))
        server.start()
        try:
            yield server
        finally:
            server.kill()


# --------------------------------------------------------- run shapes with known outcomes


@dataclass(frozen=True)
class Shape:
    """A Workflow and exactly how every run of it must end, whatever happens meanwhile."""

    name: str
    manifest: dict[str, Any]
    phase: str
    node_phases: Mapping[str, str]
    # The attempts that get a Job, per node instance; instances absent here get none.
    attempts: Mapping[str, Sequence[int]]

    @classmethod
    def succeeding(
        cls, name: str, nodes: list[dict[str, Any]], instances: Sequence[str], **spec: Any
    ) -> Shape:
        """A Workflow whose every node instance runs once and succeeds."""
        return cls(
            name=name,
            manifest=workflow(name, nodes, **spec),
            phase="Succeeded",
            node_phases=dict.fromkeys(instances, "Succeeded"),
            attempts={i: [1] for i in instances},
        )

    def check(self, run: str, status: Mapping[str, Any], ledger: JobLedger) -> list[str]:
        """What is wrong with how `run` ended (an empty list when nothing is)."""
        problems = []
        if status.get("phase") != self.phase:
            problems.append(f"phase {status.get('phase')!r}, expected {self.phase!r}")
        phases = {k: v.get("phase") for k, v in (status.get("nodes") or {}).items()}
        if phases != dict(self.node_phases):
            problems.append(f"node phases {phases}, expected {dict(self.node_phases)}")
        got = ledger.attempts(run)
        expected = {k: list(v) for k, v in self.attempts.items()}
        if got != expected:
            problems.append(f"Jobs per node attempt {got}, expected {expected}")
        return [f"{self.name} run {run}: {p}" for p in problems]


def chain_shape(step: str = "600ms", length: int = 4) -> Shape:
    """a -> b -> c -> d: every node once, in order."""
    names = [chr(ord("a") + i) for i in range(length)]
    nodes = [
        {"name": n, **({"dependsOn": [names[i - 1]]} if i else {}), **sim(duration=step)}
        for i, n in enumerate(names)
    ]
    return Shape.succeeding("chain", nodes, names)


def fan_out_shape() -> Shape:
    """split -> t[eu|us|ap|af] -> join (fan-out and fan-in)."""
    items = ["eu", "us", "ap", "af"]
    nodes = [
        {"name": "split", **sim(duration="400ms")},
        {"name": "t", "dependsOn": ["split"], "forEach": items, **sim(duration="800ms")},
        {"name": "join", "dependsOn": ["t"], **sim(duration="300ms")},
    ]
    instances = ["split", *(f"t[{i}]" for i in items), "join"]
    return Shape.succeeding("fan-out", nodes, instances)


def retries_shape() -> Shape:
    """A node that always fails, retried twice, then its dependent is skipped."""
    retry = {"limit": 2, "backoffSeconds": 1, "factor": 1}
    nodes = [
        {"name": "flaky", "retry": retry, **sim(duration="300ms", exit_code=1)},
        {"name": "after", "dependsOn": ["flaky"]},
    ]
    return Shape(
        name="retries",
        manifest=workflow("retries", nodes),
        phase="Failed",
        node_phases={"flaky": "Failed", "after": "Skipped"},
        attempts={"flaky": [1, 2, 3]},
    )


def dynamic_shape() -> Shape:
    """A fan-out whose items come from an upstream output, and a `when` that is false."""
    regions = json.dumps(["x", "y", "z"])
    nodes = [
        {"name": "list", **sim(duration="300ms", message={"regions": regions})},
        {
            "name": "t",
            "dependsOn": ["list"],
            "forEachFrom": "{{ nodes.list.outputs.regions }}",
            **sim(duration="600ms"),
        },
        {"name": "never", "dependsOn": ["list"], "when": "nodes.list.outputs.regions == '[]'"},
        {"name": "join", "dependsOn": ["t", "never"]},
    ]
    instances = ["list", "t[x]", "t[y]", "t[z]", "join"]
    return Shape(
        name="dynamic",
        manifest=workflow("dynamic", nodes),
        phase="Succeeded",
        node_phases={**dict.fromkeys(instances, "Succeeded"), "never": "Skipped"},
        attempts={i: [1] for i in instances},
    )


def finally_shape() -> Shape:
    """onFailure: continue: a failure, the rest still runs, then `finally`."""
    nodes = [
        {"name": "bad", **sim(duration="500ms", exit_code=2)},
        {"name": "good", **sim(duration="500ms")},
        {"name": "after", "dependsOn": ["good"], **sim(duration="500ms")},
    ]
    manifest = workflow("finally", nodes, onFailure="continue", **{"finally": [{"name": "notify"}]})
    return Shape(
        name="finally",
        manifest=manifest,
        phase="Failed",
        node_phases={
            "bad": "Failed",
            "good": "Succeeded",
            "after": "Succeeded",
            "notify": "Succeeded",
        },
        attempts={"bad": [1], "good": [1], "after": [1], "notify": [1]},
    )


ALL_SHAPES = (chain_shape, fan_out_shape, retries_shape, dynamic_shape, finally_shape)


def check_runs(
    namespace: str,
    runs: Mapping[str, Shape],
    ledger: JobLedger,
    history: RunHistory | None = None,
) -> list[str]:
    """Every problem with how `runs` ended, plus any (node, attempt) that got two Jobs; with
    `history`, a wrong run's every status version follows its problems."""
    ledger.catch_up()
    found = runs_in(namespace)
    problems = []
    for run, shape in runs.items():
        wrong = shape.check(run, (found[run].get("status") or {}), ledger)
        problems += wrong
        if wrong and history is not None:
            problems.append(f"status history of {run}:\n{history.describe(run)}")
    problems += [f"two Jobs for {key}: {jobs}" for key, jobs in ledger.duplicates().items()]
    return problems


def finish_and_check(
    namespace: str,
    runs: Mapping[str, Shape],
    ledger: JobLedger,
    history: RunHistory,
    operator: ScopedOperator,
    timeout: float = 480,
) -> None:
    """Wait for every run to finish, then assert each ended as its shape says, with no
    (node, attempt) given two Jobs; the failure shows the runs' histories and the log.

    The timeout is generous on purpose: on a cluster shared with a benchmark the Job
    controller can take minutes to start a pod; a run that really hangs still fails."""
    wait_for(
        lambda: all_finished(namespace, list(runs)),
        timeout=timeout,
        interval=0.5,
        what=f"every run in {namespace} to finish",
    )
    problems = check_runs(namespace, runs, ledger, history)
    assert not problems, "\n".join(problems) + "\n" + operator.tail(40)


def release_when_started(
    namespace: str, run: str, node: str, attempt: int, exit_code: int = 0, timeout: float = 240
) -> None:
    """`release_pod`, after waiting (longer than it does) for the Job controller to make the
    pod: on a cluster busy with other sessions' Jobs that can take minutes."""
    selector = f"kdag.dev/run={run_label(run)},kdag.dev/node={node},kdag.dev/attempt={attempt}"
    wait_for(
        lambda: pods(namespace, selector), timeout=timeout, what=f"the pod of {node}#{attempt}"
    )
    release_pod(namespace, run, node, attempt, exit_code)
