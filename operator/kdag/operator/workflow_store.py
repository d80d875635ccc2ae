"""The Workflows the watch has shown: the Workflow controller's view of them.

kopf hands every Workflow event to `observe` (`kdag.operator.workflow_handlers`), in order
for each object; its deletion removes it. Kept here rather than in a kopf index: kopf holds
back every handler of every kind until each index's watch in each served namespace has
listed once, and never lifts that hold for a namespace whose watch stopped before it listed
(a namespace deleted just after it appeared, under a `--namespace` glob). Nothing about
Workflows was handled after that (kopf 1.45: `spawn_missing_watchers` makes the hold,
`terminate_redundancies` drops only peering's).

A Workflow deleted and made again under the same name is two objects, whose events kopf
handles apart and in no set order between them: the store keeps each by its uid, and shows
the one not being deleted.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kdag.operator.objects import DELETED
from kdag.operator.workflow_objects import WorkflowKey, WorkflowObject


class WorkflowStore:
    """The latest of every Workflow the watch showed, by (namespace, name)."""

    def __init__(self) -> None:
        self._objects: dict[WorkflowKey, dict[str, WorkflowObject]] = {}

    def observe(self, event_type: str | None, body: Mapping[str, Any]) -> WorkflowObject:
        """Take one watch event in; returns the Workflow it showed."""
        workflow = WorkflowObject.from_body(body)
        objects = self._objects.setdefault(workflow.key, {})
        if event_type == DELETED:
            objects.pop(workflow.uid, None)
            if not objects:
                del self._objects[workflow.key]
        else:
            objects.pop(workflow.uid, None)  # the latest event of an object is kept last
            objects[workflow.uid] = workflow
        return workflow

    def workflow(self, key: WorkflowKey) -> WorkflowObject | None:
        """The Workflow of that name: the one not being deleted if there are two, the one
        seen last otherwise."""
        objects = list(self._objects.get(key, {}).values())
        live = [workflow for workflow in objects if not workflow.deleting]
        shown = live or objects
        return shown[-1] if shown else None

    def keys(self) -> list[WorkflowKey]:
        return list(self._objects)

    def clear(self) -> None:
        """Forget every Workflow: the watch lists them all again (after a pause)."""
        self._objects.clear()
