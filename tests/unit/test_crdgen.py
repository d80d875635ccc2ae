"""kdag.api.crdgen: the CRDs are generated from the pydantic models (SPEC §2, CRD paragraph).

Three layers: the converter on small test models; the real CRDs' shape (structural, names,
columns, subresource, descriptions); and admission behaviour without an API server: sample
objects against the openAPIV3Schema with a small validator below, and the CEL rules with
cel-python. The API server itself is the final judge (tests/integration).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import celpy
import pydantic
import pytest
import yaml
from pydantic import Field

from kdag.api import Workflow, WorkflowRun, crdgen
from kdag.api.base import FreeForm, Quantity, SpecModel
from kdag.api.openapi_schema import SchemaError, model_schema, walk

REPO = Path(__file__).resolve().parents[2]
CRD_DIR = REPO / "crds"


# --------------------------------------------------------------------------------------
# The converter, on small models
# --------------------------------------------------------------------------------------


class Inner(SpecModel):
    """An inner object."""

    size: int = Field(ge=1, le=10, description="Size.")


class Color(StrEnum):
    """A color."""

    RED = "red"
    BLUE = "blue"


class Sample(SpecModel):
    """A sample."""

    name: str = Field(min_length=1, max_length=5, pattern="^[a-z]+$", description="Name.")
    nickname: str | None = Field(default=None, description="Nickname.")
    inner: Inner | None = Field(default=None, description="The inner object.")
    inners: list[Inner] = Field(default_factory=list, max_length=3, description="Inners.")
    color: Color = Field(default=Color.RED, description="Color.")
    mode: Literal["fast", "slow"] | None = Field(default=None, description="Mode.")
    labels: dict[str, str] | None = Field(default=None, description="Labels.")
    cpu: Quantity | None = Field(default=None, description="CPU.")
    extra: FreeForm | None = Field(default=None, description="Anything.")
    ratio: float = Field(default=0.5, gt=0, lt=1, description="Ratio.")


@pytest.fixture(scope="module")
def sample() -> dict[str, Any]:
    return model_schema(Sample)


def prop(schema: Mapping[str, Any], name: str) -> Any:
    return schema["properties"][name]


def test_optional_fields_are_omitted_not_nullable(sample: dict[str, Any]) -> None:
    assert prop(sample, "nickname") == {"description": "Nickname.", "type": "string"}


def test_only_fields_without_defaults_are_required(sample: dict[str, Any]) -> None:
    assert sample["required"] == ["name"]


def test_referenced_models_are_inlined_and_the_field_description_wins(
    sample: dict[str, Any],
) -> None:
    assert prop(sample, "inner") == {
        "description": "The inner object.",
        "type": "object",
        "properties": {
            "size": {"description": "Size.", "type": "integer", "minimum": 1, "maximum": 10}
        },
        "required": ["size"],
    }


def test_list_items_keep_the_model_docstring_as_description(sample: dict[str, Any]) -> None:
    inners = prop(sample, "inners")
    assert inners["type"] == "array"
    assert inners["maxItems"] == 3
    assert inners["items"]["description"] == "An inner object."
    assert inners["items"]["properties"]["size"]["type"] == "integer"


def test_str_enums_and_literals_become_string_enums(sample: dict[str, Any]) -> None:
    assert prop(sample, "color") == {
        "description": "Color.",
        "type": "string",
        "enum": ["red", "blue"],
    }
    assert prop(sample, "mode") == {
        "description": "Mode.",
        "type": "string",
        "enum": ["fast", "slow"],
    }


def test_dicts_become_additional_properties(sample: dict[str, Any]) -> None:
    assert prop(sample, "labels") == {
        "description": "Labels.",
        "type": "object",
        "additionalProperties": {"type": "string"},
    }


def test_quantities_are_int_or_string_without_a_type(sample: dict[str, Any]) -> None:
    assert prop(sample, "cpu") == {"description": "CPU.", "x-kubernetes-int-or-string": True}


def test_free_form_objects_preserve_unknown_fields(sample: dict[str, Any]) -> None:
    assert prop(sample, "extra") == {
        "description": "Anything.",
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": True,
    }


def test_string_bounds_are_kept(sample: dict[str, Any]) -> None:
    assert prop(sample, "name") == {
        "description": "Name.",
        "type": "string",
        "pattern": "^[a-z]+$",
        "minLength": 1,
        "maxLength": 5,
    }


def test_exclusive_bounds_become_openapi_v3_booleans(sample: dict[str, Any]) -> None:
    assert prop(sample, "ratio") == {
        "description": "Ratio.",
        "type": "number",
        "minimum": 0,
        "exclusiveMinimum": True,
        "maximum": 1,
        "exclusiveMaximum": True,
    }


def test_defaults_and_titles_are_dropped(sample: dict[str, Any]) -> None:
    # The API server would write defaults into stored objects; pydantic applies them.
    for path, node in walk(sample):
        assert not {"default", "title"} & node.keys(), path


def test_forbidden_extra_fields_are_left_to_pruning(sample: dict[str, Any]) -> None:
    # A CRD may not say additionalProperties: false; the API server prunes unknown fields
    # and kubectl's field validation rejects them.
    assert "additionalProperties" not in sample
    assert "additionalProperties" not in prop(sample, "inner")


def test_recursive_models_are_rejected() -> None:
    class Tree(SpecModel):
        children: list[Tree] = Field(default_factory=list, description="Subtrees.")

    with pytest.raises(SchemaError, match="recursive"):
        model_schema(Tree)


def test_unions_of_two_types_are_rejected() -> None:
    class Either(SpecModel):
        value: int | str = Field(description="A number or a word.")

    with pytest.raises(SchemaError, match="anyOf of 2 schemas"):
        model_schema(Either)


def test_keywords_a_crd_cannot_express_are_rejected() -> None:
    class Odd(SpecModel):
        value: str = Field(description="Value.", json_schema_extra={"readOnly": True})

    with pytest.raises(SchemaError, match="readOnly"):
        model_schema(Odd)


# --------------------------------------------------------------------------------------
# The real CRDs
# --------------------------------------------------------------------------------------


def load_crds() -> dict[str, dict[str, Any]]:
    """kind -> the CRD as checked in under crds/ (test_crds_are_generated keeps it fresh)."""
    crds = {}
    for path in sorted(CRD_DIR.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        crds[crd["spec"]["names"]["kind"]] = crd
    return crds


CRDS = load_crds()


def version(kind: str) -> dict[str, Any]:
    versions: list[dict[str, Any]] = CRDS[kind]["spec"]["versions"]
    assert len(versions) == 1
    return versions[0]


def root_schema(kind: str) -> dict[str, Any]:
    schema: dict[str, Any] = version(kind)["schema"]["openAPIV3Schema"]
    return schema


def at(schema: Mapping[str, Any], dotted: str) -> dict[str, Any]:
    """The schema node at a dotted property path; `[]` steps into list items."""
    node: Any = schema
    for part in dotted.split("."):
        if part == "[]":
            node = node["items"]
        elif part == "{}":
            node = node["additionalProperties"]
        else:
            node = node["properties"][part]
    return dict(node)


def test_both_kinds_have_a_crd_file() -> None:
    assert sorted(p.name for p in CRD_DIR.glob("*.yaml")) == [
        "workflowruns.kdag.dev.yaml",
        "workflows.kdag.dev.yaml",
    ]


def test_crd_files_say_they_are_generated() -> None:
    for path in CRD_DIR.glob("*.yaml"):
        text = path.read_text()
        assert text.startswith("# Generated by `make crds`"), path
        assert "Do not edit" in text.splitlines()[1], path


@pytest.mark.parametrize(
    ("kind", "singular", "plural", "short"),
    [
        ("Workflow", "workflow", "workflows", "kwf"),
        ("WorkflowRun", "workflowrun", "workflowruns", "kwfr"),
    ],
)
def test_names_do_not_clash_with_argo_and_share_the_kdag_category(
    kind: str, singular: str, plural: str, short: str
) -> None:
    crd = CRDS[kind]
    assert crd["metadata"]["name"] == f"{plural}.kdag.dev"
    assert crd["spec"]["group"] == "kdag.dev"
    assert crd["spec"]["scope"] == "Namespaced"
    assert crd["spec"]["names"] == {
        "kind": kind,
        "listKind": f"{kind}List",
        "singular": singular,
        "plural": plural,
        "shortNames": [short],
        "categories": ["kdag"],
    }
    assert not {"wf", "wfs", "cwf"} & set(crd["spec"]["names"]["shortNames"])


@pytest.mark.parametrize("kind", ["Workflow", "WorkflowRun"])
def test_v1alpha1_is_served_stored_and_has_the_status_subresource(kind: str) -> None:
    v = version(kind)
    assert (v["name"], v["served"], v["storage"]) == ("v1alpha1", True, True)
    assert v["subresources"] == {"status": {}}


def columns(kind: str) -> list[tuple[str, str, str]]:
    return [
        (c["name"], c["jsonPath"], c["type"]) for c in version(kind)["additionalPrinterColumns"]
    ]


def test_workflow_run_printer_columns() -> None:
    assert columns("WorkflowRun") == [
        ("WORKFLOW", ".status.workflowName", "string"),
        ("PHASE", ".status.phase", "string"),
        ("PROGRESS", ".status.progress", "string"),
        ("AGE", ".metadata.creationTimestamp", "date"),
        ("DURATION", ".status.duration", "string"),
    ]


def test_workflow_printer_columns() -> None:
    assert columns("Workflow") == [
        ("NODES", ".status.nodeCount", "integer"),
        ("SCHEDULE", ".spec.schedule.cron", "string"),
        ("LAST RUN", ".status.lastRun", "string"),
        ("AGE", ".metadata.creationTimestamp", "date"),
    ]


@pytest.mark.parametrize("kind", ["Workflow", "WorkflowRun"])
def test_printer_columns_point_at_fields_of_the_schema(kind: str) -> None:
    schema = root_schema(kind)
    for _, path, _ in columns(kind):
        if path.startswith(".metadata."):
            continue
        assert at(schema, path.removeprefix(".")), path


@pytest.mark.parametrize("kind", ["Workflow", "WorkflowRun"])
def test_root_has_kubernetes_fields_and_requires_spec(kind: str) -> None:
    schema = root_schema(kind)
    assert list(schema["properties"]) == ["apiVersion", "kind", "metadata", "spec", "status"]
    assert schema["properties"]["metadata"] == {"type": "object"}
    assert schema["properties"]["apiVersion"]["type"] == "string"
    assert schema["properties"]["kind"]["type"] == "string"
    assert schema["required"] == ["spec"]


FORBIDDEN_IN_A_STRUCTURAL_SCHEMA = {
    "$ref",
    "$defs",
    "anyOf",
    "oneOf",
    "allOf",
    "not",
    "default",
    "nullable",
    "const",
    "title",
}


@pytest.mark.parametrize("kind", ["Workflow", "WorkflowRun"])
def test_schema_is_structural(kind: str) -> None:
    for path, node in walk(root_schema(kind)):
        assert not FORBIDDEN_IN_A_STRUCTURAL_SCHEMA & node.keys(), path
        assert (
            "type" in node
            or node.get("x-kubernetes-int-or-string")
            or node.get("x-kubernetes-preserve-unknown-fields")
        ), f"{path} has no type"
        assert not ("properties" in node and "additionalProperties" in node), path
        if node.get("type") == "array":
            assert "items" in node, path


@pytest.mark.parametrize("kind", ["Workflow", "WorkflowRun"])
def test_every_field_has_a_description_for_kubectl_explain(kind: str) -> None:
    undocumented = []
    for path, node in walk(root_schema(kind)):
        for name, sub in node.get("properties", {}).items():
            # The API server substitutes the standard ObjectMeta documentation.
            if path == "<root>" and name == "metadata":
                continue
            if not str(sub.get("description", "")).strip():
                undocumented.append(f"{path}.{name}".removeprefix("<root>"))
    assert not undocumented, f"fields without a description: {undocumented}"


def test_crd_yaml_has_no_anchors_or_aliases() -> None:
    # A YAML alias (a rule list shared between two places) is valid YAML, but hard to read
    # and easy to break by hand-editing a copy.
    for path in CRD_DIR.glob("*.yaml"):
        assert not re.search(r"[&*]id\d+", path.read_text()), path


# --------------------------------------------------------------------------------------
# Sample objects against the openAPIV3Schema
# --------------------------------------------------------------------------------------


def schema_errors(schema: Mapping[str, Any], value: Any, path: str = "") -> list[str]:
    """Errors of `value` against a structural schema, as the API server (with kubectl's
    strict field validation) would report them; CEL rules are not evaluated here."""
    where = path or "<root>"
    if path == ".metadata":
        return []  # the API server validates ObjectMeta itself
    if schema.get("x-kubernetes-int-or-string"):
        if isinstance(value, bool) or not isinstance(value, int | str):
            return [f"{where}: must be an integer or a string"]
        return []
    kind = schema.get("type")
    python_types: dict[str, Any] = {
        "object": dict,
        "array": list,
        "string": str,
        "boolean": bool,
        "integer": int,
        "number": int | float,
    }
    if kind is not None and (
        not isinstance(value, python_types[kind])
        or (isinstance(value, bool) and kind in ("integer", "number"))
    ):
        return [f"{where}: must be of type {kind}"]
    errors = []
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{where}: must be one of {schema['enum']}")
    if isinstance(value, str):
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errors.append(f"{where}: must match {schema['pattern']}")
        if len(value) < schema.get("minLength", 0):
            errors.append(f"{where}: too short")
        if len(value) > schema.get("maxLength", len(value)):
            errors.append(f"{where}: too long")
    if isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            errors.append(f"{where}: must be >= {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            errors.append(f"{where}: must be <= {schema['maximum']}")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            errors.append(f"{where}: too few items")
        if len(value) > schema.get("maxItems", len(value)):
            errors.append(f"{where}: too many items")
        if schema.get("x-kubernetes-list-type") == "map":
            keys = [
                tuple(item.get(k) for k in schema["x-kubernetes-list-map-keys"]) for item in value
            ]
            errors += [
                f"{where}: duplicate {key}" for key in {k for k in keys if keys.count(k) > 1}
            ]
        for index, item in enumerate(value):
            errors += schema_errors(schema["items"], item, f"{path}[{index}]")
    if isinstance(value, dict) and kind == "object":
        errors += [
            f"{where}.{name}: required" for name in schema.get("required", []) if name not in value
        ]
        properties = schema.get("properties", {})
        for name, item in value.items():
            if name in properties:
                errors += schema_errors(properties[name], item, f"{path}.{name}")
            elif "additionalProperties" in schema:
                errors += schema_errors(schema["additionalProperties"], item, f"{path}.{name}")
            elif not schema.get("x-kubernetes-preserve-unknown-fields"):
                errors.append(f"{path}.{name}: unknown field")
    return errors


# The SPEC §2 examples.
GOOD_WORKFLOW = yaml.safe_load(
    """
apiVersion: kdag.dev/v1alpha1
kind: Workflow
metadata: {name: etl}
spec:
  description: Nightly ETL
  params:
    - {name: date, default: "2026-11-21", description: Day to process}
  defaults:
    image: busybox:1.36
    resources: {requests: {cpu: 100m, memory: 64Mi}}
    timeoutSeconds: 600
    retry: {limit: 2, backoffSeconds: 10, factor: 2, maxBackoffSeconds: 300}
  parallelism: 4
  timeoutSeconds: 3600
  onFailure: stop
  nodes:
    - name: extract
      image: python:3.12-slim
      command: ["python", "-c", "print('hi')"]
      env: [{name: DAY, value: "{{ params.date }}"}]
    - name: transform
      dependsOn: [extract]
      when: "int(nodes.extract.outputs.rows) > 0"
      forEach: ["eu", "us", "ap"]
      args: ["--region", "{{ item }}"]
    - name: publish
      dependsOn: [transform]
      approval:
        message: Publish tonight's data?
        timeoutSeconds: 86400
        approvers: ["alice", "group:data-leads"]
    - name: load
      dependsOn: [publish]
      resources: {requests: {cpu: "1", memory: 1Gi}, limits: {memory: 2Gi}}
      podTemplate: {serviceAccountName: loader, nodeSelector: {pool: batch}}
  finally:
    - name: notify
      command: ["sh", "-c", "echo run {{ run.name }} ended {{ run.phase }}"]
  schedule:
    cron: "0 2 * * *"
    timezone: Europe/Berlin
    concurrencyPolicy: Forbid
    historyLimit: {succeeded: 3, failed: 1}
  ttlSecondsAfterFinished: 604800
"""
)

GOOD_RUN = yaml.safe_load(
    """
apiVersion: kdag.dev/v1alpha1
kind: WorkflowRun
metadata: {generateName: etl-}
spec:
  workflowRef: {name: etl}
  params: {date: "2026-11-22"}
  suspend: false
  cancel: false
status:
  phase: Running
  progress: 3/7
  startedAt: "2026-11-22T02:00:00Z"
  message: running
  observedGeneration: 1
  conditions:
    - {type: Succeeded, status: "Unknown", reason: Running, message: running,
       lastTransitionTime: "2026-11-22T02:00:00Z"}
  nodes:
    extract: {phase: Succeeded, attempt: 1, job: etl-x7k2-extract-1, exitCode: 0,
              outputs: {rows: "120"}}
    publish: {phase: WaitingForApproval, message: "Publish tonight's data?"}
"""
)


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


def with_change(doc: dict[str, Any], change: Any) -> dict[str, Any]:
    copy: dict[str, Any] = yaml.safe_load(yaml.safe_dump(doc))
    change(copy)
    return copy


def node(doc: dict[str, Any], index: int) -> dict[str, Any]:
    nodes: list[dict[str, Any]] = doc["spec"]["nodes"]
    return nodes[index]


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


def test_duplicate_node_names_in_one_list_are_rejected_by_the_list_map() -> None:
    doc = with_change(GOOD_WORKFLOW, lambda d: node(d, 1).update(name="extract"))
    assert schema_errors(root_schema("Workflow"), doc) == [".spec.nodes: duplicate ('extract',)"]


def test_inline_workflow_of_a_run_has_the_same_schema_as_a_workflow_spec() -> None:
    run_workflow = at(root_schema("WorkflowRun"), "spec.workflow")
    workflow_spec = at(root_schema("Workflow"), "spec")
    for schema in (run_workflow, workflow_spec):
        schema.pop("description")
    assert run_workflow == workflow_spec


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
    for path, node in walk(schema):
        for rule in node.get("x-kubernetes-validations", []):
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


# --------------------------------------------------------------------------------------
# The command line
# --------------------------------------------------------------------------------------


def test_writes_both_crds_and_check_passes_on_them(tmp_path: Path) -> None:
    assert crdgen.main([str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "workflowruns.kdag.dev.yaml",
        "workflows.kdag.dev.yaml",
    ]
    assert crdgen.main(["--check", str(tmp_path)]) == 0


def test_check_fails_with_a_diff_when_a_file_is_stale(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    crdgen.main([str(tmp_path)])
    stale = tmp_path / "workflows.kdag.dev.yaml"
    stale.write_text(stale.read_text().replace("kwf", "wf"))
    capsys.readouterr()
    assert crdgen.main(["--check", str(tmp_path)]) == 1
    out, err = capsys.readouterr()
    assert "-    - wf\n+    - kwf\n" in out
    assert "make crds" in err


def test_check_fails_when_a_file_is_missing(tmp_path: Path) -> None:
    crdgen.main([str(tmp_path)])
    (tmp_path / "workflowruns.kdag.dev.yaml").unlink()
    assert crdgen.main(["--check", str(tmp_path)]) == 1
