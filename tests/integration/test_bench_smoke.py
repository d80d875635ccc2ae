"""The benchmark harness at tiny scale, so that `make bench` cannot rot between real runs.

It asserts that every scenario ran to completion and wrote well-formed results and a table;
it never asserts on timings (benchmarks measure, tests do not).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bench.__main__ import main
from bench.report import BEGIN, END

from tests.support.cluster import Cluster

SCENARIOS = ("fanout", "chain", "concurrent", "latency", "loaded")


@pytest.fixture(scope="module")
def quick_results(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bench")
    code = main(["--quick", "--out", str(out), "--doc", str(out / "benchmarks.md")])
    assert code == 0, "a quick benchmark scenario did not complete; see the logs in the output"
    return out


@pytest.mark.parametrize("key", SCENARIOS)
def test_scenario_result_is_well_formed(quick_results: Path, key: str) -> None:
    result = json.loads((quick_results / f"{key}.json").read_text())
    scenario, operator, floor = result["scenario"], result["operator"], result["floor"]
    pod_floor = result["pod_floor"]
    assert scenario["quick"] is True
    assert operator["completed"] is True
    assert operator["runs_succeeded"] == scenario["runs"]
    # One Job per node, none created twice.
    assert operator["jobs"] == scenario["nodes"]
    assert operator["duplicate_jobs"] == 0
    assert floor["completed"] is True
    assert floor["jobs"] == scenario["nodes"]
    assert floor["failed_jobs"] == 0
    # The pod floor runs the same shape as bare pods (its "jobs" are pods).
    assert pod_floor["completed"] is True
    assert pod_floor["jobs"] == scenario["nodes"]
    assert pod_floor["failed_jobs"] == 0
    for part in (operator, floor, pod_floor):
        assert part["timing"]["makespan_s"] > 0
        assert part["api_writes"]["total"] > 0
    latency = operator["scheduling_latency"]
    assert latency["histogram"]["count"] == scenario["nodes"]  # a background run's Jobs too
    assert latency["dependency_done_to_job_seen_ms"]["count"] > 0
    assert latency["dependency_pod_done_to_job_seen_ms"]["count"] > 0
    assert operator["operator_writes"]["by_resource"]["jobs create"] == scenario["nodes"]
    assert operator["operator"]["rss_peak_mib"] > 0
    assert operator["run_object"]["kubectl_json_bytes"] > 0
    for field in ("nproc", "memory_gib", "cpu_model", "kernel", "python", "kubernetes"):
        assert result["machine"][field]


def test_table_lists_every_scenario(quick_results: Path) -> None:
    text = (quick_results / "benchmarks.md").read_text()
    block = text.split(BEGIN, 1)[1].split(END, 1)[0]
    assert "`make bench" in block  # the command of every result
    for key in SCENARIOS:
        assert f"**{key}**" in block
