"""`when` evaluation is bounded: a costly condition fails with a clear message, fast."""

from __future__ import annotations

import itertools
import math

import pytest

from kdag.engine import conditions
from kdag.engine.conditions import Budget, BudgetExceededError, ConditionError, PassBudget

TEN = "[0,1,2,3,4,5,6,7,8,9]"


def nested_maps(depth: int) -> str:
    """`depth` nested `map`s over ten items: 10**depth evaluations of the innermost body."""
    body = "1"
    for level in range(depth):
        body = f"{TEN}.map(v{level}, {body})"
    return f"size({body}) > 0"


HOSTILE = nested_maps(6)  # ~22 million steps unbounded: minutes of celpy


def test_a_plain_condition_evaluates() -> None:
    activation = {"nodes": {"count": {"phase": "Succeeded", "outputs": {"rows": "120"}}}}
    assert conditions.evaluate("int(nodes.count.outputs.rows) > 0", activation) is True


def test_a_comprehension_within_the_budget_evaluates() -> None:
    assert conditions.evaluate(nested_maps(3), {}) is True


def test_six_nested_maps_stop_at_the_cost_budget() -> None:
    budget = Budget(deadline_seconds=math.inf)  # steps decide, whatever the machine's load
    with pytest.raises(BudgetExceededError, match="exceeded its cost budget of 50000 steps"):
        conditions.evaluate(HOSTILE, {}, budget)
    # Stopped at the limit, not after the ~22,000,000 steps the expression asks for.
    assert budget.cost == conditions.WHEN_COST_LIMIT + 1


def test_an_error_absorbing_operator_does_not_hide_the_exceeded_budget() -> None:
    # CEL's `||` and `exists` turn an error on one side into the other side's answer.
    for expression in (f"{HOSTILE} || true", f"[1].exists(x, {HOSTILE})"):
        with pytest.raises(BudgetExceededError, match="cost budget"):
            conditions.evaluate(expression, {}, Budget(deadline_seconds=math.inf))


def test_a_pass_budget_is_spent_by_cost_or_by_time() -> None:
    by_cost = PassBudget(cost_limit=100, seconds_limit=10.0)
    by_cost.add(Budget(cost=60, seconds=0.1))
    assert not by_cost.exhausted
    by_cost.add(Budget(cost=40, seconds=0.1))
    assert by_cost.exhausted
    by_time = PassBudget(cost_limit=100, seconds_limit=1.0)
    by_time.add(Budget(cost=5, seconds=1.5))
    assert by_time.exhausted


def test_a_value_doubled_per_level_stops_at_the_size_limit() -> None:
    # ['ab'].map(v0, [v0 + v0].map(v1, ...)): each level doubles a string in a few steps,
    # so twenty levels would build 2**21 characters well within the step budget.
    body = "size(v19) > 0"
    for level in reversed(range(1, 20)):
        body = f"[v{level - 1} + v{level - 1}].map(v{level}, {body})"
    expression = f"size(['ab'].map(v0, {body})) > 0"
    with pytest.raises(BudgetExceededError, match="over the limit of 100000"):
        conditions.evaluate(expression, {})


def test_a_slow_evaluation_stops_at_the_deadline() -> None:
    ticks = itertools.count()  # a clock that advances a second per reading
    budget = Budget(deadline_seconds=2.0, clock=lambda: float(next(ticks)))
    with pytest.raises(BudgetExceededError, match="exceeded its time budget of 2s"):
        conditions.evaluate(nested_maps(2), {}, budget)


def test_a_budget_error_is_a_condition_error() -> None:
    assert issubclass(BudgetExceededError, ConditionError)
