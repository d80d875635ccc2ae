"""`kubectl_complete-kdag`: what kubectl's completion shows after `kubectl kdag`."""

from __future__ import annotations

from typing import Any

import pytest

from kdag.api import RUNS, WORKFLOWS, WorkflowRun
from kdag.cli import completion
from kdag.cli.completion import FILTER_FILE_EXT, NO_FILE_COMP, candidates
from tests.unit.cli.test_main import _gated, _raw


class FakeLookup:
    def __init__(self) -> None:
        self.asked: list[str] = []

    def names(self, plural: str) -> list[str]:
        self.asked.append(plural)
        return {RUNS: ["etl-a", "etl-b", "report-1"], WORKFLOWS: ["etl", "report"]}[plural]

    def run(self, name: str) -> WorkflowRun:
        self.asked.append(name)
        return WorkflowRun.model_validate(_raw(_gated()))

    def namespaces(self) -> list[str]:
        return ["default", "prod"]

    def contexts(self) -> list[str]:
        return ["kind-dev", "prod"]


def _complete(*words: str) -> tuple[list[str], int]:
    return candidates(list(words), FakeLookup())


def test_the_first_word_completes_to_the_verbs_with_their_help() -> None:
    found, directive = _complete("")
    verbs = [c.split("\t")[0] for c in found]
    assert {"get", "list", "delete", "tree", "approve", "logs", "lint", "version"} <= set(verbs)
    assert "tree\tshow a run's nodes with live status" in found
    assert directive == NO_FILE_COMP
    assert [c.split("\t")[0] for c in _complete("re")[0]] == ["reject", "resume", "rerun"]


@pytest.mark.parametrize("verb", ["tree", "approve", "reject", "cancel", "rerun", "logs"])
def test_verbs_taking_a_run_complete_run_names(verb: str) -> None:
    assert _complete(verb, "etl") == (["etl-a", "etl-b"], NO_FILE_COMP)


def test_approve_completes_the_run_s_gates_and_logs_its_nodes() -> None:
    assert _complete("approve", "etl-a", "") == (["publish"], NO_FILE_COMP)
    assert _complete("logs", "etl-a", "") == (["build", "publish"], NO_FILE_COMP)
    assert _complete("tree", "etl-a", "") == ([], NO_FILE_COMP)


def test_connection_flags_are_skipped_with_their_values_wherever_they_are() -> None:
    lookup = FakeLookup()
    found = candidates(["-n", "prod", "approve", "--context=c", "etl-a", "--as", "bob", ""], lookup)
    assert found == (["publish"], NO_FILE_COMP)
    assert lookup.asked == ["etl-a"]
    reader = completion.read_words(["-n", "prod", "approve", "--context=c", "etl-a"])
    assert reader.flags == {"namespace": "prod", "context": "c"}


def test_get_completes_types_then_names_of_that_type() -> None:
    assert _complete("get", "") == (["runs", "workflows"], NO_FILE_COMP)
    assert _complete("get", "workflows", "") == (["etl", "report"], NO_FILE_COMP)
    assert _complete("delete", "runs", "etl-a", "") == (["etl-b", "report-1"], NO_FILE_COMP)
    assert _complete("submit", "r") == (["report"], NO_FILE_COMP)


def test_flag_values_complete_namespaces_contexts_and_output_formats() -> None:
    assert _complete("tree", "-n", "") == (["default", "prod"], NO_FILE_COMP)
    assert _complete("--context", "p") == (["prod"], NO_FILE_COMP)
    assert _complete("get", "runs", "-o", "") == (["json", "yaml", "name", "wide"], NO_FILE_COMP)
    assert _complete("version", "-o", "") == (["json", "yaml"], NO_FILE_COMP)
    assert _complete("--kubeconfig", "") == ([], completion.DEFAULT)  # the shell's files


def test_flags_complete_when_a_dash_is_typed() -> None:
    found, _ = _complete("logs", "--f")
    assert found == ["--follow"]
    assert "--request-timeout" in _complete("get", "--")[0]


def test_lint_completes_yaml_files() -> None:
    assert _complete("lint", "") == (["yaml", "yml"], FILTER_FILE_EXT)


def test_the_executable_prints_candidates_then_the_directive(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert completion.main(["get", "wor"]) == 0
    assert capsys.readouterr().out == "workflows\n:4\n"
    # cobra's own form of the request is understood too.
    assert completion.main(["__complete", "get", "ru"]) == 0
    assert capsys.readouterr().out == "runs\n:4\n"


@pytest.mark.usefixtures("no_kubeconfig")
def test_a_cluster_that_cannot_answer_gives_no_candidates_not_an_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert completion.main(["tree", ""]) == 0
    captured: Any = capsys.readouterr()
    assert (captured.out, captured.err) == (":4\n", "")
