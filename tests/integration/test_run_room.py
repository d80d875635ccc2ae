"""Runs that meet the limits of their namespace or of the API server, on the real cluster:
a count/jobs.batch ResourceQuota smaller than a fan-out, and outputs beyond the run's output
budget (docs/semantics.md "Room")."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.support.cluster import kubectl, wait_for
from tests.support.operator import (
    apply,
    create,
    jobs,
    limit_jobs,
    run_of,
    sim,
    status,
    wait_phase,
    workflow,
)

pytestmark = pytest.mark.operator

FAN: list[dict[str, Any]] = [{"name": "fan", "forEach": ["a", "b", "c", "d"], **sim("1s")}]
INSTANCES = ["fan[a]", "fan[b]", "fan[c]", "fan[d]"]
# What the session operator allows by default (--max-run-output-bytes).
DEFAULT_OUTPUT_BUDGET = 256 * 1024


def _queued_for_quota(namespace: str, run: str) -> list[dict[str, Any]] | None:
    nodes = (status(namespace, run).get("nodes") or {}).values()
    found = [
        n for n in nodes if n["phase"] == "Queued" and "exceeded quota" in n.get("message", "")
    ]
    return found or None


def _count(namespace: str, run: str, phase: str) -> int:
    nodes = (status(namespace, run).get("nodes") or {}).values()
    return sum(1 for n in nodes if n["phase"] == phase)


def test_a_quota_bound_fan_out_completes_when_finished_jobs_are_deleted(namespace: str) -> None:
    limit_jobs(namespace, 2)
    apply(namespace, workflow("fan", FAN, jobRetentionPolicy="DeleteSucceeded"))
    run = create(namespace, run_of("fan"))
    done = wait_phase(namespace, run, "Succeeded")
    assert {done["nodes"][k]["phase"] for k in INSTANCES} == {"Succeeded"}
    assert {done["nodes"][k]["attempt"] for k in INSTANCES} == {1}  # refusals are not attempts
    # The last Jobs go once the finished run's status records them.
    wait_for(lambda: not jobs(namespace, run), timeout=60, what="the run's Jobs to be deleted")


def test_without_job_cleanup_a_quota_bound_fan_out_waits_queued_with_the_quota_message(
    namespace: str,
) -> None:
    limit_jobs(namespace, 2)
    apply(namespace, workflow("fan", FAN))
    run = create(namespace, run_of("fan"))
    queued = wait_for(
        lambda: _queued_for_quota(namespace, run), timeout=240, what="a node Queued for the quota"
    )
    assert queued[0]["reason"] == "JobRefused"
    assert "count/jobs.batch" in queued[0]["message"]
    assert status(namespace, run)["phase"] == "Running"  # the status is written all along
    # Two Jobs finish; nothing deletes them, so the other two nodes keep waiting.
    wait_for(
        lambda: _count(namespace, run, "Succeeded") == 2,
        timeout=240,
        what="the two Jobs the quota allows to finish",
    )
    assert len(_queued_for_quota(namespace, run) or []) == 2
    assert len(jobs(namespace, run)) == 2
    # Room again: the refused nodes are retried (on their backoff timer) and the run ends.
    kubectl("delete", "resourcequota", "jobs", "-n", namespace)
    done = wait_phase(namespace, run, "Succeeded")
    assert {done["nodes"][k]["attempt"] for k in INSTANCES} == {1}


def test_outputs_beyond_the_run_output_budget_fail_their_node_with_output_too_large(
    namespace: str,
) -> None:
    # 70 instances x ~3.9 KB of termination message: more than the default 256 KiB budget.
    blob = json.dumps({"blob": "x" * 3890})
    width = 70
    nodes = [{"name": "wide", "forEach": [str(i) for i in range(width)], **sim(message=blob)}]
    apply(namespace, workflow("wide", nodes))
    run = create(namespace, run_of("wide"))
    done = wait_phase(namespace, run, "Failed")
    entries = done["nodes"].values()
    kept = [n for n in entries if n.get("outputs")]
    too_large = [n for n in entries if n.get("reason") == "OutputTooLarge"]
    assert too_large and len(kept) + len(too_large) == width
    assert all(n["phase"] == "Failed" and "outputs" not in n for n in too_large)
    stored = sum(len(json.dumps(n["outputs"], separators=(",", ":"))) for n in kept)
    assert stored <= DEFAULT_OUTPUT_BUDGET
    assert "over its budget" in too_large[0]["message"]
