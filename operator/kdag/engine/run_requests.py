"""What users ask of a run through annotations: a rerun, and a gate's answer.

The predicates live here, once, so the planner and the operator agree on them.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from kdag.engine.model import APPROVE_PREFIX, REJECT_PREFIX, RERUN_ANNOTATION


def rerun_token(annotations: Mapping[str, str]) -> str | None:
    """The value of the rerun annotation, if any."""
    return annotations.get(RERUN_ANNOTATION)


def rerun_requested(annotations: Mapping[str, str], last_token: str | None) -> bool:
    """A rerun was requested: the annotation holds a value the run has not acted on yet."""
    token = annotations.get(RERUN_ANNOTATION)
    return token is not None and token != last_token


def gate_answer(
    annotations: Mapping[str, str], prefix: str, key: str, consumed: Collection[str] = ()
) -> str | None:
    """The answer (approver or rejection reason) a gate's annotation holds; None when absent
    or consumed by a rerun in this pass (the shell removes it before the next one)."""
    annotation = prefix + key
    if annotation in consumed:
        return None
    return annotations.get(annotation)


def answer_annotations(annotations: Mapping[str, str], key: str) -> tuple[str, ...]:
    """The answer annotations a gate has: the ones a rerun of the gate removes."""
    return tuple(
        prefix + key for prefix in (APPROVE_PREFIX, REJECT_PREFIX) if prefix + key in annotations
    )
