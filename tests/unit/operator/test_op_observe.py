from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from kdag.engine.model import JobState
from kdag.engine.timeutil import parse_iso
from kdag.operator.observe import (
    awaiting_pods,
    observe_job,
    pod_job_name,
    pod_refusal,
    pod_result,
    pod_waiting,
    with_pod_result,
)


def job(conditions: list[dict[str, Any]] | None = None, **meta: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "r1-a-1",
            "namespace": "ns",
            "uid": "job-uid",
            "resourceVersion": "7",
            "labels": {"kdag.dev/run": "r1", "kdag.dev/attempt": "1"},
            "annotations": {"kdag.dev/node-instance": "a"},
            "ownerReferences": [{"kind": "WorkflowRun", "uid": "run-uid", "controller": True}],
            **meta,
        },
        "status": {"startTime": "2026-11-22T02:00:01Z", "conditions": conditions or []},
    }


def test_active_job() -> None:
    observed = observe_job(job())
    assert observed is not None
    assert (observed.namespace, observed.run, observed.owner_uid) == ("ns", "r1", "run-uid")
    o = observed.observation
    assert (o.name, o.instance, o.attempt, o.state) == ("r1-a-1", "a", 1, JobState.ACTIVE)
    assert o.started_at == datetime(2026, 11, 22, 2, 0, 1, tzinfo=UTC)
    assert not o.deleting


def test_the_run_is_read_from_the_annotation_which_holds_a_long_name_whole() -> None:
    long_name = "r" * 70
    body = job(
        labels={"kdag.dev/run": "r" * 54 + "-0123abcd", "kdag.dev/attempt": "1"},
        annotations={"kdag.dev/node-instance": "a", "kdag.dev/run-name": long_name},
    )
    observed = observe_job(body)
    assert observed is not None
    assert observed.run == long_name


def test_complete_job() -> None:
    body = job([{"type": "Complete", "status": "True"}])
    body["status"]["completionTime"] = "2026-11-22T02:00:09Z"
    observed = observe_job(body)
    assert observed is not None
    assert observed.observation.state is JobState.SUCCEEDED
    assert observed.observation.finished_at == datetime(2026, 11, 22, 2, 0, 9, tzinfo=UTC)


def test_failed_job_keeps_reason_and_message() -> None:
    condition = {
        "type": "Failed",
        "status": "True",
        "reason": "DeadlineExceeded",
        "message": "Job was active longer than specified deadline",
        "lastTransitionTime": "2026-11-22T02:00:30Z",
    }
    observed = observe_job(job([{"type": "FailureTarget", "status": "True"}, condition]))
    assert observed is not None
    o = observed.observation
    assert o.state is JobState.FAILED
    assert o.reason == "DeadlineExceeded"
    assert o.message == "Job was active longer than specified deadline"
    assert o.finished_at == datetime(2026, 11, 22, 2, 0, 30, tzinfo=UTC)


def test_condition_not_true_is_still_active() -> None:
    observed = observe_job(job([{"type": "Complete", "status": "False"}]))
    assert observed is not None
    assert observed.observation.state is JobState.ACTIVE


def test_deleting_job() -> None:
    observed = observe_job(job(deletionTimestamp="2026-11-22T02:01:00Z"))
    assert observed is not None
    assert observed.observation.deleting


def test_foreign_jobs_are_ignored() -> None:
    no_instance = job()
    no_instance["metadata"]["annotations"] = {}
    bad_attempt = job()
    bad_attempt["metadata"]["labels"]["kdag.dev/attempt"] = "one"
    assert observe_job(no_instance) is None
    assert observe_job(bad_attempt) is None
    assert observe_job({}) is None


NOW = "2026-11-22T02:00:04Z"


def pod(state: dict[str, Any], name: str = "main") -> dict[str, Any]:
    return {
        "metadata": {
            "labels": {"batch.kubernetes.io/job-name": "r1-a-1", "kdag.dev/run": "r1"},
            "ownerReferences": [{"kind": "Job", "uid": "job-uid", "controller": True}],
        },
        "status": {"containerStatuses": [{"name": name, "state": state}]},
    }


def test_pod_result_from_terminated_main_container() -> None:
    body = pod({"terminated": {"exitCode": 3, "message": '{"rows": "12"}'}})
    result = pod_result(body)
    assert result is not None
    assert (result.exit_code, result.termination_message, result.job_uid) == (
        3,
        '{"rows": "12"}',
        "job-uid",
    )
    assert pod_job_name(body) == "r1-a-1"


def test_pod_result_absent_while_running_or_for_other_containers() -> None:
    assert pod_result(pod({"running": {}})) is None
    assert pod_result(pod({"terminated": {"exitCode": 0}}, name="sidecar")) is None
    assert pod_result({}) is None


def test_legacy_job_name_label() -> None:
    assert pod_job_name({"metadata": {"labels": {"job-name": "j"}}}) == "j"
    assert pod_job_name({"metadata": {}}) is None


def test_with_pod_result_folds_in_exit_code_and_message() -> None:
    observed = observe_job(job([{"type": "Complete", "status": "True"}]))
    assert observed is not None
    result = pod_result(pod({"terminated": {"exitCode": 0, "message": "{}"}}))
    merged = with_pod_result(observed.observation, result)
    assert (merged.exit_code, merged.termination_message) == (0, "{}")
    assert with_pod_result(observed.observation, None) is observed.observation


POD_SECURITY_REFUSAL = (
    'Error creating: pods "r1-a-1-x7k2q" is forbidden: violates PodSecurity '
    '"restricted:latest": runAsNonRoot != true (pod or container "main" must set '
    "securityContext.runAsNonRoot=true)"
)


@pytest.mark.parametrize(
    ("status", "spec", "awaiting"),
    [
        ({"startTime": "t", "ready": 0, "terminating": 0}, {}, True),
        ({"startTime": "t", "uncountedTerminatedPods": {}}, {}, True),
        ({}, {}, False),  # the Job controller has not taken it up yet
        ({"startTime": "t", "active": 1, "ready": 0}, {}, False),
        ({"startTime": "t", "failed": 1}, {}, False),
        ({"startTime": "t", "uncountedTerminatedPods": {"succeeded": ["p"]}}, {}, False),
        ({"startTime": "t", "conditions": [{"type": "Failed", "status": "True"}]}, {}, False),
        ({"startTime": "t"}, {"suspend": True}, False),
    ],
)
def test_a_job_awaits_pods_when_taken_up_with_none_running_or_finished(
    status: dict[str, Any], spec: dict[str, Any], awaiting: bool
) -> None:
    body = {**job(), "status": status, "spec": spec}
    assert awaiting_pods(body) is awaiting
    observed = observe_job(body)
    assert observed is not None and observed.awaiting_pods is awaiting


@pytest.mark.parametrize(
    ("reason", "message", "refused"),
    [
        ("FailedCreate", POD_SECURITY_REFUSAL, True),
        (
            "FailedCreate",
            'Error creating: admission webhook "policy.example.com" denied the request: no',
            True,
        ),
        (
            "FailedCreate",
            'Error creating: pods "p" is forbidden: exceeded quota: q, requested: pods=1',
            False,
        ),
        (
            "FailedCreate",
            'Error creating: pods "p" is forbidden: error looking up service account ns/sa: '
            'serviceaccount "sa" not found',
            False,
        ),
        ("FailedCreate", "Error creating: Timeout: request did not complete", False),
        ("SuccessfulCreate", "Created pod: p", False),
    ],
)
def test_only_a_lasting_refusal_of_the_pod_counts(reason: str, message: str, refused: bool) -> None:
    found = pod_refusal({"reason": reason, "message": message})
    assert found == (message if refused else None)


@pytest.mark.parametrize(
    ("phase", "deleting", "decides"),
    [
        ("Succeeded", False, JobState.SUCCEEDED),
        ("Failed", False, JobState.FAILED),
        ("Running", False, None),  # another container still runs
        ("Failed", True, None),  # a Job deadline or an eviction: the Job's status says
        (None, False, None),
    ],
)
def test_a_pod_that_ended_by_itself_decides_its_attempt(
    phase: str | None, deleting: bool, decides: JobState | None
) -> None:
    body = pod({"terminated": {"exitCode": 137, "reason": "OOMKilled", "finishedAt": NOW}})
    if phase is not None:
        body["status"]["phase"] = phase
    if deleting:
        body["metadata"]["deletionTimestamp"] = NOW
    result = pod_result(body)
    assert result is not None
    assert result.pod_state is decides
    assert (result.reason, result.finished_at) == ("OOMKilled", parse_iso(NOW))


@pytest.mark.parametrize(
    ("state", "waiting"),
    [
        (
            {"waiting": {"reason": "ImagePullBackOff", "message": 'Back-off pulling image "x"'}},
            'ImagePullBackOff: Back-off pulling image "x"',
        ),
        ({"waiting": {"reason": "ErrImagePull"}}, "ErrImagePull"),
        # A registry's error page can be long: the node keeps its head, not the whole text.
        (
            {"waiting": {"reason": "ErrImagePull", "message": "x" * 5000}},
            "ErrImagePull: " + "x" * 286,
        ),
        ({"waiting": {"reason": ["not", "a", "string"]}}, None),
        ({"waiting": {"reason": "ContainerCreating"}}, None),  # the usual short wait
        ({"running": {}}, None),
        ({"terminated": {"exitCode": 0}}, None),
    ],
)
def test_a_container_that_cannot_start_says_why(state: dict[str, Any], waiting: str | None) -> None:
    assert pod_waiting(pod(state)) == waiting
    assert pod_waiting(pod(state, name="sidecar")) is None
