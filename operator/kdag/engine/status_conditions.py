"""Kubernetes status conditions of runs and Workflows (pure).

Not to be confused with `kdag.engine.conditions`, the CEL `when` evaluator.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from kdag.api import Condition

ConditionStatus = Literal["True", "False", "Unknown"]


@dataclass(frozen=True)
class ConditionState:
    """What a condition says now; its type is the key it is wanted under."""

    status: ConditionStatus
    reason: str
    message: str | None


def updated_conditions(
    wanted: Mapping[str, ConditionState],
    previous: Iterable[Condition],
    *,
    now_iso: str,
    generation: int | None,
) -> list[Condition]:
    """The wanted conditions, in order. A condition's transition time moves only when its
    status changes (as `kubectl wait` and users reading the status expect); the last
    previous condition of a type is the one compared with."""
    before_by_type = {c.type: c for c in previous}
    result = []
    for kind, state in wanted.items():
        before = before_by_type.get(kind)
        held = before is not None and before.status == state.status
        result.append(
            Condition(
                type=kind,
                status=state.status,
                reason=state.reason,
                message=state.message,
                last_transition_time=before.last_transition_time
                if held and before is not None
                else now_iso,
                observed_generation=generation,
            )
        )
    return result
