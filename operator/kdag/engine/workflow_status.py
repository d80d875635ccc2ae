"""What a Workflow's status should be (pure): its validity, node count, newest run, last
scheduled tick, active scheduled runs and its `Valid` and `Scheduled` conditions."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from kdag.api import Condition, WorkflowSpec
from kdag.engine.cron import CLOCK_SKEW, CronSchedule, ObservedRun, ScheduleError
from kdag.engine.model import DEFAULT_OUTPUT_BUDGET
from kdag.engine.problems import describe, describe_validation_error
from kdag.engine.status_conditions import ConditionState, updated_conditions
from kdag.engine.timeutil import parse_iso_or_none, to_iso
from kdag.engine.validation import node_count, validate_workflow

CONDITION_VALID = "Valid"
CONDITION_SCHEDULED = "Scheduled"
# The status fields the operator writes; anything else in the status is left alone.
OWNED_FIELDS = (
    "observedGeneration",
    "valid",
    "message",
    "nodeCount",
    "lastRun",
    "lastScheduleTime",
    "activeRuns",
    "conditions",
)


@dataclass(frozen=True)
class Validity:
    """The engine's verdict on a Workflow spec."""

    spec: WorkflowSpec | None
    message: str | None
    node_count: int | None

    @property
    def valid(self) -> bool:
        return self.message is None


def check_workflow(
    raw_spec: Mapping[str, Any], *, max_nodes: int, output_budget: int = DEFAULT_OUTPUT_BUDGET
) -> Validity:
    try:
        spec = WorkflowSpec.model_validate(raw_spec)
    except ValidationError as exc:
        return Validity(None, describe_validation_error(exc, "spec"), None)
    problems = validate_workflow(spec, max_nodes=max_nodes, output_budget=output_budget)
    return Validity(spec, describe(problems) if problems else None, node_count(spec))


def schedule_condition(
    raw_spec: Mapping[str, Any], validity: Validity, now: datetime
) -> ConditionState | None:
    """The `Scheduled` condition: whether the schedule creates runs. Its last transition to
    True is when the schedule became active, before which no tick ever runs."""
    if not raw_spec.get("schedule"):
        return None
    schedule = validity.spec.schedule if validity.spec is not None else None
    if schedule is None or not validity.valid:
        return ConditionState(
            "False", "InvalidWorkflow", "the workflow is not valid (see the Valid condition)"
        )
    if schedule.suspend:
        return ConditionState("False", "Suspended", "schedule.suspend is true")
    try:
        cron = CronSchedule.parse(schedule.cron, schedule.timezone)
    except ScheduleError as exc:  # validation reports it too; never crash on it
        return ConditionState("False", "InvalidWorkflow", str(exc))
    if cron.next_after(now) is None:
        return ConditionState(
            "False", "NeverFires", f"schedule.cron: {schedule.cron!r} matches no future time"
        )
    zone = schedule.timezone or "UTC"
    return ConditionState("True", "Active", f"runs on {schedule.cron!r} in {zone}")


def previous_conditions(status: Mapping[str, Any]) -> list[Condition]:
    """The status's conditions as the condition builder compares with them: the first of
    each type, and none without a transition time (so its time becomes now)."""
    seen: set[object] = set()
    previous = []
    for raw in status.get("conditions") or []:
        kind = raw.get("type")
        if kind in seen:
            continue
        seen.add(kind)
        time = raw.get("lastTransitionTime")
        if isinstance(time, str) and time:
            # Read, not validated: whatever is there is only compared with.
            previous.append(
                Condition.model_construct(
                    type=kind, status=raw.get("status"), last_transition_time=time
                )
            )
    return previous


def desired_status(
    raw_spec: Mapping[str, Any],
    current: Mapping[str, Any],
    validity: Validity,
    runs: Iterable[ObservedRun],
    *,
    generation: int | None,
    last_scheduled: datetime | None,
    now: datetime,
) -> dict[str, Any]:
    """The fields of OWNED_FIELDS as they should be now; absent ones are to be removed."""
    runs = list(runs)
    wanted = {
        CONDITION_VALID: ConditionState("True", "Valid", "the workflow is valid")
        if validity.valid
        else ConditionState("False", "Invalid", validity.message or "invalid")
    }
    scheduled = schedule_condition(raw_spec, validity, now)
    if scheduled is not None:
        wanted[CONDITION_SCHEDULED] = scheduled
    conditions = updated_conditions(
        wanted, previous_conditions(current), now_iso=to_iso(now), generation=generation
    )
    ours = sorted((r for r in runs if r.scheduled), key=lambda r: r.order)
    ticks = [r.scheduled_at for r in ours if r.scheduled_at is not None]
    recorded = parse_iso_or_none(current.get("lastScheduleTime"))
    # A time in the future was never a tick that ran (a forged run's, written by an older
    # version): it would hold every tick back until then.
    horizon = now + CLOCK_SKEW
    last_schedule = max(
        [t for t in (*ticks, recorded, last_scheduled) if t is not None and t <= horizon],
        default=None,
    )
    newest = max(runs, key=lambda r: (r.created_at, r.name), default=None)
    status: dict[str, Any] = {
        "observedGeneration": generation,
        "valid": validity.valid,
        "message": validity.message,
        "nodeCount": validity.node_count,
        "lastRun": newest.name if newest else None,
        "lastScheduleTime": to_iso(last_schedule) if last_schedule else None,
        "activeRuns": [r.name for r in ours if r.active] or None,
        "conditions": [c.to_wire() for c in conditions],
    }
    return {key: value for key, value in status.items() if value is not None}


def scheduled_since(status: Mapping[str, Any]) -> datetime | None:
    """When the schedule last became active; None while it is not."""
    for condition in status.get("conditions") or []:
        if condition.get("type") == CONDITION_SCHEDULED and condition.get("status") == "True":
            return parse_iso_or_none(condition.get("lastTransitionTime"))
    return None
