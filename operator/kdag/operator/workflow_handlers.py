"""kopf wiring of the Workflow controller: an index and a raw-event handler for Workflows,
which only hand what they see to the controller's work queue; run events reach it from the
run watch (`kdag.operator.handlers`).

The controller reads Workflows from a kopf index, which kopf fills from a complete listing
before any handler runs, and runs from `kdag.operator.workflow_runs`, whose `complete` every
pass awaits; keys reach the queue only from events, and timers only from passes, so a
restarted operator never schedules from a partial view.

Raw-event handlers and indexes make kopf write nothing onto Workflows. Older versions ran a
`kopf.daemon` per scheduled Workflow, for which kopf put its finalizer on the Workflow;
with no daemon or change handler left for Workflows, kopf removes that finalizer from every
Workflow it sees (a Workflow being deleted included), so an upgraded operator strands none.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, cast

import kopf

from kdag.api import GROUP, VERSION, WORKFLOWS
from kdag.engine.cron import ObservedRun
from kdag.operator.app import Operator
from kdag.operator.workflow_controller import WorkflowController
from kdag.operator.workflow_objects import WorkflowKey, WorkflowObject
from kdag.operator.workflow_runs import WorkflowRuns

WORKFLOWS_RESOURCE = (GROUP, VERSION, WORKFLOWS)
MEMO_KEY = "kdag_workflow_controller"
# kopf names an index after its function and passes it to handlers under that name.
WORKFLOWS_INDEX = "kdag_workflows"


@dataclass(frozen=True)
class IndexedWorkflows:
    """The controller's view: kopf's Workflow index, live (kopf updates it in place), and
    the runs kept from the run watch."""

    workflows: Mapping[WorkflowKey, Iterable[WorkflowObject]]
    workflow_runs: WorkflowRuns

    def workflow(self, key: WorkflowKey) -> WorkflowObject | None:
        return next(iter(self.workflows.get(key, ())), None)

    def runs(self, key: WorkflowKey) -> Iterable[ObservedRun]:
        return self.workflow_runs.runs(key)

    def complete(self, namespace: str) -> bool:
        return self.workflow_runs.complete(namespace)


def _controller(memo: kopf.Memo) -> WorkflowController:
    controller: WorkflowController = memo[MEMO_KEY]
    return controller


@kopf.on.startup()
async def start_workflow_controller(memo: kopf.Memo, **kwargs: Any) -> None:
    app: Operator = memo["kdag"]
    view = IndexedWorkflows(
        cast(Mapping[WorkflowKey, Iterable[WorkflowObject]], kwargs[WORKFLOWS_INDEX]),
        app.workflow_runs,
    )
    controller = WorkflowController(
        app.kube,
        view,
        max_nodes=app.config.max_nodes,
        output_budget=app.config.max_run_output_bytes,
        owns=app.owns_workflows,
    )
    memo[MEMO_KEY] = controller
    app.pausables.append((controller.pause, controller.resume))
    app.workflows_gained = lambda: controller.take_over(view.workflows.keys())
    app.run_changed = controller.run_changed
    app.workflow_runs.on_listed = controller.runs_listed
    controller.start()


@kopf.on.cleanup()
async def stop_workflow_controller(memo: kopf.Memo, **_: Any) -> None:
    controller = memo.get(MEMO_KEY)
    if isinstance(controller, WorkflowController):
        await controller.stop()


# An index handler is `async` though it never awaits: kopf runs a plain function in a
# thread for every event.
@kopf.index(*WORKFLOWS_RESOURCE, id=WORKFLOWS_INDEX)
async def kdag_workflows(body: kopf.Body, **_: Any) -> dict[WorkflowKey, WorkflowObject]:
    workflow = WorkflowObject.from_body(body)
    return {workflow.key: workflow}


@kopf.on.event(*WORKFLOWS_RESOURCE)
async def workflow_status_on_workflow_event(
    event: kopf.RawEvent, memo: kopf.Memo, **_: Any
) -> None:
    _controller(memo).workflow_changed(event["type"], cast(Mapping[str, Any], event["object"]))
