from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

from conftest import T0, FakeKube

from kdag.engine.model import EmitEvent
from kdag.operator.events import (
    BURST,
    REFILL_SECONDS,
    REPEAT_WINDOW,
    EventCorrelator,
    EventPoster,
    Verdict,
    event_body,
)
from kdag.operator.metrics import Metrics

RUN = {"metadata": {"name": "r1", "namespace": "ns", "uid": "u1", "resourceVersion": "5"}}


def test_event_is_about_the_run_and_capped() -> None:
    body = event_body(RUN, EmitEvent("Warning", "NodeFailed", "x" * 5000), T0, "pod-1")
    assert body["involvedObject"] == {
        "apiVersion": "kdag.dev/v1alpha1",
        "kind": "WorkflowRun",
        "name": "r1",
        "namespace": "ns",
        "uid": "u1",
        "resourceVersion": "5",
    }
    assert body["metadata"] == {"generateName": "r1.", "namespace": "ns"}
    assert (body["type"], body["reason"]) == ("Warning", "NodeFailed")
    assert len(body["message"]) == 1024
    assert body["firstTimestamp"] == "2026-11-22T02:00:00Z"


def test_poster_sends_in_the_background() -> None:
    kube = FakeKube()

    async def scenario() -> None:
        poster = EventPoster(kube, Metrics())  # type: ignore[arg-type]
        poster.start()
        poster.post(RUN, EmitEvent("Normal", "Running", "1 running"), T0)
        while not kube.events:
            await asyncio.sleep(0)
        await poster.stop()

    asyncio.run(scenario())
    assert kube.events[0]["reason"] == "Running"


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def body(message: str, uid: str = "u1", reason: str = "NodeFailed") -> dict[str, Any]:
    run = {"metadata": {**RUN["metadata"], "uid": uid}}
    return event_body(run, EmitEvent("Warning", reason, message), T0, "pod-1")


def test_a_repeated_event_bumps_the_first_ones_count() -> None:
    clock = Clock()
    correlator = EventCorrelator(clock)
    first = body("node a failed")
    assert correlator.decide(first).action == "create"
    correlator.created(first, "r1.abc")
    assert correlator.decide(body("node a failed")) == Verdict("bump", "r1.abc", 2)
    assert correlator.decide(body("node a failed")) == Verdict("bump", "r1.abc", 3)
    assert correlator.decide(body("node b failed")).action == "create"  # another message
    assert correlator.decide(body("node a failed", uid="u2")).action == "create"  # another run
    clock.now += REPEAT_WINDOW + timedelta(seconds=1)
    assert correlator.decide(body("node a failed")).action == "create"  # too long ago


def test_a_run_gets_a_burst_of_events_then_a_trickle() -> None:
    clock = Clock()
    correlator = EventCorrelator(clock)
    verdicts = [correlator.decide(body(f"node {i} failed")).action for i in range(BURST + 5)]
    assert verdicts == ["create"] * BURST + ["drop"] * 5
    assert correlator.decide(body("other run", uid="u2")).action == "create"
    clock.now += timedelta(seconds=REFILL_SECONDS)
    assert correlator.decide(body("node x failed")).action == "create"
    assert correlator.decide(body("node y failed")).action == "drop"


def test_poster_bumps_a_repeat_instead_of_creating_another_event() -> None:
    kube = FakeKube()
    metrics = Metrics()

    async def scenario() -> None:
        poster = EventPoster(kube, metrics, workers=1)  # type: ignore[arg-type]
        poster.start()
        for _ in range(3):
            poster.post(RUN, EmitEvent("Warning", "NodeFailed", "node a failed"), T0)
        while len([c for c in kube.calls if c[0] == "patch_event"]) < 2:
            await asyncio.sleep(0)
        await poster.stop()

    asyncio.run(scenario())
    assert len(kube.events) == 1
    assert kube.events[0]["count"] == 3
