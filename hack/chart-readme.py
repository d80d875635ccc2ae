#!/usr/bin/env python3
"""Write the values table of charts/kdag/README.md from values.schema.json and values.yaml.

The table sits between the README's `<!-- values:begin -->` and `<!-- values:end -->`
markers; everything else in the README is written by hand. One row per value: its key, its
type, its default (from values.yaml) and its description (from the schema), so the schema is
the one place a value is described. `--check` exits 1 when the README is not up to date
(tests/unit/test_chart.py runs it). Like helm-docs, without a Go tool to install.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

CHART = Path(__file__).resolve().parent.parent / "charts" / "kdag"
BEGIN, END = "<!-- values:begin -->", "<!-- values:end -->"
_MISSING = object()


def _type(schema: dict[str, Any], root: dict[str, Any]) -> str:
    if "$ref" in schema:
        schema = root["definitions"][schema["$ref"].rsplit("/", 1)[1]]
    if "enum" in schema:
        return " \\| ".join(json.dumps(v) for v in schema["enum"])
    kind = schema.get("type", "any")
    kinds = kind if isinstance(kind, list) else [kind]
    if kinds == ["array"] and isinstance(schema.get("items"), dict):
        return f"list of {_type(schema['items'], root)}"
    if kinds == ["object"] and isinstance(schema.get("additionalProperties"), dict):
        return f"map of {_type(schema['additionalProperties'], root)}"
    return " \\| ".join(kinds)


def rows(
    schema: dict[str, Any], values: Any, root: dict[str, Any], path: str = ""
) -> Iterator[tuple[str, str, str, str]]:
    """(key, type, default, description) of every value, depth first in the schema's order.
    An object with described properties is listed by the leaves its default sets (an empty
    default, e.g. affinity: {}, is one row)."""
    for name, sub in schema.get("properties", {}).items():
        key = f"{path}{name}"
        default = values.get(name, _MISSING) if isinstance(values, dict) else _MISSING
        if "properties" in sub and isinstance(default, dict) and default:
            yield from rows(sub, default, root, f"{key}.")
            continue
        if default is _MISSING:
            continue  # e.g. resources.claims: accepted, with no default worth a row
        shown = json.dumps(default, separators=(", ", ": "))
        yield key, _type(sub, root), shown, sub["description"]


def table() -> str:
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    lines = ["| Key | Type | Default | Description |", "| --- | --- | --- | --- |"]
    for key, kind, default, description in rows(schema, values, schema):
        cells = [f"`{key}`", kind, f"`{default}`", description.replace("|", "\\|")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def render(readme: str) -> str:
    head, rest = readme.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{table()}\n{END}{tail}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the README is stale")
    args = parser.parse_args()
    path = CHART / "README.md"
    current = path.read_text()
    wanted = render(current)
    if args.check:
        if current != wanted:
            print(f"{path} is out of date: run `make chart-readme`", file=sys.stderr)
            return 1
        return 0
    path.write_text(wanted)
    return 0


if __name__ == "__main__":
    sys.exit(main())
