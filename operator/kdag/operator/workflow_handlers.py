"""kopf wiring of the Workflow controller: indexes, raw-event handlers and a schedule
daemon per scheduled Workflow; each only hands what it sees to the controller.

Runs and Workflows reach the controller through kopf indexes, which kopf fills completely
before any handler runs: a restarted operator never schedules from a partial view. kopf
puts a finalizer on a scheduled Workflow so its daemon is stopped before the Workflow
goes; the finalizer is removed when the schedule is removed or the Workflow is deleted.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, cast

import kopf

from kdag.api import GROUP, VERSION, WORKFLOWS
from kdag.engine.cron import ObservedRun
from kdag.operator.app import Operator
from kdag.operator.config import RUNS_RESOURCE
from kdag.operator.workflow_controller import RunsIndex, WorkflowController, WorkflowsIndex
from kdag.operator.workflow_objects import WorkflowKey, WorkflowObject, observe_run

WORKFLOWS_RESOURCE = (GROUP, VERSION, WORKFLOWS)
MEMO_KEY = "kdag_workflow_controller"
# kopf names an index after its function and passes it to handlers under that name.
WORKFLOWS_INDEX = "kdag_workflows"
RUNS_INDEX = "kdag_workflow_runs"


def _controller(memo: kopf.Memo) -> WorkflowController:
    controller: WorkflowController = memo[MEMO_KEY]
    return controller


@kopf.on.startup()
async def start_workflow_controller(memo: kopf.Memo, **_: Any) -> None:
    app: Operator = memo["kdag"]
    controller = WorkflowController(
        app.kube,
        max_nodes=app.config.max_nodes,
        output_budget=app.config.max_run_output_bytes,
    )
    memo[MEMO_KEY] = controller
    app.pausables.append((controller.pause, controller.resume))


@kopf.on.cleanup()
async def stop_workflow_controller(memo: kopf.Memo, **_: Any) -> None:
    controller = memo.get(MEMO_KEY)
    if isinstance(controller, WorkflowController):
        await controller.close()


@kopf.index(*WORKFLOWS_RESOURCE, id=WORKFLOWS_INDEX)
def kdag_workflows(body: kopf.Body, **_: Any) -> dict[WorkflowKey, WorkflowObject]:
    workflow = WorkflowObject.from_body(body)
    return {workflow.key: workflow}


@kopf.index(*RUNS_RESOURCE, id=RUNS_INDEX)
def kdag_workflow_runs(body: kopf.Body, **_: Any) -> dict[WorkflowKey, ObservedRun] | None:
    observed = observe_run(body)
    return None if observed is None else {observed[0]: observed[1]}


def _runs_index(kwargs: Mapping[str, Any]) -> RunsIndex:
    return cast(RunsIndex, kwargs[RUNS_INDEX])


def _workflows_index(kwargs: Mapping[str, Any]) -> WorkflowsIndex:
    return cast(WorkflowsIndex, kwargs[WORKFLOWS_INDEX])


@kopf.on.event(*WORKFLOWS_RESOURCE)
async def workflow_status_on_workflow_event(
    event: kopf.RawEvent, memo: kopf.Memo, **kwargs: Any
) -> None:
    body = cast(Mapping[str, Any], event["object"])
    await _controller(memo).workflow_changed(event["type"], body, _runs_index(kwargs))


@kopf.on.event(*RUNS_RESOURCE)
async def workflow_status_on_run_event(
    event: kopf.RawEvent, memo: kopf.Memo, **kwargs: Any
) -> None:
    body = cast(Mapping[str, Any], event["object"])
    _controller(memo).run_changed(
        event["type"], body, _workflows_index(kwargs), _runs_index(kwargs)
    )


def _has_schedule(spec: kopf.Spec, **_: Any) -> bool:
    return bool(spec.get("schedule"))


@kopf.daemon(
    *WORKFLOWS_RESOURCE, when=_has_schedule, cancellation_backoff=5.0, cancellation_timeout=10.0
)
async def workflow_schedule(
    body: kopf.Body,
    memo: kopf.Memo,
    logger: kopf.Logger,
    stopped: kopf.DaemonStopped,
    **kwargs: Any,
) -> None:
    controller = _controller(memo)
    key = WorkflowObject.from_body(body).key
    stop = asyncio.Event()

    # kopf sets `stopped` when the Workflow goes, loses its schedule or the operator pauses
    # or exits; the daemon then returns by itself instead of being cancelled.
    async def relay_stop() -> None:
        await stopped.wait()
        stop.set()
        controller.wake(key)

    relay = asyncio.create_task(relay_stop())
    try:
        await controller.run_schedule(body, _runs_index(kwargs), stop=stop, log=logger)
    finally:
        relay.cancel()
