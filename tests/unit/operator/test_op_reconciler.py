from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from conftest import Harness, run_body, status_error

from kdag.engine.timeutil import parse_iso
from kdag.operator import reconciler as reconciler_module


def calls(h: Harness, verb: str) -> list[tuple[str, ...]]:
    return [c for c in h.kube.calls if c[0] == verb]


def test_first_pass_creates_the_job_and_records_status(h: Harness) -> None:
    key = h.create_run(run_body())
    h.reconcile(key)
    assert calls(h, "list_jobs") == []  # a new run has no Jobs to list
    assert calls(h, "create_job") == [("create_job", h.job_of(key, "a"))]
    status = h.status(key)
    assert status["phase"] == "Running"
    assert status["nodes"]["a"]["phase"] == "Running"
    assert status["nodes"]["a"]["job"] == h.job_of(key, "a")
    assert status["workflow"]["nodes"][0]["name"] == "a"
    job = h.kube.jobs[("ns", h.job_of(key, "a"))]
    assert job["metadata"]["ownerReferences"][0]["uid"] == "uid-r1"
    assert h.metrics.runs_started._value.get() == 1


def test_a_started_run_found_at_start_up_lists_its_jobs_and_pods_first(h: Harness) -> None:
    key = h.create_run(run_body())
    h.reconcile(key)
    h.restart()
    h.sync_from_api()
    h.cache.remove_job(h.kube.jobs[("ns", h.job_of(key, "a"))])  # the Job watch has not caught up
    h.kube.calls.clear()
    h.reconcile(key)
    assert calls(h, "list_jobs") == [("list_jobs", "kdag.dev/run=r1")]
    assert calls(h, "list_pods") == [("list_pods", "kdag.dev/run=r1")]
    assert h.status(key)["nodes"]["a"]["phase"] == "Running"  # not taken for deleted


def test_reconciling_again_changes_nothing(h: Harness) -> None:
    key = h.create_run(run_body())
    h.reconcile(key)
    h.sync_from_api()
    before = list(h.kube.calls)
    h.reconcile(key)
    assert h.kube.calls == before  # no create, no status patch, no list


def test_finished_job_gives_a_minimal_patch_with_outputs(h: Harness) -> None:
    key = h.create_run(run_body(nodes=[{"name": "a"}, {"name": "b", "dependsOn": ["a"]}]))
    h.reconcile(key)
    h.kube.finish_job("ns", h.job_of(key, "a"), message='{"rows": "12"}')
    h.sync_from_api()  # the Job event arrived, the pod event not yet
    h.reconcile(key)
    # The pod result was not in the cache: its pods were listed once instead of guessing.
    assert ("list_pods", f"batch.kubernetes.io/job-name={h.job_of(key, 'a')}") in h.kube.calls
    patch = h.kube.status_patches[-1]["status"]
    assert patch["nodes"]["a"]["phase"] == "Succeeded"
    assert patch["nodes"]["a"]["outputs"] == {"rows": "12"}
    assert patch["nodes"]["b"]["phase"] == "Running"
    assert "workflow" not in patch  # the snapshot is written once, never again
    assert ("create_job", h.job_of(key, "b")) in h.kube.calls


def test_create_answered_already_exists_adopts_the_job(h: Harness) -> None:
    key = h.create_run(run_body())
    h.reconcile(key)
    # A restart: the status write was lost, the Job was made. The new process's cache
    # has the run (primed by a list that raced the creation) but not the Job.
    h.kube.runs[key].pop("status")
    h.kube.touch(key)
    h.restart()
    h.sync_from_api()
    h.cache.remove_job(h.kube.jobs[("ns", h.job_of(key, "a"))])
    h.cache.mark_primed(key)
    h.kube.calls.clear()
    h.reconcile(key)
    assert calls(h, "create_job") == [("create_job", h.job_of(key, "a"))]
    assert calls(h, "get_job") == [("get_job", h.job_of(key, "a"))]
    assert len(h.kube.jobs) == 1
    assert h.status(key)["nodes"]["a"]["phase"] == "Running"
    assert h.cache.job(key, h.job_of(key, "a")) is not None


def test_failed_status_patch_is_retried_with_backoff_without_a_second_job(h: Harness) -> None:
    key = h.create_run(run_body())
    h.kube.fail_next["patch_run_status"] = status_error(500, "InternalError")
    h.reconcile_safely(key)
    assert h.metrics.reconcile_errors._value.get() == 1
    assert h.due[key] == h.clock.now + timedelta(seconds=0.5)
    h.kube.fail_next["patch_run_status"] = status_error(503, "ServiceUnavailable")
    h.reconcile_safely(key)
    assert h.due[key] == h.clock.now + timedelta(seconds=1)  # backing off
    h.reconcile_safely(key)
    assert calls(h, "create_job") == [("create_job", h.job_of(key, "a"))]
    assert h.status(key)["nodes"]["a"]["phase"] == "Running"
    assert key not in h.due  # healthy again: no timer


def test_cancel_deletes_running_jobs_and_deleting_twice_is_fine(h: Harness) -> None:
    key = h.create_run(run_body(nodes=[{"name": "a"}, {"name": "b"}]))
    h.reconcile(key)
    job_a, job_b = h.job_of(key, "a"), h.job_of(key, "b")
    h.kube.jobs.pop(("ns", job_b))  # someone was faster: that Job is gone already
    h.kube.runs[key]["spec"]["cancel"] = True
    h.kube.runs[key]["metadata"]["generation"] = 2
    h.kube.runs[key]["metadata"]["resourceVersion"] = "999"
    h.cache.put_run(dict(h.kube.runs[key]))
    h.reconcile(key)
    assert sorted(calls(h, "delete_job")) == [("delete_job", job_a), ("delete_job", job_b)]
    status = h.status(key)
    assert status["phase"] == "Cancelled"
    assert {n["phase"] for n in status["nodes"].values()} == {"Cancelled"}
    assert not h.kube.jobs


def test_retry_schedules_a_timer_at_the_next_attempt(h: Harness) -> None:
    retry = {"limit": 1, "backoffSeconds": 30}
    key = h.create_run(run_body(nodes=[{"name": "a", "retry": retry}]))
    h.reconcile(key)
    h.kube.finish_job("ns", h.job_of(key, "a"), ok=False)
    h.sync_from_api()
    h.reconcile(key)
    node = h.status(key)["nodes"]["a"]
    assert node["phase"] == "Retrying"
    assert h.due[key] == parse_iso(node["nextAttemptAt"])
    assert h.metrics.node_retries._value.get() == 1
    h.clock.advance(31)
    h.reconcile(key)
    assert ("create_job", h.job_of(key, "a", 2)) in h.kube.calls


def test_missing_workflow_ends_the_run_invalid(h: Harness) -> None:
    body = run_body()
    body["spec"] = {"workflowRef": {"name": "nope"}}
    key = h.create_run(body)
    h.reconcile(key)
    status = h.status(key)
    assert status["phase"] == "Invalid"
    assert 'spec.workflowRef.name: Workflow "nope" not found in namespace "ns"' in status["message"]
    assert not calls(h, "create_job")


def test_workflow_ref_is_resolved_and_snapshotted(h: Harness) -> None:
    h.kube.workflows[("ns", "etl")] = {"spec": {"nodes": [{"name": "x", "image": "busybox"}]}}
    body = run_body()
    body["spec"] = {"workflowRef": {"name": "etl"}}
    key = h.create_run(body)
    h.reconcile(key)
    h.sync_from_api()
    assert h.status(key)["workflowName"] == "etl"
    assert ("create_job", h.job_of(key, "x")) in h.kube.calls
    h.kube.workflows.clear()  # deleting the Workflow does not affect the started run
    h.reconcile(key)
    assert calls(h, "get_workflow") == [("get_workflow", "etl")]
    assert h.status(key)["phase"] == "Running"


def test_schema_errors_name_the_field(h: Harness) -> None:
    key = h.create_run(run_body(nodes=[{"name": "a"}, {"name": "B_ad"}]))
    h.reconcile(key)
    status = h.status(key)
    assert status["phase"] == "Invalid"
    assert "spec.workflow.nodes[1].name: String should match pattern" in status["message"]


def test_a_job_the_api_refuses_fails_the_node_with_the_reason(h: Harness) -> None:
    key = h.create_run(run_body())
    h.kube.fail_next["create_job"] = status_error(422, "Invalid")
    h.kube.fail_next[
        "create_job"
    ].body = '{"reason": "Invalid", "message": "spec.template.spec.foo: unknown"}'
    h.reconcile(key)
    assert h.reconciler._queued == {key}  # another pass to let the planner see it
    h.reconcile(key)
    status = h.status(key)
    assert status["phase"] == "Failed"
    assert (
        "the Job could not be created: spec.template.spec.foo: unknown"
        in (status["nodes"]["a"]["message"])
    )


def test_finished_run_is_deleted_after_its_ttl(h: Harness) -> None:
    key = h.create_run(run_body(ttlSecondsAfterFinished=60))
    h.reconcile(key)
    h.kube.finish_job("ns", h.job_of(key, "a"))
    h.sync_from_api()
    h.reconcile(key)
    status = h.status(key)
    assert status["phase"] == "Succeeded"
    assert h.due[key] == parse_iso(status["finishedAt"]) + timedelta(seconds=60)
    h.sync_from_api()
    h.clock.now = h.due[key] + timedelta(seconds=1)
    h.reconcile(key)
    assert calls(h, "delete_run") == [("delete_run", "r1")]


def test_settled_runs_are_not_primed_or_planned(h: Harness) -> None:
    body = run_body()
    body["status"] = {"phase": "Succeeded", "finishedAt": "2026-11-22T01:00:00Z"}
    key = h.create_run(body)
    h.reconcile(key)
    assert h.kube.calls == []


def test_transitions_feed_the_metrics(h: Harness) -> None:
    key = h.create_run(run_body(nodes=[{"name": "a"}, {"name": "gate", "approval": {}}]))
    h.reconcile(key)
    assert h.metrics.approvals_pending._value.get() == 1
    h.kube.finish_job("ns", h.job_of(key, "a"))
    h.kube.runs[key]["metadata"]["annotations"] = {"approve.kdag.dev/gate": "alice"}
    h.kube.touch(key)
    h.sync_from_api()
    h.reconcile(key)
    assert h.status(key)["phase"] == "Succeeded"
    assert h.metrics.approvals_pending._value.get() == 0
    value = h.metrics.registry.get_sample_value
    assert value("kdag_runs_finished_total", {"phase": "Succeeded"}) == 1
    assert value("kdag_nodes_finished_total", {"phase": "Succeeded"}) == 2
    assert value("kdag_runs_active", {"phase": "Running"}) == 0


def test_metric_labels_never_name_runs_or_nodes(h: Harness) -> None:
    for i in range(5):
        key = h.create_run(run_body(name=f"run-{i}"))
        h.reconcile(key)
    allowed_keys = {"phase", "verb", "resource", "code", "le", "version", "python_version"}
    for family in h.metrics.registry.collect():
        if not family.name.startswith("kdag_"):
            continue  # the process and Python runtime collectors
        for sample in family.samples:
            assert set(sample.labels) <= allowed_keys, sample
            assert not any("run-" in str(v) for v in sample.labels.values()), sample


def _job_events(h: Harness) -> list[Any]:
    return [e for e in h.events.posted if e.reason == "Running"]


def test_events_are_posted_after_the_status_is_written(h: Harness) -> None:
    key = h.create_run(run_body())
    h.kube.fail_next["patch_run_status"] = status_error(500, "InternalError")
    h.reconcile_safely(key)
    assert _job_events(h) == []
    h.reconcile_safely(key)
    assert len(_job_events(h)) == 1


def test_fan_out_instances_get_their_pod_results_too(h: Harness) -> None:
    key = h.create_run(
        run_body(nodes=[{"name": "t", "forEach": ["eu", "us"]}, {"name": "z", "dependsOn": ["t"]}])
    )
    h.reconcile(key)
    jobs = sorted(name for _, name in h.kube.jobs)
    assert len(jobs) == 2
    for name in jobs:
        h.kube.finish_job("ns", name, message='{"n": "1"}')
    h.sync_from_api()
    h.reconcile(key)
    listed = [c for c in h.kube.calls if c[0] == "list_pods" and "job-name" in c[1]]
    assert len(listed) == 2
    nodes = h.status(key)["nodes"]
    assert nodes["t[eu]"]["outputs"] == {"n": "1"}
    assert nodes["z"]["phase"] == "Running"


def test_a_broken_spec_after_the_start_still_lets_the_run_be_cancelled(h: Harness) -> None:
    key = h.create_run(run_body())
    h.reconcile(key)
    h.sync_from_api()
    body = h.kube.runs[key]
    body["spec"] = {"workflow": {"nodes": "not a list"}, "cancel": True}
    body["metadata"]["generation"] = 2
    body["metadata"]["resourceVersion"] = "999"
    h.cache.put_run(dict(body))
    h.reconcile(key)
    assert h.status(key)["phase"] == "Cancelled"


def test_a_finished_run_lets_go_of_its_jobs_and_a_rerun_lists_them_again(h: Harness) -> None:
    key = h.create_run(run_body(nodes=[{"name": "a"}, {"name": "b", "retry": {"limit": 0}}]))
    h.reconcile(key)
    h.kube.finish_job("ns", h.job_of(key, "a"))
    h.kube.finish_job("ns", h.job_of(key, "b"), ok=False)
    h.sync_from_api()
    h.reconcile(key)
    assert h.status(key)["phase"] == "Failed"
    h.sync_from_api()
    h.reconcile(key)  # settled
    assert h.cache.job_names(key) == []
    assert not h.cache.is_primed(key)
    h.kube.runs[key]["metadata"]["annotations"] = {"kdag.dev/rerun": "1"}
    h.kube.runs[key]["metadata"]["resourceVersion"] = "9999"
    h.cache.put_run(dict(h.kube.runs[key]))
    h.kube.calls.clear()
    h.reconcile(key)
    assert [c[0] for c in h.kube.calls[:2]] == ["list_jobs", "list_pods"]
    assert ("create_job", h.job_of(key, "b", 2)) in h.kube.calls
    with pytest.raises(KeyError):
        h.job_of(key, "a", 2)  # a succeeded: it is not run again


def test_the_status_we_wrote_is_not_parsed_again(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    parsed: list[str] = []
    real = reconciler_module.parse_run

    def counting(body: dict[str, Any]) -> Any:
        parsed.append(body["metadata"]["resourceVersion"])
        return real(body)

    monkeypatch.setattr(reconciler_module, "parse_run", counting)
    key = h.create_run(run_body(nodes=[{"name": "a"}, {"name": "b", "dependsOn": ["a"]}]))
    h.reconcile(key)
    h.sync_from_api()  # the watch brings back our own write
    h.reconcile(key)
    assert len(parsed) == 1
    h.kube.finish_job("ns", h.job_of(key, "a"))
    h.sync_from_api()
    h.reconcile(key)
    assert len(parsed) == 1  # a Job event: the run object is still the one we wrote
    assert h.status(key)["nodes"]["b"]["phase"] == "Running"


def test_a_job_deleted_while_the_watch_was_down_fails_its_node_after_a_resync(h: Harness) -> None:
    key = h.create_run(run_body())
    h.reconcile(key)
    job = h.job_of(key, "a")
    del h.kube.jobs[("ns", job)]  # no DELETED event ever reaches the cache
    h.reconcile(key)
    assert h.status(key)["nodes"]["a"]["phase"] == "Running"  # the cache still shows it
    h.resync(key)
    h.reconcile(key)
    node = h.status(key)["nodes"]["a"]
    assert node["phase"] == "Failed"
    assert f"{job} was deleted before it finished" in node["message"]


def test_a_resync_keeps_jobs_newer_than_its_list(h: Harness) -> None:
    key = h.create_run(run_body())
    h.reconcile(key)
    version = h.cache.job(key, h.job_of(key, "a")).resource_version
    older_list = str(int(version) - 1)  # read before the Job was created
    assert h.cache.resync_jobs(key, [], older_list) == []
    assert h.cache.job(key, h.job_of(key, "a")) is not None
    assert h.cache.resync_jobs(key, [], version) == [h.job_of(key, "a")]
    assert h.cache.job(key, h.job_of(key, "a")) is None


def test_a_run_deleted_while_the_watch_was_down_is_forgotten_after_a_resync(
    h: Harness,
) -> None:
    key = h.create_run(run_body())
    h.reconcile(key)
    del h.kube.runs[key]
    h.resync(key)
    assert h.cache.run(key) is None
    assert calls(h, "get_run") == [("get_run", "r1")]


def test_a_run_pauses_after_a_status_write_for_twice_as_long_as_it_took(h: Harness) -> None:
    key = h.create_run(run_body(nodes=[{"name": "fan", "forEach": ["a", "b", "c"]}]))
    h.kube.patch_seconds = 0.05  # a busy API server
    reconciler = h.reconciler
    seen: list[tuple[bool, bool]] = []

    async def scenario() -> None:
        reconciler.start()
        reconciler.enqueue(key)
        while not calls(h, "patch_run_status"):
            await asyncio.sleep(0)
        while key in reconciler._busy or key in reconciler._queued:
            await asyncio.sleep(0)
        reconciler.enqueue(key)  # a Job event arrives during the pause: it waits
        seen.append((key in reconciler._cooldowns, key in reconciler._queued))
        while not reconciler.idle:
            await asyncio.sleep(0)
        seen.append((key in reconciler._cooldowns, key in reconciler._dirty))
        await reconciler.stop()

    asyncio.run(scenario())
    assert seen == [(True, False), (False, False)]  # paused, then planned


def test_the_pause_after_a_status_write_is_twice_the_writes_time(h: Harness) -> None:
    key = h.create_run(run_body(nodes=[{"name": "fan", "forEach": ["a", "b", "c"]}]))
    # A write long enough that the pass's own milliseconds cannot make up the difference
    # between once and twice its time.
    h.kube.patch_seconds = 0.2
    result = asyncio.run(h.reconciler.reconcile(key))
    assert calls(h, "patch_run_status")
    assert result.cooldown_seconds >= 2 * 0.2


def test_a_pass_that_writes_no_status_does_not_pause(h: Harness) -> None:
    key = h.create_run(run_body())
    h.reconcile(key)
    h.sync_from_api()
    h.kube.calls.clear()
    reconciler = h.reconciler

    async def scenario() -> None:
        reconciler.start()
        reconciler.enqueue(key)
        while key in reconciler._queued or key in reconciler._busy:
            await asyncio.sleep(0)
        assert key not in reconciler._cooldowns
        await reconciler.stop()

    asyncio.run(scenario())
    assert calls(h, "patch_run_status") == []


def test_a_pass_after_a_lost_status_answer_reads_the_run_before_planning(h: Harness) -> None:
    key = h.create_run(run_body(nodes=[{"name": "a", "retry": {"limit": 1}}]))
    written = h.kube.patch_run_status

    async def lands_then_times_out(namespace: str, name: str, patch: Any) -> dict[str, Any]:
        await written(namespace, name, patch)
        raise status_error(504, "Timeout")

    h.kube.patch_run_status = lands_then_times_out  # type: ignore[method-assign]
    h.reconcile_safely(key)  # creates r1-a-1; the status recording it lands, its answer is lost
    h.kube.patch_run_status = written  # type: ignore[method-assign]
    assert h.status(key)["nodes"]["a"]["job"] == h.job(key, "a", 1)
    # Deleted by hand; the watch shows the deletion before the run's own event.
    h.cache.remove_job(h.kube.jobs.pop(("ns", h.job(key, "a", 1))))
    h.reconcile_safely(key)
    assert calls(h, "create_job") == [("create_job", h.job(key, "a", 1))]  # never a second r1-a-1
    assert h.status(key)["nodes"]["a"]["phase"] == "Retrying"  # the deleted attempt failed
