"""`kubectl kdag lint`: offline validation that names file, object, field."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from kdag.cli.lint import lint_files

GOOD = """
apiVersion: kdag.dev/v1alpha1
kind: Workflow
metadata: {name: etl}
spec:
  params: [{name: day}]
  defaults: {image: busybox}
  nodes:
    - {name: a, args: ["{{ params.day }}"]}
---
apiVersion: kdag.dev/v1alpha1
kind: WorkflowRun
metadata: {generateName: etl-}
spec:
  workflowRef: {name: etl}
  params: {day: mon}
"""

BAD = """
apiVersion: kdag.dev/v1alpha1
kind: Workflow
metadata: {name: broken}
spec:
  defaults: {image: busybox}
  nodes:
    - {name: a, dependsOn: [b]}
    - {name: b, dependsOn: [a]}
    - {name: Bad_Name}
---
apiVersion: kdag.dev/v1alpha1
kind: Workflow
metadata: {name: cyclic}
spec:
  defaults: {image: busybox}
  nodes:
    - {name: a, dependsOn: [b]}
    - {name: b, dependsOn: [a]}
---
apiVersion: kdag.dev/v1alpha1
kind: WorkflowRun
metadata: {name: r1}
spec:
  workflowRef: {name: cyclic}
  params: {nope: "1"}
"""


def _lint(tmp_path: Path, text: str) -> tuple[int, str]:
    path = tmp_path / "wf.yaml"
    path.write_text(text)
    console = Console(width=200, record=True, color_system=None)
    code = lint_files([path], console)
    return code, console.export_text()


def test_valid_files_pass(tmp_path: Path) -> None:
    assert _lint(tmp_path, GOOD) == (0, "2 document(s) valid\n")


def test_problems_name_the_file_object_and_field(tmp_path: Path) -> None:
    code, out = _lint(tmp_path, BAD)
    assert code == 1
    assert "Workflow/broken: spec.nodes[2].name: String should match pattern" in out
    assert "Workflow/cyclic: spec.nodes[a].dependsOn: dependency cycle: a -> b -> a" in out
    assert "WorkflowRun/r1: spec.params.nope: the workflow declares no param 'nope'" in out


def test_unparseable_yaml_is_reported(tmp_path: Path) -> None:
    code, out = _lint(tmp_path, "kind: [unclosed")
    assert code == 1
    assert "wf.yaml" in out


def test_each_problem_is_one_line_however_narrow_the_output(tmp_path: Path) -> None:
    path = tmp_path / "wf.yaml"
    path.write_text(BAD)
    console = Console(width=40, record=True, color_system=None)
    assert lint_files([path], console) == 1
    lines = console.export_text().splitlines()
    assert (
        f"{path}: Workflow/cyclic: spec.nodes[a].dependsOn: dependency cycle: a -> b -> a" in lines
    )


def test_a_yaml_error_is_quoted_as_it_is(tmp_path: Path) -> None:
    code, out = _lint(tmp_path, "kind: [a] [b\n")
    assert code == 1
    assert "kind: [a] [b" in out  # not read as rich markup


def test_dash_reads_standard_input_and_names_it_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(BAD))
    console = Console(width=200, record=True, color_system=None)
    assert lint_files([Path("-")], console) == 1
    out = console.export_text()
    assert "STDIN: Workflow/cyclic: spec.nodes[a].dependsOn: dependency cycle" in out


def test_stdin_mixes_with_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The Workflow comes on stdin, the run that names it from a file: one set of documents.
    workflow, run = GOOD.split("---")
    path = tmp_path / "run.yaml"
    path.write_text(run)
    monkeypatch.setattr("sys.stdin", io.StringIO(workflow))
    console = Console(width=200, record=True, color_system=None)
    assert lint_files([Path("-"), path], console) == 0
    assert console.export_text() == "2 document(s) valid\n"
