"""Job names and label values: deterministic, valid, and short enough."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from kdag.engine.names import MAX_NAME, item_labels, job_name, label_value, run_label

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


def test_job_names_read_run_node_hash_attempt() -> None:
    name = job_name("etl-x7k2", "uid-1", "extract", 1)
    assert re.fullmatch(r"etl-x7k2-extract-[0-9a-f]{8}-1", name), name


def test_fan_out_instance_becomes_a_sanitised_name_with_a_hash() -> None:
    name = job_name("etl-x7k2", "uid-1", "transform[eu]", 2)
    assert name.startswith("etl-x7k2-transform-eu-")
    assert name.endswith("-2")
    assert DNS_LABEL.match(name)


def test_similar_instances_that_sanitise_alike_get_different_job_names() -> None:
    assert job_name("r", "u", "t[a.b]", 1) != job_name("r", "u", "t[a-b]", 1)


def test_runs_and_nodes_that_join_to_the_same_text_get_different_job_names() -> None:
    assert job_name("etl-daily", "u1", "extract", 1) != job_name("etl", "u2", "daily-extract", 1)
    # Even with the same uid (as in tests that leave it empty).
    assert job_name("etl-daily", "", "extract", 1) != job_name("etl", "", "daily-extract", 1)


def test_a_long_run_name_leaves_room_for_the_node_in_job_names() -> None:
    name = job_name("nightly-warehouse-refresh-for-the-emea-region-" + "x" * 24, "u", "load", 1)
    assert re.fullmatch(r"nightly-warehouse-refresh-[-a-z]+x-load-[0-9a-f]{8}-1", name), name
    assert len(name) == MAX_NAME


def test_a_run_created_again_under_the_same_name_gets_new_job_names() -> None:
    assert job_name("r1", "uid-old", "a", 1) != job_name("r1", "uid-new", "a", 1)


@given(
    run=run_names,
    uid=st.uuids().map(str),
    instance=instances,
    attempt=st.integers(min_value=1, max_value=999),
)
def test_job_names_are_valid_dns_labels_and_deterministic(
    run: str, uid: str, instance: str, attempt: int
) -> None:
    name = job_name(run, uid, instance, attempt)
    assert len(name) <= MAX_NAME
    assert DNS_LABEL.match(name), name
    assert name == job_name(run, uid, instance, attempt)
    assert name.endswith(f"-{attempt}")


@given(run=st.from_regex(r"[a-z0-9]([-.a-z0-9]{0,251}[a-z0-9])?", fullmatch=True))
def test_every_valid_run_name_gives_a_valid_run_label(run: str) -> None:
    value = run_label(run)
    assert len(value) <= 63
    assert LABEL_VALUE.match(value), value
    if len(run) <= 63:
        assert value == run  # readable in selectors whenever it fits


def test_long_run_names_that_share_a_prefix_get_different_run_labels() -> None:
    prefix = "a" * 70
    assert run_label(prefix + "1") != run_label(prefix + "2")


@given(text=st.text(min_size=1, max_size=120))
def test_label_values_are_always_valid(text: str) -> None:
    value = label_value(text)
    assert len(value) <= 63
    assert LABEL_VALUE.match(value), value


def test_items_label_instances_by_value_when_safe_else_by_index() -> None:
    assert item_labels(["eu", "us"]) == ["eu", "us"]
    assert item_labels(["a b", "c"]) == ["0", "1"]
    assert item_labels(["x", "x"]) == ["0", "1"]
