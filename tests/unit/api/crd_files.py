"""The CRDs as checked in under crds/, and a way to reach a node of their schemas.

test_crds_are_generated keeps these files what the models generate, so the tests that read
them test the generator.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[3]
CRD_DIR = REPO / "crds"


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
