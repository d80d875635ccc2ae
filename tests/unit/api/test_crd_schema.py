"""The generated openAPIV3Schemas admit what the models admit, checked without an API
server: sample objects against the schema (CEL rules are in test_crd_rules)."""

from __future__ import annotations

from typing import Any

import pydantic
import pytest

from kdag.api import Workflow, WorkflowRun
from tests.unit.api.crd_files import at, root_schema
from tests.unit.api.schema_validator import schema_errors
from tests.unit.api.spec_examples import GOOD_RUN, GOOD_WORKFLOW, node, with_change


def test_spec_examples_validate_against_the_crd_schemas_and_the_models() -> None:
    assert schema_errors(root_schema("Workflow"), GOOD_WORKFLOW) == []
    assert schema_errors(root_schema("WorkflowRun"), GOOD_RUN) == []
    Workflow.model_validate(GOOD_WORKFLOW)
    WorkflowRun.model_validate(GOOD_RUN)


def test_int_quantities_validate_like_strings() -> None:
    doc = with_change(
        GOOD_WORKFLOW,
        lambda d: d["spec"]["defaults"]["resources"].update(
            {"requests": {"cpu": 1, "memory": "64Mi"}}
        ),
    )
    assert schema_errors(root_schema("Workflow"), doc) == []


BAD_WORKFLOWS = {
    "no spec": lambda d: d.pop("spec"),
    "no nodes": lambda d: d["spec"].pop("nodes"),
    "empty nodes": lambda d: d["spec"].update(nodes=[]),
    "node name not a DNS label": lambda d: node(d, 0).update(name="Extract"),
    "node name too long": lambda d: node(d, 0).update(name="x" * 64),
    "dependsOn not a DNS label": lambda d: node(d, 1).update(dependsOn=["Extract!"]),
    "too many nodes": lambda d: d["spec"].update(nodes=[{"name": f"n{i}"} for i in range(501)]),
    "too many dependencies": lambda d: node(d, 1).update(dependsOn=[f"n{i}" for i in range(101)]),
    "when longer than 1024 characters": lambda d: node(d, 1).update(when="true" + " && true" * 128),
    "param name not an identifier": lambda d: d["spec"]["params"][0].update(name="my-date"),
    "unknown concurrency policy": lambda d: d["spec"]["schedule"].update(
        concurrencyPolicy="Sometimes"
    ),
    "unknown onFailure": lambda d: d["spec"].update(onFailure="panic"),
    "retry limit too high": lambda d: d["spec"]["defaults"]["retry"].update(limit=1000),
    "zero timeout": lambda d: d["spec"].update(timeoutSeconds=0),
    "quantity as a list": lambda d: d["spec"]["defaults"]["resources"]["requests"].update(
        cpu=["1"]
    ),
    "string parallelism": lambda d: d["spec"].update(parallelism="four"),
    "misspelled field": lambda d: node(d, 0).update(comand=["true"]),
}


@pytest.mark.parametrize("change", BAD_WORKFLOWS.values(), ids=BAD_WORKFLOWS.keys())
def test_crd_schema_rejects_what_the_model_rejects(change: Any) -> None:
    doc = with_change(GOOD_WORKFLOW, change)
    with pytest.raises(pydantic.ValidationError):
        Workflow.model_validate(doc)
    assert schema_errors(root_schema("Workflow"), doc)


def test_when_is_bounded_to_1024_characters_in_the_crd_and_the_model() -> None:
    for kind, path in (("Workflow", "spec"), ("WorkflowRun", "spec.workflow")):
        assert at(root_schema(kind), f"{path}.nodes.[].when")["maxLength"] == 1024
    longest = with_change(GOOD_WORKFLOW, lambda d: node(d, 1).update(when="1" * 1020 + " > 0"))
    assert schema_errors(root_schema("Workflow"), longest) == []
    Workflow.model_validate(longest)


def test_inline_workflow_of_a_run_has_the_same_schema_as_a_workflow_spec() -> None:
    run_workflow = at(root_schema("WorkflowRun"), "spec.workflow")
    workflow_spec = at(root_schema("Workflow"), "spec")
    for schema in (run_workflow, workflow_spec):
        schema.pop("description")
    assert run_workflow == workflow_spec
