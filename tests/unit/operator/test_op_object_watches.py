"""Jobs and pods reach their handlers straight from kopf's watch streams, in every namespace
kopf serves, and no event, handler error or stream failure stops the watching."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import kopf
import pytest
from kopf._cogs.clients.watching import Bookmark
from kopf._cogs.structs.references import Insights

from kdag.operator import object_watches
from kdag.operator.backoff import Backoff
from kdag.operator.config import (
    JOBS_RESOURCE,
    JOBS_SELECTOR,
    PODS_RESOURCE,
    PODS_SELECTOR,
    OperatorConfig,
    kopf_settings,
)
from kdag.operator.object_watches import WatchedKind, deliver, follow_namespaces, kopf_stream

Seen = list[tuple[str | None, str]]


def recording_kind(seen: Seen, resource: kopf.Resource = JOBS_RESOURCE) -> WatchedKind:
    def handle(event_type: str | None, body: dict[str, Any]) -> None:
        name = body["metadata"]["name"]
        if name == "poison":
            raise ValueError("a malformed object")
        seen.append((event_type, name))

    return WatchedKind(resource, handle)


def event(event_type: str | None, name: str) -> dict[str, Any]:
    return {"type": event_type, "object": {"metadata": {"name": name, "namespace": "ns"}}}


async def until(condition: Any) -> None:
    """Until the condition holds (loop turns only, no clock)."""
    while not condition():
        await asyncio.sleep(0)


def test_the_operators_label_selectors_apply_to_the_job_and_pod_watches() -> None:
    settings = kopf_settings(OperatorConfig(all_namespaces=True))
    assert settings.watching.label_selectors.collect(JOBS_RESOURCE) == [JOBS_SELECTOR]
    assert settings.watching.label_selectors.collect(PODS_RESOURCE) == [PODS_SELECTOR]
    assert JOBS_RESOURCE.get_url(namespace="team") == "/apis/batch/v1/namespaces/team/jobs"
    assert PODS_RESOURCE.get_url(namespace=None) == "/api/v1/pods"


def test_listed_added_modified_and_deleted_events_reach_the_handler_and_marks_do_not() -> None:
    seen: Seen = []
    kind = recording_kind(seen)
    for item in (
        event(None, "listed"),
        Bookmark.LISTED,
        {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "9"}}},
        event("ADDED", "a"),
        event("MODIFIED", "a"),
        event("DELETED", "a"),
    ):
        deliver(kind, item)
    assert seen == [(None, "listed"), ("ADDED", "a"), ("MODIFIED", "a"), ("DELETED", "a")]


def test_a_handler_error_is_logged_and_the_next_event_is_handled(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: Seen = []
    kind = recording_kind(seen)
    with caplog.at_level(logging.ERROR):
        deliver(kind, event("ADDED", "poison"))
        deliver(kind, event("ADDED", "next"))
    assert seen == [("ADDED", "next")]
    assert "handling a jobs event of ns/poison failed" in caplog.text


def test_a_malformed_event_is_logged_and_the_next_event_is_handled(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: Seen = []
    kind = recording_kind(seen)
    with caplog.at_level(logging.ERROR):
        deliver(kind, {"type": "MODIFIED", "object": "not an object"})
        deliver(kind, {"type": "MODIFIED"})
        deliver(kind, event("ADDED", "next"))
    assert seen == [("ADDED", "next")]
    assert caplog.text.count("the watch goes on") == 2


def test_one_stream_per_kind_and_served_namespace_follows_kopfs_namespaces() -> None:
    jobs, pods = recording_kind([]), recording_kind([], PODS_RESOURCE)
    running: set[tuple[str, str | None]] = set()
    stopped: list[tuple[str, str | None]] = []

    async def stream(kind: WatchedKind, namespace: str | None) -> None:
        key = (kind.resource.plural, namespace)
        running.add(key)
        try:
            await asyncio.Event().wait()
        finally:
            running.discard(key)
            stopped.append(key)

    async def scenario() -> None:
        insights = Insights()
        insights.namespaces.update({"team-a"})
        follower = asyncio.create_task(follow_namespaces(insights, [jobs, pods], stream))
        await until(lambda: running == {("jobs", "team-a"), ("pods", "team-a")})

        async with insights.revised:  # kopf saw team-b created and team-a deleted
            insights.namespaces.clear()
            insights.namespaces.update({"team-b"})
            insights.revised.notify_all()
        await until(lambda: running == {("jobs", "team-b"), ("pods", "team-b")})
        assert sorted(stopped) == [("jobs", "team-a"), ("pods", "team-a")]

        follower.cancel()
        with pytest.raises(asyncio.CancelledError):
            await follower
        assert running == set()  # no stream outlives the operator

    asyncio.run(scenario())


def test_a_failed_stream_starts_again_after_a_backoff_and_delivers_what_follows(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    seen: Seen = []
    attempts: list[str | None] = []

    async def flaky_watch(**kwargs: Any) -> AsyncIterator[Any]:
        attempts.append(kwargs["namespace"])
        yield event(None, f"listed-{len(attempts)}")
        if len(attempts) < 3:
            raise kopf.PermanentError("403 Forbidden")  # stands in for any escaping error
        yield event("ADDED", "after-restarts")
        await asyncio.Event().wait()

    monkeypatch.setattr(object_watches, "infinite_watch", flaky_watch)
    delays: list[float] = []
    real_sleep = asyncio.sleep

    async def recorded_sleep(delay: float) -> None:
        if delay:  # the test's own loop turns are sleep(0)
            delays.append(delay)
        await real_sleep(0)

    monkeypatch.setattr(object_watches.asyncio, "sleep", recorded_sleep)
    stream = kopf_stream(
        kopf_settings(OperatorConfig(all_namespaces=True)), backoff=Backoff(1.0, 30.0)
    )

    async def scenario() -> None:
        task = asyncio.create_task(stream(recording_kind(seen), "team"))
        await until(lambda: ("ADDED", "after-restarts") in seen)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    with caplog.at_level(logging.ERROR):
        asyncio.run(scenario())
    assert attempts == ["team", "team", "team"]
    assert delays == [1.0, 2.0]  # failing again at once: each wait doubles
    assert seen == [
        (None, "listed-1"),
        (None, "listed-2"),
        (None, "listed-3"),
        ("ADDED", "after-restarts"),
    ]
    assert "watching jobs in team failed (403 Forbidden); again in 1 s" in caplog.text


class RecordedListings:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str | None, list[tuple[str, str]]]] = []

    def stream_started(self, namespace: str | None) -> None:
        self.calls.append(("started", namespace, []))

    def listed(self, namespace: str | None, present: Any) -> None:
        self.calls.append(("listed", namespace, sorted(present)))

    def stream_stopped(self, namespace: str | None) -> None:
        self.calls.append(("stopped", namespace, []))


def test_a_kind_that_needs_whole_listings_is_told_what_each_listing_showed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    attempts: list[int] = []

    async def relisting_watch(**_: Any) -> AsyncIterator[Any]:
        # A listing, events, a relisting (410 Gone) that no longer shows "b", an empty
        # relisting; then, after the stream failed once, a listing in the new stream.
        attempts.append(1)
        if len(attempts) == 1:
            for item in (
                event(None, "a"),
                event(None, "b"),
                Bookmark.LISTED,
                event("ADDED", "c"),
                event(None, "a"),
                event(None, "c"),
                Bookmark.LISTED,
                Bookmark.LISTED,
            ):
                yield item  # fmt: skip
            yield event(None, "half a listing")
            raise kopf.PermanentError("500")
        yield event(None, "d")
        yield Bookmark.LISTED
        await asyncio.Event().wait()

    monkeypatch.setattr(object_watches, "infinite_watch", relisting_watch)
    listings = RecordedListings()
    seen: Seen = []
    kind = WatchedKind(JOBS_RESOURCE, recording_kind(seen).handle, listings)
    stream = kopf_stream(kopf_settings(OperatorConfig(all_namespaces=True)), backoff=Backoff(0, 0))

    async def scenario() -> None:
        task = asyncio.create_task(stream(kind, "team"))
        await until(lambda: len(listings.calls) == 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    assert listings.calls == [
        ("started", "team", []),
        ("listed", "team", [("ns", "a"), ("ns", "b")]),
        ("listed", "team", [("ns", "a"), ("ns", "c")]),
        ("listed", "team", []),
        ("listed", "team", [("ns", "d")]),  # the cut-off listing reported nothing
        ("stopped", "team", []),
    ]
    assert (None, "half a listing") in seen
