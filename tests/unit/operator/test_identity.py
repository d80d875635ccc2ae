"""The operator's own ServiceAccount: learned at start-up, and no run's pods may use it."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import kubernetes
import pytest
from conftest import Harness, run_body, status_error

from kdag.engine.model import ServiceAccountRef
from kdag.operator.identity import GuardedKubeClient, IdentityError, own_service_account
from kdag.operator.kube import KubeError
from kdag.operator.reconciler import Reconciler

OPERATOR = ServiceAccountRef("kdag-system", "kdag")


@pytest.mark.parametrize(
    ("username", "expected"),
    [
        ("system:serviceaccount:kdag-system:kdag", OPERATOR),
        ("system:serviceaccount:team-a:default", ServiceAccountRef("team-a", "default")),
        ("kwok-admin", None),
        ("system:admin", None),
        ("system:serviceaccount:kdag-system", None),
        ("system:serviceaccount::kdag", None),
        ("", None),
    ],
)
def test_only_a_service_account_user_names_an_account_to_protect(
    username: str, expected: ServiceAccountRef | None
) -> None:
    assert ServiceAccountRef.from_username(username) == expected


class Whoami:
    """Answers a SelfSubjectReview with `answers` in turn: a username, or an error to raise."""

    def __init__(self, *answers: str | KubeError) -> None:
        self.answers = list(answers)
        self.slept: list[float] = []

    async def username(self) -> str:
        answer = self.answers.pop(0)
        if isinstance(answer, KubeError):
            raise answer
        return answer

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)


def test_the_operator_learns_its_service_account_and_waits_out_an_unready_api() -> None:
    whoami = Whoami(
        KubeError(0, "MaxRetryError"),
        status_error(503, "ServiceUnavailable"),
        "system:serviceaccount:kdag-system:kdag",
    )
    assert asyncio.run(own_service_account(whoami, sleep=whoami.sleep)) == OPERATOR
    assert whoami.slept == [0.5, 1.0]


def test_an_operator_running_as_a_user_has_no_account_to_protect() -> None:
    assert asyncio.run(own_service_account(Whoami("kwok-admin"))) is None


def test_an_operator_that_may_not_ask_who_it_is_does_not_start() -> None:
    whoami = Whoami(status_error(403, "Forbidden"))
    with pytest.raises(IdentityError, match="system:basic-user"):
        asyncio.run(own_service_account(whoami, sleep=whoami.sleep))


# -- runs in the operator's namespace


@pytest.fixture
def guarded(h: Harness) -> Harness:
    """The harness's reconciler, told which ServiceAccount the operator runs as."""
    h.reconciler = Reconciler(
        h.kube,  # type: ignore[arg-type]
        h.cache,
        h.metrics,
        h.events,
        operator_account=OPERATOR,
        clock=h.clock,
        plan_in_thread=False,
    )
    return h


def _borrowing_run(namespace: str) -> dict[str, Any]:
    return run_body(
        namespace=namespace, nodes=[{"name": "a", "podTemplate": {"serviceAccountName": "kdag"}}]
    )


def test_run_naming_the_operators_service_account_is_invalid(guarded: Harness) -> None:
    key = guarded.create_run(_borrowing_run("kdag-system"))
    guarded.reconcile(key)
    status = guarded.status(key)
    assert status["phase"] == "Invalid"
    assert status["message"].startswith(
        "nodes[a].podTemplate.serviceAccountName: 'kdag' is the operator's own ServiceAccount "
        "(kdag-system/kdag)"
    )
    assert not [c for c in guarded.kube.calls if c[0] == "create_job"]


def test_a_referenced_workflow_borrowing_the_account_is_named_in_the_message(
    guarded: Harness,
) -> None:
    guarded.kube.workflows[("kdag-system", "borrow")] = {
        "spec": {
            "defaults": {"image": "busybox", "podTemplate": {"serviceAccountName": "kdag"}},
            "nodes": [{"name": "a"}],
        }
    }
    body = run_body(namespace="kdag-system")
    body["spec"] = {"workflowRef": {"name": "borrow"}}
    key = guarded.create_run(body)
    guarded.reconcile(key)
    status = guarded.status(key)
    assert status["phase"] == "Invalid"
    assert status["message"].startswith(
        "workflow borrow: defaults.podTemplate.serviceAccountName: 'kdag' is the operator's own"
    )


def test_an_account_of_the_same_name_in_another_namespace_is_not_the_operators(
    guarded: Harness,
) -> None:
    key = guarded.create_run(_borrowing_run("team-a"))
    guarded.reconcile(key)
    assert guarded.status(key)["phase"] == "Running"
    job = guarded.kube.jobs[("team-a", guarded.job_of(key, "a"))]
    assert job["spec"]["template"]["spec"]["serviceAccountName"] == "kdag"


# -- the last line: no Job with the operator's account is ever sent


def _job(account: str | None) -> dict[str, Any]:
    pod: dict[str, Any] = {"containers": [{"name": "main", "image": "busybox"}]}
    if account is not None:
        pod["serviceAccountName"] = account
    return {"metadata": {"name": "j"}, "spec": {"template": {"spec": pod}}}


def test_the_client_refuses_a_job_running_as_the_operator_without_asking_the_api() -> None:
    requests: list[tuple[str, str, str]] = []
    client = GuardedKubeClient(
        kubernetes.client.Configuration(), lambda *r: requests.append(r), workers=1
    )
    client.operator_account = ServiceAccountRef("kdag-system", "default")
    try:
        for account in ("default", None):
            with pytest.raises(KubeError) as refused:
                asyncio.run(client.create_job("kdag-system", _job(account)))
            assert refused.value.status == 403
            assert not refused.value.transient
            assert (
                "operator's own ServiceAccount (kdag-system/default)"
                in (json.loads(refused.value.body)["message"])
            )
        assert requests == []
    finally:
        asyncio.run(client.close())


def test_the_client_sends_jobs_running_as_other_accounts(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[tuple[str, Any]] = []

    async def request(
        self: Any, verb: str, resource: str, method: str, path: str, **kw: Any
    ) -> Any:
        sent.append((path, kw["body"]))
        return kw["body"]

    monkeypatch.setattr(GuardedKubeClient, "_request", request)
    client = GuardedKubeClient(kubernetes.client.Configuration(), lambda *r: None, workers=1)
    client.operator_account = OPERATOR
    try:
        asyncio.run(client.create_job("kdag-system", _job("loader")))
        asyncio.run(client.create_job("team-a", _job("kdag")))
        asyncio.run(client.create_job("kdag-system", _job(None)))
    finally:
        asyncio.run(client.close())
    assert [path for path, _ in sent] == [
        "/apis/batch/v1/namespaces/kdag-system/jobs",
        "/apis/batch/v1/namespaces/team-a/jobs",
        "/apis/batch/v1/namespaces/kdag-system/jobs",
    ]
