"""A Workflow controller over a fake API, driven like the watches would drive it: its view
of Workflows and runs is what the fake API holds now (as kopf's indexes would show it)."""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from kdag.engine.cron import ObservedRun
from kdag.operator.kube import KubeError
from kdag.operator.status_patch import apply_merge_patch
from kdag.operator.workflow_controller import WorkflowController
from kdag.operator.workflow_objects import WorkflowKey, WorkflowObject, observe_run
from kdag.operator.workqueue import Result

NS = "team"
T0 = datetime(2026, 11, 22, 8, 59, 30, tzinfo=UTC)
TICK = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)


def status_error(status: int, reason: str) -> KubeError:
    return KubeError(status, reason, json.dumps({"kind": "Status", "reason": reason}))


class FakeApi:
    """Workflows and runs in memory; every call recorded."""

    def __init__(self) -> None:
        self.workflows: dict[str, dict[str, Any]] = {}
        self.runs: dict[str, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        self.calls: list[tuple[str, str]] = []
        self.status_patches: list[dict[str, Any]] = []
        self.status_patch_error: KubeError | None = None  # raised once by the next patch
        self.hold: asyncio.Event | None = None  # status patches wait for it while set
        self.now = T0
        self._versions = itertools.count(101)

    def next_rv(self) -> str:
        return str(next(self._versions))

    async def patch_workflow_status(
        self, namespace: str, name: str, patch: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        self.calls.append(("patch_workflow_status", name))
        if self.hold is not None:
            await self.hold.wait()
        error, self.status_patch_error = self.status_patch_error, None
        if error is not None:
            raise error
        self.status_patches.append(copy.deepcopy(dict(patch)))
        if name not in self.workflows:
            return None
        body = apply_merge_patch(self.workflows[name], patch)
        body["metadata"]["resourceVersion"] = self.next_rv()
        self.workflows[name] = body
        return copy.deepcopy(body)

    async def create_run(self, namespace: str, manifest: Mapping[str, Any]) -> dict[str, Any]:
        name = manifest["metadata"]["name"]
        self.calls.append(("create_run", name))
        if name in self.runs:
            raise status_error(409, "AlreadyExists")
        body = copy.deepcopy(dict(manifest))
        body["metadata"].update(
            uid=f"uid-{name}",
            resourceVersion=self.next_rv(),
            creationTimestamp=self.now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        )
        self.runs[name] = body
        return copy.deepcopy(body)

    async def patch_run(
        self, namespace: str, name: str, patch: Mapping[str, Any]
    ) -> dict[str, Any]:
        self.calls.append(("patch_run", name))
        if name not in self.runs:
            raise status_error(404, "NotFound")
        self.runs[name] = apply_merge_patch(self.runs[name], patch)
        return copy.deepcopy(self.runs[name])

    async def delete_run(self, namespace: str, name: str, uid: str) -> bool:
        self.calls.append(("delete_run", name))
        found = self.runs.get(name)
        if found is None or found["metadata"]["uid"] != uid:
            return False
        del self.runs[name]
        return True

    async def create_event(self, namespace: str, event: Mapping[str, Any]) -> dict[str, Any]:
        self.events.append(dict(event))
        return dict(event)

    def writes(self) -> list[tuple[str, str]]:
        return [c for c in self.calls if c[0] != "create_event"]


class CountingController(WorkflowController):
    """The controller, counting its passes and how many of them ran at once."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.passes: list[WorkflowKey] = []
        self.running = 0
        self.most_at_once = 0

    async def reconcile(self, key: WorkflowKey) -> Result:
        self.passes.append(key)
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        try:
            return await super().reconcile(key)
        finally:
            self.running -= 1


class LiveView:
    """The Workflows and runs the fake API holds, read at each call, or the runs `frozen`
    at some moment (a watch that has not shown the newer ones yet)."""

    def __init__(self, api: FakeApi) -> None:
        self.api = api
        self.frozen: dict[WorkflowKey, list[ObservedRun]] | None = None

    def workflow(self, key: WorkflowKey) -> WorkflowObject | None:
        body = self.api.workflows.get(key[1])
        return None if body is None else WorkflowObject.from_body(copy.deepcopy(body))

    def runs(self, key: WorkflowKey) -> Iterable[ObservedRun]:
        runs = index(self.api) if self.frozen is None else self.frozen
        return runs.get(key, [])

    def complete(self, namespace: str) -> bool:
        """Always whole (the fake API is the listing)."""
        return True


def index(api: FakeApi) -> dict[tuple[str, str], list[ObservedRun]]:
    runs: dict[tuple[str, str], list[ObservedRun]] = {}
    for body in api.runs.values():
        observed = observe_run(body)
        if observed is not None:
            runs.setdefault(observed[0], []).append(observed[1])
    return runs


class Harness:
    """A controller over the fake API; `view` is what the watches would show."""

    def __init__(self, **controller: Any) -> None:
        self.api = FakeApi()
        self.view = LiveView(self.api)
        self.options = controller
        self.controller = self.new_controller()

    def new_controller(self) -> CountingController:
        return CountingController(
            self.api, self.view, max_nodes=100, clock=lambda: self.api.now, **self.options
        )

    def at(self, moment: datetime) -> None:
        self.api.now = moment

    def apply(self, name: str, spec: dict[str, Any], generation: int = 1) -> None:
        existing = self.api.workflows.get(name)
        self.api.workflows[name] = {
            "metadata": {
                "name": name,
                "namespace": NS,
                "uid": f"wf-uid-{name}",
                "generation": generation,
                "resourceVersion": self.api.next_rv(),
                "creationTimestamp": "2026-11-22T08:00:00Z",
            },
            "spec": copy.deepcopy(spec),
            "status": (existing or {}).get("status", {}),
        }

    def workflow(self, name: str = "etl") -> WorkflowObject:
        return WorkflowObject.from_body(copy.deepcopy(self.api.workflows[name]))

    def status(self, name: str = "etl") -> dict[str, Any]:
        status: dict[str, Any] = self.api.workflows[name]["status"]
        return status

    def condition(self, kind: str, name: str = "etl") -> dict[str, Any]:
        return next(c for c in self.status(name)["conditions"] if c["type"] == kind)

    def reconcile(self, name: str = "etl", *, stale_index: bool = False) -> Result:
        """One pass of the Workflow, as a worker of the queue would run it. The watch shows
        no run the pass creates before the pass ends; `stale_index`: it shows no run at all."""
        self.view.frozen = {} if stale_index else index(self.api)
        try:
            return asyncio.run(self.controller.reconcile((NS, name)))
        finally:
            self.view.frozen = None

    def sync(self, name: str = "etl") -> None:
        self.reconcile(name)

    def step(self, name: str = "etl", *, stale_index: bool = False) -> datetime | None:
        """One pass; when the Workflow is due again (its next tick)."""
        return self.reconcile(name, stale_index=stale_index).requeue_at

    def add_run(
        self, name: str, phase: str | None, *, scheduled_at: datetime | None = None, **extra: Any
    ) -> None:
        labels = {"kdag.dev/scheduled": "true"} if scheduled_at else {}
        annotations = (
            {"kdag.dev/scheduled-at": scheduled_at.strftime("%Y-%m-%dT%H:%M:%SZ")}
            if scheduled_at
            else {}
        )
        created = (scheduled_at or self.api.now) + timedelta(seconds=1)
        self.api.runs[name] = {
            "metadata": {
                "name": name,
                "namespace": NS,
                "uid": f"uid-{name}",
                "labels": labels,
                "annotations": annotations,
                "creationTimestamp": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
            },
            "spec": {"workflowRef": {"name": "etl"}, **extra},
            "status": {"phase": phase} if phase else {},
        }

    def finish(self, name: str, phase: str, at: datetime) -> None:
        self.api.runs[name]["status"] = {
            "phase": phase,
            "finishedAt": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }


def spec(**schedule: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "params": [{"name": "day", "default": "today"}],
        "defaults": {"image": "busybox:1.36"},
        "nodes": [
            {"name": "extract", "forEach": ["eu", "us"]},
            {"name": "load", "dependsOn": ["extract"]},
        ],
    }
    if schedule:
        body["schedule"] = schedule
    return body
