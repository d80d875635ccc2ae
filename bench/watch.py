"""The harness's own watches: when each Job and run was first seen, finished, and how big.

Times are this process's wall clock at the moment an event arrived (millisecond precision,
unlike the 1 s creationTimestamp), so "dependency seen done -> dependent Job seen created"
can be measured the same way with and without the operator.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Self

import kubernetes
from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines
from urllib3.exceptions import HTTPError

logger = logging.getLogger(__name__)

TERMINAL_RUN_PHASES = frozenset({"Succeeded", "Failed", "Cancelled", "TimedOut", "Invalid"})


@dataclass
class JobSeen:
    name: str
    labels: dict[str, str]
    annotations: dict[str, str]
    created: str  # creationTimestamp, whole seconds
    added_at: float
    done_at: float | None = None
    succeeded: bool | None = None


@dataclass
class RunSeen:
    name: str
    added_at: float
    phase: str | None = None
    done_at: float | None = None
    nodes: int = 0
    max_bytes: int = 0
    sized_at: float = 0.0


def _pod_finished(pod: dict[str, Any]) -> bool | None:
    """True/False once the pod is Succeeded/Failed, None while it is not finished."""
    phase = (pod.get("status") or {}).get("phase")
    return None if phase not in ("Succeeded", "Failed") else phase == "Succeeded"


def _job_finished(job: dict[str, Any]) -> bool | None:
    """True/False once the Job is Complete/Failed, None while it is not finished."""
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("status") == "True" and condition.get("type") in ("Complete", "Failed"):
            return bool(condition["type"] == "Complete")
    return None


class NamespaceWatch(threading.Thread):
    """Watch one kind in one namespace from a list's resourceVersion, so nothing created
    after `start()` returns is missed; `handle(type, object, received_at)` gets every event."""

    def __init__(
        self,
        list_fn: Callable[..., Any],
        namespace: str,
        handle: Callable[[str, dict[str, Any], float], None],
        **kwargs: Any,
    ) -> None:
        super().__init__(daemon=True, name=f"watch-{namespace}")
        self._list_fn = list_fn
        self._kwargs = kwargs
        self._namespace = namespace
        self._handle = handle
        self._stopping = threading.Event()
        self._resource_version = ""
        self.relists = 0

    def start(self) -> None:
        listed = self._list_fn(namespace=self._namespace, _preload_content=False, **self._kwargs)
        self._resource_version = json.loads(listed.data)["metadata"]["resourceVersion"]
        super().start()

    def stop(self) -> None:
        self._stopping.set()
        self.join(timeout=15)

    def run(self) -> None:
        while not self._stopping.is_set():
            try:
                self._watch_once()
            except _ExpiredError:
                # The API server no longer has our resourceVersion (busy shared cluster):
                # relist. Events in the gap arrive late as ADDED/MODIFIED; the recorders
                # keep first-seen times, so the affected Jobs' times are late, not lost.
                logger.warning("watch of %s expired (410); relisting", self._namespace)
                self.relists += 1
                listed = self._list_fn(
                    namespace=self._namespace, _preload_content=False, **self._kwargs
                )
                body = json.loads(listed.data)
                self._resource_version = body["metadata"]["resourceVersion"]
                received = time.time()
                for item in body.get("items") or []:
                    self._handle("ADDED", item, received)
            except (ApiException, HTTPError, OSError, ValueError) as exc:
                logger.warning("watch of %s interrupted (%s); resuming", self._namespace, exc)
                time.sleep(0.2)

    def _watch_once(self) -> None:
        """One watch request (the server ends it after a few seconds, so stop() is noticed);
        the resourceVersion follows every event and bookmark."""
        response = self._list_fn(
            namespace=self._namespace,
            watch=True,
            resource_version=self._resource_version,
            allow_watch_bookmarks=True,
            timeout_seconds=5,
            _preload_content=False,
            **self._kwargs,
        )
        try:
            for line in iter_resp_lines(response):  # type: ignore[no-untyped-call]
                received = time.time()
                event = json.loads(line)
                obj = event.get("object") or {}
                if event.get("type") == "ERROR":
                    if obj.get("code") == 410:
                        raise _ExpiredError
                    raise ApiException(status=obj.get("code", 500), reason=obj.get("message"))
                version = (obj.get("metadata") or {}).get("resourceVersion")
                if version:
                    self._resource_version = version
                if event.get("type") != "BOOKMARK":
                    self._handle(event["type"], obj, received)
                if self._stopping.is_set():
                    return
        finally:
            response.release_conn()


class _ExpiredError(Exception):
    """The watch's resourceVersion is too old (HTTP 410 Gone)."""


class _Recorder:
    """A namespace watch as a context manager: watching from `__enter__` to `__exit__`."""

    _watch: NamespaceWatch

    def __enter__(self) -> Self:
        self._watch.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._watch.stop()

    @property
    def relists(self) -> int:
        """Times the watch had to relist (410 Gone): first-seen times after a gap are late."""
        return self._watch.relists


class JobRecorder(_Recorder):
    """Every Job (or, with kind "pods", every pod) of a namespace: first seen, first seen
    finished. `on_done` is called once per object, in the watch thread, the moment it is
    seen finished (the floors' creators use it)."""

    def __init__(
        self,
        client: kubernetes.client.ApiClient,
        namespace: str,
        on_done: Callable[[JobSeen], None] | None = None,
        kind: Literal["jobs", "pods"] = "jobs",
    ) -> None:
        self.jobs: dict[str, JobSeen] = {}
        self._on_done = on_done
        self._lock = threading.Lock()
        if kind == "pods":
            list_fn = kubernetes.client.CoreV1Api(client).list_namespaced_pod
            self._finished = _pod_finished
        else:
            list_fn = kubernetes.client.BatchV1Api(client).list_namespaced_job
            self._finished = _job_finished
        self._watch = NamespaceWatch(list_fn, namespace, self._handle)

    def _handle(self, kind: str, job: dict[str, Any], received: float) -> None:
        if kind not in ("ADDED", "MODIFIED"):
            return
        meta = job.get("metadata") or {}
        name = str(meta.get("name"))
        with self._lock:
            seen = self.jobs.get(name)
            if seen is None:
                seen = JobSeen(
                    name=name,
                    labels=dict(meta.get("labels") or {}),
                    annotations=dict(meta.get("annotations") or {}),
                    created=str(meta.get("creationTimestamp", "")),
                    added_at=received,
                )
                self.jobs[name] = seen
            finished = self._finished(job)
            newly_done = finished is not None and seen.done_at is None
            if newly_done:
                seen.done_at, seen.succeeded = received, finished
        if newly_done and self._on_done is not None:
            self._on_done(seen)

    def snapshot(self) -> list[JobSeen]:
        with self._lock:
            return list(self.jobs.values())


class RunRecorder(_Recorder):
    """Every WorkflowRun of a namespace: first seen, first seen terminal, largest size seen."""

    # Measuring a 5,000-node run's JSON costs milliseconds; once every few seconds is plenty
    # (the size only grows, and the final object is always measured).
    SIZE_EVERY_SECONDS = 2.0

    def __init__(self, client: kubernetes.client.ApiClient, namespace: str) -> None:
        self.runs: dict[str, RunSeen] = {}
        self._lock = threading.Lock()
        self._all_done = threading.Condition(self._lock)
        self.expected = 0
        custom = kubernetes.client.CustomObjectsApi(client)
        self._watch = NamespaceWatch(
            custom.list_namespaced_custom_object,
            namespace,
            self._handle,
            group="kdag.dev",
            version="v1alpha1",
            plural="workflowruns",
        )

    def _handle(self, kind: str, run: dict[str, Any], received: float) -> None:
        if kind not in ("ADDED", "MODIFIED"):
            return
        name = str((run.get("metadata") or {}).get("name"))
        status = run.get("status") or {}
        phase = status.get("phase")
        with self._lock:
            seen = self.runs.setdefault(name, RunSeen(name=name, added_at=received))
            seen.phase = phase
            terminal = phase in TERMINAL_RUN_PHASES
            if terminal and seen.done_at is None:
                seen.done_at = received
            if terminal or received - seen.sized_at >= self.SIZE_EVERY_SECONDS:
                seen.sized_at = received
                seen.nodes = len(status.get("nodes") or {})
                size = len(json.dumps(run, separators=(",", ":")))
                seen.max_bytes = max(seen.max_bytes, size)
            if self.done() >= self.expected:
                self._all_done.notify_all()

    def done(self) -> int:
        return sum(1 for r in self.runs.values() if r.done_at is not None)

    def wait_all(self, expected: int, timeout: float, alive: Callable[[], bool]) -> bool:
        """Wait until `expected` runs are terminal; False on timeout or when `alive()` fails."""
        deadline = time.monotonic() + timeout
        with self._lock:
            self.expected = expected
            while self.done() < expected:
                left = deadline - time.monotonic()
                if left <= 0 or not alive():
                    return False
                self._all_done.wait(timeout=min(left, 2.0))
        return True

    def snapshot(self) -> list[RunSeen]:
        with self._lock:
            return [RunSeen(**vars(r)) for r in self.runs.values()]
