"""Timeouts (SPEC §3). The run's: once it passes, running Jobs are deleted and the run ends
TimedOut. A node's timeout is its Job's activeDeadlineSeconds, observed in `attempts`."""

from __future__ import annotations

from datetime import datetime, timedelta

from kdag.api import RunPhase
from kdag.engine.pass_state import PassState
from kdag.engine.rules import stop
from kdag.engine.timeutil import parse_iso


def enforce(state: PassState) -> None:
    """Compute the run's deadline (once per pass) and end the run TimedOut once it passed."""
    timeout = state.workflow.timeout_seconds
    started = state.status.started_at
    if not timeout or not started:
        return
    # Measured from the start of this attempt of the run: a rerun restarts it.
    state.run_deadline = parse_iso(started) + timedelta(seconds=timeout)
    if state.status.ending_phase is None and state.now >= state.run_deadline:
        stop.abort(state, RunPhase.TIMED_OUT, f"the run exceeded its timeoutSeconds ({timeout}s)")


def due(state: PassState) -> datetime | None:
    """The run's deadline, while it still matters (nothing has decided how the run ends)."""
    return state.run_deadline if state.status.ending_phase is None else None
