"""kdag.api.crd_rules: the admission rules of the generated CRDs and where they attach.

List-map keys are checked with the small schema validator, the CEL rules with
cel-python; the API server is the final judge (tests/integration)."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

import celpy
import pytest

from kdag.api.openapi_schema import walk
from tests.unit.api.crd_files import CRDS, at, root_schema
from tests.unit.api.schema_validator import schema_errors
from tests.unit.api.spec_examples import GOOD_WORKFLOW, node, with_change


def test_duplicate_node_names_in_one_list_are_rejected_by_the_list_map() -> None:
    doc = with_change(GOOD_WORKFLOW, lambda d: node(d, 1).update(name="extract"))
    assert schema_errors(root_schema("Workflow"), doc) == [".spec.nodes: duplicate ('extract',)"]


def test_status_snapshot_has_no_admission_rules() -> None:
    snapshot = at(root_schema("WorkflowRun"), "status.workflow")
    assert not [path for path, n in walk(snapshot) if "x-kubernetes-validations" in n]
    assert not [path for path, n in walk(snapshot) if "x-kubernetes-list-type" in n]


@pytest.mark.parametrize("kind", ["Workflow", "WorkflowRun"])
def test_status_has_no_admission_rules(kind: str) -> None:
    status = at(root_schema(kind), "status")
    assert not [path for path, n in walk(status) if "x-kubernetes-validations" in n]


def test_lists_and_strings_the_rules_iterate_are_bounded() -> None:
    # Without maxItems / maxLength the API server assumes the worst and rejects the CRD.
    spec = at(root_schema("Workflow"), "spec")
    for key in ("nodes", "finally"):
        assert spec["properties"][key]["maxItems"] == 500
        assert at(spec, f"{key}.[].name")["maxLength"] == 63
        assert at(spec, f"{key}.[].dependsOn")["maxItems"] == 100
        assert at(spec, f"{key}.[].dependsOn.[]")["maxLength"] == 63


# --------------------------------------------------------------------------------------
# CEL rules, with cel-python
# --------------------------------------------------------------------------------------
# cel-python has no two-variable comprehensions (Kubernetes 1.32+): where a rule builds the
# map of node names with transformMapEntry, the evaluation here passes that map in as a
# variable and evaluates the rest of the rule.

_NAME_MAP = re.compile(r"\[self\.(nodes|finally)\.transformMapEntry\(i, n, \{n\.name: true\}\)\]")


def cel(expression: str, self_value: Any) -> Any:
    env = celpy.Environment()
    activation: dict[str, Any] = {"self": celpy.json_to_cel(self_value)}

    def name_map(match: re.Match[str]) -> str:
        names = {n["name"]: True for n in self_value.get(match[1], [])}
        activation[f"names_of_{match[1]}"] = celpy.json_to_cel(names)
        return f"[names_of_{match[1]}]"

    program = env.program(env.compile(_NAME_MAP.sub(name_map, expression)))
    return program.evaluate(activation)


def rules(schema: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for path, sub in walk(schema):
        for rule in sub.get("x-kubernetes-validations", []):
            yield path, rule


ALL_RULES = [(f"{kind}{path}", rule) for kind in CRDS for path, rule in rules(root_schema(kind))]


@pytest.mark.parametrize(
    ("path", "rule"), ALL_RULES, ids=[f"{p}#{i}" for i, (p, _) in enumerate(ALL_RULES)]
)
def test_cel_rules_compile(path: str, rule: dict[str, Any]) -> None:
    env = celpy.Environment()
    env.compile(rule["rule"])
    if "messageExpression" in rule:
        env.compile(rule["messageExpression"])
    assert rule["message"].strip(), path


def check(schema: Mapping[str, Any], value: Any) -> list[str]:
    """The messages of the rules at the top of `schema` that `value` fails."""
    failed = []
    for rule in schema.get("x-kubernetes-validations", []):
        if not cel(rule["rule"], value):
            failed.append(
                str(cel(rule["messageExpression"], value))
                if "messageExpression" in rule
                else rule["message"]
            )
    return failed


WORKFLOW_SPEC = at(root_schema("Workflow"), "spec")
RUN_SPEC = at(root_schema("WorkflowRun"), "spec")
NODE = at(WORKFLOW_SPEC, "nodes.[]")


def test_workflow_spec_rules_are_also_on_the_inline_workflow_of_a_run() -> None:
    inline = at(RUN_SPEC, "workflow")
    assert inline["x-kubernetes-validations"] == WORKFLOW_SPEC["x-kubernetes-validations"]
    assert at(inline, "nodes.[]")["x-kubernetes-validations"] == NODE["x-kubernetes-validations"]
    assert at(inline, "finally.[]")["x-kubernetes-validations"] == NODE["x-kubernetes-validations"]


def test_a_good_workflow_passes_every_rule() -> None:
    spec = GOOD_WORKFLOW["spec"]
    assert check(WORKFLOW_SPEC, spec) == []
    for n in spec["nodes"] + spec["finally"]:
        assert check(NODE, n) == []


def test_a_node_name_used_in_nodes_and_finally_is_rejected() -> None:
    spec = {"nodes": [{"name": "a"}, {"name": "b"}], "finally": [{"name": "b"}]}
    assert check(WORKFLOW_SPEC, spec) == [
        "node name b is used in both nodes and finally; node names must be unique across both lists"
    ]


def test_a_dependency_on_an_unknown_node_is_rejected_naming_both() -> None:
    spec = {"nodes": [{"name": "a"}, {"name": "b", "dependsOn": ["a", "x", "y"]}]}
    # The first unknown one: the API server cannot afford (or estimate) joining them all.
    assert check(WORKFLOW_SPEC, spec) == ["node b depends on x, which is not a node in nodes"]


def test_a_node_may_not_depend_on_a_finally_node() -> None:
    spec = {"nodes": [{"name": "a", "dependsOn": ["z"]}], "finally": [{"name": "z"}]}
    assert check(WORKFLOW_SPEC, spec) == ["node a depends on z, which is not a node in nodes"]


def test_a_finally_node_may_depend_only_on_finally_nodes() -> None:
    ok = {"nodes": [{"name": "a"}], "finally": [{"name": "y"}, {"name": "z", "dependsOn": ["y"]}]}
    assert check(WORKFLOW_SPEC, ok) == []
    bad = {"nodes": [{"name": "a"}], "finally": [{"name": "z", "dependsOn": ["a"]}]}
    assert check(WORKFLOW_SPEC, bad) == [
        "finally node z depends on a, which is not a node in finally (finally nodes may "
        "depend only on finally nodes)"
    ]


def test_for_each_and_for_each_from_are_mutually_exclusive() -> None:
    assert check(NODE, {"name": "fan", "forEach": ["a"]}) == []
    assert check(NODE, {"name": "fan", "forEachFrom": "{{ nodes.a.outputs.list }}"}) == []
    assert check(NODE, {"name": "fan", "forEach": ["a"], "forEachFrom": "[]"}) == [
        "node fan: forEach and forEachFrom are mutually exclusive; set one"
    ]


@pytest.mark.parametrize(
    "container_field",
    [
        {"forEach": ["a"]},
        {"forEachFrom": "[]"},
        {"image": "busybox"},
        {"command": ["true"]},
        {"args": ["-v"]},
    ],
)
def test_an_approval_gate_runs_no_container(container_field: dict[str, Any]) -> None:
    gate = {"name": "gate", "approval": {"message": "ok?"}}
    assert check(NODE, gate) == []
    assert check(NODE, gate | container_field) == [
        "node gate is an approval gate and runs no container: it cannot set forEach, "
        "forEachFrom, image, command or args"
    ]


RUN_NEEDS_ONE_WORKFLOW = (
    "set exactly one of workflowRef (a Workflow's name) and workflow (an inline workflow spec)"
)


@pytest.mark.parametrize(
    "spec", [{"workflowRef": {"name": "etl"}}, {"workflow": {"nodes": [{"name": "a"}]}}]
)
def test_a_run_names_its_workflow_by_reference_or_inline(spec: dict[str, Any]) -> None:
    assert check(RUN_SPEC, spec) == []


@pytest.mark.parametrize(
    "spec",
    [
        {"workflowRef": {"name": "etl"}, "workflow": {"nodes": [{"name": "a"}]}},
        {"params": {"date": "today"}},
    ],
    ids=["both", "neither"],
)
def test_a_run_names_exactly_one_of_workflow_ref_and_workflow(spec: dict[str, Any]) -> None:
    assert check(RUN_SPEC, spec) == [RUN_NEEDS_ONE_WORKFLOW]
