"""CEL `when` conditions, compiled once and evaluated over params, nodes and run.

Evaluation is bounded, as kube-apiserver bounds the CEL rules of CRDs: celpy walks the
parse tree, and nested comprehensions multiply the walk (six nested `map`s over ten items
make 22 million steps), so each evaluation is charged one unit per tree node it visits and
is stopped at a cost limit. Values are capped in size too, since `s + s` nested in
comprehensions doubles a string per level in a handful of steps. A deadline backs both
up, as the API server's request deadline does, for the few single steps whose work grows
with their operands (`x in list` over a long list).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import celpy
import lark
from celpy import celtypes
from celpy.adapter import json_to_cel
from celpy.evaluation import Evaluator

# celpy logs every evaluation error at WARNING; kdag reports them in node status instead.
logging.getLogger("celpy").setLevel(logging.ERROR)
logging.getLogger("Evaluator").setLevel(logging.ERROR)

# Steps (parse-tree nodes visited) one evaluation may take: 0.5-1 s of celpy on a busy
# 2-CPU machine. A comparison of one output costs ~30 steps, an `all` over 1,000 fan-in
# outputs ~28,000; six nested `map`s over ten items would cost ~22,000,000.
WHEN_COST_LIMIT = 50_000
# Longest string, list or map an evaluation may build.
WHEN_MAX_VALUE_SIZE = 100_000
# Wall-clock backstop for one evaluation, seconds: longer than the cost limit takes, so it
# only decides for steps whose own work is large.
WHEN_DEADLINE_SECONDS = 2.0
# What one planning pass may spend on conditions in all. Nodes whose `when` comes due after
# that wait for the run's next pass, which queues behind other runs' passes: a costly
# `when` fanned out to thousands of instances cannot hold the one planning thread either.
WHEN_PASS_COST_LIMIT = WHEN_COST_LIMIT
WHEN_PASS_SECONDS = WHEN_DEADLINE_SECONDS


class ConditionError(ValueError):
    """A condition that does not compile, fails to evaluate, or is not a boolean."""


class BudgetExceededError(ConditionError):
    """An evaluation stopped because it went over its cost, size or time budget."""


@dataclass
class Budget:
    """What one evaluation may spend, and what it has spent."""

    # Limits are read when a budget is made, not at import, so a test can pin one.
    cost_limit: int = field(default_factory=lambda: WHEN_COST_LIMIT)
    max_value_size: int = field(default_factory=lambda: WHEN_MAX_VALUE_SIZE)
    deadline_seconds: float = field(default_factory=lambda: WHEN_DEADLINE_SECONDS)
    clock: Callable[[], float] = time.monotonic
    cost: int = 0
    started: float = field(default=0.0)
    seconds: float = 0.0
    # Set once exceeded and kept: celpy turns some exceptions into values (`||` and the
    # `exists` macros swallow errors), so the verdict is read from here after evaluation.
    exceeded: str | None = None

    def charge(self) -> None:
        if self.exceeded is None:
            self.cost += 1
            if self.cost > self.cost_limit:
                self.exceeded = f"evaluation exceeded its cost budget of {self.cost_limit} steps"
            elif self.clock() - self.started > self.deadline_seconds:
                self.exceeded = f"evaluation exceeded its time budget of {self.deadline_seconds:g}s"
        if self.exceeded is not None:
            raise _StopError(self.exceeded)

    def check_size(self, value: object) -> None:
        if isinstance(value, (str, bytes, list, dict)) and len(value) > self.max_value_size:
            self.exceeded = (
                f"evaluation built a value of {len(value)} items or characters, "
                f"over the limit of {self.max_value_size}"
            )
            raise _StopError(self.exceeded)


@dataclass
class PassBudget:
    """What one planning pass has spent on conditions, summed over its evaluations."""

    cost_limit: int = field(default_factory=lambda: WHEN_PASS_COST_LIMIT)
    seconds_limit: float = field(default_factory=lambda: WHEN_PASS_SECONDS)
    cost: int = 0
    seconds: float = 0.0

    @property
    def exhausted(self) -> bool:
        return self.cost >= self.cost_limit or self.seconds >= self.seconds_limit

    def add(self, budget: Budget) -> None:
        self.cost += budget.cost
        self.seconds += budget.seconds


class _StopError(Exception):
    """Unwinds celpy's evaluation once the budget is spent."""


class _BudgetedEvaluator(Evaluator):
    """celpy's tree-walking evaluator, charging each node it visits to a budget."""

    def __init__(self, ast: lark.Tree[Any], activation: Any, budget: Budget) -> None:
        super().__init__(ast, activation)
        self.budget = budget

    def sub_evaluator(self, ast: lark.Tree[Any]) -> Evaluator:
        # Comprehension bodies are evaluated by sub-evaluators: they charge the same budget.
        return _BudgetedEvaluator(ast, self.activation, self.budget)

    # lark's Interpreter sends every visit, of the root and of children, through here.
    def _visit_tree(self, tree: lark.Tree[Any]) -> Any:
        self.budget.charge()
        value = super()._visit_tree(tree)
        self.budget.check_size(value)
        return value


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


def evaluate(expression: str, activation: Mapping[str, Any], budget: Budget | None = None) -> bool:
    """Evaluate to a boolean within `budget`; raise ConditionError otherwise (BudgetExceededError
    when the budget ran out)."""
    program = _program(expression)
    budget = budget if budget is not None else Budget()
    budget.started = budget.clock()
    evaluator = _BudgetedEvaluator(program.ast, program.new_activation(), budget)
    try:
        context: Any = json_to_cel(dict(activation))  # a CEL map, which celpy reads as a context
        result = evaluator.evaluate(context)
    except Exception as exc:  # CELEvalError and friends
        if budget.exceeded is not None:
            raise BudgetExceededError(budget.exceeded) from None
        raise ConditionError(f"evaluating {expression!r}: {_first_line(exc)}") from exc
    finally:
        budget.seconds = budget.clock() - budget.started
    if budget.exceeded is not None:
        raise BudgetExceededError(budget.exceeded)
    if isinstance(result, celtypes.BoolType):
        return bool(result)
    if isinstance(result, Exception):
        raise ConditionError(f"evaluating {expression!r}: {_first_line(result)}")
    raise ConditionError(f"{expression!r} returned {type(result).__name__}, not a boolean")
