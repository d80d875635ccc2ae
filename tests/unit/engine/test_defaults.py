"""Merging pod templates: dicts merge key by key, the override wins elsewhere, and the
merged template shares nothing with what it was made from (a Job's manifest is built on it)."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from kdag.engine.defaults import deep_merge, json_copy

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4)
    ),
    max_leaves=25,
)
json_objects = st.dictionaries(st.text(max_size=4), json_values, max_size=5)


def containers(value: Any) -> list[int]:
    """The ids of every dict and list in a JSON value."""
    if isinstance(value, dict):
        return [id(value), *(i for item in value.values() for i in containers(item))]
    if isinstance(value, list):
        return [id(value), *(i for item in value for i in containers(item))]
    return []


@given(json_values)
def test_a_json_copy_equals_the_value_and_shares_no_dict_or_list_with_it(value: Any) -> None:
    copied = json_copy(value)
    assert copied == value == copy.deepcopy(value)
    assert not set(containers(copied)) & set(containers(value))


@given(json_objects, json_objects)
def test_a_merged_template_shares_nothing_with_its_base_or_override(
    base: dict[str, Any], override: dict[str, Any]
) -> None:
    before = copy.deepcopy((base, override))
    merged = deep_merge(base, override)
    assert not set(containers(merged)) & set(containers(base) + containers(override))
    assert (base, override) == before


def test_dicts_merge_key_by_key_and_other_values_are_replaced() -> None:
    base = {"nodeSelector": {"a": "1", "b": "2"}, "tolerations": [{"key": "x"}], "x": 1}
    override = {"nodeSelector": {"b": "3"}, "tolerations": [{"key": "y"}]}
    assert deep_merge(base, override) == {
        "nodeSelector": {"a": "1", "b": "3"},
        "tolerations": [{"key": "y"}],
        "x": 1,
    }
