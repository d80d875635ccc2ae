"""Finally nodes (SPEC §3): once every main node has ended, the run's ending is decided and
the finally nodes run, seeing it as `run.phase`."""

from __future__ import annotations

from kdag.api import RunPhase
from kdag.engine.pass_state import PassState


def main_done(state: PassState) -> bool:
    return all(
        state.nodes[k].phase.terminal for name in state.main_names for k in state.by_template[name]
    )


def decide_ending(state: PassState) -> None:
    """The phase the run ends in, unless a cancel or timeout decided it already."""
    if state.status.ending_phase is None:
        state.status.ending_phase = _main_outcome(state)


def _main_outcome(state: PassState) -> RunPhase:
    for name in state.main_names:
        for key in state.by_template[name]:
            if state.nodes[key].phase.unsuccessful:
                return RunPhase.FAILED
    return RunPhase.SUCCEEDED


def final_names_in_order(state: PassState) -> list[str]:
    return [name for name in state.graph.order if name in state.final_names]
