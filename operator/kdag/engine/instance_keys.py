"""The status key of a node or fan-out instance: `transform` or `transform[eu]`.

Built, parsed and read back in this one place, so the format cannot drift between the
planner, the run summary and the CLI.
"""

from __future__ import annotations


def instance_key(node: str, label: str | None) -> str:
    """Status key of a node or fan-out instance: `transform` or `transform[eu]`."""
    return node if label is None else f"{node}[{label}]"


def template_of(key: str) -> str:
    """The workflow node a status key belongs to: `transform[eu]` -> `transform`."""
    bracket = key.find("[")
    return key if bracket < 0 else key[:bracket]


def label_of(key: str) -> str:
    """The label inside a fan-out instance's key: `transform[eu]` -> `eu`."""
    return key[key.index("[") + 1 : -1]
