from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from kdag.operator.status_patch import apply_merge_patch, merge_patch, same_json


def test_equal_statuses_give_an_empty_patch() -> None:
    status = {"phase": "Running", "nodes": {"a": {"phase": "Running", "attempt": 1}}}
    assert merge_patch(status, dict(status)) == {}


def test_only_changed_node_fields_are_sent() -> None:
    old = {
        "phase": "Running",
        "progress": "0/3",
        "nodes": {
            "a": {"phase": "Running", "job": "r-a-1", "startedAt": "t0"},
            "b": {"phase": "Pending"},
            "c": {"phase": "Pending"},
        },
    }
    new = {
        "phase": "Running",
        "progress": "1/3",
        "nodes": {
            "a": {"phase": "Succeeded", "job": "r-a-1", "startedAt": "t0", "finishedAt": "t1"},
            "b": {"phase": "Pending"},
            "c": {"phase": "Pending"},
        },
    }
    assert merge_patch(old, new) == {
        "progress": "1/3",
        "nodes": {"a": {"phase": "Succeeded", "finishedAt": "t1"}},
    }


def test_removed_keys_become_null() -> None:
    old = {"message": "x", "nodes": {"a": {"phase": "Retrying", "nextAttemptAt": "t"}}}
    new = {"nodes": {"a": {"phase": "Queued"}}}
    assert merge_patch(old, new) == {
        "message": None,
        "nodes": {"a": {"phase": "Queued", "nextAttemptAt": None}},
    }


def test_lists_are_replaced_whole() -> None:
    old = {"conditions": [{"type": "Succeeded", "status": "Unknown"}]}
    new = {"conditions": [{"type": "Succeeded", "status": "True"}]}
    assert merge_patch(old, new) == new


def test_whole_floats_equal_integers_but_booleans_do_not() -> None:
    # The API server writes factor: 2.0 back as 2; that must not count as a change.
    assert merge_patch({"retry": {"factor": 2}}, {"retry": {"factor": 2.0}}) == {}
    assert merge_patch({"x": 1}, {"x": True}) == {"x": True}
    assert same_json([1, {"a": 2.0}], [1.0, {"a": 2}])
    assert not same_json([1], [1, 2])
    assert not same_json("1", 1)


json_leaf = st.one_of(st.booleans(), st.integers(-5, 5), st.text(max_size=3))
json_value = st.recursive(
    json_leaf,
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(st.text(max_size=2), children, max_size=3),
    ),
    max_leaves=10,
)
json_object = st.dictionaries(st.text(max_size=2), json_value, max_size=4)


@given(json_object, json_object)
def test_applying_the_patch_gives_the_new_status(old: dict[str, Any], new: dict[str, Any]) -> None:
    assert apply_merge_patch(old, merge_patch(old, new)) == new
