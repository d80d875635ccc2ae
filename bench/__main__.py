"""`python -m bench`: run the benchmark scenarios and record the results.

python -m bench                          # every scenario at full scale (make bench)
python -m bench --scenarios chain,latency
python -m bench --quick                  # tiny scale, results under bench/results/quick/
KDAG_BENCH_SCENARIOS=fanout python -m bench
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import os
import shlex
import signal
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from tests.support.cluster import REPO_ROOT, cluster_up, current_kubeconfig, default_kubeconfig
from tests.support.operator import apply_crds

from bench import harness, kube, report
from bench.shapes import scenarios

logger = logging.getLogger("bench")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--scenarios",
        default=os.environ.get("KDAG_BENCH_SCENARIOS", ""),
        help="comma-separated subset of fanout,chain,concurrent,latency (default: all); "
        "env KDAG_BENCH_SCENARIOS",
    )
    parser.add_argument("--quick", action="store_true", help="tiny scale, for smoke tests")
    parser.add_argument(
        "--runs", type=int, help="override the number of runs of every chosen scenario"
    )
    parser.add_argument("--no-floor", action="store_true", help="skip the no-operator floor")
    parser.add_argument(
        "--render-only",
        action="store_true",
        help="only rewrite the table from the JSON results already in the result directory",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="run the operator under yappi (a dev dependency); profiles next to the logs",
    )
    parser.add_argument("--out", type=Path, help="result directory (default bench/results[/quick])")
    parser.add_argument(
        "--doc",
        type=Path,
        help="markdown file to update (default docs/benchmarks.md; "
        "with --quick, <out>/benchmarks.md)",
    )
    return parser.parse_args(argv)


def other_operators() -> int:
    """kdag-operator processes not started by this harness (other engineers' tests)."""
    count = 0
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if any(a.endswith(b"kdag-operator") for a in args[:2]):
            count += 1
    return count


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    # A stopped benchmark still stops its operator and removes its namespaces and nodes.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    args = parse_args(sys.argv[1:] if argv is None else argv)
    available = scenarios(args.quick)
    if args.runs:
        available = {
            k: dataclasses.replace(
                v, runs=args.runs, title=f"{v.title}, run count set to {args.runs}"
            )
            for k, v in available.items()
        }
    chosen = [s.strip() for s in args.scenarios.split(",") if s.strip()] or list(available)
    unknown = [s for s in chosen if s not in available]
    if unknown:
        sys.exit(f"unknown scenario(s) {', '.join(unknown)}; choose from {', '.join(available)}")
    out = args.out or REPO_ROOT / "bench" / "results" / ("quick" if args.quick else "")
    doc = args.doc or (
        out / "benchmarks.md" if args.quick else REPO_ROOT / "docs" / "benchmarks.md"
    )
    if args.render_only:
        report.update_doc(doc, report.load_results(out))
        return 0
    command = "make bench" if not args.quick else "make bench BENCH_ARGS=--quick"
    if args.scenarios:
        command += f" SCENARIOS={args.scenarios}"
    if args.runs:
        command += f" (--runs {args.runs})"
    if args.no_floor:
        command += " (--no-floor)"
    if args.profile:
        command += " (--profile: the operator ran under yappi, slower)"

    kubeconfig = current_kubeconfig()
    if not os.environ.get("KUBECONFIG") or kubeconfig == default_kubeconfig():
        kubeconfig = cluster_up().kubeconfig
        os.environ["KUBECONFIG"] = str(kubeconfig)
    apply_crds()
    group = uuid.uuid4().hex[:6]
    env = harness.Env(
        client=kube.api_client(kubeconfig),
        kubeconfig=kubeconfig,
        cluster_dir=kube.cluster_dir(kubeconfig),
        node_group=group,
        log_dir=out / "logs",
        wait_cleanup=not args.quick,
        profile=args.profile,
    )
    # Pods of finished Jobs stay until their namespace goes, so size for the biggest scenario.
    most = max(available[k].nodes for k in chosen)
    node_count = 4
    pods = max(200, math.ceil(most * 1.25 / node_count))
    kube.create_nodes(group, node_count, pods)
    failed = False
    try:
        for key in chosen:
            scenario = available[key]
            logger.info("scenario %s: %s (%d nodes)", key, scenario.title, scenario.nodes)
            result: dict[str, Any] = {
                "schema": 1,
                "scenario": {
                    "key": key,
                    "title": scenario.title,
                    "runs": scenario.runs,
                    "nodes_per_run": scenario.shape.nodes,
                    "nodes": scenario.nodes,
                    "background_nodes": scenario.background.nodes if scenario.background else 0,
                    "depth": scenario.shape.depth,
                    "pod_duration_ms": scenario.shape.duration_ms,
                    "quick": args.quick,
                },
                "command": command,
                "argv": shlex.join(["python", "-m", "bench", *(argv or sys.argv[1:])]),
                "machine": report.machine(),
                "other_operators": other_operators(),
                "started_at": report.now_iso(),
            }
            started = time.monotonic()
            operator = harness.run_operator(env, scenario)
            result["operator"] = operator
            result["floor"] = result["pod_floor"] = None
            result["finished_at"] = report.now_iso()
            if not args.no_floor:
                # Recorded before the floor runs too: a long scenario stopped during its
                # floor keeps its operator figures.
                report.write_result(out, key, {**result, "floor_pending": True})
                report.update_doc(doc, report.load_results(out))
                result["floor"] = harness.run_floor(env, scenario)
                result["pod_floor"] = harness.run_floor(env, scenario, kind="pods")
                result["finished_at"] = report.now_iso()
            result["elapsed_s"] = round(time.monotonic() - started, 1)
            path = report.write_result(out, key, result)
            failed = failed or not operator["completed"]
            logger.info("scenario %s done in %.0fs: %s", key, result["elapsed_s"], path)
            report.update_doc(doc, report.load_results(out))
    finally:
        kube.delete_nodes(group)
    logger.info("results in %s, table in %s", out, doc)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
