"""WorkflowRuns on the real local cluster: DAG shapes, data flow and what users see.

Each test writes a Workflow and a run with `kubectl apply/create`, waits on conditions, and
asserts on what `kubectl get` shows (the run's status, the Jobs).
"""

from __future__ import annotations

import pytest

from tests.support.cluster import Cluster, job_of, kubectl, wait_for
from tests.support.operator import (
    JobWatch,
    apply,
    create,
    ensure_operator,
    jobs,
    node_phases,
    run_of,
    sim,
    status,
    wait_node,
    wait_phase,
    workflow,
)

pytestmark = pytest.mark.operator


def test_linear_chain_runs_in_order_with_one_job_per_node(namespace: str) -> None:
    nodes = [
        {"name": "a"},
        {"name": "b", "dependsOn": ["a"]},
        {"name": "c", "dependsOn": ["b"]},
    ]
    apply(namespace, workflow("chain", nodes))
    run = create(namespace, run_of("chain"))
    done = wait_phase(namespace, run, "Succeeded")
    assert done["progress"] == "3/3"
    finished = {n: done["nodes"][n]["finishedAt"] for n in "abc"}
    started = {n: done["nodes"][n]["startedAt"] for n in "abc"}
    assert finished["a"] <= started["b"] and finished["b"] <= started["c"]
    created = jobs(namespace, run)
    assert sorted(j["metadata"]["name"] for j in created) == [
        job_of(namespace, run, n) for n in "abc"
    ]
    for job in created:
        assert job["metadata"]["ownerReferences"][0]["name"] == run
        assert job["spec"]["backoffLimit"] == 0


def test_diamond_joins_after_both_branches(namespace: str) -> None:
    nodes = [
        {"name": "top"},
        {"name": "left", "dependsOn": ["top"], **sim(duration="1s")},
        {"name": "right", "dependsOn": ["top"]},
        {"name": "bottom", "dependsOn": ["left", "right"]},
    ]
    apply(namespace, workflow("diamond", nodes))
    run = create(namespace, run_of("diamond"))
    done = wait_phase(namespace, run, "Succeeded")
    n = done["nodes"]
    assert n["bottom"]["startedAt"] >= max(n["left"]["finishedAt"], n["right"]["finishedAt"])
    assert len(jobs(namespace, run)) == 4


def test_fan_out_and_in_never_runs_more_than_parallelism_jobs(namespace: str) -> None:
    regions = ["eu", "us", "ap", "sa", "af"]
    nodes = [
        {"name": "split"},
        {"name": "work", "dependsOn": ["split"], "forEach": regions, **sim(duration="1s")},
        {"name": "join", "dependsOn": ["work"]},
    ]
    apply(namespace, workflow("fan", nodes, parallelism=2))
    # A node is Running while its pod runs: a slot frees when the pod ends, a second before
    # the Job controller marks its Job Complete. So pods, not Jobs, are what is bounded.
    run = create(namespace, run_of("fan"))
    with JobWatch(namespace, run, resource="pods") as watch:
        done = wait_phase(namespace, run, "Succeeded")
        wait_for(lambda: len(watch.names()) == 7, timeout=30, what="all pods watched")
    assert watch.max_unfinished() == 2
    assert {f"work[{r}]" for r in regions} <= set(done["nodes"])
    assert done["nodes"]["join"]["startedAt"] >= max(
        done["nodes"][f"work[{r}]"]["finishedAt"] for r in regions
    )


def test_outputs_flow_downstream_into_when_and_templates(namespace: str) -> None:
    nodes = [
        {"name": "extract", **sim(message={"rows": "120", "regions": '["eu","us"]'})},
        {
            "name": "load",
            "dependsOn": ["extract"],
            "when": "int(nodes.extract.outputs.rows) > 0",
            "args": ["--rows", "{{ nodes.extract.outputs.rows }}"],
        },
        {
            "name": "per-region",
            "dependsOn": ["extract"],
            "forEachFrom": "{{ nodes.extract.outputs.regions }}",
            "args": ["{{ item }}"],
        },
    ]
    apply(namespace, workflow("flow", nodes))
    run = create(namespace, run_of("flow"))
    done = wait_phase(namespace, run, "Succeeded")
    assert done["nodes"]["extract"]["outputs"] == {"rows": "120", "regions": '["eu","us"]'}
    load_job = next(
        j for j in jobs(namespace, run) if j["metadata"]["name"] == job_of(namespace, run, "load")
    )
    assert load_job["spec"]["template"]["spec"]["containers"][0]["args"] == ["--rows", "120"]
    assert {"per-region[eu]", "per-region[us]"} <= set(done["nodes"])


def test_when_false_skips_and_lets_dependents_run_but_failures_skip_downstream(
    namespace: str,
) -> None:
    nodes = [
        {"name": "check", **sim(message={"go": "no"})},
        {"name": "yes", "dependsOn": ["check"], "when": "nodes.check.outputs.go == 'yes'"},
        {"name": "no", "dependsOn": ["check"], "when": "nodes.check.outputs.go == 'no'"},
        {"name": "after-yes", "dependsOn": ["yes"]},
        {"name": "broken", "dependsOn": ["check"], **sim(exit_code=1)},
        {"name": "after-broken", "dependsOn": ["broken"]},
    ]
    apply(namespace, workflow("cond", nodes, onFailure="continue"))
    run = create(namespace, run_of("cond"))
    done = wait_phase(namespace, run, "Failed")
    phases = node_phases(done)
    assert phases == {
        "check": "Succeeded",
        "yes": "Skipped",
        "no": "Succeeded",
        "after-yes": "Succeeded",  # a `when` skip lets dependents run
        "broken": "Failed",
        "after-broken": "Skipped",  # a failure does not
    }
    assert done["nodes"]["after-broken"]["skipReason"] == "Upstream"
    assert done["nodes"]["yes"]["skipReason"] == "WhenFalse"


def test_a_workflow_edited_during_a_run_does_not_change_the_run(namespace: str) -> None:
    nodes = [{"name": "a", **sim(duration="2s")}, {"name": "b", "dependsOn": ["a"]}]
    apply(namespace, workflow("edit", nodes))
    run = create(namespace, run_of("edit"))
    wait_node(namespace, run, "a", "Running")
    edited = [*nodes, {"name": "c", "dependsOn": ["b"]}]
    apply(namespace, workflow("edit", edited, defaults={"image": "alpine:3"}))
    done = wait_phase(namespace, run, "Succeeded")
    assert set(done["nodes"]) == {"a", "b"}
    images = {j["spec"]["template"]["spec"]["containers"][0]["image"] for j in jobs(namespace, run)}
    assert images == {"busybox:1.36"}
    assert [n["name"] for n in done["workflow"]["nodes"]] == ["a", "b"]


def test_a_cyclic_workflow_ends_the_run_invalid_naming_the_cycle(namespace: str) -> None:
    nodes = [
        {"name": "a", "dependsOn": ["c"]},
        {"name": "b", "dependsOn": ["a"]},
        {"name": "c", "dependsOn": ["b"]},
    ]
    apply(namespace, workflow("loop", nodes))
    run = create(namespace, run_of("loop"))
    done = wait_phase(namespace, run, "Invalid")
    assert "cycle" in done["message"]
    assert all(f"{n}" in done["message"] for n in "abc")
    assert jobs(namespace, run) == []


def test_kubectl_get_shows_the_printer_columns_and_kubectl_wait_returns(namespace: str) -> None:
    apply(namespace, workflow("cols", [{"name": "a"}, {"name": "b", "dependsOn": ["a"]}]))
    run = create(namespace, run_of("cols"))
    kubectl(
        "wait", "--for=condition=Succeeded", f"workflowrun/{run}", "-n", namespace,
        "--timeout=240s",
    )  # fmt: skip
    table = kubectl("get", "workflowruns", "-n", namespace).splitlines()
    assert table[0].split() == ["NAME", "WORKFLOW", "PHASE", "PROGRESS", "AGE", "DURATION"]
    row = table[1].split()
    assert row[:4] == [run, "cols", "Succeeded", "2/2"]
    assert row[5].endswith("s")
    short = kubectl("get", "kwfr", "-n", namespace, "-o", "name")
    assert short.strip() == f"workflowrun.kdag.dev/{run}"
    assert status(namespace, run)["conditions"][0]["type"] == "Succeeded"


def test_a_finished_run_is_deleted_after_its_ttl_with_its_jobs(namespace: str) -> None:
    apply(namespace, workflow("brief", [{"name": "a"}], ttlSecondsAfterFinished=2))
    run = create(namespace, run_of("brief"))
    job = job_of(namespace, run, "a")  # read while the run (and its uid) still exists
    kubectl("wait", "--for=create", f"job/{job}", "-n", namespace, "--timeout=240s")
    wait_phase(namespace, run, "Succeeded")
    kubectl("wait", "--for=delete", f"workflowrun/{run}", "-n", namespace, "--timeout=240s")
    kubectl("wait", "--for=delete", f"job/{job}", "-n", namespace, "--timeout=240s")


def test_the_operator_reports_metrics_without_per_run_labels(
    namespace: str, cluster: Cluster
) -> None:
    apply(namespace, workflow("measured", [{"name": "a"}, {"name": "b", "dependsOn": ["a"]}]))
    run = create(namespace, run_of("measured"))
    wait_phase(namespace, run, "Succeeded")
    text = ensure_operator(cluster).metrics()
    for name in (
        'kdag_runs_finished_total{phase="Succeeded"}',
        'kdag_nodes_finished_total{phase="Succeeded"}',
        "kdag_scheduling_latency_seconds_count",
        'kdag_kube_requests_total{code="201",resource="jobs",verb="create"}',
        'kdag_kube_requests_total{code="200",resource="workflowruns/status",verb="patch"}',
    ):
        assert name in text, name
    assert run not in text and namespace not in text


def test_bad_input_ends_the_run_invalid_with_the_field_named(namespace: str) -> None:
    missing = create(namespace, run_of("no-such-workflow"))
    inline = {
        "apiVersion": "kdag.dev/v1alpha1",
        "kind": "WorkflowRun",
        "metadata": {"generateName": "inline-"},
        "spec": {
            "workflow": {
                "nodes": [
                    {"name": "a", "image": "busybox", "resources": {"requests": {"cpu": "lots"}}}
                ]
            }
        },
    }
    bad = create(namespace, inline)
    assert (
        'Workflow "no-such-workflow" not found'
        in wait_phase(namespace, missing, "Invalid")["message"]
    )
    message = wait_phase(namespace, bad, "Invalid")["message"]
    assert "nodes[a]" in message and "cpu" in message
    # The operator is still serving: a good run in the same namespace succeeds.
    apply(namespace, workflow("fine", [{"name": "a"}]))
    wait_phase(namespace, create(namespace, run_of("fine")), "Succeeded")
