"""Huge numbers are input errors: the run ends Invalid naming the field, never a pass that
fails again and again without writing a status."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import Harness, run_body

HUGE = 10**12


def _set(spec: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    for key in parents:
        spec = spec[int(key)] if isinstance(spec, list) else spec.setdefault(key, {})
    spec[last] = value


# Every number a workflow has, with the path its message names.
FIELDS = [
    "timeoutSeconds",
    "ttlSecondsAfterFinished",
    "parallelism",
    "defaults.timeoutSeconds",
    "defaults.retry.limit",
    "defaults.retry.backoffSeconds",
    "defaults.retry.maxBackoffSeconds",
    "defaults.retry.factor",
    "nodes.0.timeoutSeconds",
    "nodes.0.retry.backoffSeconds",
    "nodes.1.approval.timeoutSeconds",
    "schedule.historyLimit.succeeded",
    "schedule.historyLimit.failed",
]


def _named(path: str) -> str:
    """`nodes.1.approval.timeoutSeconds` as messages write it: `nodes[1].approval...`."""
    parts = path.split(".")
    return ".".join(parts).replace(".0.", "[0].").replace(".1.", "[1].")


def _workflow(path: str) -> dict[str, Any]:
    nodes = [{"name": "a"}, {"name": "gate", "dependsOn": ["a"], "approval": {}}]
    spec: dict[str, Any] = {"defaults": {"image": "busybox:1.36"}, "nodes": nodes}
    if path.startswith("schedule"):
        spec["schedule"] = {"cron": "0 2 * * *"}
    _set(spec, path, HUGE)
    return spec


@pytest.mark.parametrize("path", FIELDS)
def test_a_huge_number_in_an_inline_workflow_makes_the_run_invalid(h: Harness, path: str) -> None:
    body = run_body()
    body["spec"]["workflow"] = _workflow(path)
    key = h.create_run(body)
    h.reconcile_safely(key)
    assert h.metrics.reconcile_errors._value.get() == 0
    status = h.status(key)
    assert status["phase"] == "Invalid"
    assert f"spec.workflow.{_named(path)}" in status["message"]
    assert "less than or equal to" in status["message"]


@pytest.mark.parametrize("path", ["timeoutSeconds", "defaults.retry.maxBackoffSeconds"])
def test_a_huge_number_in_a_referenced_workflow_stored_before_the_bounds_makes_the_run_invalid(
    h: Harness, path: str
) -> None:
    # The API server does not validate stored objects again when the CRD gains a maximum.
    h.kube.workflows[("ns", "etl")] = {"spec": _workflow(path)}
    key = h.create_run({**run_body(), "spec": {"workflowRef": {"name": "etl"}}})
    h.reconcile_safely(key)
    assert h.metrics.reconcile_errors._value.get() == 0
    status = h.status(key)
    assert status["phase"] == "Invalid"
    assert f'Workflow "etl" is not valid: spec.{_named(path)}' in status["message"]
