"""Replay one run through the operator's planning pass, offline, to see what a pass costs.

    python -m bench.plan_profile --width 5000 --batch 20 [--profile out.pstat]
    python -m bench.plan_profile --chain 500 --batch 1

No cluster: a run of the fan-out scenario's shape (root, forEach WIDTH, join), or of the
chain scenario's (CHAIN nodes one after another), is driven through
`kdag.operator.reconciler.decide` (plan, diff the status: the CPU work of one reconcile,
minus the API calls and the watch events), with BATCH of its running Jobs finishing between
passes, as when a busy run's Job events are merged into one pass. As the operator does, a
run is parsed once and then planned from the status its last pass wrote. Prints the pass
count, the CPU time per pass as the run grows, and the status patch sizes; with --profile,
a cProfile of all passes (sorted by own time, in OUT.txt).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.shapes import Shape, chain, fan, workflow_manifest
from kdag.engine.model import JobObservation, JobState, Observed
from kdag.operator.reconciler import decide
from kdag.operator.runs import parse_run
from kdag.operator.status_patch import apply_merge_patch


def run_body(shape: Shape) -> dict[str, Any]:
    workflow = workflow_manifest("replay", shape, "replay")["spec"]
    return {
        "apiVersion": "kdag.dev/v1alpha1",
        "kind": "WorkflowRun",
        "metadata": {"name": "replay", "namespace": "bench", "uid": "u-1", "generation": 1},
        "spec": {"workflow": workflow},
    }


def replay(shape: Shape, batch: int) -> list[dict[str, Any]]:
    """One entry per pass: its CPU, sizes and creates, and the status patch it wrote."""
    body = run_body(shape)
    run = parse_run(body)
    jobs: dict[str, JobObservation] = {}
    running: list[str] = []
    now = datetime(2026, 1, 1, tzinfo=UTC)
    passes = []
    while True:
        started = time.process_time()
        decision = decide(body, run, Observed(dict(jobs)), None, None, now, max_nodes=10_000)
        patch = decision.status_patch
        if patch:
            body = apply_merge_patch(body, {"status": patch})
            run = replace(run, status=decision.result.status)
        cpu = time.process_time() - started
        for action in decision.result.jobs_to_create:
            jobs[action.name] = JobObservation(
                action.name, action.instance, action.attempt, JobState.ACTIVE, started_at=now
            )
            running.append(action.name)
        passes.append(
            {
                "nodes": len((body.get("status") or {}).get("nodes") or {}),
                "cpu_ms": cpu * 1000,
                "patch_bytes": len(json.dumps(patch)),
                "object_bytes": len(json.dumps(body, separators=(",", ":"))),
                "creates": len(decision.result.jobs_to_create),
                "patch": patch,
            }
        )
        if (body["status"].get("phase") or "") in ("Succeeded", "Failed") or not (
            running or decision.result.jobs_to_create
        ):
            return passes
        now += timedelta(seconds=1)
        for name in running[:batch]:
            done = jobs[name]
            jobs[name] = JobObservation(
                name, done.instance, done.attempt, JobState.SUCCEEDED, exit_code=0,
                started_at=done.started_at, finished_at=now,
            )  # fmt: skip
        running = running[batch:]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.plan_profile", description=__doc__)
    parser.add_argument("--width", type=int, default=5000, help="a fan-out this wide")
    parser.add_argument("--chain", type=int, help="a chain this long, instead of a fan-out")
    parser.add_argument("--batch", type=int, default=20, help="Jobs finishing between passes")
    parser.add_argument("--profile", type=Path, help="write a cProfile here (and OUT.txt)")
    args = parser.parse_args(argv)
    profiler = cProfile.Profile() if args.profile else None
    if profiler:
        profiler.enable()
    shape = chain(args.chain, 1000) if args.chain else fan(args.width, 1000)
    passes = replay(shape, args.batch)
    if profiler and args.profile:
        profiler.disable()
        profiler.dump_stats(args.profile)
        with args.profile.with_suffix(".txt").open("w") as out:
            pstats.Stats(str(args.profile), stream=out).sort_stats("tottime").print_stats(30)
    total = sum(p["cpu_ms"] for p in passes)
    print(f"{len(passes)} passes, {total / 1000:.1f} s CPU, mean {total / len(passes):.1f} ms")
    step = max(1, len(passes) // 8)
    for p in passes[::step] + passes[-1:]:
        print(
            f"  nodes {p['nodes']:>5}  pass {p['cpu_ms']:7.1f} ms  patch {p['patch_bytes']:>7} B"
            f"  object {p['object_bytes']:>8} B  creates {p['creates']}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
