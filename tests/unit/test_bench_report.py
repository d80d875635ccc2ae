"""The benchmark table is made from scenario results only."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from bench.report import load_results, render


def test_other_measurements_beside_the_scenario_results_are_not_taken_for_scenarios(
    tmp_path: Path,
) -> None:
    (tmp_path / "chain.json").write_text(json.dumps({"scenario": {"key": "chain"}}))
    (tmp_path / "shards.json").write_text(json.dumps([{"replicas": 1}]))
    assert list(load_results(tmp_path)) == ["chain"]


def _result(key: str, **operator: Any) -> dict[str, Any]:
    """A scenario result with the figures the table's marks read."""
    nodes = 1000
    return {
        "scenario": {"key": key, "title": key, "nodes": nodes, "runs": 1},
        "machine": {
            "nproc": 2,
            "cpu_model": "cpu",
            "memory_gib": 1,
            "kernel": "k",
            "python": "3",
            "kubernetes": "v1",
            "kwok": "kwok",
            "load_average_start": [0.0, 0.0, 0.0],
        },
        "command": "make bench",
        "finished_at": "2026-12-02T00:00:00Z",
        "operator": {
            "completed": True,
            "runs_succeeded": 1,
            "timing": {"makespan_s": operator.get("makespan_s", 100.0)},
            "operator": {
                "cpu_s": operator.get("cpu_s", 4.0),
                "rss_peak_mib": operator.get("rss_mib", 100.0),
            },
            "operator_writes": {"per_node": operator.get("writes", 1.2)},
            "scheduling_latency": {
                "dependency_pod_done_to_job_seen_ms": {"p50": operator.get("p50", 20), "p99": 150}
            },
        },
        "floor": {"timing": {"makespan_s": 95.0}, "creator_cpu_s": 2.5},
        "pod_floor": {
            "timing": {"makespan_s": 80.0},
            "creator_cpu_s": 3.0,
            "scheduling_latency": {"dependency_done_to_job_seen_ms": {"p50": 10, "p99": 60}},
        },
    }


@pytest.mark.parametrize(
    ("key", "figures", "expected", "not_expected"),
    [
        ("fanout", {"makespan_s": 100.0}, "(1.05x ✅ / 1.25x)", None),
        ("fanout", {"makespan_s": 110.0}, "(1.16x ❌ / 1.38x)", None),
        # The chain's makespan target is against the pod floor.
        ("chain", {"makespan_s": 100.0}, "(1.05x / 1.25x ✅)", None),
        ("chain", {"makespan_s": 110.0}, "(1.16x / 1.38x ❌)", None),
        ("fanout", {"writes": 1.5}, "1.50 ✅", None),
        ("fanout", {"writes": 1.58}, "1.58 ❌", None),
        ("fanout", {"cpu_s": 5.0}, "(5.00 ms ✅; 2.50 ms / 3.00 ms)", None),
        ("fanout", {"cpu_s": 5.4}, "(5.40 ms ❌; 2.50 ms / 3.00 ms)", None),
        # +10 ms p50, +90 ms p99 over the pod floor: within +20 / +100.
        ("latency", {"p50": 20}, "20 ms / 150 ms (10 ms / 60 ms) ✅", None),
        ("latency", {"p50": 31}, "31 ms / 150 ms (10 ms / 60 ms) ❌", None),
        ("fanout", {"rss_mib": 149.0}, "149 MiB ✅", None),
        ("fanout", {"rss_mib": 152.0}, "152 MiB ❌", None),
        ("concurrent", {"rss_mib": 152.0}, "152 MiB ✅", None),
        ("chain", {"rss_mib": 152.0}, "152 MiB,", None),
        # Only the `latency` scenario has the latency target.
        ("fanout", {"p50": 31}, "31 ms / 150 ms (10 ms / 60 ms) |", "(10 ms / 60 ms) ❌"),
    ],
)
def test_the_table_marks_each_figure_against_its_spec_target(
    key: str, figures: dict[str, float], expected: str, not_expected: str | None
) -> None:
    table = render({key: _result(key, **figures)})
    assert expected in table
    if not_expected is not None:
        assert not_expected not in table
