"""The benchmark table is made from scenario results only."""

from __future__ import annotations

import json
from pathlib import Path

from bench.report import load_results


def test_other_measurements_beside_the_scenario_results_are_not_taken_for_scenarios(
    tmp_path: Path,
) -> None:
    (tmp_path / "chain.json").write_text(json.dumps({"scenario": {"key": "chain"}}))
    (tmp_path / "shards.json").write_text(json.dumps([{"replicas": 1}]))
    assert list(load_results(tmp_path)) == ["chain"]
