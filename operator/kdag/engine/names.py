"""Deterministic, valid Kubernetes names for the objects a run creates.

A restarted operator must compute exactly the same Job name for the same node attempt, so
that creating it again answers AlreadyExists (adopt) instead of starting a duplicate.
"""

from __future__ import annotations

import functools
import hashlib
import re

MAX_NAME = 63
_INVALID = re.compile(r"[^a-z0-9-]+")
_DASHES = re.compile(r"-{2,}")
_SAFE_ITEM = re.compile(r"^[A-Za-z0-9._-]{1,40}$")


def item_labels(items: list[str]) -> list[str]:
    """Instance labels for fan-out items: the items themselves when they are short and
    distinct, otherwise their indexes, so keys stay readable yet unique."""
    if len(set(items)) == len(items) and all(_SAFE_ITEM.match(i) for i in items):
        return list(items)
    return [str(i) for i in range(len(items))]


def sanitize(text: str) -> str:
    """Lowercase DNS-label characters only, no leading/trailing/double dashes."""
    cleaned = _DASHES.sub("-", _INVALID.sub("-", text.lower())).strip("-")
    return cleaned or "x"


def _digest(text: str, length: int = 8) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def shorten(name: str, limit: int = MAX_NAME, *, exact: bool = True) -> str:
    """`name` if it is valid and short enough; else a prefix plus a hash of the full text.

    `exact=False` says the caller's name lost information while sanitizing, so the hash is
    needed even when it fits, to keep distinct inputs distinct.
    """
    if exact and len(name) <= limit:
        return name
    digest = _digest(name)
    prefix = name[: limit - len(digest) - 1].rstrip("-")
    return f"{prefix}-{digest}"


@functools.lru_cache(maxsize=65536)
def job_name(run: str, run_uid: str, instance: str, attempt: int) -> str:
    """`<run>-<node>-<hash>-<attempt>`, shortened to stay a valid 63-character DNS label.

    The hash covers the run's uid and the exact instance key, so names never collide:
    neither between runs whose names and node names join to the same text (`etl-daily` +
    `extract`, `etl` + `daily-extract`), nor with the Jobs a deleted run of the same name left
    behind. It is stable for the life of one run object, so a restarted operator computes the
    same name again.
    """
    suffix = f"-{attempt}"
    digest = _digest(f"{run}/{run_uid}/{instance}")
    room = MAX_NAME - len(suffix) - len(digest) - 1
    node_part = sanitize(instance)
    # A long run name leaves the node at least half of the room, so names stay telling.
    run_part = sanitize(run)[: max(room - len(node_part) - 1, room // 2)].rstrip("-")
    prefix = f"{run_part}-{node_part}"[:room].rstrip("-")
    return f"{prefix}-{digest}{suffix}"


def label_value(text: str) -> str:
    """A valid label value (<= 63 chars, alphanumeric ends) that identifies `text`."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-._")
    return shorten(cleaned or "x", exact=cleaned == text)


def run_label(run: str) -> str:
    """The `kdag.dev/run` label value of a run: its name when that fits (63 characters),
    else a prefix and a hash; the full name is in the `kdag.dev/run-name` annotation."""
    return label_value(run)


def current_job(
    run: str, run_uid: str, key: str, job: str | None, attempt: int | None
) -> str | None:
    """The Job of a node's current attempt: the one its status names, else (fan-out
    instances keep it out of status) the deterministic name; None before its first attempt."""
    if job or not attempt:
        return job
    return job_name(run, run_uid, key, attempt)
