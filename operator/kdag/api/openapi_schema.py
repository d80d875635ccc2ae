"""A pydantic model's JSON schema as a Kubernetes structural OpenAPI v3 schema.

Generic: nothing here knows kdag's kinds. A CRD's schema must be structural (every node
typed, no references, no unions), so the pydantic JSON schema is converted as follows:
- every `$ref` is inlined; the referencing field's keywords (its description) win;
- `anyOf: [X, {type: null}]` (an Optional field) becomes X: unset fields are omitted,
  never written as null;
- `title`, `examples` and `default` are dropped: the API server would write defaults into stored
  objects, while pydantic applies them in Python;
- `additionalProperties: false` (models that forbid unknown fields) is dropped: the API
  server prunes unknown fields and `kubectl` rejects them with field validation;
- a JSON Schema 2020-12 `exclusiveMinimum: n` becomes OpenAPI v3's
  `minimum: n, exclusiveMinimum: true` (likewise for the maximum), `const` becomes a
  one-value `enum`;
- `x-kubernetes-*` keywords a model or type declares (through `json_schema_extra`) are kept
  as they are;
- anything else that cannot become a structural schema (recursive models, unions of two
  real types, unknown keywords) raises `SchemaError` instead of producing a CRD the API
  server would reject or, worse, silently accept with different meaning.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from pydantic import BaseModel

JsonSchema = dict[str, Any]


class SchemaError(ValueError):
    """A model construct that has no structural OpenAPI v3 equivalent."""


# Annotations with no meaning for the API server.
_DROPPED = frozenset({"title", "default", "$defs", "examples"})
# The keywords a CRD schema keeps, in the order they are written so the YAML reads the same
# way everywhere.
_KEY_ORDER = (
    "description",
    "type",
    "format",
    "enum",
    "pattern",
    "minLength",
    "maxLength",
    "minimum",
    "exclusiveMinimum",
    "maximum",
    "exclusiveMaximum",
    "multipleOf",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
    "items",
    "properties",
    "required",
    "additionalProperties",
)
_NULL = {"type": "null"}


def structural_schema(pydantic_schema: Mapping[str, Any]) -> JsonSchema:
    """The structural OpenAPI v3 schema for a model's pydantic JSON schema (with `$defs`)."""
    defs: Mapping[str, Any] = pydantic_schema.get("$defs", {})
    return _convert(pydantic_schema, defs, path="<root>", refs=())


def model_schema(
    model: type[BaseModel], mode: Literal["validation", "serialization"] = "validation"
) -> JsonSchema:
    """The structural OpenAPI v3 schema of a pydantic model, as it appears on the wire."""
    return structural_schema(model.model_json_schema(by_alias=True, mode=mode))


def _convert(
    node: Mapping[str, Any], defs: Mapping[str, Any], path: str, refs: tuple[str, ...]
) -> JsonSchema:
    node, refs = _resolve(node, defs, path, refs)
    out: JsonSchema = {}
    for key, value in node.items():
        if key in _DROPPED:
            continue
        if key.startswith("x-kubernetes-"):
            out[key] = copy.deepcopy(value)
        elif key == "properties":
            out[key] = {
                name: _convert(sub, defs, f"{path}.{name}", refs) for name, sub in value.items()
            }
        elif key == "items":
            if not isinstance(value, Mapping):
                raise SchemaError(f"{path}: tuple-typed arrays have no structural schema")
            out[key] = _convert(value, defs, f"{path}[]", refs)
        elif key == "additionalProperties":
            if value is True:
                out["x-kubernetes-preserve-unknown-fields"] = True
            elif value is not False:  # false: unknown fields are pruned anyway
                out[key] = _convert(value, defs, f"{path}{{}}", refs)
        elif key == "const":
            out["enum"] = [value]
        elif key in ("exclusiveMinimum", "exclusiveMaximum"):
            if isinstance(value, bool):
                out[key] = value
            else:
                out["minimum" if key == "exclusiveMinimum" else "maximum"] = value
                out[key] = True
        elif key == "type":
            if not isinstance(value, str) or value == "null":
                raise SchemaError(f"{path}: type {value!r} has no structural equivalent")
            out[key] = value
        elif key in _KEY_ORDER:
            out[key] = copy.deepcopy(value)
        else:
            raise SchemaError(f"{path}: JSON schema keyword {key!r} is not supported in a CRD")
    if "properties" in out and "additionalProperties" in out:
        raise SchemaError(f"{path}: a CRD object has either properties or additionalProperties")
    if "type" not in out and not (
        out.get("x-kubernetes-int-or-string") or out.get("x-kubernetes-preserve-unknown-fields")
    ):
        raise SchemaError(f"{path}: a structural schema needs a type here")
    return _ordered(out)


def _resolve(
    node: Mapping[str, Any], defs: Mapping[str, Any], path: str, refs: tuple[str, ...]
) -> tuple[Mapping[str, Any], tuple[str, ...]]:
    """Inline `$ref`s and collapse Optional unions until the node is a plain schema.

    The referencing node's own keywords (a field's description) win over the referenced
    definition's (the model's docstring).
    """
    while True:
        if "$ref" in node:
            name = str(node["$ref"]).removeprefix("#/$defs/")
            if name not in defs:
                raise SchemaError(f"{path}: unresolvable $ref {node['$ref']!r}")
            if name in refs:
                chain = " -> ".join((*refs, name))
                raise SchemaError(f"{path}: recursive model {chain} has no structural schema")
            refs = (*refs, name)
            node = {**defs[name], **{k: v for k, v in node.items() if k != "$ref"}}
        elif "anyOf" in node or "oneOf" in node or "allOf" in node:
            key = next(k for k in ("anyOf", "oneOf", "allOf") if k in node)
            options = [option for option in node[key] if option != _NULL]
            if len(options) != 1 or (key == "allOf" and len(node[key]) != 1):
                raise SchemaError(
                    f"{path}: {key} of {len(options)} schemas has no structural equivalent "
                    "(only Optional[X] is supported)"
                )
            node = {**options[0], **{k: v for k, v in node.items() if k != key}}
        else:
            return node, refs


def _ordered(schema: Mapping[str, Any]) -> JsonSchema:
    """The schema with its keywords in `_KEY_ORDER`, then the x-kubernetes-* extensions."""
    rank = {key: index for index, key in enumerate(_KEY_ORDER)}
    keys = sorted(schema, key=lambda key: (rank.get(key, len(rank)), key))
    return {key: schema[key] for key in keys}


def walk(schema: Mapping[str, Any], path: str = "") -> Iterable[tuple[str, Mapping[str, Any]]]:
    """Every schema node under (and including) `schema`, with a readable path."""
    yield path or "<root>", schema
    for name, sub in schema.get("properties", {}).items():
        yield from walk(sub, f"{path}.{name}")
    if isinstance(schema.get("items"), Mapping):
        yield from walk(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), Mapping):
        yield from walk(schema["additionalProperties"], f"{path}{{}}")
