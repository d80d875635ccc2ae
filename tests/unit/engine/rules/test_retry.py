"""Retries (SPEC §3): backoff, limits, Retrying then Queued."""

from __future__ import annotations

import pytest

from kdag.api import NodePhase, RunPhase
from kdag.engine.planner import retry_delay
from tests.unit.engine.sim import FAIL, World, workflow


def test_retry_succeeds_on_second_attempt_after_backoff() -> None:
    world = World(
        workflow(nodes=[{"name": "a", "retry": {"limit": 2, "backoffSeconds": 10, "factor": 2}}])
    )
    world.step()
    world.finish("a", FAIL)
    result = world.step()
    node = world.node("a")
    assert node.phase is NodePhase.RETRYING
    assert node.next_attempt_at == "2026-11-22T02:00:10Z"
    assert result.requeue_at is not None and result.requeue_at.isoformat().startswith(
        "2026-11-22T02:00:10"
    )
    world.advance(5)
    world.step()
    assert world.active_jobs() == []  # backoff not over yet
    world.advance(5)
    world.step()
    assert world.node("a").attempt == 2
    assert world.active_jobs()[0].name == world.job_name("a", 2)
    world.finish("a")
    world.step()
    assert world.phase is RunPhase.SUCCEEDED


def test_retries_stop_at_the_limit() -> None:
    world = World(workflow(nodes=[{"name": "a", "retry": {"limit": 2, "backoffSeconds": 1}}]))
    assert world.run(lambda i, a: FAIL) is RunPhase.FAILED
    assert world.node("a").attempt == 3
    assert [c.name for c in world.created] == [
        world.job_name("a", 1),
        world.job_name("a", 2),
        world.job_name("a", 3),
    ]


@pytest.mark.parametrize(
    ("backoff", "factor", "maximum", "retry", "expected"),
    [
        (10, 2, 300, 1, 10),
        (10, 2, 300, 2, 20),
        (10, 2, 300, 3, 40),
        (10, 2, 300, 10, 300),
        (5, 1, 300, 4, 5),
        (0, 2, 300, 3, 0),
    ],
)
def test_retry_backoff_is_exponential_and_capped(
    backoff: int, factor: float, maximum: int, retry: int, expected: float
) -> None:
    assert retry_delay(backoff, factor, maximum, retry) == expected
