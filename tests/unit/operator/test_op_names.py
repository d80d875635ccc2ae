"""Job names and labels on the operator's side: every run gets Jobs of its own, whatever
its name, and a Job in the way fails one attempt, never the whole run."""

from __future__ import annotations

import copy
from typing import Any

from conftest import LABEL_VALUE, Harness, Wakes, run_body, watch_handlers_app

from kdag.operator.cache import Cache
from kdag.operator.handlers import handle_job_event, handle_pod_event

LONG_NAME = "nightly-warehouse-refresh-for-the-emea-region-" + "x" * 24  # 70 characters


def test_runs_whose_names_join_alike_both_get_their_jobs(h: Harness) -> None:
    first = h.create_run(run_body(name="etl-daily", nodes=[{"name": "extract"}]))
    second = h.create_run(run_body(name="etl", nodes=[{"name": "daily-extract"}]))
    h.reconcile_safely(first)
    h.reconcile_safely(second)
    assert h.metrics.reconcile_errors._value.get() == 0
    assert h.status(first)["nodes"]["extract"]["phase"] == "Running"
    assert h.status(second)["nodes"]["daily-extract"]["phase"] == "Running"
    assert h.job_of(first, "extract") != h.job_of(second, "daily-extract")


def test_a_job_left_by_a_deleted_run_of_the_same_name_does_not_stall_the_new_run(
    h: Harness,
) -> None:
    key = h.create_run(run_body())
    h.reconcile(key)
    orphan = h.job_of(key, "a")
    # Deleted with --cascade=orphan and created again: the old Job stays.
    h.kube.runs.clear()
    h.restart()
    again = run_body()
    again["metadata"]["uid"] = "uid-r1-second"
    h.create_run(again)
    h.sync_from_api()
    h.reconcile_safely(key)
    assert h.metrics.reconcile_errors._value.get() == 0
    assert h.status(key)["nodes"]["a"]["phase"] == "Running"
    assert h.job_of(key, "a") != orphan
    assert ("ns", orphan) in h.kube.jobs  # not ours to touch


def _plant_a_foreign_job_before_creating(h: Harness, instance: str) -> None:
    """Someone makes a Job at the name the operator plans for `instance`, just before it."""
    create = h.kube.create_job

    async def create_job(namespace: str, manifest: Any) -> dict[str, Any]:
        meta = manifest["metadata"]
        if meta["annotations"]["kdag.dev/node-instance"] == instance:
            foreign = copy.deepcopy(dict(manifest))
            foreign["metadata"]["ownerReferences"] = [
                {"kind": "WorkflowRun", "name": "other", "uid": "uid-other", "controller": True}
            ]
            foreign["metadata"]["uid"] = "uid-foreign-job"
            h.kube.jobs.setdefault((namespace, meta["name"]), foreign)
        return await create(namespace, manifest)

    h.kube.create_job = create_job  # type: ignore[method-assign]


def test_a_foreign_job_at_the_planned_name_fails_only_that_attempt(h: Harness) -> None:
    key = h.create_run(run_body(nodes=[{"name": "a"}, {"name": "b"}], onFailure="continue"))
    _plant_a_foreign_job_before_creating(h, "a")
    h.reconcile_safely(key)
    h.sync_from_api()
    h.reconcile_safely(key)
    assert h.metrics.reconcile_errors._value.get() == 0
    nodes = h.status(key)["nodes"]
    assert nodes["a"]["phase"] == "Failed"
    assert "already exists and is not this run's" in nodes["a"]["message"]
    assert "WorkflowRun other" in nodes["a"]["message"]
    assert nodes["b"]["phase"] == "Running"
    h.kube.finish_job("ns", h.job_of(key, "b"))
    h.sync_from_api()
    h.reconcile_safely(key)
    assert h.status(key)["phase"] == "Failed"


def test_a_foreign_job_fails_an_attempt_that_is_then_retried(h: Harness) -> None:
    key = h.create_run(run_body(nodes=[{"name": "a", "retry": {"limit": 1, "backoffSeconds": 0}}]))
    _plant_a_foreign_job_before_creating(h, "a")
    h.reconcile_safely(key)
    h.sync_from_api()
    h.reconcile_safely(key)
    h.reconcile_safely(key)
    node = h.status(key)["nodes"]["a"]
    assert node["phase"] == "Running"
    assert node["attempt"] == 2


def _labels_are_valid(job: dict[str, Any]) -> bool:
    labels = job["metadata"]["labels"]
    return all(len(v) <= 63 and LABEL_VALUE.match(v) for v in labels.values())


def test_a_run_with_a_70_character_name_runs_to_success(h: Harness) -> None:
    key = h.create_run(
        run_body(name=LONG_NAME, nodes=[{"name": "a"}, {"name": "b", "dependsOn": ["a"]}])
    )
    h.reconcile(key)
    assert h.status(key)["nodes"]["a"]["phase"] == "Running"
    job = h.kube.jobs[("ns", h.job_of(key, "a"))]
    assert _labels_are_valid(job)
    assert job["metadata"]["annotations"]["kdag.dev/run-name"] == LONG_NAME
    h.kube.finish_job("ns", h.job_of(key, "a"))
    h.sync_from_api()
    h.reconcile(key)
    assert h.status(key)["nodes"]["b"]["phase"] == "Running"
    h.kube.finish_job("ns", h.job_of(key, "b"))
    h.sync_from_api()
    h.reconcile(key)
    assert h.status(key)["phase"] == "Succeeded"


def test_a_restarted_operator_finds_the_jobs_of_a_run_with_a_long_name(h: Harness) -> None:
    key = h.create_run(run_body(name=LONG_NAME))
    h.reconcile(key)
    h.restart()  # the Job watch has not shown the Job yet
    h.cache.put_run(copy.deepcopy(h.kube.runs[key]))
    h.reconcile(key)
    assert h.cache.job(key, h.job_of(key, "a")) is not None  # found by the label selector
    assert h.status(key)["nodes"]["a"]["phase"] == "Running"  # not taken for deleted


def test_job_and_pod_events_of_a_run_with_a_long_name_reach_that_run(h: Harness) -> None:
    key = h.create_run(run_body(name=LONG_NAME))
    h.reconcile(key)
    name = h.job_of(key, "a")
    h.kube.finish_job("ns", name)
    wakes = Wakes()
    app = watch_handlers_app(Cache(), wakes)
    handle_pod_event(app, "MODIFIED", copy.deepcopy(h.kube.pods[("ns", f"{name}-pod")]))
    handle_job_event(app, "MODIFIED", copy.deepcopy(h.kube.jobs[("ns", name)]))
    assert app.cache.pod_result("ns", name) is not None
    assert wakes.woken == [key]
    assert app.cache.job(key, name) is not None
