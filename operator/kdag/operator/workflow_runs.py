"""Runs by the Workflow they reference, kept from the run watch, and when that view is whole.

The Workflow controller decides schedules from it (how many runs are active, which tick
already has its run), so it must never pass over a Workflow from a partial view:
`listed(namespace)` says whether the stream that watches the namespace (its own, or a
cluster-wide one) has listed it in full; until then the controller passes over none of its
Workflows. A namespace whose runs the operator may not list (RBAC) holds back only its own
Workflows, and `on_listed` tells the controller when a namespace's view becomes whole, so
the Workflows it passed over are looked at then rather than polled. A listing (the first, or
one after the watch lost its place) also drops the runs it no longer shows: they were
deleted while nothing watched.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from kdag.engine.cron import ObservedRun
from kdag.operator.objects import DELETED
from kdag.operator.workflow_objects import WorkflowKey, observe_run

RunSlot = tuple[str, str]  # (namespace, run name)


class WorkflowRuns:
    """The runs of each Workflow; fed by the run watch (`object_watches`)."""

    def __init__(self) -> None:
        self._by_workflow: dict[WorkflowKey, dict[str, ObservedRun]] = {}
        self._workflow_of: dict[RunSlot, WorkflowKey] = {}
        # Streams (by namespace; None: cluster-wide) that have been listed once.
        self._listed: set[str | None] = set()
        # Called with the namespace (None: all) each time a listing of it is over.
        self.on_listed: Callable[[str | None], None] = lambda _namespace: None

    # -- the view

    def runs(self, key: WorkflowKey) -> Iterable[ObservedRun]:
        return tuple(self._by_workflow.get(key, {}).values())

    def complete(self, namespace: str) -> bool:
        """Whether the namespace's runs have been listed."""
        return bool({namespace, None} & self._listed)

    # -- the watch

    def observe(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        meta = body.get("metadata") or {}
        slot = (str(meta.get("namespace", "")), str(meta.get("name", "")))
        self._drop(slot)
        if event_type == DELETED:
            return
        observed = observe_run(body)
        if observed is not None:
            key, run = observed
            self._by_workflow.setdefault(key, {})[slot[1]] = run
            self._workflow_of[slot] = key

    def stream_started(self, namespace: str | None) -> None:
        self._listed.discard(namespace)

    def listed(self, namespace: str | None, present: Iterable[RunSlot]) -> None:
        """A listing of the namespace (None: all) is over; `present` is what it showed."""
        self._forget_listing(namespace, keep=set(present))
        self._listed.add(namespace)
        self.on_listed(namespace)

    def stream_stopped(self, namespace: str | None) -> None:
        """The namespace (None: all) is no longer watched: its runs are no longer known."""
        self._forget_listing(namespace)
        self._listed.discard(namespace)

    def _forget_listing(self, namespace: str | None, keep: set[RunSlot] | None = None) -> None:
        """Drop the namespace's (None: every) runs but those in `keep`."""
        for slot in [s for s in self._workflow_of if namespace in (None, s[0])]:
            if keep is None or slot not in keep:
                self._drop(slot)

    def _drop(self, slot: RunSlot) -> None:
        key = self._workflow_of.pop(slot, None)
        if key is None:
            return
        runs = self._by_workflow.get(key, {})
        runs.pop(slot[1], None)
        if not runs:
            self._by_workflow.pop(key, None)
