"""ttlSecondsAfterFinished: a finished run is due for deletion at its end plus the TTL."""

from __future__ import annotations

from datetime import timedelta

import pytest

from kdag.api import RunPhase
from kdag.engine.rules.expiry import expiry_time
from kdag.engine.timeutil import parse_iso
from tests.unit.engine.sim import OK, World, workflow

END = "2026-11-22T01:00:00Z"


def test_a_finished_run_is_due_again_at_its_ttl() -> None:
    world = World(workflow(nodes=[{"name": "a"}], ttlSecondsAfterFinished=60))
    world.step()
    world.finish("a", OK)
    result = world.step()
    assert result.status.phase is RunPhase.SUCCEEDED
    assert result.status.finished_at is not None
    assert result.requeue_at == parse_iso(result.status.finished_at) + timedelta(seconds=60)
    # A pass over the finished run asks for the same time, not for none.
    assert world.step().requeue_at == result.requeue_at


def test_a_finished_run_without_ttl_is_never_due_again() -> None:
    world = World(workflow(nodes=[{"name": "a"}]))
    world.step()
    world.finish("a", OK)
    assert world.step().requeue_at is None


@pytest.mark.parametrize(
    ("phase", "finished_at", "ttl", "expected"),
    [
        (RunPhase.SUCCEEDED, END, 60, parse_iso(END) + timedelta(seconds=60)),
        (RunPhase.FAILED, END, 0, parse_iso(END)),
        (RunPhase.RUNNING, END, 60, None),
        (None, END, 60, None),
        (RunPhase.SUCCEEDED, None, 60, None),
        (RunPhase.SUCCEEDED, "yesterday", 60, None),
        (RunPhase.SUCCEEDED, END, None, None),
        (RunPhase.SUCCEEDED, END, "60", None),
        (RunPhase.SUCCEEDED, END, True, None),
    ],
)
def test_expiry_time_table(
    phase: RunPhase | None, finished_at: object, ttl: object, expected: object
) -> None:
    assert expiry_time(phase, finished_at, ttl) == expected
