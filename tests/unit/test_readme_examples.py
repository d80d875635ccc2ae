"""Every Workflow and WorkflowRun shown in the README parses and validates."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from kdag.api import Workflow, WorkflowRun
from kdag.engine.validation import resolve_params, validate_workflow

README = Path(__file__).resolve().parents[2] / "README.md"


def _yaml_documents() -> list[dict[str, Any]]:
    blocks = re.findall(r"```yaml\n(.*?)```", README.read_text(), flags=re.DOTALL)
    return [doc for block in blocks for doc in yaml.safe_load_all(block) if doc]


DOCS = _yaml_documents()


def test_the_readme_shows_a_workflow_and_a_run() -> None:
    assert {d["kind"] for d in DOCS} >= {"Workflow", "WorkflowRun"}


@pytest.mark.parametrize("doc", DOCS, ids=[f"{d['kind']}-{i}" for i, d in enumerate(DOCS)])
def test_readme_example_is_valid(doc: dict[str, Any]) -> None:
    workflows = {
        d["metadata"]["name"]: Workflow.model_validate(d) for d in DOCS if d["kind"] == "Workflow"
    }
    if doc["kind"] == "Workflow":
        workflow = Workflow.model_validate(doc)
        assert validate_workflow(workflow.spec) == []
    else:
        run = WorkflowRun.model_validate(doc)
        assert run.spec.workflow_ref is not None
        target = workflows[run.spec.workflow_ref.name]
        _, problems = resolve_params(target.spec, run.spec.params)
        assert problems == []
