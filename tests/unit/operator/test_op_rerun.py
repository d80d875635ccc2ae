"""Rerunning a run whose gate was answered: the rerun gate asks again, whatever fails when.

The rerun clears the gate's answers from the run's annotations and records its token in the
status; every interleaving of failures and restarts between those writes must end with the
gate waiting for a new answer, never taking an old one.
"""

from __future__ import annotations

from typing import Any

from conftest import Harness, RecordingEvents, run_body, status_error

from kdag.operator.cache import Cache
from kdag.operator.metrics import Metrics
from kdag.operator.reconciler import Reconciler

APPROVE = "approve.kdag.dev/gate"
REJECT = "reject.kdag.dev/gate"


def _answer(h: Harness, key: tuple[str, str], annotations: dict[str, str]) -> None:
    """A user's `kubectl annotate`, seen by the watch."""
    meta = h.kube.runs[key]["metadata"]
    meta["annotations"] = {**(meta.get("annotations") or {}), **annotations}
    h.kube.touch(key)
    h.sync_from_api()


def _rejected_run(h: Harness) -> tuple[str, str]:
    """A run whose gate one user approved and another rejected: the reject won."""
    key = h.create_run(run_body(nodes=[{"name": "gate", "approval": {}}]))
    h.reconcile(key)
    _answer(h, key, {APPROVE: "alice", REJECT: "bob: numbers look wrong"})
    h.reconcile(key)
    assert h.status(key)["phase"] == "Failed"
    h.sync_from_api()
    h.reconcile(key)  # settled
    return key


def _gate(h: Harness, key: tuple[str, str]) -> dict[str, Any]:
    gate: dict[str, Any] = h.status(key)["nodes"]["gate"]
    return gate


def _annotations(h: Harness, key: tuple[str, str]) -> dict[str, str]:
    annotations: dict[str, str] = h.kube.runs[key]["metadata"].get("annotations") or {}
    return annotations


def _restarted(h: Harness) -> None:
    """A new operator process on the same API: empty cache, fresh reconciler."""
    h.cache = Cache()
    h.reconciler = Reconciler(
        h.kube,  # type: ignore[arg-type]
        h.cache,
        Metrics(),
        RecordingEvents(),
        clock=h.clock,
        plan_in_thread=False,
    )
    h.sync_from_api()


def test_a_rerun_gate_does_not_take_the_approval_of_the_attempt_before(h: Harness) -> None:
    key = _rejected_run(h)
    _answer(h, key, {"kdag.dev/rerun": "1"})
    h.reconcile(key)
    assert _gate(h, key)["phase"] == "WaitingForApproval"
    assert APPROVE not in _annotations(h, key) and REJECT not in _annotations(h, key)
    h.reconcile(key)  # planned again from what the pass wrote: still waiting
    assert _gate(h, key)["phase"] == "WaitingForApproval"
    _answer(h, key, {APPROVE: "carol"})
    h.reconcile(key)
    assert _gate(h, key)["phase"] == "Succeeded"
    assert _gate(h, key)["approvedBy"] == "carol"


def test_a_failed_removal_of_the_answers_records_no_rerun_and_is_tried_again(
    h: Harness,
) -> None:
    key = _rejected_run(h)
    _answer(h, key, {"kdag.dev/rerun": "1"})
    h.kube.fail_next["patch_run"] = status_error(500, "InternalError")
    h.reconcile_safely(key)
    assert h.status(key)["phase"] == "Failed"
    assert h.status(key).get("rerunToken") is None
    assert _annotations(h, key)[REJECT] == "bob: numbers look wrong"
    h.reconcile_safely(key)
    assert _gate(h, key)["phase"] == "WaitingForApproval"
    assert h.status(key)["rerunToken"] == "1"
    assert APPROVE not in _annotations(h, key) and REJECT not in _annotations(h, key)


def test_a_conflict_on_the_removal_is_tried_again_too(h: Harness) -> None:
    key = _rejected_run(h)
    _answer(h, key, {"kdag.dev/rerun": "1"})
    h.kube.fail_next["patch_run"] = status_error(409, "Conflict")
    h.reconcile_safely(key)
    assert h.status(key).get("rerunToken") is None
    h.reconcile_safely(key)
    assert _gate(h, key)["phase"] == "WaitingForApproval"


def test_a_failed_status_write_after_the_removal_reruns_again_without_the_old_answers(
    h: Harness,
) -> None:
    key = _rejected_run(h)
    _answer(h, key, {"kdag.dev/rerun": "1"})
    h.kube.fail_next["patch_run_status"] = status_error(500, "InternalError")
    h.reconcile_safely(key)
    assert h.status(key)["phase"] == "Failed"  # the rerun is not recorded yet
    assert APPROVE not in _annotations(h, key) and REJECT not in _annotations(h, key)
    h.reconcile_safely(key)
    assert _gate(h, key)["phase"] == "WaitingForApproval"
    assert h.status(key)["reruns"] == 1


def test_a_restart_between_the_removal_and_the_status_write_still_asks_the_gate_again(
    h: Harness,
) -> None:
    key = _rejected_run(h)
    _answer(h, key, {"kdag.dev/rerun": "1"})
    h.kube.fail_next["patch_run_status"] = status_error(500, "InternalError")
    h.reconcile_safely(key)
    _restarted(h)
    h.reconcile(key)
    assert _gate(h, key)["phase"] == "WaitingForApproval"
    _restarted(h)
    h.reconcile(key)
    assert _gate(h, key)["phase"] == "WaitingForApproval"
    _answer(h, key, {REJECT: "dave: still wrong"})
    h.reconcile(key)
    assert _gate(h, key)["phase"] == "Failed"
    assert _gate(h, key)["rejectedBy"] == "dave: still wrong"


def test_a_restart_after_a_failed_removal_still_asks_the_gate_again(h: Harness) -> None:
    key = _rejected_run(h)
    _answer(h, key, {"kdag.dev/rerun": "1"})
    h.kube.fail_next["patch_run"] = status_error(503, "ServiceUnavailable")
    h.reconcile_safely(key)
    _restarted(h)
    h.reconcile(key)
    assert _gate(h, key)["phase"] == "WaitingForApproval"
    assert APPROVE not in _annotations(h, key) and REJECT not in _annotations(h, key)


def test_an_answer_given_after_the_rerun_was_recorded_is_taken(h: Harness) -> None:
    key = _rejected_run(h)
    _answer(h, key, {"kdag.dev/rerun": "1"})
    h.reconcile(key)
    _restarted(h)
    _answer(h, key, {APPROVE: "alice"})  # the same user, answering the new question
    h.reconcile(key)
    assert _gate(h, key)["phase"] == "Succeeded"
    assert _gate(h, key)["approvedBy"] == "alice"


def test_an_answer_given_while_the_rerun_is_half_applied_is_cleared_with_the_old_ones(
    h: Harness,
) -> None:
    # The rerun is not recorded until its status write succeeds, so an answer that arrives
    # between the removal and a failed status write cannot be told from an old one: it is
    # cleared too and the gate asks again. Never taken as the answer of the attempt before.
    key = _rejected_run(h)
    _answer(h, key, {"kdag.dev/rerun": "1"})
    h.kube.fail_next["patch_run_status"] = status_error(500, "InternalError")
    h.reconcile_safely(key)
    _answer(h, key, {APPROVE: "carol"})
    h.reconcile_safely(key)
    assert _gate(h, key)["phase"] == "WaitingForApproval"
    assert APPROVE not in _annotations(h, key)
