"""The readiness matrix (SPEC §3), as tables: how a dependency's phase decides its dependent.

A dependent is ready when every dependency has Succeeded or was Skipped in a way that lets
dependents run (`when` false, a fan-out without items); a dependency that failed, timed out,
was cancelled or was skipped because of its own upstream skips it; anything else waits.
"""

from __future__ import annotations

import pytest

from kdag.api import NodePhase, NodeStatus, SkipReason, WorkflowRunStatus
from kdag.engine.model import Observed, RunContext
from kdag.engine.pass_state import PassState
from kdag.engine.rules import readiness
from tests.unit.engine.sim import T0, World, workflow

P = NodePhase
R = SkipReason


def _state(upstream: dict[str, NodeStatus], *, fans_out: bool = False) -> PassState:
    """A pass over `up -> down`, `up` in the given state(s), `down` Pending."""
    up: dict[str, object] = {"name": "up"}
    if fans_out:
        up["forEach"] = [key[key.index("[") + 1 : -1] for key in upstream]
    spec = workflow(nodes=[up, {"name": "down", "dependsOn": ["up"]}])
    nodes = {**upstream, "down": NodeStatus(phase=P.PENDING)}
    context: RunContext = World(spec).context()
    state = PassState(context, WorkflowRunStatus(workflow=spec, nodes=nodes), Observed({}), T0)
    state.bind(spec)
    state.by_template = state.keys_by_template()
    return state


def _node(phase: NodePhase, skip: SkipReason | None = None) -> NodeStatus:
    return NodeStatus(phase=phase, skip_reason=skip)


@pytest.mark.parametrize(
    ("phase", "skip", "dependent"),
    [
        (P.SUCCEEDED, None, "ready"),
        (P.SKIPPED, R.WHEN_FALSE, "ready"),
        (P.SKIPPED, R.NO_ITEMS, "ready"),
        (P.SKIPPED, R.UPSTREAM, "blocked"),
        (P.SKIPPED, R.STOPPED, "blocked"),
        (P.FAILED, None, "blocked"),
        (P.TIMED_OUT, None, "blocked"),
        (P.CANCELLED, None, "blocked"),
        (P.PENDING, None, "waiting"),
        (P.QUEUED, None, "waiting"),
        (P.RUNNING, None, "waiting"),
        (P.RETRYING, None, "waiting"),
        (P.WAITING_FOR_APPROVAL, None, "waiting"),
    ],
)
def test_a_dependencys_phase_decides_whether_its_dependent_is_ready(
    phase: NodePhase, skip: SkipReason | None, dependent: str
) -> None:
    state = _state({"up": _node(phase, skip)})
    deps = readiness.dependency_state(state, "down")
    assert deps.state == dependent
    assert deps.blocker == ("up" if dependent == "blocked" else None)


@pytest.mark.parametrize(
    ("instances", "dependent", "blocker"),
    [
        ({"up[a]": _node(P.SUCCEEDED), "up[b]": _node(P.SUCCEEDED)}, "ready", None),
        ({"up[a]": _node(P.SUCCEEDED), "up[b]": _node(P.SKIPPED, R.WHEN_FALSE)}, "ready", None),
        ({"up[a]": _node(P.SUCCEEDED), "up[b]": _node(P.RUNNING)}, "waiting", None),
        ({"up[a]": _node(P.RUNNING), "up[b]": _node(P.FAILED)}, "blocked", "up[b]"),
        ({"up[a]": _node(P.CANCELLED), "up[b]": _node(P.FAILED)}, "blocked", "up[a]"),
    ],
)
def test_a_fan_in_is_ready_only_once_every_instance_lets_it_run(
    instances: dict[str, NodeStatus], dependent: str, blocker: str | None
) -> None:
    for index, ns in enumerate(instances.values()):
        ns.index = index
    state = _state(instances, fans_out=True)
    deps = readiness.dependency_state(state, "down")
    assert deps.state == dependent
    assert deps.blocker == blocker


@pytest.mark.parametrize(
    ("phase", "skip", "after", "message"),
    [
        (P.SUCCEEDED, None, P.QUEUED, None),
        (P.SKIPPED, R.WHEN_FALSE, P.QUEUED, None),
        (P.FAILED, None, P.SKIPPED, "upstream node up failed"),
        (P.TIMED_OUT, None, P.SKIPPED, "upstream node up timed out"),
        (P.CANCELLED, None, P.SKIPPED, "upstream node up was cancelled"),
        (P.SKIPPED, R.UPSTREAM, P.SKIPPED, "upstream node up was skipped"),
        (P.RUNNING, None, P.PENDING, None),
    ],
)
def test_a_pending_dependent_is_queued_skipped_or_left_waiting(
    phase: NodePhase, skip: SkipReason | None, after: NodePhase, message: str | None
) -> None:
    state = _state({"up": _node(phase, skip)})
    pending = state.nodes["down"]
    readiness.advance_pending(state, "down", pending, readiness.dependency_state(state, "down"))
    down = state.nodes["down"]  # the pass's own copy once it changed
    assert down.phase is after
    assert down.message == message
    assert down.skip_reason == (R.UPSTREAM if after is P.SKIPPED else None)
