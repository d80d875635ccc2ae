"""One scenario, twice: through the kdag operator, then as the floor (the same Jobs created
directly by a small creator with no operator), each in a fresh namespace that is deleted after.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Literal

import kubernetes
from kubernetes.client.exceptions import ApiException
from tests.support.operator import _free_port

from bench import kube, stats
from bench.kube import ProcStats
from bench.shapes import (
    FLOOR_INSTANCE_ANNOTATION,
    FLOOR_RUN_LABEL,
    Scenario,
    floor_job,
    floor_pod,
    run_manifest,
    workflow_manifest,
)
from bench.watch import JobRecorder, JobSeen, RunRecorder

logger = logging.getLogger(__name__)

OPERATOR = Path(sys.executable).parent / "kdag-operator"
READY_AT = "kdag.dev/ready-at"
INSTANCE = "kdag.dev/node-instance"
RUN_LABEL = "kdag.dev/run"
# Runs are created from this many threads at once: "concurrent" means all at once.
CREATE_THREADS = 16
# The one unmeasured run of a scenario with a background (see `Scenario.background`).
BACKGROUND_RUN = "bg-000"


@dataclass(frozen=True)
class Env:
    client: kubernetes.client.ApiClient
    kubeconfig: Path
    cluster_dir: Path | None
    node_group: str
    log_dir: Path
    # Run the operator under yappi, writing <log_dir>/<scenario>-operator.pstat/.txt.
    profile: bool = False
    # Wait for each scenario's namespace to be gone before the next starts, so its deletion
    # does not load the cluster during the next measurement (not worth it for --quick).
    wait_cleanup: bool = True


class OperatorUnderTest:
    """`kdag-operator` scoped to exactly one benchmark namespace (others share the cluster)."""

    def __init__(
        self,
        kubeconfig: Path,
        namespace: str,
        log_path: Path,
        profile: Path | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        metrics_port = _free_port()
        self.metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        self._liveness = f"http://127.0.0.1:{_free_port()}/healthz"
        args = [
            f"--namespace={namespace}",
            f"--metrics-port={metrics_port}",
            f"--liveness={self._liveness}",
            *extra_args,  # bench.shards: --shards and its lease flags
        ]
        self._cmd = [str(OPERATOR), *args]
        if profile is not None:
            self._cmd = [sys.executable, "-m", "bench.profile_operator", str(profile), "--", *args]
        self._env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
        self.log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> OperatorUnderTest:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self._proc = subprocess.Popen(
                self._cmd, env=self._env, stdout=log, stderr=log, cwd=Path(__file__).parents[1]
            )
        deadline = time.monotonic() + 60
        while not self._live():
            if time.monotonic() > deadline:
                raise TimeoutError(f"operator not live after 60s; log: {self.log_path}")
            time.sleep(0.2)
        return self

    def _live(self) -> bool:
        if not self.alive():
            raise RuntimeError(f"kdag-operator exited; log: {self.log_path}")
        try:
            with urllib.request.urlopen(self._liveness, timeout=2) as answer:
                return bool(answer.status == 200)
        except OSError:
            return False

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    def stats(self) -> ProcStats:
        return kube.proc_stats(self.pid)

    def __exit__(self, *exc: object) -> None:
        if self.alive():
            assert self._proc is not None
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout=120)  # a profiled operator writes its profile first
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()


def _parallel(calls: list[Callable[[], None]]) -> None:
    with ThreadPoolExecutor(max_workers=CREATE_THREADS) as pool:
        for future in [pool.submit(c) for c in calls]:
            future.result()


def _timing(
    started: float, runs: dict[str, tuple[float, float | None]], scenario: Scenario
) -> dict[str, Any]:
    """Makespan of the whole batch and per run, against the simulated critical path."""
    ends = [end for _, end in runs.values() if end is not None]
    makespan = (max(ends) - started) if ends else None
    per_run = [end - start for start, end in runs.values() if end is not None]
    critical = scenario.shape.critical_path_seconds
    median_run = stats.quantile(per_run, 0.5)
    return {
        "makespan_s": None if makespan is None else round(makespan, 2),
        "critical_path_s": critical,
        "overhead_s": None if makespan is None else round(makespan - critical, 2),
        "run_duration_s": stats.summary(per_run, digits=2),
        "median_run_overhead_s": None if median_run is None else round(median_run - critical, 2),
        "median_run_overhead_per_level_s": None
        if median_run is None
        else round((median_run - critical) / scenario.shape.depth, 3),
    }


def _writes(before: kube.Samples, after: kube.Samples, nodes: int) -> dict[str, Any]:
    by_resource = kube.api_writes(before, after)
    other = by_resource.pop("other", 0)
    total = sum(by_resource.values())
    return {
        "total": total,
        "per_node": round(total / nodes, 2),
        "by_resource": by_resource,
        "other_resources_total": other,
    }


# --------------------------------------------------------------------- through the operator


def _in_namespace(
    env: Env,
    scenario: Scenario,
    variant: str,
    measure: Callable[[Env, Scenario, str], dict[str, Any]],
) -> dict[str, Any]:
    """`measure` in a fresh namespace, deleted afterwards whatever happens."""
    namespace = f"kdag-bench-{scenario.key}-{variant}-{uuid.uuid4().hex[:6]}"
    kube.create_namespace(env.client, namespace)
    try:
        return measure(env, scenario, namespace)
    finally:
        try:
            if not kube.delete_namespace(env.client, namespace, wait=env.wait_cleanup):
                logger.warning("namespace %s still terminating", namespace)
        except Exception:  # never lose a measurement to its cleanup
            logger.exception("could not delete namespace %s", namespace)


def run_operator(env: Env, scenario: Scenario) -> dict[str, Any]:
    return _in_namespace(env, scenario, "op", _run_operator)


def _run_operator(env: Env, scenario: Scenario, namespace: str) -> dict[str, Any]:
    custom = kubernetes.client.CustomObjectsApi(env.client)
    workflow = f"bench-{scenario.key}"
    custom.create_namespaced_custom_object(
        "kdag.dev", "v1alpha1", namespace, "workflows",
        workflow_manifest(workflow, scenario.shape, env.node_group),
    )  # fmt: skip
    if scenario.background is not None:
        custom.create_namespaced_custom_object(
            "kdag.dev", "v1alpha1", namespace, "workflows",
            workflow_manifest(f"{workflow}-bg", scenario.background, env.node_group),
        )  # fmt: skip
    names = [f"{scenario.key}-{i:03d}" for i in range(scenario.runs)]
    background = [BACKGROUND_RUN] if scenario.background is not None else []
    log_path = env.log_dir / f"{scenario.key}-operator.log"
    with (
        JobRecorder(env.client, namespace) as jobs,
        JobRecorder(env.client, namespace, kind="pods") as pods,
        RunRecorder(env.client, namespace) as runs,
        OperatorUnderTest(
            env.kubeconfig,
            namespace,
            log_path,
            env.log_dir / f"{scenario.key}-operator.pstat" if env.profile else None,
        ) as operator,
    ):
        op_before, api_before = kube.http_samples(operator.metrics_url), kube.apiserver_samples()
        cpu_before, cp_before = (
            operator.stats().cpu_seconds,
            kube.control_plane_cpu(env.cluster_dir),
        )
        created: dict[str, float] = {}

        def create(name: str) -> Callable[[], None]:
            def call() -> None:
                custom.create_namespaced_custom_object(
                    "kdag.dev", "v1alpha1", namespace, "workflowruns", run_manifest(workflow, name)
                )
                created[name] = time.time()

            return call

        logger.info("%s: creating %d runs in %s", scenario.key, len(names), namespace)
        started = time.time()
        for name in background:  # first: its pass is under way when the measured runs come
            custom.create_namespaced_custom_object(
                "kdag.dev", "v1alpha1", namespace, "workflowruns",
                run_manifest(f"{workflow}-bg", name),
            )  # fmt: skip
        _parallel([create(n) for n in names])
        finished = runs.wait_all(
            len(names) + len(background), scenario.timeout_seconds, operator.alive
        )
        ended = time.time()
        op_after, api_after = kube.http_samples(operator.metrics_url), kube.apiserver_samples()
        cp_after = kube.control_plane_cpu(env.cluster_dir)
        proc = operator.stats()
        sizes = _sizes(env, namespace, names[0])
    seen_runs = {r.name: r for r in runs.snapshot()}
    all_jobs, all_pods = jobs.snapshot(), pods.snapshot()
    phases = {r.phase for r in seen_runs.values()}
    nodes = scenario.nodes

    measured = set(names)

    def identify(job: JobSeen) -> tuple[str, str] | None:
        """The measured runs' Jobs (a background run's are load, not measured)."""
        run, instance = job.labels.get(RUN_LABEL), job.annotations.get(INSTANCE)
        return (run, instance) if run in measured and instance else None

    attempts = {(j.labels.get(RUN_LABEL), j.annotations.get(INSTANCE)) for j in all_jobs}
    latency_buckets = stats.histogram_delta(op_before, op_after, "kdag_scheduling_latency_seconds")
    observed = stats.observed_latencies(all_jobs, scenario.shape, identify)
    # kdag acts on a dependency's pod ending, before its Job is marked: measured from there.
    from_pods = stats.observed_latencies(all_jobs, scenario.shape, identify, all_pods)
    annotated = stats.annotation_latencies(
        [j for j in all_jobs if j.labels.get(RUN_LABEL) in measured], READY_AT
    )
    starts = [
        min(j.added_at for j in all_jobs if j.labels.get(RUN_LABEL) == name) - created[name]
        for name in names
        if name in created and any(j.labels.get(RUN_LABEL) == name for j in all_jobs)
    ]
    op_requests: dict[str, int] = {}
    for labels, grown in kube.delta(op_before, op_after, "kdag_kube_requests_total"):
        key = f"{labels['resource']} {labels['verb']}"
        op_requests[key] = op_requests.get(key, 0) + round(grown)
    op_writes = {
        k: v for k, v in op_requests.items() if k.split()[-1] in ("create", "patch", "delete")
    }
    reconciles = stats.histogram_delta(op_before, op_after, "kdag_reconcile_duration_seconds")
    return {
        "namespace": namespace,
        "completed": finished,
        "run_phases": sorted(p or "None" for p in phases),
        "runs_succeeded": sum(
            1 for r in seen_runs.values() if r.name in measured and r.phase == "Succeeded"
        ),
        "background_phases": sorted(
            seen_runs[n].phase or "None" if n in seen_runs else "not seen" for n in background
        ),
        "jobs": len(all_jobs),
        "duplicate_jobs": len(all_jobs) - len(attempts),
        # Watches that had to relist (410 Gone): the affected first-seen times are late.
        "watch_relists": jobs.relists + runs.relists,
        "wall_s": round(ended - started, 2),
        "timing": _timing(
            started,
            {
                n: (created.get(n, started), seen_runs[n].done_at if n in seen_runs else None)
                for n in names
            },
            scenario,
        ),
        "scheduling_latency": {
            "histogram": stats.histogram_summary(latency_buckets),
            "ready_at_to_creation_timestamp_ms": stats.ms_summary(
                annotated["ready_at_to_creation_timestamp"]
            ),
            "ready_at_to_job_seen_ms": stats.ms_summary(annotated["ready_at_to_job_seen"]),
            "dependency_done_to_job_seen_ms": stats.ms_summary(
                observed["dependency_done_to_job_seen"]
            ),
            "dependency_pod_done_to_job_seen_ms": stats.ms_summary(
                from_pods["dependency_done_to_job_seen"]
            ),
            "run_created_to_first_job_seen_ms": stats.ms_summary(starts),
        },
        "execution_overhead_ms": stats.ms_summary(
            stats.execution_overheads(all_jobs, scenario.shape)
        ),
        "api_writes": _writes(api_before, api_after, nodes),
        "operator_writes": {
            "total": sum(op_writes.values()),
            "per_node": round(sum(op_writes.values()) / nodes, 2),
            "by_resource": dict(sorted(op_writes.items(), key=lambda kv: -kv[1])),
            # Reads too (gets and lists): each is API server work on the hot path.
            "all_requests": dict(sorted(op_requests.items(), key=lambda kv: -kv[1])),
        },
        "operator": {
            "rss_peak_mib": round(proc.rss_peak_bytes / 2**20, 1),
            "rss_end_mib": round(proc.rss_bytes / 2**20, 1),
            "cpu_s": round(proc.cpu_seconds - cpu_before, 2),
            "cpu_ms_per_node": round((proc.cpu_seconds - cpu_before) * 1000 / nodes, 2),
            "reconciles": int(reconciles[-1][1]) if reconciles else 0,
            "log": str(log_path),
        },
        "run_object": {
            **sizes,
            "largest_seen_compact_json_bytes": max(
                (r.max_bytes for r in seen_runs.values()), default=0
            ),
        },
        "control_plane_cpu_s": kube.cpu_delta(cp_before, cp_after),
    }


def _sizes(env: Env, namespace: str, run: str) -> dict[str, int | None]:
    try:
        kubectl_bytes: int | None = kube.kubectl_json_bytes("workflowrun", run, "-n", namespace)
    except Exception:  # the size is a measurement, not a reason to lose the others
        logger.exception("kubectl get workflowrun %s failed", run)
        kubectl_bytes = None
    return {
        "run": run,  # type: ignore[dict-item]
        "kubectl_json_bytes": kubectl_bytes,
        "etcd_value_bytes": kube.etcd_value_bytes(
            kube.etcd_url(env.cluster_dir), f"/registry/kdag.dev/workflowruns/{namespace}/{run}"
        ),
    }


# --------------------------------------------------------------------- the floor


FloorKind = Literal["jobs", "pods"]


class FloorCreator:
    """Creates each Job (the Job floor) or bare pod (the pod floor, what Argo Workflows
    runs) the moment its dependencies are seen finished: kdag's job without kdag (no status,
    no planning, no Events), so what is left is the cluster's own cost."""

    def __init__(
        self,
        env: Env,
        scenario: Scenario,
        namespace: str,
        kind: FloorKind = "jobs",
        *,
        background: bool = False,
    ) -> None:
        self._env = env
        self._namespace = namespace
        self._kind = kind
        self._batch = kubernetes.client.BatchV1Api(env.client)
        self._core = kubernetes.client.CoreV1Api(env.client)
        self._pool = ThreadPoolExecutor(max_workers=CREATE_THREADS)
        self._lock = threading.Lock()
        if background:
            assert scenario.background is not None
            shape = self._shape = scenario.background
            self.runs = [f"floor-{BACKGROUND_RUN}"]
        else:
            shape = self._shape = scenario.shape
            self.runs = [f"floor-{i:03d}" for i in range(scenario.runs)]
        # Per run: how many instances of each template are still unfinished.
        self._left = {
            run: {t.name: len(t.instances()) for t in shape.templates} for run in self.runs
        }
        self._dependents = {
            t.name: [u for u in shape.templates if t.name in u.deps] for t in shape.templates
        }
        self._templates = {t.name: t for t in shape.templates}
        self.ready_to_created: list[float] = []
        self.errors: list[str] = []
        self.total = shape.nodes * len(self.runs)
        self.finished = threading.Event()
        self._done = 0
        self.run_ends: dict[str, float] = {}

    def start(self) -> None:
        for run in self.runs:
            for t in self._shape.templates:
                if not t.deps:
                    self._create_all(run, t.name, None)

    def _create_all(self, run: str, template: str, ready: float | None) -> None:
        for instance in self._templates[template].instances():
            self._pool.submit(self._create, run, instance, ready)

    def _create(self, run: str, instance: str, ready: float | None) -> None:
        """Create one Job or pod; `ready` is when its dependencies were seen done (None: a
        root, not counted, like the roots the operator creates in a run's first pass)."""
        args = (self._namespace, run, instance, self._shape, self._env.node_group)
        try:
            if self._kind == "pods":
                manifest = floor_pod(*args)
                self._core.create_namespaced_pod(self._namespace, manifest)  # type: ignore[arg-type]
            else:
                manifest = floor_job(*args)
                self._batch.create_namespaced_job(self._namespace, manifest)  # type: ignore[arg-type]
        except ApiException as exc:
            self.errors.append(f"{manifest['metadata']['name']}: {exc.status} {exc.reason}")
            self.finished.set()
            return
        if ready is not None:
            with self._lock:
                self.ready_to_created.append(time.time() - ready)

    def on_done(self, job: JobSeen) -> None:
        """Called from the Job watch as soon as a Job is seen finished."""
        run, instance = (
            job.labels.get(FLOOR_RUN_LABEL),
            job.annotations.get(FLOOR_INSTANCE_ANNOTATION),
        )
        if not run or not instance or run not in self._left:
            return
        template = instance.split("[", 1)[0]
        ready_templates = []
        with self._lock:
            left = self._left[run]
            left[template] -= 1
            self._done += 1
            if left[template] == 0:
                for dependent in self._dependents[template]:
                    if all(left[d] == 0 for d in dependent.deps):
                        ready_templates.append(dependent.name)
            if all(v == 0 for v in left.values()):
                self.run_ends[run] = job.done_at or time.time()
            if self._done >= self.total:
                self.finished.set()
        for name in ready_templates:
            self._create_all(run, name, job.done_at or time.time())

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def run_floor(env: Env, scenario: Scenario, kind: FloorKind = "jobs") -> dict[str, Any]:
    variant = "floor" if kind == "jobs" else "podfloor"
    return _in_namespace(env, scenario, variant, partial(_run_floor, kind=kind))


def _run_floor(env: Env, scenario: Scenario, namespace: str, kind: FloorKind) -> dict[str, Any]:
    creator = FloorCreator(env, scenario, namespace, kind)
    # The background run as load on the floor too, by its own creator under its own name.
    loads = (
        [FloorCreator(env, scenario, namespace, kind, background=True)]
        if scenario.background is not None
        else []
    )

    def on_done(job: JobSeen) -> None:
        for each in (creator, *loads):
            each.on_done(job)

    with JobRecorder(env.client, namespace, on_done=on_done, kind=kind) as jobs:
        api_before, cp_before = kube.apiserver_samples(), kube.control_plane_cpu(env.cluster_dir)
        own_before = kube.proc_stats(os.getpid()).cpu_seconds
        logger.info("%s: %s floor, %d in %s", scenario.key, kind, scenario.nodes, namespace)
        started = time.time()
        for load in loads:
            load.start()
        creator.start()
        completed = creator.finished.wait(scenario.timeout_seconds) and not creator.errors
        completed = all(
            [completed]
            + [load.finished.wait(scenario.timeout_seconds) and not load.errors for load in loads]
        )
        ended = time.time()
        for each in (creator, *loads):
            each.close()
        api_after, cp_after = kube.apiserver_samples(), kube.control_plane_cpu(env.cluster_dir)
        own_cpu = kube.proc_stats(os.getpid()).cpu_seconds - own_before
    all_jobs = jobs.snapshot()

    measured = set(creator.runs)

    def identify(job: JobSeen) -> tuple[str, str] | None:
        run, instance = (
            job.labels.get(FLOOR_RUN_LABEL),
            job.annotations.get(FLOOR_INSTANCE_ANNOTATION),
        )
        return (run, instance) if run in measured and instance else None

    observed = stats.observed_latencies(all_jobs, scenario.shape, identify)
    return {
        "namespace": namespace,
        "completed": completed,
        "errors": [*creator.errors, *(e for load in loads for e in load.errors)][:10],
        "jobs": len(all_jobs),
        "failed_jobs": sum(1 for j in all_jobs if j.succeeded is False),
        "watch_relists": jobs.relists,
        "wall_s": round(ended - started, 2),
        "timing": _timing(
            started, {r: (started, creator.run_ends.get(r)) for r in creator.runs}, scenario
        ),
        "scheduling_latency": {
            "ready_to_create_returned_ms": stats.ms_summary(creator.ready_to_created),
            "dependency_done_to_job_seen_ms": stats.ms_summary(
                observed["dependency_done_to_job_seen"]
            ),
        },
        "execution_overhead_ms": stats.ms_summary(
            stats.execution_overheads(all_jobs, scenario.shape)
        ),
        "api_writes": _writes(api_before, api_after, scenario.nodes),
        # The harness process: the creator plus its Job watch (the operator's comparable cost).
        "creator_cpu_s": round(own_cpu, 2),
        "control_plane_cpu_s": kube.cpu_delta(cp_before, cp_after),
    }
