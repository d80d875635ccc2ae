"""Validation problems (where, naming the node; what is wrong) and their descriptions."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import ValidationError

MAX_REPORTED_ERRORS = 10


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong with a workflow or run, e.g. `nodes[load].dependsOn: unknown node "x"`."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def describe(problems: list[Problem], limit: int = 20) -> str:
    """All problems in one message, capped so a status never balloons."""
    lines = [str(p) for p in problems[:limit]]
    if len(problems) > limit:
        lines.append(f"... and {len(problems) - limit} more")
    return "; ".join(lines)


def describe_validation_error(exc: ValidationError, prefix: str) -> str:
    """`spec.workflow.nodes[2].name: String should match pattern ...`, one per error."""
    parts = []
    for error in exc.errors()[:MAX_REPORTED_ERRORS]:
        path = prefix
        for item in error["loc"]:
            path += f"[{item}]" if isinstance(item, int) else f".{item}"
        parts.append(f"{path}: {error['msg']}")
    hidden = exc.error_count() - MAX_REPORTED_ERRORS
    if hidden > 0:
        parts.append(f"... and {hidden} more")
    return "; ".join(parts)
