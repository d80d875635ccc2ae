"""get, list, delete and version, against a fake cluster (the integration tests run them
against the real one)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from kdag import __version__
from kdag.api import RUNS, WORKFLOWS
from kdag.cli import parser, resources
from kdag.cli.errors import UserError
from kdag.cli.output import RUN, WORKFLOW


def _obj(name: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "creationTimestamp": "2026-11-22T02:00:00Z"}}


def _not_found(plural: str, name: str) -> ApiException:
    body = {
        "kind": "Status",
        "reason": "NotFound",
        "message": f'{plural}.kdag.dev "{name}" not found',
    }
    return ApiException(status=404, reason="Not Found", body=json.dumps(body))


class FakeCluster:
    namespace = "prod"

    def __init__(self) -> None:
        self.objects = {RUNS: {"a": _obj("a"), "b": _obj("b")}, WORKFLOWS: {"etl": _obj("etl")}}
        self.deleted: list[tuple[str, str]] = []
        self.deployments: list[tuple[str, str]] | ApiException = [("kdag/kdag", "0.1.0")]

    def get(self, plural: str, name: str) -> dict[str, Any]:
        if name not in self.objects[plural]:
            raise _not_found(plural, name)
        return self.objects[plural][name]

    def list_objects(
        self, plural: str, all_namespaces: bool = False, selector: str | None = None
    ) -> list[dict[str, Any]]:
        return list(self.objects[plural].values())

    def delete(self, plural: str, name: str) -> None:
        self.get(plural, name)
        self.deleted.append((plural, name))
        del self.objects[plural][name]

    def server_version(self) -> str:
        return "v1.34.4"

    def operator_versions(self) -> list[tuple[str, str]]:
        if isinstance(self.deployments, ApiException):
            raise self.deployments
        return self.deployments


def _run(verb: Any, *argv: str, cluster: FakeCluster | None = None) -> int:
    return int(verb(cluster or FakeCluster(), parser.parse(list(argv))))


def test_get_by_name_prints_those_found_and_reports_the_missing_one(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert _run(resources.get, "get", "runs", "a", "nope", "b", "-o", "name") == 1
    out, err = capsys.readouterr()
    assert out == "workflowrun.kdag.dev/a\nworkflowrun.kdag.dev/b\n"
    assert err == 'Error from server (NotFound): workflowruns.kdag.dev "nope" not found\n'


def test_get_of_one_name_as_json_is_the_object(capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(resources.get, "get", "workflows", "etl", "-o", "json") == 0
    assert json.loads(capsys.readouterr().out) == _obj("etl")


def test_type_slash_name_form_mixes_kinds(capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(resources.get, "get", "workflowrun/a", "workflow.kdag.dev/etl", "-o", "name") == 0
    assert capsys.readouterr().out == "workflowrun.kdag.dev/a\nworkflow.kdag.dev/etl\n"


def test_list_is_get_runs(capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(resources.get, "list", "-o", "name") == 0
    assert capsys.readouterr().out == "workflowrun.kdag.dev/a\nworkflowrun.kdag.dev/b\n"


def test_an_empty_list_says_so_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    cluster = FakeCluster()
    cluster.objects[RUNS] = {}
    assert _run(resources.get, "get", "runs", cluster=cluster) == 0
    assert capsys.readouterr() == ("", "No resources found in prod namespace.\n")
    assert _run(resources.get, "get", "runs", "-o", "json", cluster=cluster) == 0
    assert json.loads(capsys.readouterr().out)["items"] == []


def test_an_unknown_type_or_a_selector_with_names_is_refused() -> None:
    with pytest.raises(UserError, match='resource type "pods"'):
        _run(resources.get, "get", "pods")
    with pytest.raises(UserError, match="name cannot be provided when a selector"):
        _run(resources.get, "get", "runs", "a", "-l", "x=y")


def test_delete_deletes_each_and_reports_the_missing(capsys: pytest.CaptureFixture[str]) -> None:
    cluster = FakeCluster()
    assert _run(resources.delete, "delete", "runs", "a", "nope", "b", cluster=cluster) == 1
    assert cluster.deleted == [(RUNS, "a"), (RUNS, "b")]
    out, err = capsys.readouterr()
    assert out == 'workflowrun.kdag.dev "a" deleted\nworkflowrun.kdag.dev "b" deleted\n'
    assert "NotFound" in err


def test_delete_ignore_not_found_and_output_name(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ("delete", "runs", "nope", "a", "--ignore-not-found", "-o", "name")
    assert _run(resources.delete, *argv) == 0
    assert capsys.readouterr() == ("workflowrun.kdag.dev/a\n", "")


def test_delete_all_deletes_every_one_and_needs_no_name() -> None:
    cluster = FakeCluster()
    assert _run(resources.delete, "delete", "workflows", "--all", cluster=cluster) == 0
    assert cluster.deleted == [(WORKFLOWS, "etl")]
    with pytest.raises(UserError, match="no name was specified"):
        _run(resources.delete, "delete", "runs")


def test_version_client_needs_no_cluster(capsys: pytest.CaptureFixture[str]) -> None:
    def connect() -> FakeCluster:
        raise AssertionError("--client must not connect")

    assert resources.version(parser.parse(["version", "--client"]), connect) == 0
    assert capsys.readouterr().out == f"Client Version: {__version__}\n"


def test_version_shows_the_server_and_operator(capsys: pytest.CaptureFixture[str]) -> None:
    assert resources.version(parser.parse(["version"]), FakeCluster) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"Client Version: {__version__}",
        "Server Version: v1.34.4",
        "Operator Version: 0.1.0 (deployment kdag/kdag)",
    ]
    assert resources.version(parser.parse(["version", "-o", "json"]), FakeCluster) == 0
    assert json.loads(capsys.readouterr().out) == {
        "clientVersion": __version__,
        "serverVersion": "v1.34.4",
        "operators": [{"deployment": "kdag/kdag", "version": "0.1.0"}],
    }


def test_version_when_deployments_may_not_be_listed(capsys: pytest.CaptureFixture[str]) -> None:
    cluster = FakeCluster()
    body = {"reason": "Forbidden", "message": "deployments.apps is forbidden: User cannot list"}
    cluster.deployments = ApiException(status=403, reason="Forbidden", body=json.dumps(body))
    assert resources.version(parser.parse(["version"]), lambda: cluster) == 0
    last = capsys.readouterr().out.splitlines()[-1]
    assert last == (
        "Operator Version: unknown (cannot list Deployments: deployments.apps is forbidden:"
        " User cannot list)"
    )


def test_kinds_are_named_as_kubectl_names_them() -> None:
    assert (RUN.resource, WORKFLOW.resource) == ("workflowrun.kdag.dev", "workflow.kdag.dev")
