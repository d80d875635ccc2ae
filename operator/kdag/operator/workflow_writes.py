"""What the Workflow controller wrote that the watches may not show yet.

A pass reads Workflows and runs from the watches' view, which lags behind our own writes
by one watch event. Until the echo arrives, a pass must see its own status write (or it
would write the same patch again) and the runs it created or deleted (or a schedule would
create a tick's run twice, or count a pruned run as still there).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from kdag.engine.cron import ObservedRun
from kdag.operator.objects import is_newer, resource_version
from kdag.operator.workflow_objects import WorkflowKey, WorkflowObject


class OwnWrites:
    def __init__(self) -> None:
        self._status: dict[WorkflowKey, tuple[str, Mapping[str, Any]]] = {}
        self._created: dict[WorkflowKey, dict[str, ObservedRun]] = {}
        self._deleted: dict[WorkflowKey, set[str]] = {}

    def forget(self, key: WorkflowKey) -> None:
        self._status.pop(key, None)
        self._created.pop(key, None)
        self._deleted.pop(key, None)

    def clear(self) -> None:
        self._status.clear()
        self._created.clear()
        self._deleted.clear()

    # -- status

    def wrote_status(self, key: WorkflowKey, stored: Mapping[str, Any]) -> None:
        """The API server's answer to our status patch."""
        self._status[key] = (resource_version(stored), stored.get("status") or {})

    def status(self, workflow: WorkflowObject) -> Mapping[str, Any]:
        """The Workflow's status: our last write while the watch has not shown it yet."""
        written = self._status.get(workflow.key)
        if written is not None and is_newer(written[0], workflow.resource_version):
            return written[1]
        return workflow.status

    # -- runs

    def created(self, key: WorkflowKey, run: ObservedRun) -> None:
        self._created.setdefault(key, {})[run.name] = run

    def deleted(self, key: WorkflowKey, names: Iterable[str]) -> None:
        self._deleted.setdefault(key, set()).update(names)

    def runs(self, key: WorkflowKey, observed: Iterable[ObservedRun]) -> list[ObservedRun]:
        """The observed runs, with our own creations and deletions applied; what the
        watch already shows is forgotten here."""
        runs = list(observed)
        names = {r.name for r in runs}
        created = self._created.get(key, {})
        for name in [n for n in created if n in names]:
            del created[name]
        deleted = self._deleted.get(key, set())
        deleted &= names
        return [r for r in runs if r.name not in deleted] + list(created.values())
