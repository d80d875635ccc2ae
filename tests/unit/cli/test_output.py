"""`-o json|yaml|name|wide` and the tables of `kubectl kdag get`, as kubectl prints them."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from kdag.api import GROUP
from kdag.cli.output import RUN, WORKFLOW, Kind, kind_named, render

CRDS = Path(__file__).resolve().parents[3] / "crds"
NOW = datetime(2026, 11, 22, 3, 0, 0, tzinfo=UTC)


def _run(name: str, phase: str = "Running", **status: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kdag.dev/v1alpha1",
        "kind": "WorkflowRun",
        "metadata": {
            "name": name,
            "namespace": "prod",
            "creationTimestamp": "2026-11-22T02:58:30Z",
        },
        "spec": {"workflowRef": {"name": "etl"}},
        "status": {"phase": phase, "workflowName": "etl", "progress": "1/3", **status},
    }


RUNS = [
    _run(
        "etl-a",
        nodes={
            "extract": {"phase": "Succeeded"},
            "transform[eu]": {"phase": "Running"},
            "publish": {"phase": "WaitingForApproval"},
            "flaky": {"phase": "Failed"},
        },
        message="waiting for approval of publish",
    ),
    _run("etl-b", "Succeeded", duration="1m5s"),
]


def test_get_with_output_name_prints_resource_names() -> None:
    assert render(RUN, RUNS, "name", NOW) == (
        "workflowrun.kdag.dev/etl-a\nworkflowrun.kdag.dev/etl-b\n"
    )
    wf = {"metadata": {"name": "etl"}}
    assert render(WORKFLOW, [wf], "name", NOW) == "workflow.kdag.dev/etl\n"


def test_the_table_has_the_crd_s_printer_columns_aligned_three_spaces_apart() -> None:
    lines = render(RUN, RUNS, None, NOW).splitlines()
    assert lines == [
        "NAME    WORKFLOW   PHASE       PROGRESS   AGE     DURATION",
        "etl-a   etl        Running     1/3        1m30s",
        "etl-b   etl        Succeeded   1/3        1m30s   1m5s",
    ]


def test_wide_adds_active_and_failed_nodes_and_the_message() -> None:
    header, first, _ = render(RUN, RUNS, "wide", NOW).splitlines()
    assert header.split()[-3:] == ["ACTIVE", "FAILED", "MESSAGE"]
    assert first.split()[-7:] == [
        "publish,transform[eu]", "flaky", "waiting", "for", "approval", "of", "publish"
    ]  # fmt: skip


def test_all_namespaces_puts_the_namespace_first() -> None:
    header, first, _ = render(RUN, RUNS, None, NOW, all_namespaces=True).splitlines()
    assert header.split()[:2] == ["NAMESPACE", "NAME"]
    assert first.split()[:2] == ["prod", "etl-a"]


def test_json_and_yaml_of_several_objects_are_a_list_as_kubectl_prints_it() -> None:
    listed = json.loads(render(RUN, RUNS, "json", NOW))
    assert listed["kind"] == "List" and listed["apiVersion"] == "v1"
    assert [i["metadata"]["name"] for i in listed["items"]] == ["etl-a", "etl-b"]
    assert yaml.safe_load(render(RUN, RUNS, "yaml", NOW)) == listed


def test_json_of_one_object_asked_for_by_name_is_the_object_itself() -> None:
    assert json.loads(render(RUN, RUNS[:1], "json", NOW, single=True)) == RUNS[0]
    assert yaml.safe_load(render(RUN, RUNS[:1], "yaml", NOW, single=True)) == RUNS[0]


def test_workflow_table_shows_nodes_schedule_and_last_run() -> None:
    wf = {
        "metadata": {"name": "etl", "creationTimestamp": "2026-11-21T03:00:00Z"},
        "spec": {
            "description": "Nightly ETL",
            "schedule": {"cron": "0 2 * * *"},
            "params": [{"name": "date"}],
        },
        "status": {"nodeCount": 5, "lastRun": "etl-x7k2", "valid": True, "activeRuns": ["x"]},
    }
    header, row = render(WORKFLOW, [wf], "wide", NOW).splitlines()
    cells = [re.split(r" {3,}", line) for line in (header, row)]
    assert dict(zip(*cells, strict=True)) == {
        "NAME": "etl",
        "NODES": "5",
        "SCHEDULE": "0 2 * * *",
        "LAST RUN": "etl-x7k2",
        "AGE": "1d0h",
        "PARAMS": "date",
        "ACTIVE RUNS": "x",
        "VALID": "True",
        "DESCRIPTION": "Nightly ETL",
    }


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("runs", RUN),
        ("run", RUN),
        ("workflowruns", RUN),
        ("WorkflowRun", RUN),
        ("kwfr", RUN),
        ("workflowruns.kdag.dev", RUN),
        ("workflows", WORKFLOW),
        ("kwf", WORKFLOW),
        ("workflow.kdag.dev", WORKFLOW),
        ("pods", None),
    ],
)
def test_type_names_are_kubectl_s(name: str, kind: object) -> None:
    assert kind_named(name) is kind


@pytest.mark.parametrize("kind", [RUN, WORKFLOW], ids=lambda k: k.plural)
def test_the_table_s_columns_are_the_crd_s_printer_columns(kind: Kind) -> None:
    crd = yaml.safe_load((CRDS / f"{kind.plural}.{GROUP}.yaml").read_text())
    [version] = crd["spec"]["versions"]
    printer = [c["name"] for c in version["additionalPrinterColumns"]]
    assert [title for title, _ in kind.columns] == printer
    names = crd["spec"]["names"]
    assert {names["singular"], names["plural"], *names["shortNames"]} <= kind.aliases
    assert kind.kind == names["kind"]


def test_json_and_yaml_leave_out_managed_fields_as_kubectl_does() -> None:
    run = _run("etl-a")
    run["metadata"]["managedFields"] = [{"manager": "kdag-operator", "operation": "Update"}]
    for output in ("json", "yaml"):
        single = yaml.safe_load(render(RUN, [run], output, NOW, single=True))
        listed = yaml.safe_load(render(RUN, [run, run], output, NOW))
        for shown in (single, *listed["items"]):
            assert "managedFields" not in shown["metadata"]
            assert shown["metadata"]["name"] == "etl-a"
    assert "managedFields" in run["metadata"]  # the object itself is left as it was
