"""The wiring of the Workflow side: the Workflows and the runs kept from the watches as the
controller's live view, handlers that only add keys, no pass before the runs are listed,
nothing that would make kopf hold a finalizer on Workflows, and nothing that would let kopf
hold every handler back for good."""

from __future__ import annotations

import asyncio
import copy
from types import SimpleNamespace
from typing import Any

import kopf
import pytest
from kopf._cogs.aiokits import aiotoggles
from kopf._cogs.structs import references
from kopf._core.reactor import observation, orchestration, queueing
from workflow_harness import NS, FakeApi, spec

from kdag.api import GROUP, VERSION, WORKFLOWS
from kdag.operator import workflow_handlers
from kdag.operator.workflow_controller import WorkflowController
from kdag.operator.workflow_runs import WorkflowRuns

KEY = (NS, "etl")


def workflow_body(api: FakeApi) -> dict[str, Any]:
    return {
        "apiVersion": "kdag.dev/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": "etl", "namespace": NS, "uid": "u", "generation": 1,
                     "resourceVersion": api.next_rv()},
        "spec": spec(),
    }  # fmt: skip


def test_no_kdag_handler_makes_kopf_hold_a_finalizer() -> None:
    """kopf adds its finalizer only for daemons, timers and change handlers, and removes it
    from any object of a kind that has none of them: so from Workflows an older kdag (a
    daemon per scheduled Workflow) left it on."""
    registry = kopf.get_default_registry()
    assert registry._spawning.get_all_handlers() == []
    assert registry._changing.get_all_handlers() == []


async def _never_called(**_: Any) -> None:
    raise AssertionError("the watcher above never processes an event")


def test_a_served_namespace_whose_watch_stops_before_it_lists_holds_back_no_handler(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """kopf holds every handler back until each indexed kind's watch in each served
    namespace has listed once, and keeps that hold for good when the watch stops first (a
    namespace deleted just after it appeared, under a `--namespace` glob): with a kopf index
    on Workflows, no Workflow got a status or a scheduled run after that. kopf's own
    orchestration, with kdag's handlers, must leave nothing held."""

    async def watcher_that_never_lists(**_: Any) -> None:
        await asyncio.Event().wait()

    monkeypatch.setattr(queueing, "watcher", watcher_that_never_lists)
    registry = kopf.get_default_registry()
    resource = references.Resource(
        GROUP, VERSION, WORKFLOWS, kind="Workflow", namespaced=True,
        verbs=frozenset({"list", "watch", "patch"}),
    )  # fmt: skip
    insights = references.Insights()
    observation.revise_resources(
        registry=registry, insights=insights, resources=[resource], group=None
    )
    assert resource in insights.watched_resources  # the Workflow handler is kopf's

    async def scenario() -> bool:
        paused = aiotoggles.ToggleSet(any)
        ensemble = orchestration.Ensemble(
            operator_indexed=aiotoggles.ToggleSet(all),
            operator_paused=paused,
            peering_missing=await paused.make_toggle(name="peering"),
        )
        served = {"kdag-run-gone"}
        await orchestration.spawn_missing_watchers(
            processor=_never_called,
            settings=kopf.OperatorSettings(),
            indexed_resources=insights.indexed_resources,
            watched_resources=insights.watched_resources,
            watched_namespaces=served,
            ensemble=ensemble,
        )
        assert ensemble.watcher_tasks  # the namespace's watch started
        await orchestration.terminate_redundancies(
            remaining_resources=insights.watched_resources,
            remaining_namespaces={None},  # the namespace went before its watch listed
            ensemble=ensemble,
        )
        return ensemble.operator_indexed.is_on()

    assert asyncio.run(scenario()) is True


def test_the_controller_passes_only_on_events_and_only_once_the_runs_are_listed() -> None:
    api = FakeApi()
    app = SimpleNamespace(
        kube=api,
        config=SimpleNamespace(max_nodes=100, max_run_output_bytes=10_000),
        pausables=[],
        owns_workflows=lambda: True,
        workflow_runs=WorkflowRuns(),
        run_changed=None,
        cache=None,
    )
    memo = kopf.Memo(kdag=app)
    seen: dict[str, object] = {}

    async def scenario() -> None:
        app.workflow_runs.stream_started(NS)  # the run watch started, not listed yet
        await workflow_handlers.start_workflow_controller(memo=memo)
        controller = memo[workflow_handlers.MEMO_KEY]
        assert isinstance(controller, WorkflowController)
        seen["pausable"] = app.pausables[0] == (controller.pause, controller.resume)
        seen["run events"] = app.run_changed == controller.run_changed
        seen["listings"] = app.workflow_runs.on_listed == controller.runs_listed
        body = workflow_body(api)
        api.workflows["etl"] = copy.deepcopy(body)
        seen["before any event"] = list(api.calls)
        event: Any = {"type": None, "object": body}
        await workflow_handlers.workflow_status_on_workflow_event(event=event, memo=memo)
        await asyncio.sleep(0)
        while not controller.queue.idle:  # the pass found the runs not listed yet
            await asyncio.sleep(0)
        seen["before the runs are listed"] = list(api.status_patches)
        seen["timer while waiting"] = controller.due_at(KEY)  # no poll: the listing wakes it
        app.workflow_runs.listed("elsewhere", [])  # another namespace's listing: no pass
        app.workflow_runs.stream_stopped(NS)
        seen["woken by others"] = not controller.queue.idle
        run = {
            "metadata": {"name": "etl-1", "namespace": NS, "uid": "r"},
            "spec": {"workflowRef": {"name": "etl"}},
            "status": {"phase": "Running"},
        }
        app.workflow_runs.observe(None, run)
        app.workflow_runs.listed(NS, [(NS, "etl-1")])
        while not api.status_patches:  # the listing brings the Workflow back
            await asyncio.sleep(0)
        store = memo[workflow_handlers.STORE_KEY]
        seen["seen by the view"] = store.keys()
        for pause, _ in app.pausables:  # kopf peering paused the replica
            await pause()
        seen["after a pause"] = store.keys()  # resuming, kopf lists them all again
        await workflow_handlers.stop_workflow_controller(memo=memo)

    asyncio.run(scenario())
    assert seen["pausable"] is True
    assert seen["run events"] is True
    assert seen["before any event"] == []
    assert seen["listings"] is True
    assert seen["before the runs are listed"] == []
    assert seen["timer while waiting"] is None
    assert seen["woken by others"] is False
    assert api.status_patches[0]["status"]["lastRun"] == "etl-1"
    assert seen["seen by the view"] == [KEY]
    assert seen["after a pause"] == []
