"""CEL `when` conditions, compiled once and evaluated over params, nodes and run."""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from typing import Any

import celpy
from celpy import celtypes
from celpy.adapter import json_to_cel

# celpy logs every evaluation error at WARNING; kdag reports them in node status instead.
logging.getLogger("celpy").setLevel(logging.ERROR)
logging.getLogger("Evaluator").setLevel(logging.ERROR)


class ConditionError(ValueError):
    """A condition that does not compile, fails to evaluate, or is not a boolean."""


_ENV = celpy.Environment()


@functools.lru_cache(maxsize=4096)
def _program(expression: str) -> Any:
    try:
        return _ENV.program(_ENV.compile(expression))
    except Exception as exc:  # celpy raises several parser exception types
        raise ConditionError(f"invalid CEL: {_first_line(exc)}") from exc


def _first_line(exc: BaseException) -> str:
    """The error on one line: celpy's parse errors span several (text, caret, hint)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return " ".join(lines) if lines else type(exc).__name__


def compile_error(expression: str) -> str | None:
    """None when `expression` compiles, else the parser's message."""
    try:
        _program(expression)
    except ConditionError as exc:
        return str(exc)
    return None


def evaluate(expression: str, activation: Mapping[str, Any]) -> bool:
    """Evaluate to a boolean; raise ConditionError with CEL's message otherwise."""
    program = _program(expression)
    try:
        result = program.evaluate(json_to_cel(dict(activation)))
    except Exception as exc:  # CELEvalError and friends
        raise ConditionError(f"evaluating {expression!r}: {_first_line(exc)}") from exc
    if isinstance(result, celtypes.BoolType):
        return bool(result)
    if isinstance(result, Exception):
        raise ConditionError(f"evaluating {expression!r}: {_first_line(result)}")
    raise ConditionError(f"{expression!r} returned {type(result).__name__}, not a boolean")
