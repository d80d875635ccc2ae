"""Kubernetes Events on runs: built here (pure), posted off the reconcile path.

Events are a courtesy to `kubectl describe`, not state: they are posted by a few background
workers so a slow or throttled API never delays a Job, and dropped (and counted) when the
backlog grows, rather than piling up in memory.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Protocol

from kdag.api import API_VERSION
from kdag.engine.model import EmitEvent
from kdag.engine.timeutil import to_iso_precise
from kdag.operator.kube import KubeApi, KubeError
from kdag.operator.metrics import Metrics

logger = logging.getLogger(__name__)

COMPONENT = "kdag-operator"
MAX_MESSAGE = 1024
MAX_BACKLOG = 2000


class EventSink(Protocol):
    def post(self, run: Mapping[str, Any], event: EmitEvent, now: datetime) -> None: ...


def event_body(
    run: Mapping[str, Any], event: EmitEvent, now: datetime, instance: str
) -> dict[str, Any]:
    """A core/v1 Event about the run."""
    meta = run.get("metadata") or {}
    name, namespace = meta.get("name", ""), meta.get("namespace", "")
    stamp = to_iso_precise(now)
    message = event.message
    if len(message) > MAX_MESSAGE:
        message = message[: MAX_MESSAGE - 3] + "..."
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{name}.", "namespace": namespace},
        "involvedObject": {
            "apiVersion": API_VERSION,
            "kind": "WorkflowRun",
            "name": name,
            "namespace": namespace,
            "uid": meta.get("uid", ""),
            "resourceVersion": meta.get("resourceVersion", ""),
        },
        "type": event.type,
        "reason": event.reason,
        "message": message,
        "count": 1,
        "firstTimestamp": stamp[:19] + "Z",
        "lastTimestamp": stamp[:19] + "Z",
        "source": {"component": COMPONENT},
        "reportingComponent": f"kdag.dev/{COMPONENT}",
        "reportingInstance": instance,
    }


class EventPoster:
    """Posts Events from a bounded queue with a few workers."""

    def __init__(self, kube: KubeApi, metrics: Metrics, workers: int = 2) -> None:
        self._kube = kube
        self._metrics = metrics
        self._queue: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue(MAX_BACKLOG)
        self._workers = workers
        self._tasks: list[asyncio.Task[None]] = []
        self._instance = socket.gethostname()

    def post(self, run: Mapping[str, Any], event: EmitEvent, now: datetime) -> None:
        body = event_body(run, event, now, self._instance)
        try:
            self._queue.put_nowait((body["metadata"]["namespace"], body))
        except asyncio.QueueFull:
            self._metrics.events_dropped.inc()

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._work()) for _ in range(self._workers)]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _work(self) -> None:
        while True:
            namespace, body = await self._queue.get()
            try:
                await self._kube.create_event(namespace, body)
            except KubeError as exc:
                # A namespace being deleted refuses events; nothing to retry there.
                self._metrics.events_dropped.inc()
                logger.debug("event not posted: %s", exc)
            except Exception:
                self._metrics.events_dropped.inc()
                logger.exception("event not posted")
