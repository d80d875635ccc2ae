"""The runs each Workflow has, kept from the run watch: whole only once every watched
namespace has been listed, and rid of runs deleted while nothing watched."""

from __future__ import annotations

from typing import Any

from kdag.operator.workflow_runs import WorkflowRuns


def run(name: str, workflow: str | None = "etl", namespace: str = "team") -> dict[str, Any]:
    spec = {"workflowRef": {"name": workflow}} if workflow else {"workflow": {"nodes": []}}
    return {"metadata": {"name": name, "namespace": namespace, "uid": f"u-{name}"}, "spec": spec}


def names(runs: WorkflowRuns, workflow: str = "etl", namespace: str = "team") -> list[str]:
    return sorted(r.name for r in runs.runs((namespace, workflow)))


def test_runs_are_grouped_by_the_workflow_they_reference_and_inline_ones_by_none() -> None:
    runs = WorkflowRuns()
    for body in (run("a"), run("b"), run("x", workflow="other"), run("inline", workflow=None)):
        runs.observe("ADDED", body)
    assert names(runs) == ["a", "b"]
    assert names(runs, "other") == ["x"]
    runs.observe("DELETED", run("a"))
    assert names(runs) == ["b"]


def test_a_run_whose_reference_changes_moves_to_the_other_workflow() -> None:
    runs = WorkflowRuns()
    runs.observe("ADDED", run("a"))
    runs.observe("MODIFIED", run("a", workflow="other"))
    assert names(runs) == []
    assert names(runs, "other") == ["a"]


def test_a_namespace_is_whole_once_its_own_or_a_cluster_wide_stream_has_listed() -> None:
    runs = WorkflowRuns()
    assert not runs.complete("team")  # nothing listed yet
    runs.stream_started("team")
    runs.stream_started("ops")
    runs.listed("team", [])
    assert runs.complete("team")
    assert not runs.complete("ops")  # one namespace not listed holds back only its own
    runs.listed("ops", [])
    assert runs.complete("ops")
    runs.stream_stopped("ops")  # kopf no longer serves it
    assert not runs.complete("ops")
    runs.stream_started(None)
    assert not runs.complete("new")
    runs.listed(None, [])
    assert runs.complete("new")


def test_a_listing_drops_the_runs_it_no_longer_shows() -> None:
    runs = WorkflowRuns()
    runs.stream_started("team")
    for name in ("a", "b"):
        runs.observe(None, run(name))
    runs.observe(None, run("elsewhere", namespace="ops"))
    runs.listed("team", [("team", "a"), ("team", "b")])
    assert names(runs) == ["a", "b"]
    # The watch lost its place; the relisting shows "a" only: "b" went meanwhile.
    runs.observe(None, run("a"))
    runs.listed("team", [("team", "a")])
    assert names(runs) == ["a"]
    assert names(runs, namespace="ops") == ["elsewhere"]  # another namespace's stream


def test_a_cluster_wide_listing_covers_every_namespace() -> None:
    runs = WorkflowRuns()
    runs.stream_started(None)
    runs.observe(None, run("a"))
    runs.observe(None, run("b", namespace="ops"))
    runs.listed(None, [("team", "a")])
    assert names(runs) == ["a"]
    assert names(runs, namespace="ops") == []


def test_a_namespace_no_longer_watched_has_no_runs_left() -> None:
    runs = WorkflowRuns()
    runs.stream_started("team")
    runs.observe(None, run("a"))
    runs.listed("team", [("team", "a")])
    runs.stream_stopped("team")
    assert names(runs) == []


def test_the_end_of_each_listing_is_told_and_a_stopped_stream_is_not_a_listing() -> None:
    runs = WorkflowRuns()
    told: list[str | None] = []
    runs.on_listed = told.append
    runs.stream_started("team")
    runs.listed("team", [])
    runs.stream_stopped("team")  # its runs are forgotten, and nothing became whole
    runs.stream_started(None)
    runs.listed(None, [])
    assert told == ["team", None]
