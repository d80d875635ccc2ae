"""Helpers for Kubernetes objects as the watches and the API hand them over (plain dicts),
and the operator's clock. Time parsing lives in `kdag.engine.timeutil` (the engine needs
it too, but may not read the clock)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

DELETED = "DELETED"
"""The watch event type of an object that is gone."""

RunKey = tuple[str, str]
"""(namespace, name) of a WorkflowRun."""


def utcnow() -> datetime:
    return datetime.now(UTC)


def resource_version(body: Mapping[str, Any]) -> str:
    return str((body.get("metadata") or {}).get("resourceVersion", ""))


def run_key(body: Mapping[str, Any]) -> RunKey:
    meta = body.get("metadata") or {}
    return str(meta.get("namespace", "")), str(meta.get("name", ""))


def is_newer(candidate: str, current: str) -> bool:
    """Whether resourceVersion `candidate` is at least as new as `current`.

    resourceVersions are opaque by contract but integers in practice (etcd revisions);
    when either is not, the later arrival wins.
    """
    try:
        return int(candidate) >= int(current)
    except ValueError:
        return True
