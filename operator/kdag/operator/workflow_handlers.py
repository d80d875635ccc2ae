"""kopf wiring of the Workflow controller: a raw-event handler for Workflows, which only
keeps what it sees (`kdag.operator.workflow_store`) and adds the Workflow's key to the
controller's work queue; run events reach it from the run watch (`kdag.operator.handlers`).

The controller reads each Workflow from the store, as its own latest event left it, and runs
from `kdag.operator.workflow_runs`, whose `complete` every pass awaits; keys reach the queue
only from events, and timers only from passes, so a restarted operator never schedules from
a partial view. No kopf index: kopf would hold every handler back for good once a served
namespace's watch stopped before it listed (`workflow_store` says how).

A raw-event handler makes kopf write nothing onto Workflows. Older versions ran a
`kopf.daemon` per scheduled Workflow, for which kopf put its finalizer on the Workflow;
with no daemon or change handler left for Workflows, kopf removes that finalizer from every
Workflow it sees (a Workflow being deleted included), so an upgraded operator strands none.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, cast

import kopf

from kdag.api import GROUP, VERSION, WORKFLOWS
from kdag.engine.cron import ObservedRun
from kdag.operator.app import Operator
from kdag.operator.workflow_controller import WorkflowController
from kdag.operator.workflow_objects import WorkflowKey, WorkflowObject
from kdag.operator.workflow_runs import WorkflowRuns
from kdag.operator.workflow_store import WorkflowStore

WORKFLOWS_RESOURCE = (GROUP, VERSION, WORKFLOWS)
MEMO_KEY = "kdag_workflow_controller"
STORE_KEY = "kdag_workflow_store"


@dataclass(frozen=True)
class WatchedWorkflows:
    """The controller's view: the Workflows the watch showed, and the runs kept from the
    run watch."""

    workflows: WorkflowStore
    workflow_runs: WorkflowRuns

    def workflow(self, key: WorkflowKey) -> WorkflowObject | None:
        return self.workflows.workflow(key)

    def runs(self, key: WorkflowKey) -> Iterable[ObservedRun]:
        return self.workflow_runs.runs(key)

    def complete(self, namespace: str) -> bool:
        return self.workflow_runs.complete(namespace)


def _controller(memo: kopf.Memo) -> WorkflowController:
    controller: WorkflowController = memo[MEMO_KEY]
    return controller


@kopf.on.startup()
async def start_workflow_controller(memo: kopf.Memo, **_: Any) -> None:
    app: Operator = memo["kdag"]
    store = WorkflowStore()
    view = WatchedWorkflows(store, app.workflow_runs)
    controller = WorkflowController(
        app.kube,
        view,
        max_nodes=app.config.max_nodes,
        output_budget=app.config.max_run_output_bytes,
        owns=app.owns_workflows,
    )
    memo[MEMO_KEY] = controller
    memo[STORE_KEY] = store
    app.pausables.append((controller.pause, controller.resume))
    app.pausables.append((_forgetting(store), lambda: None))
    app.workflows_gained = lambda: controller.take_over(store.keys())
    app.run_changed = controller.run_changed
    app.workflow_runs.on_listed = controller.runs_listed
    controller.start()


@kopf.on.cleanup()
async def stop_workflow_controller(memo: kopf.Memo, **_: Any) -> None:
    controller = memo.get(MEMO_KEY)
    if isinstance(controller, WorkflowController):
        await controller.stop()


def _forgetting(store: WorkflowStore) -> Callable[[], Awaitable[None]]:
    """Paused by kopf peering: resuming, kopf lists every Workflow again, so a Workflow
    deleted meanwhile is not kept."""

    async def forget() -> None:
        store.clear()

    return forget


@kopf.on.event(*WORKFLOWS_RESOURCE)
async def workflow_status_on_workflow_event(
    event: kopf.RawEvent, memo: kopf.Memo, **_: Any
) -> None:
    body = cast(Mapping[str, Any], event["object"])
    store: WorkflowStore = memo[STORE_KEY]
    store.observe(event["type"], body)
    _controller(memo).workflow_changed(event["type"], body)
