"""Workflow validation: every problem at once, each naming node and field."""

from __future__ import annotations

from typing import Any

import pytest

from kdag.api import WorkflowSpec
from kdag.engine.model import ServiceAccountRef
from kdag.engine.validation import (
    borrowed_account_problems,
    pod_service_account,
    resolve_params,
    validate_workflow,
)


def _problems(**spec: Any) -> list[str]:
    spec.setdefault("defaults", {"image": "busybox"})
    return [str(p) for p in validate_workflow(WorkflowSpec.model_validate(spec))]


def test_a_valid_workflow_has_no_problems() -> None:
    assert (
        _problems(
            params=[{"name": "day", "default": "x"}],
            nodes=[
                {"name": "a", "args": ["{{ params.day }}"]},
                {
                    "name": "b",
                    "dependsOn": ["a"],
                    "when": "nodes.a.phase == 'Succeeded'",
                    "args": ["{{ nodes.a.outputs.k }}"],
                },
                {"name": "c", "dependsOn": ["b"], "forEach": ["1", "2"], "args": ["{{ item }}"]},
            ],
            **{"finally": [{"name": "f", "args": ["{{ run.phase }} {{ nodes.a.outputs.k }}"]}]},
        )
        == []
    )


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"nodes": [{"name": "a"}, {"name": "a"}]}, "nodes[a].name: duplicate node name 'a'"),
        (
            {"nodes": [{"name": "a", "dependsOn": ["a"]}]},
            "nodes[a].dependsOn[0]: a node cannot depend on itself",
        ),
        (
            {"nodes": [{"name": "a", "dependsOn": ["nope"]}]},
            "nodes[a].dependsOn[0]: unknown node 'nope'",
        ),
        (
            {
                "nodes": [
                    {"name": "a", "dependsOn": ["c"]},
                    {"name": "b", "dependsOn": ["a"]},
                    {"name": "c", "dependsOn": ["b"]},
                ]
            },
            "nodes[a].dependsOn: dependency cycle: a -> b -> c -> a",
        ),
        (
            {"nodes": [{"name": "a", "dependsOn": ["f"]}], "finally": [{"name": "f"}]},
            "nodes[a].dependsOn[0]: 'f' is a finally node",
        ),
        (
            {"nodes": [{"name": "a"}], "finally": [{"name": "f", "dependsOn": ["a"]}]},
            "finally[f].dependsOn[0]: 'a' is a main node",
        ),
        (
            {"nodes": [{"name": "a", "args": ["{{ params.x }}"]}]},
            "nodes[a].args[0]: {{ params.x }}: no param 'x'",
        ),
        (
            {"nodes": [{"name": "a", "args": ["{{ nodes.b.outputs.k }}"]}, {"name": "b"}]},
            "nodes[a].args[0]: {{ nodes.b.outputs.k }}: 'b' is not an upstream node of 'a'",
        ),
        (
            {"nodes": [{"name": "a", "args": ["{{ item }}"]}]},
            "nodes[a].args[0]: {{ item }} is only defined in a node with forEach",
        ),
        (
            {"nodes": [{"name": "a", "env": [{"name": "E", "value": "{{ bogus }}"}]}]},
            "nodes[a].env[E].value: unknown template reference {{ bogus }}",
        ),
        (
            {"nodes": [{"name": "a", "command": ["{{ params.x"]}]},
            "nodes[a].command[0]: unterminated template",
        ),
        ({"nodes": [{"name": "a", "when": "nodes.a.phase =="}]}, "nodes[a].when: invalid CEL"),
        (
            {"nodes": [{"name": "a", "resources": {"limits": {"memory": "1 GB"}}}]},
            "nodes[a].resources.limits.memory: '1 GB' is not a valid quantity",
        ),
        ({"defaults": {}, "nodes": [{"name": "a"}]}, "nodes[a].image: no image"),
        (
            {"nodes": [{"name": "g", "approval": {}, "image": "x"}]},
            "nodes[g].image: an approval gate runs no container",
        ),
        (
            {"nodes": [{"name": "a"}], "finally": [{"name": "g", "approval": {}}]},
            "finally[g].approval: finally nodes cannot be approval gates",
        ),
        (
            {
                "nodes": [{"name": "a", "forEach": ["x"], "forEachFrom": "{{ params.p }}"}],
                "params": [{"name": "p"}],
            },
            "nodes[a].forEach: set forEach or forEachFrom, not both",
        ),
        (
            {"nodes": [{"name": "a", "podTemplate": {"containers": []}}]},
            "nodes[a].podTemplate.containers",
        ),
        (
            {"params": [{"name": "p"}, {"name": "p"}], "nodes": [{"name": "a"}]},
            "params[1].name: duplicate param 'p'",
        ),
        (
            {"params": [{"name": "p", "default": "z", "enum": ["a"]}], "nodes": [{"name": "a"}]},
            "params[p].default: 'z' is not one of ['a']",
        ),
        (
            {"nodes": [{"name": "a"}], "schedule": {"cron": "every day"}},
            "schedule.cron: 'every day' is not a five-field cron expression",
        ),
        (
            {"nodes": [{"name": "a"}], "schedule": {"cron": "0 2 * * *", "timezone": "Mars/Base"}},
            "schedule.timezone: unknown time zone 'Mars/Base'",
        ),
    ],
)
def test_each_problem_names_its_node_and_field(spec: dict[str, Any], expected: str) -> None:
    problems = _problems(**spec)
    assert any(p.startswith(expected) for p in problems), problems


def test_all_problems_are_reported_at_once() -> None:
    problems = _problems(
        nodes=[
            {"name": "a", "dependsOn": ["ghost"], "when": "(("},
            {"name": "b", "args": ["{{ params.nope }}"]},
        ]
    )
    assert len(problems) == 3


def test_too_many_nodes_after_static_fan_out_is_a_problem() -> None:
    spec = WorkflowSpec.model_validate(
        {
            "defaults": {"image": "x"},
            "nodes": [{"name": "a", "forEach": [str(i) for i in range(6)]}],
        }
    )
    assert [str(p) for p in validate_workflow(spec, max_nodes=5)] == [
        "nodes: 6 nodes after fan-out, more than the maximum of 5"
    ]


def test_run_params_use_defaults_and_reject_unknown_or_missing_ones() -> None:
    spec = WorkflowSpec.model_validate(
        {
            "params": [{"name": "day", "default": "mon"}, {"name": "env", "enum": ["dev", "prod"]}],
            "nodes": [{"name": "a", "image": "x"}],
        }
    )
    assert resolve_params(spec, {"env": "dev"}) == ({"day": "mon", "env": "dev"}, [])
    _, problems = resolve_params(spec, {"env": "qa", "typo": "1"})
    assert sorted(str(p) for p in problems) == [
        "spec.params.env: 'qa' is not one of ['dev', 'prod']",
        "spec.params.typo: the workflow declares no param 'typo'",
    ]
    _, problems = resolve_params(spec, {})
    assert [str(p) for p in problems] == [
        "spec.params.env: required param not set (it has no default)"
    ]


# -- the operator's own ServiceAccount (a run in its namespace must not borrow it)

OPERATOR = ServiceAccountRef("kdag-system", "kdag")
OPERATOR_AS_DEFAULT = ServiceAccountRef("kdag-system", "default")
MINE = "is the operator's own ServiceAccount (kdag-system/kdag)"


def _borrowing(
    account: ServiceAccountRef | None, namespace: str = "kdag-system", **spec: Any
) -> list[str]:
    spec.setdefault("defaults", {"image": "busybox"})
    workflow = WorkflowSpec.model_validate(spec)
    return [str(p) for p in borrowed_account_problems(workflow, namespace, account)]


def _pod(account: str) -> dict[str, Any]:
    return {"podTemplate": {"serviceAccountName": account}}


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        pytest.param(
            {"nodes": [{"name": "a", **_pod("kdag")}]},
            ["nodes[a].podTemplate.serviceAccountName: 'kdag' " + MINE],
            id="named by the node",
        ),
        pytest.param(
            {
                "defaults": {"image": "busybox", **_pod("kdag")},
                "nodes": [{"name": "a"}, {"name": "b", "dependsOn": ["a"]}],
            },
            ["defaults.podTemplate.serviceAccountName: 'kdag' " + MINE],
            id="named by the defaults, reported once",
        ),
        pytest.param(
            {
                "defaults": {"image": "busybox", **_pod("loader")},
                "nodes": [{"name": "a"}, {"name": "b", **_pod("kdag")}],
            },
            ["nodes[b].podTemplate.serviceAccountName: 'kdag' " + MINE],
            id="a node overriding harmless defaults",
        ),
        pytest.param(
            {"nodes": [{"name": "a", "podTemplate": {"serviceAccount": "kdag"}}]},
            ["nodes[a].podTemplate.serviceAccount: 'kdag' " + MINE],
            id="the deprecated serviceAccount alias",
        ),
        pytest.param(
            {
                "defaults": {"image": "busybox", "podTemplate": {"serviceAccount": "kdag"}},
                "nodes": [{"name": "a", **_pod("")}],
            },
            ["defaults.podTemplate.serviceAccount: 'kdag' " + MINE],
            id="an empty serviceAccountName leaves the alias in force",
        ),
        pytest.param(
            {"nodes": [{"name": "a"}], "finally": [{"name": "f", **_pod("kdag")}]},
            ["finally[f].podTemplate.serviceAccountName: 'kdag' " + MINE],
            id="a finally node",
        ),
    ],
)
def test_run_naming_the_operators_service_account_is_invalid(
    spec: dict[str, Any], expected: list[str]
) -> None:
    problems = _borrowing(OPERATOR, **spec)
    assert [p[: len(e)] for p, e in zip(problems, expected, strict=True)] == expected, problems


@pytest.mark.parametrize(
    ("account", "namespace", "spec"),
    [
        pytest.param(
            OPERATOR, "team-a", {"nodes": [{"name": "a", **_pod("kdag")}]}, id="another namespace"
        ),
        pytest.param(
            None, "kdag-system", {"nodes": [{"name": "a", **_pod("kdag")}]}, id="no account"
        ),
        pytest.param(
            OPERATOR,
            "kdag-system",
            {
                "defaults": {"image": "busybox", **_pod("kdag")},
                "nodes": [{"name": "a", **_pod("x")}],
            },
            id="every node overrides the defaults",
        ),
        pytest.param(
            OPERATOR,
            "kdag-system",
            {"nodes": [{"name": "a"}, {"name": "g", "approval": {}, **_pod("kdag")}]},
            id="an approval gate runs no pod",
        ),
        pytest.param(OPERATOR, "kdag-system", {"nodes": [{"name": "a"}]}, id="unset, not default"),
    ],
)
def test_runs_that_do_not_borrow_the_operators_service_account_are_fine(
    account: ServiceAccountRef | None, namespace: str, spec: dict[str, Any]
) -> None:
    assert _borrowing(account, namespace, **spec) == []


def test_run_without_service_account_is_invalid_where_the_operator_runs_as_default() -> None:
    spec = {"nodes": [{"name": "a"}, {"name": "b", **_pod("loader")}]}
    assert _borrowing(OPERATOR_AS_DEFAULT, **spec) == [
        "nodes[a].podTemplate.serviceAccountName: not set, so the pod would run as 'default', "
        "which is the operator's own ServiceAccount (kdag-system/default): name another "
        "ServiceAccount here or in defaults.podTemplate"
    ]
    assert _borrowing(OPERATOR_AS_DEFAULT, "team-a", **spec) == []


@pytest.mark.parametrize(
    ("pod_spec", "expected"),
    [
        (None, ("default", None)),
        ({}, ("default", None)),
        ({"serviceAccountName": ""}, ("default", None)),
        ({"serviceAccountName": "a", "serviceAccount": "b"}, ("a", "serviceAccountName")),
        ({"serviceAccountName": "", "serviceAccount": "b"}, ("b", "serviceAccount")),
        ({"serviceAccountName": 7}, ("default", None)),  # the API server refuses it anyway
    ],
)
def test_a_pod_runs_as_the_account_the_api_server_would_read(
    pod_spec: dict[str, Any] | None, expected: tuple[str, str | None]
) -> None:
    assert pod_service_account(pod_spec) == expected


def test_numbers_past_the_schema_bounds_are_problems_even_in_an_unvalidated_model() -> None:
    # model_copy(update=...) skips validation, as any model built around pydantic would.
    spec = WorkflowSpec.model_validate(
        {"defaults": {"image": "busybox", "retry": {"limit": 1}}, "nodes": [{"name": "a"}]}
    )
    retry = spec.defaults.retry.model_copy(update={"max_backoff_seconds": 10**12})  # type: ignore[union-attr]
    defaults = spec.defaults.model_copy(update={"retry": retry})  # type: ignore[union-attr]
    node = spec.nodes[0].model_copy(update={"timeout_seconds": 10**12})
    broken = spec.model_copy(update={"defaults": defaults, "nodes": [node], "parallelism": -1})
    assert [str(p) for p in validate_workflow(broken)] == [
        "defaults.retry.maxBackoffSeconds: 1000000000000 is more than the maximum of 86400",
        "nodes[a].timeoutSeconds: 1000000000000 is more than the maximum of 31536000",
        "parallelism: -1 is less than the minimum of 0",
    ]
