"""The wiring of the Workflow side: kopf's Workflow index and the runs kept from the run
watch as the controller's live view, handlers that only add keys, no pass before the runs
are listed, and nothing that would make kopf hold a finalizer on Workflows."""

from __future__ import annotations

import asyncio
import copy
from types import SimpleNamespace
from typing import Any

import kopf
from workflow_harness import NS, FakeApi, spec

from kdag.operator import workflow_handlers
from kdag.operator.workflow_controller import WorkflowController
from kdag.operator.workflow_objects import WorkflowKey, WorkflowObject
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
    assert registry._indexing.get_all_handlers()  # the Workflows are kopf's index


def test_the_controller_passes_only_on_events_and_only_once_the_runs_are_listed() -> None:
    api = FakeApi()
    # kopf hands the same index object to every handler and updates it in place.
    workflows: dict[WorkflowKey, list[WorkflowObject]] = {}
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
        await workflow_handlers.start_workflow_controller(
            memo=memo, **{workflow_handlers.WORKFLOWS_INDEX: workflows}
        )
        controller = memo[workflow_handlers.MEMO_KEY]
        assert isinstance(controller, WorkflowController)
        seen["pausable"] = app.pausables == [(controller.pause, controller.resume)]
        seen["run events"] = app.run_changed == controller.run_changed
        seen["listings"] = app.workflow_runs.on_listed == controller.runs_listed
        body = workflow_body(api)
        api.workflows["etl"] = copy.deepcopy(body)
        workflows[KEY] = [WorkflowObject.from_body(body)]
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
