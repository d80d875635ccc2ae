"""The smallest JSON merge patch (RFC 7386) that turns one status into another (pure).

Patching only what changed keeps writes small for large runs: a node finishing sends that
node's changed fields, not the whole `nodes` map.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kdag.api import WorkflowRunStatus


def merge_patch(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """A merge patch that, applied to `old`, gives `new`; empty when they are equal.

    Keys missing from `new` become null (delete); nested objects are diffed key by key;
    lists and scalars that differ are replaced whole (merge patches cannot edit lists).
    Scalars compare as JSON values (`same_json`); whole objects and lists that Python finds
    equal are taken as unchanged (where that differs, true vs 1 inside one, the schema's
    types already rule it out).
    """
    patch: dict[str, Any] = {}
    for key, value in new.items():
        if key not in old:
            patch[key] = value
            continue
        before = old[key]
        if isinstance(value, Mapping) and isinstance(before, Mapping):
            # Most of a large status is unchanged: let C compare whole subtrees first and
            # descend only into those that differ (5,000 nodes: ~100 ms -> ~5 ms).
            if value == before:
                continue
            nested = merge_patch(before, value)
            if nested:
                patch[key] = nested
        elif isinstance(value, list) and isinstance(before, list) and value == before:
            continue  # compared in C, as objects are (conditions, on every pass)
        elif not same_json(value, before):
            patch[key] = value
    for key in old:
        if key not in new:
            patch[key] = None
    return patch


def status_patch(
    stored: Mapping[str, Any], old: WorkflowRunStatus | None, new: WorkflowRunStatus
) -> dict[str, Any]:
    """`merge_patch(stored, new.to_wire())`, made from what a pass changed.

    `old` is the status `stored` was read as (or written from). A pass shares with it the
    node entries it did not change and the workflow snapshot, which never changes once
    resolved: those are neither serialised nor compared again, so a pass over a run with
    thousands of finished nodes costs what it changed, not the whole status.
    """
    stored_nodes = stored.get("nodes")
    if (
        old is None
        or old.nodes is None
        or new.nodes is None
        or not isinstance(stored_nodes, Mapping)
    ):
        return merge_patch(stored, new.to_wire())
    shared = {"nodes"}
    if new.workflow is not None and new.workflow is old.workflow and "workflow" in stored:
        shared.add("workflow")
    rest = new.model_dump(by_alias=True, exclude_none=True, mode="json", exclude=shared)
    patch = merge_patch({k: v for k, v in stored.items() if k not in shared}, rest)
    nodes: dict[str, Any] = {}
    for key, node in new.nodes.items():
        before = stored_nodes.get(key)
        if before is not None and old.nodes.get(key) is node:
            continue
        wire = node.to_wire()
        changed = wire if not isinstance(before, Mapping) else merge_patch(before, wire)
        if changed:
            nodes[key] = changed
    for key in stored_nodes:
        if key not in new.nodes:
            nodes[key] = None
    if nodes:
        patch["nodes"] = nodes
    return patch


def same_json(a: Any, b: Any) -> bool:
    """JSON equality: 2 and 2.0 are the same number (the API server writes whole floats as
    integers), but true is not 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(same_json(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def apply_merge_patch(target: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """RFC 7386 application, used to keep the cached object in step with what was sent."""
    result = dict(target)
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, Mapping):
            base = result.get(key)
            result[key] = apply_merge_patch(base if isinstance(base, Mapping) else {}, value)
        else:
            result[key] = value
    return result
