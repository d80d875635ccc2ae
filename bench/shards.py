"""`python -m bench.shards`: the same batch of runs through 1, then 2 (or more) shard replicas.

    python -m bench.shards --runs 50 --shards 1,2

Each configuration gets a fresh namespace and N `kdag-operator --shards` processes on it (the
Leases in that namespace, a 6 s lease renewed every 2 s); once every replica acts, knowing all
the others, the runs (the latency scenario's 10-node chain of 1 s steps) are created at once.
Reported per configuration: makespan, run duration and dependency-done -> Job-seen latency
(p50/p99, from the harness's own watch of pods and Jobs), each replica's share of the Job
creates, and the CPU seconds all replicas used together. No floor: this compares the operator
with itself. Results are printed and written as JSON to bench/results/shards.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import kubernetes
from tests.support.cluster import REPO_ROOT, current_kubeconfig, wait_for
from tests.support.operator import apply_crds

from bench import harness, kube, stats
from bench.shapes import run_manifest, scenarios, workflow_manifest
from bench.watch import JobRecorder, JobSeen, RunRecorder

logger = logging.getLogger("bench.shards")

LEASE, RENEW = 6, 2


def _shard_args(namespace: str, index: int) -> list[str]:
    return [
        "--shards=bench",
        f"--shard-namespace={namespace}",
        f"--shard-identity=op-{index}",
        f"--shard-lease-seconds={LEASE}",
        f"--shard-renew-seconds={RENEW}",
    ]


def _acting(log: Path, count: int) -> bool:
    members = ", ".join(f"op-{i}" for i in range(count))
    return f"shards: acting (members: {members})" in log.read_text(errors="replace")


def measure(client: Any, kubeconfig: Path, group: str, count: int, runs: int) -> dict[str, Any]:
    scenario = scenarios(quick=False)["latency"]
    namespace = f"kdag-bench-shards{count}-{uuid.uuid4().hex[:6]}"
    kube.create_namespace(client, namespace)
    custom = kubernetes.client.CustomObjectsApi(client)
    log_dir = REPO_ROOT / "bench" / "results" / "logs"
    try:
        custom.create_namespaced_custom_object(
            "kdag.dev", "v1alpha1", namespace, "workflows",
            workflow_manifest("bench", scenario.shape, group),
        )  # fmt: skip
        names = [f"run-{i:03d}" for i in range(runs)]
        operators = [
            harness.OperatorUnderTest(
                kubeconfig,
                namespace,
                log_dir / f"shards{count}-op{i}.log",
                extra_args=_shard_args(namespace, i),
            )
            for i in range(count)
        ]
        with (
            JobRecorder(client, namespace) as jobs,
            JobRecorder(client, namespace, kind="pods") as pods,
            RunRecorder(client, namespace) as recorder,
        ):
            for op in operators:
                op.__enter__()
            try:
                wait_for(
                    lambda: all(_acting(op.log_path, count) for op in operators),
                    timeout=60,
                    what="every replica to act",
                )
                cpu_before = [op.stats().cpu_seconds for op in operators]
                before = [kube.http_samples(op.metrics_url) for op in operators]
                started = time.time()

                def create(name: str) -> None:
                    custom.create_namespaced_custom_object(
                        "kdag.dev",
                        "v1alpha1",
                        namespace,
                        "workflowruns",
                        run_manifest("bench", name),
                    )

                harness._parallel([lambda n=n: create(n) for n in names])  # type: ignore[misc]
                done = recorder.wait_all(runs, scenario.timeout_seconds, lambda: True)
                ended = time.time()
                cpu = sum(
                    op.stats().cpu_seconds - c for op, c in zip(operators, cpu_before, strict=True)
                )
                after = [kube.http_samples(op.metrics_url) for op in operators]
            finally:
                for op in operators:
                    op.__exit__(None, None, None)
            seen = recorder.snapshot()
            all_jobs, all_pods = jobs.snapshot(), pods.snapshot()

        def identify(job: JobSeen) -> tuple[str, str] | None:
            run, instance = job.labels.get("kdag.dev/run"), job.annotations.get(harness.INSTANCE)
            return (run, instance) if run and instance else None

        latency = stats.observed_latencies(all_jobs, scenario.shape, identify, all_pods)
        durations = [r.done_at - started for r in seen if r.done_at is not None]
        shares = []
        for b, a in zip(before, after, strict=True):
            grown = kube.delta(b, a, "kdag_kube_requests_total")
            shares.append(
                round(sum(v for labels, v in grown if labels.get("verb") == "create"
                          and labels.get("resource") == "jobs"))
            )  # fmt: skip
        return {
            "replicas": count,
            "runs": runs,
            "nodes": runs * 10,
            "completed": done,
            "makespan_s": round(ended - started, 2),
            "critical_path_s": scenario.shape.critical_path_seconds,
            "run_done_after_start_s": stats.summary(durations, digits=2),
            "dependency_pod_done_to_job_seen_ms": stats.ms_summary(
                latency["dependency_done_to_job_seen"]
            ),
            "job_creates_per_replica": shares,
            "duplicate_jobs": len(all_jobs) - len({identify(j) for j in all_jobs}),
            "operator_cpu_s_total": round(cpu, 2),
            "load_average_1m": os.getloadavg()[0],
        }
    finally:
        kube.delete_namespace(client, namespace, wait=True)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    parser = argparse.ArgumentParser(prog="python -m bench.shards", description=__doc__)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--shards", default="1,2", help="replica counts to compare")
    args = parser.parse_args(argv)
    kubeconfig = current_kubeconfig()
    apply_crds()
    client = kube.api_client(kubeconfig)
    group = uuid.uuid4().hex[:6]
    kube.create_nodes(group, 4, max(200, args.runs * 10 // 3))
    results = []
    try:
        for count in (int(c) for c in args.shards.split(",")):
            result = measure(client, kubeconfig, group, count, args.runs)
            logger.info("%s", json.dumps(result))
            results.append(result)
    finally:
        kube.delete_nodes(group)
    out = REPO_ROOT / "bench" / "results" / "shards.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
