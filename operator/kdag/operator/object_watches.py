"""Runs, Jobs and pods are streamed to their handlers past kopf's per-object processing.

Every node brings about ten watch events: its Job's creation and status updates, its pod's
scheduling, start and end, and its run's status writes. kopf routes each one through a
per-object worker task, cause detection, an object logger and handler invocation: most of
the operator's CPU, the benchmarks measured. kdag's handlers only update the cache and wake
a run (`kdag.operator.handlers`), so each event goes to its handler straight from kopf's own
list-and-watch stream, which keeps what a watch needs: the initial listing, continuing from
the last resourceVersion, relisting after 410 Gone, bookmarks, and the peering pause. A
kind whose view must be whole before it is used (the runs each Workflow has) is told when
each listing is over (`ListingObserver`). Workflows, few, stay on kopf's handlers and index.

The namespaces are the ones kopf serves: those it resolved from `--namespace` patterns
(globs included) or cluster-wide, followed as namespaces come and go.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Coroutine, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import kopf

# kopf's list-and-watch stream and its served-namespace record: not exported by kopf, and
# pinned with it (pyproject.toml); tests/unit/operator/test_op_object_watches.py runs them.
from kopf._cogs.clients.watching import Bookmark, infinite_watch
from kopf._cogs.structs.references import Insights, Namespace

from kdag.operator.backoff import Backoff
from kdag.operator.json_decoding import decode_kopf_streams
from kdag.operator.peering import PauseState

logger = logging.getLogger(__name__)

# A stream that failed waits before it starts again: 1 s, doubling up to 30 s.
RESTART_BACKOFF = Backoff(base_seconds=1.0, max_seconds=30.0)

EventHandler = Callable[[str | None, dict[str, Any]], None]


class ListingObserver(Protocol):
    """Told when a kind's view of a namespace (None: all namespaces) is whole."""

    def stream_started(self, namespace: Namespace) -> None:
        """Not whole until listed."""

    def listed(self, namespace: Namespace, present: Iterable[tuple[str, str]]) -> None:
        """A listing is over: it showed these (namespace, name); others are gone."""

    def stream_stopped(self, namespace: Namespace) -> None:
        """No longer watched."""


@dataclass(frozen=True)
class WatchedKind:
    resource: kopf.Resource
    handle: EventHandler
    listings: ListingObserver | None = None


# One kind's events in one namespace (None: cluster-wide), until cancelled.
Stream = Callable[[WatchedKind, Namespace], Coroutine[Any, Any, None]]


def deliver(kind: WatchedKind, event: Bookmark | dict[str, Any]) -> None:
    """Hand one event of the stream to the kind's handler; a handler's error is logged and
    the stream goes on (one malformed object must not stop the watch of all others)."""
    if isinstance(event, Bookmark) or event.get("type") == "BOOKMARK":
        return  # progress marks, no object
    try:
        kind.handle(event.get("type"), event["object"])
    except Exception:
        body = event.get("object")
        meta = (body.get("metadata") if isinstance(body, dict) else None) or {}
        logger.exception(
            "handling a %s event of %s/%s failed; the watch goes on",
            kind.resource.plural,
            meta.get("namespace"),
            meta.get("name"),
        )


def kopf_stream(
    settings: kopf.OperatorSettings,
    paused: PauseState | None = None,
    backoff: Backoff = RESTART_BACKOFF,
) -> Stream:
    """Streams on kopf's `infinite_watch`, with the operator's label selectors and pause.

    The watch itself reconnects forever; what escapes it (a 403 after the RBAC was changed,
    a watch error event) is logged and the stream starts again after a backoff, never
    ending the operator nor retrying in a tight loop.
    """
    decode_kopf_streams()

    async def stream(kind: WatchedKind, namespace: Namespace) -> None:
        loop = asyncio.get_running_loop()
        failures = 0
        listings = kind.listings
        if listings is not None:
            listings.stream_started(namespace)
        try:
            while True:
                started = loop.time()
                try:
                    await _follow(kind, namespace)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    # A stream that kept going for a while before failing starts afresh.
                    failures = 1 if loop.time() - started >= backoff.max_seconds else failures + 1
                    delay = backoff.delay(failures)
                    logger.error(
                        "watching %s in %s failed (%s); again in %.0f s",
                        kind.resource.plural,
                        namespace or "all namespaces",
                        exc,
                        delay,
                    )
                    await asyncio.sleep(delay)
        finally:
            if listings is not None:
                listings.stream_stopped(namespace)

    async def _follow(kind: WatchedKind, namespace: Namespace) -> None:
        listing: set[tuple[str, str]] | None = None  # what the listing under way showed
        async for event in infinite_watch(
            settings=settings,
            resource=kind.resource,
            namespace=namespace,
            operator_paused=paused,  # type: ignore[arg-type]
        ):
            if kind.listings is not None:
                if event is Bookmark.LISTED:
                    kind.listings.listed(namespace, listing or ())
                    listing = None
                elif isinstance(event, dict) and event.get("type") is None:
                    listing = set() if listing is None else listing
                    listing.add(_slot(event.get("object")))
            deliver(kind, event)  # type: ignore[arg-type]

    return stream


def _slot(body: object) -> tuple[str, str]:
    meta = (body.get("metadata") if isinstance(body, dict) else None) or {}
    return str(meta.get("namespace", "")), str(meta.get("name", ""))


async def follow_namespaces(
    insights: Insights, kinds: Collection[WatchedKind], stream: Stream
) -> None:
    """One stream per kind and served namespace, started and stopped as kopf's record of
    the served namespaces changes; runs until cancelled."""
    running: dict[tuple[WatchedKind, Namespace], asyncio.Task[None]] = {}
    try:
        async with insights.revised:
            while True:
                wanted = {(kind, ns) for kind in kinds for ns in insights.namespaces}
                for key in running.keys() - wanted:
                    running.pop(key).cancel()
                for kind, ns in wanted - running.keys():
                    running[kind, ns] = asyncio.create_task(
                        stream(kind, ns), name=f"kdag watch {kind.resource.plural} in {ns}"
                    )
                await insights.revised.wait()
    finally:
        await _cancelled(running.values())


async def _cancelled(tasks: Iterable[asyncio.Task[None]]) -> None:
    pending = list(tasks)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
