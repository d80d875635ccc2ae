"""A user's write that lands while a pass is running is acted on by the next pass.

The pass plans from the cached run at resourceVersion N; the user writes N+1; the pass's own
status patch answers N+2, which holds the user's change. The watch then delivers N+1 (older
than what is cached, so dropped) and N+2 (equal to what is cached). Nothing may be lost.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from conftest import Harness, annotate, run_body, set_spec, watch_handlers_app

from kdag.operator.handlers import handle_run_event

GATE = {"name": "gate", "approval": {"message": "go?"}}


def _pass_racing_with(h: Harness, key: tuple[str, str], write: Callable[[dict[str, Any]], None]):
    """Run one pass whose status write races with the user's write, then let the watch
    deliver both events late, in order; return the events."""
    delivered: list[dict[str, Any]] = []

    def user_writes() -> None:
        write(h.kube.runs[key])
        h.kube.touch(key)
        delivered.append(copy.deepcopy(h.kube.runs[key]))
        h.kube.before_status_write = None

    h.kube.before_status_write = user_writes
    h.reconcile(key)
    assert delivered, "the pass made no status write for the user's write to race with"
    delivered.append(copy.deepcopy(h.kube.runs[key]))  # the event of our own write
    app = watch_handlers_app(h.cache, h.reconciler)
    for body in delivered:
        handle_run_event(app, "MODIFIED", body)  # type: ignore[arg-type]
    return delivered


def _next_pass_is_queued(h: Harness, key: tuple[str, str]) -> bool:
    return key in h.reconciler._queued or key in h.reconciler._dirty


@pytest.mark.parametrize(
    ("write", "check"),
    [
        (set_spec(cancel=True), lambda s: s["phase"] == "Cancelled"),
        (set_spec(suspend=True), lambda s: s["phase"] == "Suspended"),
        (
            annotate("approve.kdag.dev/gate", "alice"),
            lambda s: s["nodes"]["gate"]["phase"] == "Succeeded",
        ),
        (
            annotate("reject.kdag.dev/gate", "no"),
            lambda s: s["nodes"]["gate"]["phase"] == "Failed",
        ),
    ],
    ids=["cancel", "suspend", "approve", "reject"],
)
def test_a_user_write_racing_with_a_status_write_is_acted_on_by_the_next_pass(
    h: Harness,
    write: Callable[[dict[str, Any]], None],
    check: Callable[[dict[str, Any]], bool],
) -> None:
    key = h.create_run(run_body(nodes=[{"name": "a"}, GATE, {"name": "b", "dependsOn": ["a"]}]))
    h.reconcile(key)
    h.sync_from_api()
    # Job a finishes: the next pass writes status (b starts), and the user's write races it.
    h.kube.finish_job("ns", h.job(key, "a", 1))
    h.sync_from_api()
    _pass_racing_with(h, key, write)
    assert _next_pass_is_queued(h, key)
    h.sync_from_api()
    h.reconcile(key)
    assert check(h.status(key)), h.status(key)
