"""`kubectl kdag lint`: the engine's validation, offline, on YAML files."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from rich.console import Console
from rich.text import Text

from kdag.api import Workflow, WorkflowRun
from kdag.engine.problems import Problem
from kdag.engine.validation import resolve_params, validate_workflow

STDIN = Path("STDIN")


def pydantic_problems(exc: ValidationError, prefix: str) -> list[Problem]:
    """Schema errors as problems whose path names the field, e.g. spec.nodes[0].name."""
    problems = []
    for error in exc.errors():
        path = prefix
        for part in error["loc"]:
            path += f"[{part}]" if isinstance(part, int) else f".{part}"
        problems.append(Problem(path.lstrip("."), error["msg"]))
    return problems


def lint_document(doc: dict[str, Any], workflows: dict[str, Workflow]) -> list[Problem]:
    kind = doc.get("kind")
    if kind == "Workflow":
        try:
            workflow = Workflow.model_validate(doc)
        except ValidationError as exc:
            return pydantic_problems(exc, "")
        return [Problem(f"spec.{p.path}", p.message) for p in validate_workflow(workflow.spec)]
    if kind == "WorkflowRun":
        try:
            run = WorkflowRun.model_validate(doc)
        except ValidationError as exc:
            return pydantic_problems(exc, "")
        spec = run.spec.workflow
        if spec is None and run.spec.workflow_ref is not None:
            ref = workflows.get(run.spec.workflow_ref.name)
            spec = ref.spec if ref else None
        if spec is None:
            return []  # a workflowRef to something not in these files: checked at run time
        problems = [Problem(f"spec.workflow.{p.path}", p.message) for p in validate_workflow(spec)]
        return problems + resolve_params(spec, run.spec.params)[1]
    return [Problem("kind", f"expected Workflow or WorkflowRun, got {kind!r}")]


def lint_files(paths: list[Path], console: Console) -> int:
    """Print every problem as `file: Kind/name: path: message`; 1 if there were any. The
    file `-` is standard input, named STDIN in messages, as kubectl names it."""
    documents: list[tuple[Path, dict[str, Any]]] = []
    failed = False
    for path in paths:
        stdin = str(path) == "-"
        shown = STDIN if stdin else path
        try:
            text = sys.stdin.read() if stdin else path.read_text()
            documents += [(shown, d) for d in yaml.safe_load_all(text) if d]
        except (OSError, yaml.YAMLError) as exc:
            # Text, not markup: a YAML error quotes the brackets it choked on.
            console.print(Text.assemble((str(shown), "red"), f": {exc}"), soft_wrap=True)
            failed = True
    workflows = {}
    for _, doc in documents:
        if doc.get("kind") == "Workflow":
            try:
                workflow = Workflow.model_validate(doc)
                workflows[workflow.metadata.name or ""] = workflow
            except ValidationError:
                pass  # reported below
    for path, doc in documents:
        name = (doc.get("metadata") or {}).get("name") or (doc.get("metadata") or {}).get(
            "generateName", "?"
        )
        for problem in lint_document(doc, workflows):
            failed = True
            # One line a problem, whatever the width, for grep and CI logs.
            line = f"{path}: {doc.get('kind')}/{name}: {problem}"
            console.print(line, markup=False, highlight=False, soft_wrap=True)
    if not failed:
        console.print(f"{len(documents)} document(s) valid")
    return 1 if failed else 0
