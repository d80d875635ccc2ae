from __future__ import annotations

import logging

import kopf
import pytest

from kdag.operator.config import kopf_settings
from kdag.operator.logs import JsonFormatter
from kdag.operator.main import parse_config


def test_all_namespaces_standalone_by_default() -> None:
    config = parse_config(["--all-namespaces"])
    assert config.all_namespaces
    assert config.peering is None
    settings = kopf_settings(config)
    assert settings.peering.standalone
    assert not settings.posting.enabled  # kdag posts its own Events
    selectors = {str(k.any_name): v for k, v in settings.watching.label_selectors.items()}
    assert selectors == {"jobs": "app.kubernetes.io/managed-by=kdag", "pods": "kdag.dev/run"}


def test_namespaces_and_peering() -> None:
    config = parse_config(["-n", "a", "-n", "b", "--peering", "kdag", "--max-nodes", "50"])
    assert config.namespaces == ("a", "b")
    assert config.max_nodes == 50
    settings = kopf_settings(config)
    assert not settings.peering.standalone
    assert settings.peering.name == "kdag"
    assert settings.peering.mandatory


def test_a_scope_is_required() -> None:
    with pytest.raises(SystemExit):
        parse_config([])
    with pytest.raises(SystemExit):
        parse_config(["-A", "-n", "x"])


def test_json_logs_carry_run_and_node() -> None:
    record = logging.LogRecord("kdag", logging.INFO, __file__, 1, "node %s done", ("a",), None)
    record.run = "ns/r1"
    record.node = "a"
    line = JsonFormatter().format(record)
    assert '"run": "ns/r1"' in line
    assert '"node": "a"' in line
    assert '"message": "node a done"' in line


def test_kopf_builds_no_diff_base_for_the_kinds_kdag_only_watches() -> None:
    storage = kopf_settings(parse_config(["-A"])).persistence.diffbase_storage
    # Workflows: only an index and a raw-event handler serve them (no daemon any more). Runs,
    # Jobs and pods do not go through kopf's processing at all (object_watches).
    workflow = {
        "apiVersion": "kdag.dev/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": "w"},
        "spec": {"nodes": []},
    }
    assert storage.build(body=kopf.Body(workflow)) == {}
    # A kind kdag does not only watch keeps kopf's diff base.
    other = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "b"}}
    assert storage.build(body=kopf.Body(other))["data"] == {"a": "b"}
