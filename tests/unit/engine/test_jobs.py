"""The Job manifest of a node attempt."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from kdag.api import EnvVar, NodeSpec, WorkflowSpec
from kdag.engine.defaults import effective_node
from kdag.engine.jobs import build_job
from kdag.engine.names import job_name
from tests.unit.engine.test_names import LABEL_VALUE


def _job(
    node: dict[str, Any], defaults: dict[str, Any] | None = None, run: str = "etl-x7k2"
) -> dict[str, Any]:
    spec = WorkflowSpec.model_validate(
        {"defaults": defaults or {"image": "busybox:1.36"}, "nodes": [node]}
    )
    eff = effective_node(spec, spec.nodes[0])
    return build_job(
        run_name=run,
        run_namespace="data",
        run_uid="uid-9",
        workflow_name="etl",
        instance=eff.name,
        attempt=1,
        node=eff,
        command=eff.command,
        args=eff.args,
        env=list(eff.env or []),
    )


def test_job_is_owned_by_the_run_and_labelled_for_kdag() -> None:
    job = _job({"name": "extract"})
    meta = job["metadata"]
    assert meta["name"] == job_name("etl-x7k2", "uid-9", "extract", 1)
    assert meta["namespace"] == "data"
    assert meta["labels"] == {
        "kdag.dev/run": "etl-x7k2",
        "kdag.dev/node": "extract",
        "kdag.dev/attempt": "1",
        "kdag.dev/workflow": "etl",
        "app.kubernetes.io/managed-by": "kdag",
    }
    assert meta["annotations"] == {
        "kdag.dev/node-instance": "extract",
        "kdag.dev/run-name": "etl-x7k2",
    }
    owner = meta["ownerReferences"][0]
    assert owner["kind"] == "WorkflowRun"
    assert owner["uid"] == "uid-9"
    assert owner["controller"] is True


def test_job_never_retries_itself_and_carries_the_node_timeout() -> None:
    job = _job({"name": "a", "timeoutSeconds": 30})
    assert job["spec"]["backoffLimit"] == 0
    assert job["spec"]["activeDeadlineSeconds"] == 30
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"


def test_defaults_are_merged_and_the_node_wins() -> None:
    job = _job(
        {
            "name": "a",
            "resources": {"limits": {"memory": "2Gi"}},
            "env": [{"name": "X", "value": "node"}],
        },
        defaults={
            "image": "python:3.12",
            "resources": {"requests": {"cpu": "100m"}, "limits": {"memory": "1Gi"}},
            "env": [{"name": "X", "value": "default"}, {"name": "Y", "value": "y"}],
            "timeoutSeconds": 60,
        },
    )
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "python:3.12"
    assert container["resources"] == {"requests": {"cpu": "100m"}, "limits": {"memory": "2Gi"}}
    assert container["env"] == [{"name": "X", "value": "node"}, {"name": "Y", "value": "y"}]
    assert job["spec"]["activeDeadlineSeconds"] == 60


def test_pod_template_is_merged_into_the_pod_spec() -> None:
    job = _job(
        {
            "name": "load",
            "podTemplate": {"serviceAccountName": "loader", "nodeSelector": {"pool": "batch"}},
            "podMetadata": {"annotations": {"sim.kdag.dev/duration": "2s"}},
        },
        defaults={"image": "busybox", "podTemplate": {"nodeSelector": {"zone": "a"}}},
    )
    pod = job["spec"]["template"]
    assert pod["spec"]["serviceAccountName"] == "loader"
    assert pod["spec"]["nodeSelector"] == {"zone": "a", "pool": "batch"}
    assert pod["metadata"]["annotations"]["sim.kdag.dev/duration"] == "2s"
    assert pod["metadata"]["labels"]["kdag.dev/run"] == "etl-x7k2"


def test_integer_quantities_are_written_as_strings() -> None:
    job = _job({"name": "a", "resources": {"requests": {"cpu": 1}}})
    assert job["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"] == "1"


def test_env_value_from_passes_through() -> None:
    node = NodeSpec(
        name="a",
        image="x",
        env=[EnvVar(name="P", value_from={"secretKeyRef": {"name": "s", "key": "k"}})],
    )
    job = build_job(
        run_name="r",
        run_namespace="n",
        run_uid="u",
        workflow_name="w",
        instance="a",
        attempt=1,
        node=node,
        command=None,
        args=None,
        env=list(node.env or []),
    )
    env = job["spec"]["template"]["spec"]["containers"][0]["env"]
    assert env == [{"name": "P", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]


def _security(job: dict[str, Any]) -> dict[str, Any]:
    container = job["spec"]["template"]["spec"]["containers"][0]
    context: dict[str, Any] = container.get("securityContext", {})
    return context


def test_container_gets_the_restricted_securitycontext_by_default() -> None:
    assert _security(_job({"name": "a"})) == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def test_runasnonroot_in_defaults_joins_the_secure_defaults() -> None:
    job = _job(
        {"name": "a"},
        defaults={"image": "x", "securityContext": {"runAsNonRoot": True, "runAsUser": 65532}},
    )
    assert _security(job) == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "runAsNonRoot": True,
        "runAsUser": 65532,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def test_node_securitycontext_merges_field_by_field_over_the_defaults() -> None:
    job = _job(
        {
            "name": "a",
            "securityContext": {"runAsUser": 1000, "capabilities": {"add": ["NET_BIND_SERVICE"]}},
        },
        defaults={
            "image": "x",
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 65532,
                "readOnlyRootFilesystem": True,
                "capabilities": {"drop": ["NET_RAW"]},
            },
        },
    )
    assert _security(job) == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"add": ["NET_BIND_SERVICE"], "drop": ["NET_RAW"]},
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "runAsUser": 1000,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def test_settings_the_workflow_chose_are_not_overridden_by_the_secure_defaults() -> None:
    job = _job(
        {
            "name": "a",
            "securityContext": {
                "allowPrivilegeEscalation": True,
                "capabilities": {"drop": []},
                "seccompProfile": {"type": "Unconfined"},
            },
        }
    )
    assert _security(job) == {
        "allowPrivilegeEscalation": True,
        "capabilities": {"drop": []},
        "seccompProfile": {"type": "Unconfined"},
    }


def test_a_pod_level_seccomp_profile_is_left_to_apply() -> None:
    job = _job(
        {
            "name": "a",
            "podTemplate": {
                "securityContext": {
                    "seccompProfile": {"type": "Localhost", "localhostProfile": "p"}
                }
            },
        }
    )
    assert "seccompProfile" not in _security(job)
    pod = job["spec"]["template"]["spec"]
    assert pod["securityContext"]["seccompProfile"]["type"] == "Localhost"


@pytest.mark.parametrize(
    "context",
    [{"privileged": True}, {"capabilities": {"add": ["CAP_SYS_ADMIN"]}}],
)
def test_no_allowprivilegeescalation_default_where_the_api_would_refuse_it(
    context: dict[str, Any],
) -> None:
    # The API rejects allowPrivilegeEscalation false next to privileged or CAP_SYS_ADMIN.
    assert "allowPrivilegeEscalation" not in _security(
        _job({"name": "a", "securityContext": context})
    )


def test_windows_pods_get_no_linux_security_defaults() -> None:
    job = _job({"name": "a", "podTemplate": {"os": {"name": "windows"}}})
    assert _security(job) == {}


def test_a_localhost_seccomp_profile_needs_its_path() -> None:
    with pytest.raises(ValidationError, match="localhostProfile is required"):
        NodeSpec.model_validate(
            {"name": "a", "securityContext": {"seccompProfile": {"type": "Localhost"}}}
        )


def test_a_run_name_too_long_for_a_label_is_hashed_there_and_kept_in_an_annotation() -> None:
    run = "nightly-warehouse-refresh-for-the-emea-region-" + "x" * 24  # 70 characters
    job = _job({"name": "extract"}, run=run)
    for meta in (job["metadata"], job["spec"]["template"]["metadata"]):
        assert all(len(v) <= 63 and LABEL_VALUE.match(v) for v in meta["labels"].values())
        assert meta["labels"]["kdag.dev/run"].startswith("nightly-warehouse-refresh-")
        assert meta["annotations"]["kdag.dev/run-name"] == run
    assert job["metadata"]["ownerReferences"][0]["name"] == run
    assert len(job["metadata"]["name"]) <= 63
