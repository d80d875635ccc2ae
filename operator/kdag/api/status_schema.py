"""The parts of a run's status that the API server stores without walking their schema.

The API server validates, prunes and defaults the whole object against its schema on every
write, status writes included. A run's status holds an entry per node and the workflow
snapshot, and the operator rewrites it as each node moves: for a 500-node chain, walking
those entries' schemas was half of the API server's CPU per status write (docs/benchmarks.md,
"Status entries the API server stores as they are"). Only the operator writes status (the
status subresource), from the pydantic models that check it again when they read it back
(`kdag.operator.runs.parse_run`: a status they reject makes the run Invalid, naming the
field), so the server's walk adds no safety. Argo Workflows' default CRDs do the same for
their whole status.

The per-node entries and the snapshot stay typed as objects, documented field by field in
their description.
"""

from __future__ import annotations

from pydantic import BaseModel

from kdag.api.openapi_schema import JsonSchema
from kdag.api.run import NodeStatus
from kdag.api.workflow import WorkflowSpec


def _fields_described(model: type[BaseModel]) -> str:
    """'Fields: a: what a is. b: ...' from the model, so the text cannot drift from it."""
    parts = []
    for name, info in model.model_fields.items():
        wire = info.alias or name
        parts.append(f"{wire}: {info.description}" if info.description else f"{wire}.")
    return "Fields: " + " ".join(parts)


def _stored_as_is(schema: JsonSchema, description: str) -> JsonSchema:
    """An object whose content the API server keeps without validating it; the
    annotations that do not describe its content (map type) are kept."""
    kept = {k: v for k, v in schema.items() if k == "x-kubernetes-map-type"}
    return {
        "description": description,
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": True,
        **kept,
    }


def store_run_status_entries_as_is(status: JsonSchema) -> None:
    """Make `status.nodes`' entries and `status.workflow` opaque to the API server's schema
    walk (see the module docstring)."""
    properties = status["properties"]
    nodes = properties["nodes"]
    entry = nodes["additionalProperties"]
    nodes["additionalProperties"] = _stored_as_is(
        entry, f"{entry.get('description', '')} {_fields_described(NodeStatus)}".strip()
    )
    snapshot = properties["workflow"]
    properties["workflow"] = _stored_as_is(
        snapshot,
        f"{snapshot.get('description', '')} It has the fields of a Workflow's spec "
        f"({', '.join(f.alias or n for n, f in WorkflowSpec.model_fields.items())}).",
    )


def store_nothing_as_is(status: JsonSchema) -> None:
    """For kinds whose status is small: the server validates all of it."""
