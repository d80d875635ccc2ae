"""A status the API server will never store ends the run Failed with a small write."""

from __future__ import annotations

from kdag.api import RunPhase
from kdag.engine.model import DeleteJob, EmitEvent, Observed
from kdag.engine.rules.status_too_large import STATUS_TOO_LARGE, fail_run
from tests.unit.engine.sim import OK, T0, World, chain, workflow


def test_the_run_fails_naming_the_servers_message_and_stops_its_running_jobs() -> None:
    world = World(workflow(nodes=[{"name": "a"}, {"name": "b"}]))
    world.step()
    world.finish("a", OK)
    status = world.status
    assert status is not None
    result = fail_run(status, Observed(dict(world.jobs)), "request is too large", T0, 3)
    assert result.status.phase is RunPhase.FAILED
    assert result.status.message is not None
    assert "request is too large" in result.status.message
    assert result.actions[:-1] == [
        DeleteJob(world.job_name("b"), "its run's status is too large to store")
    ]
    assert isinstance(result.actions[-1], EmitEvent)
    assert result.actions[-1].reason == STATUS_TOO_LARGE
    (succeeded,) = [c for c in result.status.conditions or [] if c.type == "Succeeded"]
    assert succeeded.status == "False" and succeeded.observed_generation == 3


def test_the_write_is_small_it_leaves_the_nodes_as_stored() -> None:
    world = World(workflow(nodes=chain("a", "b", "c")))
    status = world.step().status
    result = fail_run(status, Observed({}), "too large", T0, 1)
    assert set(result.status.to_wire()) == {
        "phase",
        "message",
        "startedAt",
        "finishedAt",
        "conditions",
    }
    changes = result.transitions
    assert changes is not None and changes.finished and changes.phase is RunPhase.FAILED
