"""Carrying out a schedule plan: create, cancel and delete scheduled runs, and tell the user.

`kdag.engine.cron.plan_schedule` decides; this module turns its plan into API calls,
idempotently: a run's name is fixed by its tick, so `AlreadyExists` means the tick is done
(adopt), a cancel of a run that is gone is nothing to do, and a delete carries the run's uid
so it never removes a newer run of the same name.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from kdag.api import API_VERSION
from kdag.engine.cron import NewRun, ObservedRun, SchedulePlan
from kdag.engine.model import LABEL_MANAGED_BY, LABEL_WORKFLOW, MANAGED_BY, EmitEvent
from kdag.engine.names import label_value
from kdag.engine.timeutil import to_iso
from kdag.operator.events import event_body
from kdag.operator.kube import KubeError
from kdag.operator.workflow_api import WorkflowApi

logger = logging.getLogger(__name__)

LABEL_SCHEDULED = "kdag.dev/scheduled"
ANNOTATION_SCHEDULED_AT = "kdag.dev/scheduled-at"
HTTP_NOT_FOUND = 404
HTTP_CONFLICT = 409


@dataclass(frozen=True)
class ScheduleTarget:
    """The Workflow whose schedule is carried out."""

    namespace: str
    name: str
    uid: str
    params: Mapping[str, str] | None = None


def run_manifest(target: ScheduleTarget, new_run: NewRun) -> dict[str, Any]:
    """The WorkflowRun a tick creates.

    No ownerReference to the Workflow: deleting a Workflow must not delete its running runs
    (SPEC §3, "Workflow edits"); history limits and TTL clean up finished ones.
    """
    spec: dict[str, Any] = {"workflowRef": {"name": target.name}}
    if target.params:
        spec["params"] = dict(target.params)
    return {
        "apiVersion": API_VERSION,
        "kind": "WorkflowRun",
        "metadata": {
            "name": new_run.name,
            "namespace": target.namespace,
            "labels": {
                LABEL_WORKFLOW: label_value(target.name),
                LABEL_SCHEDULED: "true",
                LABEL_MANAGED_BY: MANAGED_BY,
            },
            "annotations": {ANNOTATION_SCHEDULED_AT: to_iso(new_run.scheduled_at)},
        },
        "spec": spec,
    }


def workflow_event(
    target: ScheduleTarget,
    event_type: Literal["Normal", "Warning"],
    reason: str,
    message: str,
    now: datetime,
) -> dict[str, Any]:
    """A core/v1 Event about the Workflow, shaped like the operator's Events about runs."""
    workflow = {"metadata": {"name": target.name, "namespace": target.namespace, "uid": target.uid}}
    body = event_body(workflow, EmitEvent(event_type, reason, message), now, socket.gethostname())
    body["involvedObject"]["kind"] = "Workflow"
    return body


@dataclass
class Applied:
    """What carrying out a plan did."""

    created: ObservedRun | None = None
    adopted: bool = False
    cancelled: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)


async def apply_plan(
    api: WorkflowApi,
    target: ScheduleTarget,
    plan: SchedulePlan,
    runs: Mapping[str, ObservedRun],
    now: datetime,
    *,
    report_skip: bool = True,
) -> Applied:
    """Cancel (Replace), create the tick's run, prune history; post an Event for each.

    Raises KubeError on a failure worth retrying; everything done before it stays done and
    is recognised as done when the plan is made again.
    """
    applied = Applied()
    tick = plan.create.scheduled_at if plan.create else None
    for name in plan.cancel:
        try:
            await api.patch_run(target.namespace, name, {"spec": {"cancel": True}})
        except KubeError as exc:
            if exc.status != HTTP_NOT_FOUND:
                raise
            continue
        applied.cancelled.append(name)
        await _post(api, target, "Normal", "RunCancelled", _cancel_message(name, tick), now)

    if plan.create is not None:
        applied.created = await _create(api, target, plan.create, now, applied)

    for name in plan.delete:
        observed = runs.get(name)
        if observed is not None and await api.delete_run(target.namespace, name, observed.uid):
            await _post(
                api, target, "Normal", "RunDeleted", f"Deleted {name}: beyond historyLimit", now
            )
        applied.deleted.append(name)

    if plan.skipped is not None and report_skip:
        active = ", ".join(plan.skipped.active_runs)
        message = (
            f"Skipped the run due at {to_iso(plan.skipped.tick)}: concurrencyPolicy is "
            f"Forbid and {active} {'is' if len(plan.skipped.active_runs) == 1 else 'are'} "
            "still running"
        )
        await _post(api, target, "Normal", "RunSkipped", message, now)
    if plan.missed is not None and report_skip:
        message = f"Missed the run due at {to_iso(plan.missed)}: past the starting deadline"
        await _post(api, target, "Warning", "MissedSchedule", message, now)
    return applied


async def _create(
    api: WorkflowApi, target: ScheduleTarget, new_run: NewRun, now: datetime, applied: Applied
) -> ObservedRun:
    try:
        created = await api.create_run(target.namespace, run_manifest(target, new_run))
    except KubeError as exc:
        if exc.status != HTTP_CONFLICT:
            raise
        # Created before a restart, or by another replica: the tick is done.
        applied.adopted = True
        return ObservedRun(
            name=new_run.name, created_at=now, scheduled=True, scheduled_at=new_run.scheduled_at
        )
    await _post(
        api,
        target,
        "Normal",
        "RunCreated",
        f"Created {new_run.name} for the run due at {to_iso(new_run.scheduled_at)}",
        now,
    )
    uid = str((created.get("metadata") or {}).get("uid", ""))
    return ObservedRun(
        name=new_run.name,
        created_at=now,
        scheduled=True,
        scheduled_at=new_run.scheduled_at,
        uid=uid,
    )


def _cancel_message(name: str, tick: datetime | None) -> str:
    due = f" the run due at {to_iso(tick)}" if tick else " a new run"
    return f"Cancelling {name}: concurrencyPolicy is Replace and{due} starts"


async def _post(
    api: WorkflowApi,
    target: ScheduleTarget,
    event_type: Literal["Normal", "Warning"],
    reason: str,
    message: str,
    now: datetime,
) -> None:
    # Events are a courtesy to `kubectl describe`; losing one must not fail the schedule.
    try:
        await api.create_event(
            target.namespace, workflow_event(target, event_type, reason, message, now)
        )
    except KubeError as exc:
        logger.debug("event about workflow %s not posted: %s", target.name, exc)
