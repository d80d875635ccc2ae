"""kdag runs on real containers: what a simulator hides, shown by a real kubelet.

Every node here runs ``sh -c`` in busybox on the real node (containerd and runc); outputs
travel through the container's real ``/dev/termination-log``.
"""

from __future__ import annotations

from kdag.engine.names import run_label
from tests.support.cluster import job_of, kubectl
from tests.support.operator import (
    apply,
    create,
    node_phases,
    pods,
    run_of,
    wait_phase,
    workflow,
)
from tests.support.real_node import node_name, on_real_node


def test_outputs_from_a_real_termination_log_drive_fan_out_and_when(namespace: str) -> None:
    nodes = [
        {
            "name": "extract",
            "command": ["sh", "-c"],
            "args": [
                "echo extracting on $(hostname);"
                """ printf '{"rows": "%s", "regions": "[\\\\"eu\\\\",\\\\"us\\\\"]"}' $((40 * 3))"""
                " > /dev/termination-log"
            ],
        },
        {
            "name": "per-region",
            "dependsOn": ["extract"],
            "forEachFrom": "{{ nodes.extract.outputs.regions }}",
            "command": ["sh", "-c"],
            "args": [
                "region=$(echo {{ item }} | tr a-z A-Z);"
                """ printf '{"region": "%s"}' "$region" > /dev/termination-log"""
            ],
        },
        {
            "name": "load",
            "dependsOn": ["extract"],
            "when": "int(nodes.extract.outputs.rows) > 100",
            "command": ["sh", "-c", "echo loading {{ nodes.extract.outputs.rows }} rows"],
        },
        {
            "name": "skipped",
            "dependsOn": ["extract"],
            "when": "int(nodes.extract.outputs.rows) > 1000",
            "command": ["sh", "-c", "exit 3"],
        },
    ]
    apply(namespace, workflow("real", nodes, defaults=on_real_node()))
    run = create(namespace, run_of("real"))
    done = wait_phase(namespace, run, "Succeeded")

    n = done["nodes"]
    assert n["extract"]["outputs"] == {"rows": "120", "regions": '["eu","us"]'}
    assert n["per-region[eu]"]["outputs"] == {"region": "EU"}
    assert n["per-region[us]"]["outputs"] == {"region": "US"}
    assert node_phases(done)["skipped"] == "Skipped"
    assert n["skipped"]["skipReason"] == "WhenFalse"
    # The pods really ran on the real node, and their logs come from its kubelet.
    ran = pods(namespace, f"kdag.dev/run={run_label(run)}")
    assert ran and {p["spec"]["nodeName"] for p in ran} == {node_name()}
    load = job_of(namespace, run, "load")
    assert kubectl("logs", f"job/{load}", "-n", namespace).strip() == "loading 120 rows"


def test_a_non_zero_exit_code_fails_the_node_with_that_code(namespace: str) -> None:
    nodes = [{"name": "broken", "command": ["sh", "-c", "echo about to fail >&2; exit 7"]}]
    apply(namespace, workflow("exit", nodes, defaults=on_real_node()))
    run = create(namespace, run_of("exit"))
    done = wait_phase(namespace, run, "Failed")
    broken = done["nodes"]["broken"]
    assert broken["phase"] == "Failed"
    assert broken["exitCode"] == 7, broken
    # No termination message: FallbackToLogsOnError puts the log tail in the message.
    assert "about to fail" in broken.get("message", ""), broken
