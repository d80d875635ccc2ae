"""Reading Workflow and run objects into what the Workflow controller needs (pure), and
the view of them it reads from."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from kdag.api import RunPhase
from kdag.engine.cron import ObservedRun, claimed_tick
from kdag.engine.timeutil import parse_iso_or_none
from kdag.operator.cron_runs import ANNOTATION_SCHEDULED_AT, LABEL_SCHEDULED

WorkflowKey = tuple[str, str]
"""(namespace, name) of a Workflow."""


@dataclass(frozen=True)
class WorkflowObject:
    """A Workflow as the controller reads it; spec and status stay raw until needed."""

    namespace: str
    name: str
    uid: str
    generation: int | None
    resource_version: str
    spec: Mapping[str, Any]
    status: Mapping[str, Any]
    deleting: bool = False

    @property
    def key(self) -> WorkflowKey:
        return self.namespace, self.name

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> WorkflowObject:
        meta = body.get("metadata") or {}
        return cls(
            namespace=str(meta.get("namespace", "")),
            name=str(meta.get("name", "")),
            uid=str(meta.get("uid", "")),
            generation=meta.get("generation"),
            resource_version=str(meta.get("resourceVersion", "")),
            spec=body.get("spec") or {},
            status=body.get("status") or {},
            deleting=bool(meta.get("deletionTimestamp")),
        )


class WorkflowView(Protocol):
    """What the watches show of Workflows and their runs, always the latest. Workflows come
    from `kdag.operator.workflow_store`, as their latest event showed them; runs from
    `kdag.operator.workflow_runs`, whole once `complete` says so."""

    def workflow(self, key: WorkflowKey) -> WorkflowObject | None: ...

    def complete(self, namespace: str) -> bool:
        """Whether the namespace's runs have been listed."""

    def runs(self, key: WorkflowKey) -> Iterable[ObservedRun]:
        """The runs whose `workflowRef` names the Workflow."""
        ...


def observe_run(body: Mapping[str, Any]) -> tuple[WorkflowKey, ObservedRun] | None:
    """The workflow a run belongs to and what the scheduler needs of it; None for a run
    with an inline workflow, which belongs to no Workflow."""
    meta = body.get("metadata") or {}
    spec = body.get("spec") or {}
    status = body.get("status") or {}
    workflow = (spec.get("workflowRef") or {}).get("name")
    if not isinstance(workflow, str) or not workflow:
        return None
    labels = meta.get("labels") or {}
    annotations = meta.get("annotations") or {}
    try:
        phase: RunPhase | None = RunPhase(str(status.get("phase")))
    except ValueError:
        phase = None  # not started yet, or a phase this version does not know
    created_at = parse_iso_or_none(meta.get("creationTimestamp")) or datetime.fromtimestamp(0, UTC)
    name = str(meta.get("name", ""))
    # Only a run the schedule could have made counts as scheduled; any other is a manual run.
    tick = (
        claimed_tick(
            workflow, name, parse_iso_or_none(annotations.get(ANNOTATION_SCHEDULED_AT)), created_at
        )
        if labels.get(LABEL_SCHEDULED) == "true"
        else None
    )
    run = ObservedRun(
        name=name,
        created_at=created_at,
        phase=phase,
        scheduled=tick is not None,
        scheduled_at=tick,
        finished_at=parse_iso_or_none(status.get("finishedAt")),
        cancel_requested=bool(spec.get("cancel")),
        uid=str(meta.get("uid", "")),
    )
    return (str(meta.get("namespace", "")), workflow), run
