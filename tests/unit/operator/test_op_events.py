from __future__ import annotations

import asyncio

from conftest import T0, FakeKube

from kdag.engine.model import EmitEvent
from kdag.operator.events import EventPoster, event_body
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
