"""The kopf wiring of the Workflow side: indexes as the controller's live view, handlers that
only add keys, and nothing that would make kopf hold a finalizer on Workflows."""

from __future__ import annotations

import asyncio
import copy
from types import SimpleNamespace
from typing import Any

import kopf
from workflow_harness import NS, FakeApi, spec

import kdag.operator.handlers  # noqa: F401  (registers the runs' handlers)
from kdag.engine.cron import ObservedRun
from kdag.operator import workflow_handlers
from kdag.operator.workflow_controller import WorkflowController
from kdag.operator.workflow_objects import WorkflowKey, WorkflowObject, observe_run

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
    assert registry._indexing.get_all_handlers()  # the view is kopf's indexes


def test_the_controller_reads_kopfs_indexes_live_and_passes_only_on_events() -> None:
    api = FakeApi()
    # kopf hands the same index objects to every handler and updates them in place.
    workflows: dict[WorkflowKey, list[WorkflowObject]] = {}
    runs: dict[WorkflowKey, list[ObservedRun]] = {}
    app = SimpleNamespace(
        kube=api,
        config=SimpleNamespace(max_nodes=100, max_run_output_bytes=10_000),
        pausables=[],
        owns_workflows=lambda: True,
    )
    memo = kopf.Memo(kdag=app)
    seen: dict[str, object] = {}

    async def scenario() -> None:
        await workflow_handlers.start_workflow_controller(
            memo=memo,
            **{workflow_handlers.WORKFLOWS_INDEX: workflows, workflow_handlers.RUNS_INDEX: runs},
        )
        controller = memo[workflow_handlers.MEMO_KEY]
        assert isinstance(controller, WorkflowController)
        seen["pausable"] = app.pausables == [(controller.pause, controller.resume)]
        body = workflow_body(api)
        api.workflows["etl"] = copy.deepcopy(body)
        # kopf fills the indexes, then calls the handlers.
        workflows[KEY] = [WorkflowObject.from_body(body)]
        run = {
            "metadata": {"name": "etl-1", "namespace": NS, "uid": "r"},
            "spec": {"workflowRef": {"name": "etl"}},
            "status": {"phase": "Running"},
        }
        observed = observe_run(run)
        assert observed is not None
        runs[KEY] = [observed[1]]
        seen["before any event"] = list(api.calls)
        event: Any = {"type": None, "object": body}
        await workflow_handlers.workflow_status_on_workflow_event(event=event, memo=memo)
        while not (controller.queue.idle and api.status_patches):
            await asyncio.sleep(0)
        await workflow_handlers.stop_workflow_controller(memo=memo)

    asyncio.run(scenario())
    assert seen["pausable"] is True
    assert seen["before any event"] == []
    assert api.status_patches[0]["status"]["lastRun"] == "etl-1"
