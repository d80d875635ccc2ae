"""kdag runs on real containers: what a simulator hides, shown by a real kubelet.

Every node here runs ``sh -c`` in busybox on the real node (containerd and runc); outputs
travel through the container's real ``/dev/termination-log``.
"""

from __future__ import annotations

from datetime import datetime

from kdag.engine.names import run_label
from tests.support.cluster import job_of, kubectl, wait_for
from tests.support.operator import (
    WAIT_SECONDS,
    apply,
    create,
    node_phases,
    pods,
    run_of,
    status,
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


def test_a_node_timeout_is_a_real_active_deadline_kill(namespace: str) -> None:
    # `sleep` as PID 1 ignores SIGTERM: the kubelet kills it after the grace period, which
    # a real node adds to the node's timeout (30 s by default; 1 s here).
    nodes = [
        {
            "name": "slow",
            "timeoutSeconds": 3,
            "command": ["sh", "-c", "sleep 600"],
            "podTemplate": {"terminationGracePeriodSeconds": 1},
        }
    ]
    apply(namespace, workflow("slow", nodes, defaults=on_real_node()))
    run = create(namespace, run_of("slow"))
    wait_for(
        lambda: any(
            (s.get("state") or {}).get("running")
            for p in pods(namespace, f"kdag.dev/run={run_label(run)}")
            for s in p["status"].get("containerStatuses") or []
        ),
        timeout=WAIT_SECONDS,
        what="the container running",
    )
    done = wait_phase(namespace, run, "Failed")
    slow = done["nodes"]["slow"]
    assert slow["phase"] == "TimedOut", slow
    assert slow["message"] == "Job was active longer than specified deadline", slow
    # Killed for real (SIGKILL: 128 + 9), and well before `sleep 600` would have ended.
    assert slow["exitCode"] == 137, slow
    assert _seconds(slow["finishedAt"]) - _seconds(slow["startedAt"]) < 60, slow


def test_a_container_over_its_memory_limit_is_oom_killed(namespace: str) -> None:
    nodes = [
        {
            "name": "hungry",
            "resources": {"requests": {"memory": "16Mi"}, "limits": {"memory": "16Mi"}},
            # tail keeps a line in memory until its end: 64 MiB without a newline.
            "command": ["sh", "-c", "head -c 67108864 /dev/zero | tail"],
        }
    ]
    apply(namespace, workflow("oom", nodes, defaults=on_real_node()))
    run = create(namespace, run_of("oom"))
    done = wait_phase(namespace, run, "Failed")
    hungry = done["nodes"]["hungry"]
    assert hungry["phase"] == "Failed", hungry
    assert hungry["exitCode"] == 137, hungry
    # The kernel's OOM killer, not a signal from anyone else: the kubelet says so.
    (pod,) = pods(namespace, f"kdag.dev/run={run_label(run)}")
    (container,) = pod["status"]["containerStatuses"]
    assert container["state"]["terminated"]["reason"] == "OOMKilled", container
    assert hungry["message"].startswith("exit code 137 (OOMKilled)"), hungry


def test_a_nonexistent_image_waits_with_the_kubelets_reason_until_the_node_timeout(
    namespace: str,
) -> None:
    """Documented behaviour (docs/local-cluster.md): the node stays Running while the
    kubelet fails to pull, with the kubelet's reason in its message, and ends TimedOut at
    its timeout with the Job controller's message."""
    nodes = [{"name": "ghost", "image": "kdag.local/no-such-image:1", "timeoutSeconds": 20}]
    apply(namespace, workflow("ghost", nodes, defaults=on_real_node()))
    run = create(namespace, run_of("ghost"))
    selector = f"kdag.dev/run={run_label(run)}"

    def pull_failed() -> str | None:
        for pod in pods(namespace, selector):
            for container in pod["status"].get("containerStatuses") or []:
                reason = ((container.get("state") or {}).get("waiting") or {}).get("reason")
                if reason in ("ErrImagePull", "ImagePullBackOff"):
                    return str(reason)
        return None

    wait_for(pull_failed, timeout=WAIT_SECONDS, what="the kubelet's image pull failure")

    def node_says_why() -> dict[str, str] | None:
        ghost = status(namespace, run)["nodes"]["ghost"]
        message = ghost.get("message") or ""
        return ghost if message.startswith(("ErrImagePull", "ImagePullBackOff")) else None

    ghost = wait_for(node_says_why, timeout=WAIT_SECONDS, what="the pull failure in the node")
    assert ghost["phase"] == "Running", ghost
    done = wait_phase(namespace, run, "Failed")
    ghost = done["nodes"]["ghost"]
    assert ghost["phase"] == "TimedOut", ghost
    assert ghost["message"] == "Job was active longer than specified deadline", ghost


def _seconds(timestamp: str) -> float:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


def test_an_approval_gate_answered_by_kubectl_annotate_lets_the_real_node_run(
    namespace: str,
) -> None:
    nodes = [
        {
            "name": "build",
            "command": ["sh", "-c", """printf '{"version": "1.2"}' > /dev/termination-log"""],
        },
        {"name": "publish", "dependsOn": ["build"], "approval": {"message": "Ship it?"}},
        {
            "name": "ship",
            "dependsOn": ["publish"],
            "command": ["sh", "-c", "echo shipping {{ nodes.build.outputs.version }}"],
        },
    ]
    apply(namespace, workflow("gate", nodes, defaults=on_real_node()))
    run = create(namespace, run_of("gate"))
    waiting = wait_phase(namespace, run, "WaitingForApproval")
    assert "ship" not in waiting["nodes"] or waiting["nodes"]["ship"]["phase"] == "Pending"
    kubectl("annotate", "workflowrun", run, "-n", namespace, "approve.kdag.dev/publish=alice")
    done = wait_phase(namespace, run, "Succeeded")
    assert done["nodes"]["publish"]["approvedBy"] == "alice"
    ship = job_of(namespace, run, "ship")
    assert kubectl("logs", f"job/{ship}", "-n", namespace).strip() == "shipping 1.2"


def test_a_run_in_a_podsecurity_restricted_namespace_runs_as_non_root(namespace: str) -> None:
    kubectl(
        "label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted",
        "--overwrite",
    )  # fmt: skip
    nodes = [
        {
            "name": "who",
            "command": ["sh", "-c"],
            "args": ["""printf '{"uid": "%s"}' "$(id -u)" > /dev/termination-log"""],
        }
    ]
    defaults = on_real_node(securityContext={"runAsNonRoot": True, "runAsUser": 65534})
    apply(namespace, workflow("restricted", nodes, defaults=defaults))
    run = create(namespace, run_of("restricted"))
    done = wait_phase(namespace, run, "Succeeded")
    # The container really ran as that user, under kdag's restricted defaults
    # (no privilege escalation, all capabilities dropped, RuntimeDefault seccomp).
    assert done["nodes"]["who"]["outputs"] == {"uid": "65534"}
    (pod,) = pods(namespace, f"kdag.dev/run={run_label(run)}")
    context = pod["spec"]["containers"][0]["securityContext"]
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
