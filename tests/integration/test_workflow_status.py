"""What users see about their Workflows: validity, node count, schedule and last run.

Everything is read back as a user would: `kubectl get workflows`, `kubectl wait`, `-o json`.
"""

from __future__ import annotations

import pytest

from tests.support.cluster import Cluster, kubectl, kubectl_json, wait_for
from tests.support.operator import OperatorProcess, apply, create, ensure_operator, run_of, workflow

pytestmark = pytest.mark.operator

COLUMNS = ("NAME", "NODES", "SCHEDULE", "LAST RUN", "AGE")


@pytest.fixture(autouse=True)
def kdag_operator(cluster: Cluster) -> OperatorProcess:
    return ensure_operator(cluster)


def workflow_status(namespace: str, name: str) -> dict[str, object]:
    found = kubectl_json("get", "workflow", name, "-n", namespace)
    return dict(found.get("status") or {})


def wait_workflow(namespace: str, name: str, condition: str) -> None:
    """`kubectl wait --for=<condition> workflow/<name>`, as a user would."""
    kubectl("wait", f"--for={condition}", f"workflow/{name}", "-n", namespace, "--timeout=60s")


def table(namespace: str, *args: str) -> list[dict[str, str]]:
    """`kubectl get` as rows keyed by column header (cut at the header's positions, since
    values such as a cron expression contain spaces)."""
    header, *lines = kubectl("get", *args, "-n", namespace).splitlines()
    starts = [header.index(column) for column in COLUMNS]
    bounds = list(zip(starts, [*starts[1:], None], strict=True))
    return [
        {column: line[a:b].strip() for column, (a, b) in zip(COLUMNS, bounds, strict=True)}
        for line in lines
    ]


def test_kubectl_get_workflows_shows_nodes_schedule_and_last_run(namespace: str) -> None:
    nodes = [{"name": "fan", "forEach": ["eu", "us", "ap"]}, {"name": "join", "dependsOn": ["fan"]}]
    # A schedule that does not fire during the test: the manual run is the newest.
    apply(namespace, workflow("report", nodes, schedule={"cron": "0 3 1 1 *"}))
    run = create(namespace, run_of("report"))
    wait_for(
        lambda: workflow_status(namespace, "report").get("lastRun") == run,
        timeout=60,
        what="status.lastRun of the workflow",
    )
    rows = table(namespace, "workflows")
    assert rows == [
        {
            "NAME": "report",
            "NODES": "4",
            "SCHEDULE": "0 3 1 1 *",
            "LAST RUN": run,
            "AGE": rows[0]["AGE"],
        }
    ]
    # The short name answers too.
    assert table(namespace, "kwf")[0]["LAST RUN"] == run
    status = workflow_status(namespace, "report")
    assert status["valid"] is True
    assert status["observedGeneration"] == 1


def test_an_invalid_workflow_shows_valid_false_naming_the_field(namespace: str) -> None:
    nodes = [{"name": "greet", "args": ["hello {{ params.who }}"]}]
    apply(namespace, workflow("greeter", nodes))
    wait_workflow(namespace, "greeter", "condition=Valid=false")
    status = workflow_status(namespace, "greeter")
    assert status["valid"] is False
    assert "nodes[greet].args[0]" in str(status["message"])
    assert "params.who" in str(status["message"])
    # Fixing it flips the status back.
    apply(namespace, workflow("greeter", nodes, params=[{"name": "who", "default": "world"}]))
    wait_workflow(namespace, "greeter", "condition=Valid")
    fixed = workflow_status(namespace, "greeter")
    assert fixed["valid"] is True
    assert "message" not in fixed
    assert fixed["observedGeneration"] == 2


def test_a_bad_time_zone_is_reported_and_nothing_crashes(namespace: str) -> None:
    schedule = {"cron": "* * * * *", "timezone": "Mars/Olympus_Mons"}
    apply(namespace, workflow("martian", [{"name": "a"}], schedule=schedule))
    wait_workflow(namespace, "martian", "condition=Scheduled=false")
    status = workflow_status(namespace, "martian")
    assert status["valid"] is False
    assert "schedule.timezone" in str(status["message"])
    # The operator still serves other workflows.
    apply(namespace, workflow("earthly", [{"name": "a"}]))
    wait_workflow(namespace, "earthly", "condition=Valid")


def test_a_suspended_schedule_says_so(namespace: str) -> None:
    schedule = {"cron": "* * * * *", "suspend": True}
    apply(namespace, workflow("paused", [{"name": "a"}], schedule=schedule))
    reason = "jsonpath={.status.conditions[?(@.type=='Scheduled')].reason}=Suspended"
    wait_workflow(namespace, "paused", reason)


# The finalizer kopf put on scheduled Workflows while kdag ran a kopf daemon for each.
OLD_FINALIZER = "kopf.zalando.org/KopfFinalizerMarker"


def finalizers(namespace: str, name: str) -> list[str]:
    found = kubectl_json("get", "workflow", name, "-n", namespace)
    return list(found["metadata"].get("finalizers") or [])


def test_a_workflow_with_an_older_operators_finalizer_is_released_and_deletable(
    namespace: str,
) -> None:
    schedule = {"cron": "0 3 1 1 *"}
    kept = workflow("kept", [{"name": "a"}], schedule=schedule)
    kept["metadata"]["finalizers"] = [OLD_FINALIZER]
    apply(namespace, kept)
    wait_workflow(namespace, "kept", "condition=Scheduled")
    wait_for(
        lambda: not finalizers(namespace, "kept"),
        timeout=60,
        what="the older operator's finalizer removed",
    )
    # Deleted at once, before or after the operator saw it: it goes either way.
    gone = workflow("gone", [{"name": "a"}], schedule=schedule)
    gone["metadata"]["finalizers"] = [OLD_FINALIZER]
    apply(namespace, gone)
    kubectl("delete", "workflow", "gone", "-n", namespace, "--timeout=60s")
    assert "gone" not in kubectl("get", "workflows", "-n", namespace, "-o", "name")
