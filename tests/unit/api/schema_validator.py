"""Sample objects against a structural schema, without an API server."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any


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
