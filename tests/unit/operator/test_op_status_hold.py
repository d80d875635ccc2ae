"""Amortised status writes (`status_hold`): progress within the hold period after a run's
last write is held, planned on, and written by the first pass after the period (or one
period after the hold began, on the run's timer); a change of the
run's phase, a cancel, a rerun and Job deletion by retention are written at once; a held
status on a stored status that moved on is dropped."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from conftest import T0, Harness, run_body, status_error

from kdag.operator import reconciler as reconciler_module

CHAIN = [
    {"name": "a"},
    {"name": "b", "dependsOn": ["a"]},
    {"name": "c", "dependsOn": ["b"]},
    {"name": "d", "dependsOn": ["c"]},
]


def started(h: Harness, nodes: list[dict[str, Any]] | None = None) -> tuple[str, str]:
    key = h.create_run(run_body(nodes=nodes or CHAIN))
    h.reconcile(key)  # the run starts: a phase change, written at once
    assert len(h.kube.status_patches) == 1
    return key


def finish(h: Harness, key: tuple[str, str], node: str, after: float) -> None:
    h.clock.advance(after)
    h.kube.finish_job("ns", h.job_of(key, node))
    h.sync_from_api()
    h.reconcile(key)


def node_phases(h: Harness, key: tuple[str, str]) -> dict[str, str]:
    return {name: node["phase"] for name, node in h.status(key)["nodes"].items()}


def test_progress_within_the_hold_is_held_then_written_once_with_its_own_times() -> None:
    h = Harness(status_hold_seconds=2)
    key = started(h)
    finish(h, key, "a", after=0.5)
    b_started = h.clock.now
    finish(h, key, "b", after=0.5)
    # The Jobs came at once; the status did not.
    assert h.job_of(key, "c")
    assert len(h.kube.status_patches) == 1
    assert node_phases(h, key) == {"a": "Running", "b": "Pending", "c": "Pending", "d": "Pending"}
    # Due one period after the run began to hold (a's end), whatever came since.
    assert h.due[key] == T0 + timedelta(seconds=0.5 + 2)
    h.clock.now = h.due[key]  # the run's timer: the held progress is written
    h.sync_from_api()
    h.reconcile(key)
    assert len(h.kube.status_patches) == 2
    assert node_phases(h, key) == {
        "a": "Succeeded", "b": "Succeeded", "c": "Running", "d": "Pending"
    }  # fmt: skip
    # b's start is when the held pass started it, not when the status was written.
    assert h.status(key)["nodes"]["b"]["startedAt"] == b_started.strftime("%Y-%m-%dT%H:%M:%SZ")
    value = h.metrics.registry.get_sample_value
    assert value("kdag_nodes_finished_total", {"phase": "Succeeded"}) == 2  # counted once
    h.reconcile(key)  # nothing new: nothing written, nothing held
    assert len(h.kube.status_patches) == 2


def test_the_first_pass_after_the_period_writes_without_waiting_for_the_timer() -> None:
    h = Harness(status_hold_seconds=2)
    key = started(h)
    finish(h, key, "a", after=0.5)  # held: due at 2.5 s
    finish(h, key, "b", after=1.6)  # 2.1 s after the last write
    assert len(h.kube.status_patches) == 2
    assert node_phases(h, key) == {
        "a": "Succeeded",
        "b": "Succeeded",
        "c": "Running",
        "d": "Pending",
    }
    assert h.due.get(key) is None  # nothing held, no timer


def test_the_runs_end_is_written_at_once_with_what_was_held() -> None:
    h = Harness(status_hold_seconds=2)
    key = started(h, CHAIN[:2])
    finish(h, key, "a", after=0.1)
    assert len(h.kube.status_patches) == 1
    finish(h, key, "b", after=0.1)
    assert len(h.kube.status_patches) == 2
    assert h.status(key)["phase"] == "Succeeded"
    assert node_phases(h, key) == {"a": "Succeeded", "b": "Succeeded"}


def test_a_cancel_is_written_at_once() -> None:
    h = Harness(status_hold_seconds=2)
    key = started(h)
    finish(h, key, "a", after=0.1)
    h.kube.runs[key]["spec"]["cancel"] = True
    h.kube.touch(key)
    h.sync_from_api()
    h.reconcile(key)
    assert h.status(key)["phase"] == "Cancelled"
    assert h.status(key)["nodes"]["a"]["phase"] == "Succeeded"  # the held progress too


def test_runs_whose_jobs_retention_deletes_write_every_change() -> None:
    h = Harness(status_hold_seconds=2, job_retention_policy="DeleteOnSuccess")
    key = started(h)
    finish(h, key, "a", after=0.1)
    assert len(h.kube.status_patches) == 2
    assert node_phases(h, key)["a"] == "Succeeded"


def test_progress_after_a_quiet_period_is_written_at_once() -> None:
    h = Harness(status_hold_seconds=2)
    key = started(h)
    finish(h, key, "a", after=2.5)
    assert len(h.kube.status_patches) == 2


def test_a_failed_write_keeps_what_was_held_and_writes_it_on_the_retry() -> None:
    h = Harness(status_hold_seconds=2)
    key = started(h)
    finish(h, key, "a", after=0.5)
    h.clock.advance(2)
    h.kube.fail_next["patch_run_status"] = status_error(500, "InternalError")
    h.reconcile_safely(key)
    h.reconcile_safely(key)
    assert node_phases(h, key) == {"a": "Succeeded", "b": "Running", "c": "Pending", "d": "Pending"}
    value = h.metrics.registry.get_sample_value
    assert value("kdag_nodes_finished_total", {"phase": "Succeeded"}) == 1


def test_a_held_status_is_dropped_when_someone_else_writes_the_status() -> None:
    h = Harness(status_hold_seconds=2)
    key = started(h)
    finish(h, key, "a", after=0.5)
    h.kube.runs[key]["status"]["nodes"]["d"]["message"] = "written by hand"
    h.kube.touch(key)
    h.sync_from_api()
    h.clock.advance(2)
    h.reconcile(key)  # planned from the stored status again: a's result is read anew
    assert node_phases(h, key) == {"a": "Succeeded", "b": "Running", "c": "Pending", "d": "Pending"}
    assert h.status(key)["nodes"]["d"]["message"] == "written by hand"  # not laid over
    assert len([j for j in h.kube.jobs if "-b-" in j[1]]) == 1  # b's Job was not made twice


def test_a_node_that_needs_attention_is_written_at_once_even_within_the_hold() -> None:
    """A retry's backoff may be shorter than the hold: held, Retrying would never be seen."""
    h = Harness(status_hold_seconds=2)
    retry = {"limit": 2, "backoffSeconds": 1}
    key = started(h, [{"name": "a", "retry": retry}, {"name": "b", "dependsOn": ["a"]}])
    h.clock.advance(0.5)
    h.kube.finish_job("ns", h.job_of(key, "a"), ok=False, exit_code=1)
    h.sync_from_api()
    h.reconcile(key)
    assert len(h.kube.status_patches) == 2
    assert h.status(key)["nodes"]["a"]["phase"] == "Retrying"


def test_a_run_taken_over_forgets_its_hold_and_writes_what_it_plans_from_the_store() -> None:
    """Shards: a replica that lost and regained a run must not lay an old hold over what
    the other owner may have written meanwhile."""
    h = Harness(status_hold_seconds=2)
    key = started(h)
    finish(h, key, "a", after=0.5)  # held: a Succeeded, b's Job made
    h.reconciler.take_over(key)
    h.reconcile(key)  # read again, planned from the stored status, written at once
    assert len(h.kube.status_patches) == 2
    assert node_phases(h, key) == {"a": "Succeeded", "b": "Running", "c": "Pending", "d": "Pending"}
    assert len([j for j in h.kube.jobs if "-b-" in j[1]]) == 1


def planning_passes(monkeypatch: Any) -> list[int]:
    """Counts the passes that plan (the others only write what was held)."""
    planned: list[int] = []
    real = reconciler_module.decide

    def counting(*args: Any, **kwargs: Any) -> Any:
        planned.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(reconciler_module, "decide", counting)
    return planned


def test_a_quiet_runs_timer_writes_what_was_held_without_planning_again(
    monkeypatch: Any,
) -> None:
    h = Harness(status_hold_seconds=2)
    key = started(h)
    finish(h, key, "a", after=0.5)  # held: a Succeeded, b Running
    planned = planning_passes(monkeypatch)
    h.clock.now = h.due[key]  # nothing woke the run since
    h.reconcile(key)
    assert planned == []
    assert len(h.kube.status_patches) == 2
    assert node_phases(h, key) == {"a": "Succeeded", "b": "Running", "c": "Pending", "d": "Pending"}
    assert h.due.get(key) is None  # the plan wanted no timer, and nothing is held
    h.reconcile(key)  # planned from what was written: nothing new
    assert planned == [1]
    assert len(h.kube.status_patches) == 2


def test_a_run_woken_since_its_status_was_held_is_planned_before_it_writes(
    monkeypatch: Any,
) -> None:
    """A Job event that came after the pass that held (or during it) is news that the held
    status lacks: written as it is, the run would wait for a wake that never comes."""
    h = Harness(status_hold_seconds=2)
    key = started(h)
    finish(h, key, "a", after=0.5)  # held: b Running
    h.clock.advance(1)
    h.kube.finish_job("ns", h.job_of(key, "b"))
    h.sync_from_api()
    h.reconciler.enqueue(key)  # what the Job's watch handler does
    planned = planning_passes(monkeypatch)
    h.clock.now = T0 + timedelta(seconds=2.5)  # the hold's timer comes first
    h.reconcile(key)
    assert planned == [1]
    assert node_phases(h, key) == {
        "a": "Succeeded", "b": "Succeeded", "c": "Running", "d": "Pending"
    }  # fmt: skip


def test_a_held_status_is_planned_again_when_what_its_plan_waits_for_is_due(
    monkeypatch: Any,
) -> None:
    """A pass that comes late (a busy operator) after the run's deadline plans the timeout
    instead of writing the held progress first."""
    h = Harness(status_hold_seconds=2)
    key = h.create_run(run_body(nodes=CHAIN, timeoutSeconds=3))
    h.reconcile(key)
    finish(h, key, "a", after=0.5)  # held; the run's deadline is at 3 s
    planned = planning_passes(monkeypatch)
    h.clock.now = T0 + timedelta(seconds=3.5)
    h.reconcile(key)
    assert planned == [1]
    assert h.status(key)["phase"] == "TimedOut"


def test_a_held_pass_rests_as_long_as_the_runs_last_write_made_it_rest() -> None:
    """Holding must not make a big run plan more often than writing did: the rest after a
    write merges the events that come meanwhile into one pass."""
    h = Harness(status_hold_seconds=2)
    # A write long enough that the pass's own milliseconds cannot make up the difference
    # between once and twice its time.
    h.kube.patch_seconds = 0.2
    key = started(h)
    h.clock.advance(0.5)
    h.kube.finish_job("ns", h.job_of(key, "a"))
    h.sync_from_api()
    result = asyncio.run(h.reconciler.reconcile(key))
    assert len(h.kube.status_patches) == 1  # held
    assert result.cooldown_seconds >= 2 * 0.2
