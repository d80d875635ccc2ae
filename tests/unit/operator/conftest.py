"""Fakes for the operator's unit tests: an in-memory Kubernetes API and a fixed clock."""

from __future__ import annotations

import asyncio
import copy
import json
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from kdag.engine import names
from kdag.engine.model import EmitEvent
from kdag.operator.cache import Cache
from kdag.operator.kube import KubeError, Listing
from kdag.operator.metrics import Metrics
from kdag.operator.reconciler import Reconciler
from kdag.operator.status_patch import apply_merge_patch

T0 = datetime(2026, 11, 22, 2, 0, 0, tzinfo=UTC)
# The API server's rule for label values (and pod labels copy the Job's).
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def status_error(status: int, reason: str) -> KubeError:
    return KubeError(status, reason, json.dumps({"kind": "Status", "reason": reason}))


def quota_exceeded(name: str, used: int, limit: int) -> KubeError:
    """The API server's answer to a create a count/jobs.batch ResourceQuota has no room for."""
    message = (
        f'jobs.batch "{name}" is forbidden: exceeded quota: jobs, requested: '
        f"count/jobs.batch=1, used: count/jobs.batch={used}, limited: count/jobs.batch={limit}"
    )
    body = {"kind": "Status", "reason": "Forbidden", "code": 403, "message": message}
    return KubeError(403, "Forbidden", json.dumps(body))


class FakeKube:
    """Just enough of the API server: Jobs, pods, runs, Workflows, Events; every call logged."""

    def __init__(self) -> None:
        self.jobs: dict[tuple[str, str], dict[str, Any]] = {}
        self.pods: dict[tuple[str, str], dict[str, Any]] = {}
        self.runs: dict[tuple[str, str], dict[str, Any]] = {}
        self.workflows: dict[tuple[str, str], dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        # Events other components posted (the Job controller's FailedCreate, ...).
        self.cluster_events: list[dict[str, Any]] = []
        self.calls: list[tuple[str, ...]] = []
        self.status_patches: list[dict[str, Any]] = []
        self.fail_next: dict[str, KubeError] = {}
        # A count/jobs.batch ResourceQuota: creates beyond it are refused as the API does.
        self.job_quota: int | None = None
        self.patch_seconds = 0.0  # how long a status write takes (a loaded API server)
        # A user's write that lands while a pass is running, just before its status write.
        self.before_status_write: Callable[[], None] | None = None
        self._rv = 100

    def _next_rv(self) -> str:
        self._rv += 1
        return str(self._rv)

    def _maybe_fail(self, verb: str) -> None:
        error = self.fail_next.pop(verb, None)
        if error is not None:
            raise error

    def add_run(self, body: dict[str, Any]) -> dict[str, Any]:
        body = copy.deepcopy(body)
        meta = body.setdefault("metadata", {})
        meta.setdefault("uid", f"uid-{meta['name']}")
        meta.setdefault("generation", 1)
        meta["resourceVersion"] = self._next_rv()
        self.runs[(meta["namespace"], meta["name"])] = body
        return copy.deepcopy(body)

    def touch(self, key: tuple[str, str]) -> None:
        """A new resourceVersion, as any write to the run gets (tests edit runs in place)."""
        self.runs[key]["metadata"]["resourceVersion"] = self._next_rv()

    def finish_job(self, namespace: str, name: str, *, ok: bool = True, **pod: Any) -> None:
        """Make the Job Complete (or Failed) and give it a terminated pod."""
        job = self.jobs[(namespace, name)]
        condition = {"type": "Complete" if ok else "Failed", "status": "True"}
        condition["lastTransitionTime"] = "2026-11-22T02:00:05Z"
        if not ok:
            condition["reason"] = pod.pop("reason", "BackoffLimitExceeded")
            condition["message"] = "Job has reached the specified backoff limit"
        job["status"] = {"startTime": "2026-11-22T02:00:01Z", "conditions": [condition]}
        if ok:
            job["status"]["completionTime"] = "2026-11-22T02:00:05Z"
        job["metadata"]["resourceVersion"] = self._next_rv()
        self.end_pod(namespace, name, ok=ok, **pod)

    def end_pod(
        self,
        namespace: str,
        name: str,
        *,
        ok: bool = True,
        deleting: bool = False,
        **pod: Any,
    ) -> dict[str, Any]:
        """Give the Job a pod whose container terminated (the Job's status is left as it
        is: the Job controller marks the Job a second later). Returns the pod."""
        job = self.jobs[(namespace, name)]
        # The Job controller gives the pod the Job template's labels and annotations.
        template = ((job.get("spec") or {}).get("template") or {}).get("metadata") or {}
        terminated = {
            "exitCode": pod.get("exit_code", 0 if ok else 1),
            "reason": pod.get("container_reason", "Completed" if ok else "Error"),
            "finishedAt": "2026-11-22T02:00:04Z",
        }
        if "message" in pod:
            terminated["message"] = pod["message"]
        body: dict[str, Any] = {
            "metadata": {
                "name": f"{name}-pod",
                "namespace": namespace,
                "labels": {
                    **(template.get("labels") or {}),
                    "batch.kubernetes.io/job-name": name,
                },
                "annotations": dict(template.get("annotations") or {}),
                "ownerReferences": [
                    {"kind": "Job", "uid": job["metadata"]["uid"], "controller": True}
                ],
            },
            "status": {
                "phase": "Succeeded" if ok else "Failed",
                "containerStatuses": [{"name": "main", "state": {"terminated": terminated}}],
            },
        }
        if deleting:
            body["metadata"]["deletionTimestamp"] = "2026-11-22T02:00:03Z"
        self.pods[(namespace, f"{name}-pod")] = body
        return copy.deepcopy(body)

    # -- KubeApi

    async def create_job(self, namespace: str, manifest: Mapping[str, Any]) -> dict[str, Any]:
        self.calls.append(("create_job", manifest["metadata"]["name"]))
        self._maybe_fail("create_job")
        key = (namespace, manifest["metadata"]["name"])
        if key in self.jobs:
            raise status_error(409, "AlreadyExists")
        for label, value in manifest["metadata"].get("labels", {}).items():
            if len(value) > 63 or not LABEL_VALUE.match(value):
                raise KubeError(
                    422,
                    "Unprocessable Entity",
                    json.dumps(
                        {
                            "kind": "Status",
                            "reason": "Invalid",
                            "message": f"metadata.labels: Invalid value: {value!r} ({label})",
                        }
                    ),
                )
        if self.job_quota is not None and len(self.jobs) >= self.job_quota:
            raise quota_exceeded(key[1], len(self.jobs), self.job_quota)
        job = copy.deepcopy(dict(manifest))
        job["metadata"]["uid"] = f"job-uid-{key[1]}"
        job["metadata"]["resourceVersion"] = self._next_rv()
        job["status"] = {}
        self.jobs[key] = job
        return copy.deepcopy(job)

    async def get_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.calls.append(("get_job", name))
        job = self.jobs.get((namespace, name))
        return copy.deepcopy(job) if job else None

    async def delete_job(self, namespace: str, name: str) -> bool:
        self.calls.append(("delete_job", name))
        return self.jobs.pop((namespace, name), None) is not None

    async def list_jobs(self, namespace: str, selector: str) -> Listing:
        self.calls.append(("list_jobs", selector))
        label, value = selector.split("=")
        items = [
            copy.deepcopy(j)
            for (ns, _), j in self.jobs.items()
            if ns == namespace and j["metadata"]["labels"].get(label) == value
        ]
        return Listing(items, str(self._rv))

    async def list_pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        self.calls.append(("list_pods", selector))
        label, value = selector.split("=")
        return [
            copy.deepcopy(p)
            for (ns, _), p in self.pods.items()
            if ns == namespace and p["metadata"]["labels"].get(label) == value
        ]

    async def list_events(self, namespace: str, field_selector: str) -> list[dict[str, Any]]:
        self.calls.append(("list_events", field_selector))
        self._maybe_fail("list_events")
        wanted = dict(term.split("=", 1) for term in field_selector.split(","))

        def field(event: dict[str, Any], path: str) -> Any:
            value: Any = event
            for part in path.split("."):
                value = (value or {}).get(part)
            return value

        return [
            copy.deepcopy(e)
            for e in self.cluster_events
            if e["metadata"]["namespace"] == namespace
            and all(str(field(e, k)) == v for k, v in wanted.items())
        ]

    async def get_run(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.calls.append(("get_run", name))
        found = self.runs.get((namespace, name))
        return copy.deepcopy(found) if found else None

    async def get_workflow(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.calls.append(("get_workflow", name))
        found = self.workflows.get((namespace, name))
        return copy.deepcopy(found) if found else None

    async def patch_run_status(
        self, namespace: str, name: str, patch: Mapping[str, Any]
    ) -> dict[str, Any]:
        self.calls.append(("patch_run_status", name))
        self._maybe_fail("patch_run_status")
        if self.before_status_write is not None:
            self.before_status_write()
        if self.patch_seconds:
            await asyncio.sleep(self.patch_seconds)
        self.status_patches.append(copy.deepcopy(dict(patch)))
        return self._patch(namespace, name, patch)

    async def patch_run(
        self, namespace: str, name: str, patch: Mapping[str, Any]
    ) -> dict[str, Any]:
        self.calls.append(("patch_run", name))
        self._maybe_fail("patch_run")
        return self._patch(namespace, name, patch)

    def _patch(self, namespace: str, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        key = (namespace, name)
        if key not in self.runs:
            raise status_error(404, "NotFound")
        expected = (patch.get("metadata") or {}).get("resourceVersion")
        if expected is not None and expected != self.runs[key]["metadata"]["resourceVersion"]:
            raise status_error(409, "Conflict")  # the object was modified meanwhile
        body = apply_merge_patch(self.runs[key], patch)
        body["metadata"]["resourceVersion"] = self._next_rv()
        self.runs[key] = body
        return copy.deepcopy(body)

    async def delete_run(self, namespace: str, name: str, uid: str) -> bool:
        self.calls.append(("delete_run", name))
        return self.runs.pop((namespace, name), None) is not None

    async def create_event(self, namespace: str, event: Mapping[str, Any]) -> dict[str, Any]:
        created = copy.deepcopy(dict(event))
        prefix = event["metadata"].get("generateName", "")
        created["metadata"]["name"] = f"{prefix}{len(self.events)}"
        self.events.append(created)
        return copy.deepcopy(created)

    async def patch_event(self, namespace: str, name: str, patch: Mapping[str, Any]) -> None:
        self.calls.append(("patch_event", name))
        (event,) = [e for e in self.events if e["metadata"]["name"] == name]
        event.update(copy.deepcopy(dict(patch)))


class RecordingEvents:
    def __init__(self) -> None:
        self.posted: list[EmitEvent] = []

    def post(self, run: Mapping[str, Any], event: EmitEvent, now: datetime) -> None:
        self.posted.append(event)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class Harness:
    """A reconciler wired to fakes, with helpers to drive it like the watches would."""

    def __init__(self, **reconciler: Any) -> None:
        self.kube = FakeKube()
        self.cache = Cache()
        self.metrics = Metrics()
        self.events = RecordingEvents()
        self.clock = Clock()
        self.due: dict[tuple[str, str], datetime | None] = {}
        self._reconciler_options = reconciler
        self.reconciler = self._new_reconciler()

    def _new_reconciler(self) -> Reconciler:
        return Reconciler(
            self.kube,  # type: ignore[arg-type]
            self.cache,
            self.metrics,
            self.events,
            clock=self.clock,
            plan_in_thread=False,
            **self._reconciler_options,
        )

    def restart(self) -> None:
        """A new operator process: an empty cache and a new reconciler on the same API."""
        self.cache = Cache()
        self.reconciler = self._new_reconciler()

    def create_run(self, body: dict[str, Any]) -> tuple[str, str]:
        stored = self.kube.add_run(body)
        self.cache.put_run(stored)
        return stored["metadata"]["namespace"], stored["metadata"]["name"]

    def sync_from_api(self) -> None:
        """What the watches would deliver: every object as the fake API has it now."""
        for body in self.kube.runs.values():
            self.cache.put_run(copy.deepcopy(body))
        for job in self.kube.jobs.values():
            self.cache.put_job(copy.deepcopy(job))

    def reconcile(self, key: tuple[str, str]) -> None:
        asyncio.run(self._reconcile(key))

    def resync(self, key: tuple[str, str]) -> None:
        asyncio.run(self.reconciler.resync(key))

    def reconcile_safely(self, key: tuple[str, str]) -> None:
        asyncio.run(self._reconcile(key, safely=True))

    async def _reconcile(self, key: tuple[str, str], safely: bool = False) -> None:
        if safely:
            await self.reconciler.reconcile_safely(key)
        else:
            # As a worker would: the pass's Result sets the run's timer.
            self.reconciler.queue.apply(key, await self.reconciler.reconcile(key))
        # Timers live on this loop, which ends here: remember when they were due, then
        # cancel them.
        self.due = {run: self.reconciler.due_at(run) for run in list(self.reconciler._timers)}
        for run in list(self.reconciler._timers):
            self.reconciler._cancel_timer(run)

    def job(self, key: tuple[str, str], instance: str, attempt: int = 1) -> str:
        """The name the operator gives the Job of a node attempt of the run."""
        return names.job_name(key[1], self.kube.runs[key]["metadata"]["uid"], instance, attempt)

    def job_of(self, key: tuple[str, str], instance: str, attempt: int = 1) -> str:
        """The name of the Job the operator made for a node attempt of the run."""
        uid = self.kube.runs[key]["metadata"]["uid"]
        for (namespace, name), job in self.kube.jobs.items():
            meta = job["metadata"]
            if (
                namespace == key[0]
                and meta.get("annotations", {}).get("kdag.dev/node-instance") == instance
                and meta.get("labels", {}).get("kdag.dev/attempt") == str(attempt)
                and any(o.get("uid") == uid for o in meta.get("ownerReferences", []))
            ):
                return name
        raise KeyError(f"no Job for attempt {attempt} of {instance} of {key}")

    def status(self, key: tuple[str, str]) -> dict[str, Any]:
        return dict(self.kube.runs[key].get("status") or {})


def run_body(
    name: str = "r1",
    namespace: str = "ns",
    nodes: list[dict[str, Any]] | None = None,
    **workflow: Any,
) -> dict[str, Any]:
    spec = {
        "defaults": {"image": "busybox:1.36"},
        "nodes": nodes or [{"name": "a"}],
        **workflow,
    }
    return {
        "apiVersion": "kdag.dev/v1alpha1",
        "kind": "WorkflowRun",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"workflow": spec},
    }


class Wakes:
    """A reconciler as the watch handlers see it: records the runs they wake."""

    def __init__(self, *, deletes_finished_jobs: bool = False) -> None:
        self.woken: list[tuple[str, str]] = []
        self._deletes = deletes_finished_jobs

    def enqueue(self, key: tuple[str, str]) -> None:
        self.woken.append(key)

    def deletes_finished_jobs(self, key: tuple[str, str]) -> bool:
        return self._deletes

    def writing_status(self, key: tuple[str, str]) -> bool:
        return False


def watch_handlers_app(cache: Cache, reconciler: Any) -> Any:
    """What the kopf handlers reach through `memo["kdag"]`: the cache, the reconciler, and a
    refusal finder that ignores Jobs (test_op_refusals.py covers it)."""
    return SimpleNamespace(
        cache=cache, reconciler=reconciler, refusals=SimpleNamespace(consider=lambda *_: None)
    )


def set_spec(**fields: Any) -> Callable[[dict[str, Any]], None]:
    """A user's edit of the run's spec (kubectl edit/patch): the generation moves."""

    def change(run: dict[str, Any]) -> None:
        run["spec"].update(fields)
        run["metadata"]["generation"] += 1

    return change


def annotate(key: str, value: str) -> Callable[[dict[str, Any]], None]:
    """A user's `kubectl annotate` of the run."""

    def change(run: dict[str, Any]) -> None:
        run["metadata"].setdefault("annotations", {})[key] = value

    return change


@pytest.fixture
def h() -> Harness:
    return Harness()


@pytest.fixture
def make_run() -> Callable[..., dict[str, Any]]:
    return run_body
