"""Job names and labels on the real API server: every run gets Jobs of its own, whatever its
name, and a Job in the way fails one node, never the whole run."""

from __future__ import annotations

import json

import pytest

from tests.support.cluster import job_of, kubectl
from tests.support.operator import (
    apply,
    create,
    jobs,
    run_of,
    wait_node,
    wait_phase,
    workflow,
)

pytestmark = pytest.mark.operator

LONG_NAME = "nightly-warehouse-refresh-for-the-emea-region-" + "x" * 24  # 70 characters


def test_a_run_with_a_70_character_name_succeeds(namespace: str) -> None:
    apply(namespace, workflow("long", [{"name": "a"}, {"name": "b", "dependsOn": ["a"]}]))
    run = create(namespace, run_of("long", name=LONG_NAME))
    assert len(run) == 70
    wait_phase(namespace, run, "Succeeded")
    found = jobs(namespace, run)  # by the shortened kdag.dev/run label
    assert {j["metadata"]["name"] for j in found} == {
        job_of(namespace, run, "a"),
        job_of(namespace, run, "b"),
    }
    for job in found:
        assert job["metadata"]["annotations"]["kdag.dev/run-name"] == run
        assert all(len(v) <= 63 for v in job["metadata"]["labels"].values())


def test_runs_whose_names_join_alike_both_succeed(namespace: str) -> None:
    apply(
        namespace,
        workflow("one", [{"name": "extract"}]),
        workflow("other", [{"name": "daily-extract"}]),
    )
    # Before, both planned the Job etl-daily-extract-1.
    first = create(namespace, run_of("one", name="etl-daily"))
    second = create(namespace, run_of("other", name="etl"))
    wait_phase(namespace, first, "Succeeded")
    wait_phase(namespace, second, "Succeeded")
    assert job_of(namespace, first, "extract") != job_of(namespace, second, "daily-extract")


def test_a_run_created_again_beside_its_orphaned_jobs_succeeds(namespace: str) -> None:
    apply(namespace, workflow("again", [{"name": "a"}]))
    create(namespace, run_of("again", name="again"))
    wait_phase(namespace, "again", "Succeeded")
    orphan = job_of(namespace, "again", "a")
    kubectl("delete", "workflowrun", "again", "-n", namespace, "--cascade=orphan", "--wait")
    create(namespace, run_of("again", name="again"))
    wait_phase(namespace, "again", "Succeeded")
    names = {j["metadata"]["name"] for j in jobs(namespace, "again")}
    assert names == {orphan, job_of(namespace, "again", "a")}


def test_a_foreign_job_at_a_planned_name_fails_only_that_node(namespace: str) -> None:
    nodes = [{"name": "a"}, {"name": "b"}]
    apply(namespace, workflow("taken", nodes, onFailure="continue"))
    run = create(namespace, run_of("taken", suspend=True))
    wait_phase(namespace, run, "Suspended")
    # Someone else's Job at the name kdag will give node a's first attempt.
    foreign = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": job_of(namespace, run, "a")},
        "spec": {
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "main", "image": "busybox:1.36"}],
                }
            }
        },
    }
    kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(foreign))
    kubectl(
        "patch", "workflowrun", run, "-n", namespace, "--type=merge",
        "-p", '{"spec": {"suspend": false}}',
    )  # fmt: skip
    failed = wait_node(namespace, run, "a", "Failed")
    assert "already exists and is not this run's" in failed["message"], failed
    done = wait_phase(namespace, run, "Failed")
    assert done["nodes"]["b"]["phase"] == "Succeeded"
