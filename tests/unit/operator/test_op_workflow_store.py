"""The Workflows the watch showed, as the Workflow controller reads them."""

from __future__ import annotations

from typing import Any

from kdag.operator.workflow_store import WorkflowStore

NS = "team"


def body(uid: str, generation: int = 1, *, deleting: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "etl", "namespace": NS, "uid": uid, "generation": generation}
    if deleting:
        meta["deletionTimestamp"] = "2026-12-01T00:00:00Z"
    return {"metadata": meta, "spec": {"nodes": []}}


def test_the_latest_event_of_a_workflow_is_what_the_store_shows() -> None:
    store = WorkflowStore()
    store.observe(None, body("a", 1))
    store.observe("MODIFIED", body("a", 2))
    shown = store.workflow((NS, "etl"))
    assert shown is not None and shown.generation == 2
    assert store.keys() == [(NS, "etl")]


def test_a_deleted_workflow_is_gone() -> None:
    store = WorkflowStore()
    store.observe("ADDED", body("a"))
    store.observe("DELETED", body("a"))
    assert store.workflow((NS, "etl")) is None
    assert store.keys() == []


def test_a_workflow_made_again_is_shown_whatever_order_the_old_ones_events_come_in() -> None:
    """kopf handles each object's events apart: the old object's last events may come
    after the new one's first."""
    orders = [
        ["old deleting", "new", "old deleted"],
        ["new", "old deleting", "old deleted"],
        ["old deleting", "old deleted", "new"],
        ["new", "old deleted"],
    ]
    events = {
        "new": ("ADDED", body("b")),
        "old deleting": ("MODIFIED", body("a", deleting=True)),
        "old deleted": ("DELETED", body("a", deleting=True)),
    }
    for order in orders:
        store = WorkflowStore()
        store.observe(None, body("a"))
        for name in order:
            store.observe(*events[name])
        shown = store.workflow((NS, "etl"))
        assert shown is not None and shown.uid == "b", order


def test_while_only_the_old_one_is_seen_its_deletion_is_shown() -> None:
    store = WorkflowStore()
    store.observe(None, body("a"))
    store.observe("MODIFIED", body("a", deleting=True))
    shown = store.workflow((NS, "etl"))
    assert shown is not None and shown.deleting


def test_clearing_forgets_every_workflow() -> None:
    store = WorkflowStore()
    store.observe(None, body("a"))
    store.clear()
    assert store.workflow((NS, "etl")) is None
    assert store.keys() == []
