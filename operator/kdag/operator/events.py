"""Kubernetes Events on runs: built here (pure), posted off the reconcile path.

Events are a courtesy to `kubectl describe`, not state: they are posted by a few background
workers so a slow or throttled API never delays a Job, and dropped (and counted) when the
backlog grows, rather than piling up in memory. Like client-go's event recorder, a repeat of
an Event bumps the first one's count instead of adding another, and each run gets a burst of
Events and then a trickle, so a fan-out of thousands failing at once cannot flood the API
(every node's message is in the run's status anyway).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol

from kdag.api import API_VERSION
from kdag.engine.model import EmitEvent
from kdag.engine.timeutil import to_iso_precise
from kdag.operator.kube import KubeApi, KubeError
from kdag.operator.metrics import Metrics
from kdag.operator.objects import resource_version, utcnow

logger = logging.getLogger(__name__)

COMPONENT = "kdag-operator"
MAX_MESSAGE = 1024
MAX_BACKLOG = 2000
# client-go's defaults: repeats within 10 minutes are one Event; 25 at once per object, then
# one more every 5 minutes. kdag refills faster (runs are short-lived and busy).
REPEAT_WINDOW = timedelta(minutes=10)
BURST = 25
REFILL_SECONDS = 10.0


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
            "resourceVersion": resource_version(run),
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


@dataclass
class _Posted:
    name: str
    count: int
    at: datetime


@dataclass
class _Bucket:
    tokens: float
    at: datetime


@dataclass(frozen=True)
class Verdict:
    action: Literal["create", "bump", "drop"]
    name: str = ""  # the Event to bump
    count: int = 1


class EventCorrelator:
    """Decides, per Event, whether to create it, bump an identical recent one, or drop it."""

    def __init__(self, clock: Callable[[], datetime]) -> None:
        self._clock = clock
        self._posted: dict[tuple[str, ...], _Posted] = {}
        self._buckets: dict[str, _Bucket] = {}

    @staticmethod
    def _key(body: Mapping[str, Any]) -> tuple[str, ...]:
        obj = body.get("involvedObject") or {}
        return (
            str(obj.get("namespace", "")),
            str(obj.get("uid", "")),
            str(body.get("type", "")),
            str(body.get("reason", "")),
            str(body.get("message", "")),
        )

    def decide(self, body: Mapping[str, Any]) -> Verdict:
        now = self._clock()
        self._forget_older_than(now - REPEAT_WINDOW)
        posted = self._posted.get(self._key(body))
        if posted is not None:
            posted.count += 1
            posted.at = now
            return Verdict("bump", posted.name, posted.count)
        uid = str((body.get("involvedObject") or {}).get("uid", ""))
        bucket = self._buckets.setdefault(uid, _Bucket(float(BURST), now))
        elapsed = (now - bucket.at).total_seconds()
        bucket.tokens = min(float(BURST), bucket.tokens + elapsed / REFILL_SECONDS)
        bucket.at = now
        if bucket.tokens < 1:
            return Verdict("drop")
        bucket.tokens -= 1
        return Verdict("create")

    def created(self, body: Mapping[str, Any], name: str) -> None:
        self._posted[self._key(body)] = _Posted(name, 1, self._clock())

    def _forget_older_than(self, cutoff: datetime) -> None:
        # A bucket untouched for the whole window has refilled anyway (25 x 10 s < 10 min).
        self._posted = {k: p for k, p in self._posted.items() if p.at >= cutoff}
        self._buckets = {u: b for u, b in self._buckets.items() if b.at >= cutoff}


class EventPoster:
    """Posts Events from a bounded queue with a few workers."""

    def __init__(
        self,
        kube: KubeApi,
        metrics: Metrics,
        workers: int = 2,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._kube = kube
        self._metrics = metrics
        self._correlator = EventCorrelator(clock)
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
                await self._send(namespace, body)
            except KubeError as exc:
                # A namespace being deleted refuses events; nothing to retry there.
                self._metrics.events_dropped.inc()
                logger.debug("event not posted: %s", exc)
            except Exception:
                self._metrics.events_dropped.inc()
                logger.exception("event not posted")

    async def _send(self, namespace: str, body: dict[str, Any]) -> None:
        verdict = self._correlator.decide(body)
        if verdict.action == "drop":
            self._metrics.events_dropped.inc()
            return
        if verdict.action == "bump":
            patch = {"count": verdict.count, "lastTimestamp": body["lastTimestamp"]}
            try:
                await self._kube.patch_event(namespace, verdict.name, patch)
                return
            except KubeError as exc:
                if exc.status != 404:
                    raise
                # The API server expired it (event TTL): start a new one.
        created = await self._kube.create_event(namespace, body)
        self._correlator.created(body, str((created.get("metadata") or {}).get("name", "")))
