"""Job names and label values: deterministic, valid, and short enough."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from kdag.engine.names import MAX_NAME, item_labels, job_name, label_value

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")

run_names = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,50}[a-z0-9])?", fullmatch=True)
instances = st.one_of(
    st.from_regex(r"[a-z0-9]([-a-z0-9]{0,60}[a-z0-9])?", fullmatch=True),
    st.builds(
        lambda n, i: f"{n}[{i}]",
        st.from_regex(r"[a-z]{1,30}", fullmatch=True),
        st.text(min_size=1, max_size=40),
    ),
)


def test_short_job_names_read_run_node_attempt() -> None:
    assert job_name("etl-x7k2", "extract", 1) == "etl-x7k2-extract-1"


def test_fan_out_instance_becomes_a_sanitised_name_with_a_hash() -> None:
    name = job_name("etl-x7k2", "transform[eu]", 2)
    assert name.startswith("etl-x7k2-transform-eu-")
    assert name.endswith("-2")
    assert DNS_LABEL.match(name)


def test_similar_instances_that_sanitise_alike_get_different_job_names() -> None:
    assert job_name("r", "t[a.b]", 1) != job_name("r", "t[a-b]", 1)


@given(run=run_names, instance=instances, attempt=st.integers(min_value=1, max_value=999))
def test_job_names_are_valid_dns_labels_and_deterministic(
    run: str, instance: str, attempt: int
) -> None:
    name = job_name(run, instance, attempt)
    assert len(name) <= MAX_NAME
    assert DNS_LABEL.match(name), name
    assert name == job_name(run, instance, attempt)
    assert name.endswith(f"-{attempt}")


@given(text=st.text(min_size=1, max_size=120))
def test_label_values_are_always_valid(text: str) -> None:
    value = label_value(text)
    assert len(value) <= 63
    assert LABEL_VALUE.match(value), value


def test_items_label_instances_by_value_when_safe_else_by_index() -> None:
    assert item_labels(["eu", "us"]) == ["eu", "us"]
    assert item_labels(["a b", "c"]) == ["0", "1"]
    assert item_labels(["x", "x"]) == ["0", "1"]
