"""kdag's admission rules: the CEL `x-kubernetes-validations` of its CRDs and where they attach.

The structural schema (kdag.api.openapi_schema) checks each field on its own; these rules
check what spans fields or list items (dependencies name existing nodes, fields that exclude
each other; unique names through list-map keys, which cost no CEL), so the API server
refuses a bad object before the operator sees it.

Cost: the API server estimates each rule's worst case from the schema's maxItems and
maxLength and rejects the CRD above 10M per rule (and 100M for all rules of a CRD); at
admission, one rule may spend 1M. Checking every dependsOn entry against a list of node
names is O(nodes x deps x nodes), far too much for 500 nodes of 100 dependencies; so
the names are first put in a map with a two-variable comprehension (Kubernetes 1.32+,
usable in new CRDs from 1.33) and looked up in O(1). Verified on kube-apiserver 1.34
(tests/integration/test_crds.py), including a 500-node workflow with 100 dependencies
per node next to 500 finally nodes.
"""

from __future__ import annotations

import copy

from kdag.api.openapi_schema import JsonSchema


def _rule(rule: str, message: str, message_expression: str | None = None) -> JsonSchema:
    out: JsonSchema = {"rule": rule}
    if message_expression is not None:
        out["messageExpression"] = message_expression
    out["message"] = message  # also the fallback if the messageExpression fails
    return out


def _names(nodes: str) -> str:
    """A one-item CEL list holding the map from each node name in `self.<nodes>` to true.

    Bound with `[x].all(names, ...)` / `[x].map(names, ...)`, it is built once per rule and
    each lookup is O(1); a list of names would make the checks O(nodes^2) and exceed the
    API server's runtime cost limit for large workflows. (A duplicate name, already refused
    by the list-map, makes building the map fail too: the object gets a second, noisier
    error naming the same node.)
    """
    return f"[self.{nodes}.transformMapEntry(i, n, {{n.name: true}})]"


def _known_dependencies_rule(nodes: str, what: str, where: str, optional: bool) -> JsonSchema:
    # Line breaks are whitespace to CEL; they keep the generated YAML readable.
    present = f"!has(self.{nodes}) ||\n" if optional else ""
    known = "!has(n.dependsOn) || n.dependsOn.all(d, d in names)"
    return _rule(
        rule=f"{present}{_names(nodes)}.all(names,\n  self.{nodes}.all(n, {known}))",
        message=f"every dependsOn entry of a {what} must name a node in {where}",
        # The API server's estimator loses the size of whatever passes through filter() on
        # objects, so strings are built with map() first and filtered after.
        message_expression=(
            f"{_names(nodes)}.map(names,\n"
            f"  self.{nodes}.map(n, {known} ? '' :\n"
            f"    '{what} ' + n.name + ' depends on ' + n.dependsOn.filter(d, !(d in names))[0]\n"
            f"    + ', which is not a node in {where}')\n"
            f"  .filter(message, message != '')[0])[0]"
        ),
    )


WORKFLOW_SPEC_RULES: tuple[JsonSchema, ...] = (
    _rule(
        rule=(
            f"!has(self.finally) ||\n"
            f"{_names('nodes')}.all(names,\n  self.finally.all(f, !(f.name in names)))"
        ),
        message="node names must be unique across nodes and finally",
        message_expression=(
            f"{_names('nodes')}.map(names,\n"
            f"  'node name ' + self.finally.map(f, f.name).filter(name, name in names)[0]\n"
            f"  + ' is used in both nodes and finally; node names must be unique across both "
            f"lists')[0]"
        ),
    ),
    _known_dependencies_rule("nodes", "node", "nodes", optional=False),
    _known_dependencies_rule(
        "finally",
        "finally node",
        "finally (finally nodes may depend only on finally nodes)",
        optional=True,
    ),
)

NODE_RULES: tuple[JsonSchema, ...] = (
    _rule(
        rule="!(has(self.forEach) && has(self.forEachFrom))",
        message="forEach and forEachFrom are mutually exclusive",
        message_expression=(
            "'node ' + self.name\n+ ': forEach and forEachFrom are mutually exclusive; set one'"
        ),
    ),
    _rule(
        rule=(
            "!has(self.approval) ||\n"
            "!(has(self.forEach) || has(self.forEachFrom) || has(self.image)\n"
            "  || has(self.command) || has(self.args))"
        ),
        message=(
            "an approval node runs no container, so it cannot set forEach, forEachFrom, "
            "image, command or args"
        ),
        message_expression=(
            "'node ' + self.name + ' is an approval gate and runs no container: '\n"
            "+ 'it cannot set forEach, forEachFrom, image, command or args'"
        ),
    ),
)

RUN_SPEC_RULES: tuple[JsonSchema, ...] = (
    _rule(
        rule="has(self.workflowRef) != has(self.workflow)",
        message="set exactly one of workflowRef (a Workflow's name) and workflow (an inline "
        "workflow spec)",
    ),
)


def _as_list_map(list_schema: JsonSchema, key: str) -> None:
    """Make the API server reject two items with the same `key` (no CEL cost), and let
    server-side apply merge the list item by item."""
    list_schema["x-kubernetes-list-type"] = "map"
    list_schema["x-kubernetes-list-map-keys"] = [key]


def add_workflow_spec_validation(spec: JsonSchema) -> None:
    """Admission checks of a workflow spec that a user writes.

    Used on Workflow.spec and on WorkflowRun.spec.workflow; not on the run's
    status.workflow snapshot, so that status writes do not pay for them.
    """
    properties = spec["properties"]
    _as_list_map(properties["params"], "name")  # param names are unique
    for key in ("nodes", "finally"):
        _as_list_map(properties[key], "name")  # node names are unique within each list
        properties[key]["items"]["x-kubernetes-validations"] = copy.deepcopy(list(NODE_RULES))
    spec["x-kubernetes-validations"] = copy.deepcopy(list(WORKFLOW_SPEC_RULES))


def add_run_spec_validation(spec: JsonSchema) -> None:
    """Admission checks of a WorkflowRun's spec."""
    spec["x-kubernetes-validations"] = copy.deepcopy(list(RUN_SPEC_RULES))
    add_workflow_spec_validation(spec["properties"]["workflow"])
