"""A validation problem: where it is (a field path naming the node) and what is wrong."""

from __future__ import annotations

from dataclasses import dataclass


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
