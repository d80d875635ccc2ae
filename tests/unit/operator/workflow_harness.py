"""A Workflow controller over a fake API, driven like the watches would drive it."""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from kdag.engine.cron import ObservedRun
from kdag.operator.kube import KubeError
from kdag.operator.status_patch import apply_merge_patch
from kdag.operator.workflow_controller import WorkflowController
from kdag.operator.workflow_objects import WorkflowObject, observe_run

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
        self.now = T0
        self._versions = itertools.count(101)

    def next_rv(self) -> str:
        return str(next(self._versions))

    async def patch_workflow_status(
        self, namespace: str, name: str, patch: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        self.calls.append(("patch_workflow_status", name))
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


class Harness:
    """A controller over the fake API; `index()` is what the watches would show."""

    def __init__(self) -> None:
        self.api = FakeApi()
        self.controller = self.new_controller()

    def new_controller(self) -> WorkflowController:
        return WorkflowController(self.api, max_nodes=100, clock=lambda: self.api.now)

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

    def index(self) -> dict[tuple[str, str], list[ObservedRun]]:
        index: dict[tuple[str, str], list[ObservedRun]] = {}
        for body in self.api.runs.values():
            observed = observe_run(body)
            if observed is not None:
                index.setdefault(observed[0], []).append(observed[1])
        return index

    def sync(self, name: str = "etl") -> None:
        workflow = self.workflow(name)
        asyncio.run(self.controller.sync_status(workflow, self.index().get(workflow.key, [])))

    def step(self, name: str = "etl", *, stale_index: bool = False) -> datetime | None:
        workflow = self.workflow(name)
        runs = [] if stale_index else self.index().get(workflow.key, [])
        return asyncio.run(self.controller.schedule_once(workflow, runs))

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
