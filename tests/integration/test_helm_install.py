"""`helm install charts/kdag` on the real local cluster, then the operator as the chart's
ServiceAccount: a run that completes proves the chart's RBAC is enough, and `kubectl auth
can-i` shows it is no more than that (SPEC §6).

KWOK fakes the Deployment's pod, so the operator itself runs here as a local process (the
`kdag-operator` console script) with a kubeconfig holding only the ServiceAccount's token,
scoped with --namespace to this test's namespaces; a test-only admission fence makes sure no
other operator on the shared cluster can be the one that completes the run.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.cluster import Cluster, KubectlError, kubectl, kubectl_json, wait_for
from tests.support.helm_release import (
    CHART,
    Release,
    can_i,
    create_namespace,
    helm,
    installed,
    only_identity_may_act,
)
from tests.support.operator import apply, create, run_of, wait_phase, workflow
from tests.support.operator_process import (
    ScopedOperator,
    scoped_operator,
    service_account_kubeconfig,
)

NODES = [
    {"name": "extract"},
    {"name": "left", "dependsOn": ["extract"]},
    {"name": "right", "dependsOn": ["extract"]},
    {"name": "join", "dependsOn": ["left", "right"]},
]


def _run_to_success(namespace: str) -> str:
    apply(namespace, workflow("diamond", NODES))
    run = create(namespace, run_of("diamond"))
    # Generous: an operator given --namespace without the right to list namespaces (the
    # cluster-wide chart, scoped here for the shared cluster) spends about a minute on kopf's
    # retries before it serves anything, and the shared cluster may be busy.
    kubectl(
        "wait", "--for=condition=Succeeded", f"workflowrun/{run}", "-n", namespace,
        "--timeout=300s",
    )  # fmt: skip
    done = wait_phase(namespace, run, "Succeeded")
    assert {n: s["phase"] for n, s in done["nodes"].items()} == dict.fromkeys(
        ("extract", "left", "right", "join"), "Succeeded"
    )
    events = kubectl_json(
        "get", "events", "-n", namespace, "--field-selector", f"involvedObject.name={run}"
    )
    assert events["items"], "the operator posted no Event on the run"
    return run


def _assert_never_forbidden(operator: ScopedOperator, jobs_created: int) -> None:
    # Every request the operator made was allowed, and it made the Jobs itself.
    assert operator.sample("kdag_kube_requests_total", code="403") == 0, operator.logs()
    created = operator.sample(
        "kdag_kube_requests_total", verb="create", resource="jobs", code="201"
    )
    assert created == jobs_created, operator.logs()


def _assert_cannot_touch_what_it_does_not_manage(release: Release, namespace: str) -> None:
    user = release.username
    assert not can_i(user, "get", "secrets", "-n", namespace)
    assert not can_i(user, "list", "secrets", "--all-namespaces")
    assert not can_i(user, "get", "configmaps", "-n", namespace)
    assert not can_i(user, "create", "deployments.apps", "-n", namespace)
    assert not can_i(user, "create", "pods", "-n", namespace)
    assert not can_i(user, "update", "jobs.batch", "-n", namespace)
    assert not can_i(user, "delete", "workflows.kdag.dev", "-n", namespace)
    assert not can_i(user, "create", "roles.rbac.authorization.k8s.io", "-n", namespace)
    assert not can_i(user, "delete", "customresourcedefinitions.apiextensions.k8s.io")
    assert not can_i(user, "list", "nodes")
    # ...while what it needs is granted.
    assert can_i(user, "create", "jobs.batch", "-n", namespace)
    assert can_i(user, "patch", "workflowruns.kdag.dev", "--subresource=status", "-n", namespace)
    assert can_i(user, "watch", "pods", "-n", namespace)


def test_cluster_wide_install_gives_the_operator_exactly_enough(
    cluster: Cluster, tmp_path: Path
) -> None:
    with installed(cluster, tmp_path) as release:
        (namespace,) = release.workloads
        status = json.loads(
            helm(cluster, "status", release.name, "-n", release.namespace, "-o", "json").stdout
        )
        assert status["info"]["status"] == "deployed"
        # NOTES.txt tells how to check the operator, create a run and answer a gate.
        notes = helm(cluster, "get", "notes", release.name, "-n", release.namespace).stdout
        assert f"rollout status deployment/{release.name}" in notes
        assert "kind: WorkflowRun" in notes and "approve.kdag.dev/ship=" in notes
        assert f"{release.name}-metrics.{release.namespace}.svc:8080/metrics" in notes
        kubectl(
            "rollout", "status", f"deployment/{release.name}", "-n", release.namespace,
            "--timeout=60s",
        )  # fmt: skip
        for crd in ("workflows.kdag.dev", "workflowruns.kdag.dev"):
            kubectl("wait", "--for=condition=Established", f"crd/{crd}", "--timeout=60s")

        _assert_cannot_touch_what_it_does_not_manage(release, namespace)

        kubeconfig = service_account_kubeconfig(
            cluster.kubeconfig, release.namespace, release.service_account, tmp_path / "sa"
        )
        # The same refusal through the token itself, not only through impersonation.
        with pytest.raises(KubectlError, match="Forbidden"):
            kubectl("get", "secrets", "-n", namespace, kubeconfig=kubeconfig)
        assert (
            kubectl(
                "auth",
                "whoami",
                "-o",
                "jsonpath={.status.userInfo.username}",
                kubeconfig=kubeconfig,
            )
            == release.username
        )

        with (
            only_identity_may_act(namespace, release.username),
            scoped_operator(kubeconfig, [namespace]) as operator,
        ):
            _run_to_success(namespace)
            _assert_never_forbidden(operator, jobs_created=len(NODES))


def test_namespaced_install_serves_only_its_namespaces(cluster: Cluster, tmp_path: Path) -> None:
    with installed(cluster, tmp_path, workloads=3, watch=[0, 1]) as release:
        served, outside = release.workloads[:2], release.workloads[2]
        user = release.username
        for namespace in served:
            assert can_i(user, "create", "jobs.batch", "-n", namespace)
            assert not can_i(user, "get", "secrets", "-n", namespace)
        assert not can_i(user, "create", "jobs.batch", "-n", outside)
        assert not can_i(user, "list", "workflowruns.kdag.dev", "-n", outside)
        assert not can_i(user, "list", "workflowruns.kdag.dev", "--all-namespaces")
        _assert_cannot_touch_what_it_does_not_manage(release, served[0])

        kubeconfig = service_account_kubeconfig(
            cluster.kubeconfig, release.namespace, release.service_account, tmp_path / "sa"
        )
        with (
            only_identity_may_act(served[0], user),
            only_identity_may_act(served[1], user),
            scoped_operator(kubeconfig, served) as operator,
        ):
            for namespace in served:
                _run_to_success(namespace)
            _assert_never_forbidden(operator, jobs_created=2 * len(NODES))
            # A scheduled Workflow: no finalizer on it, its status, a run on the next tick.
            schedule = {"cron": "* * * * *"}
            apply(served[1], workflow("minutely", [{"name": "a"}], schedule=schedule))
            wait_for(
                lambda: kubectl_json(
                    "get", "workflowruns", "-n", served[1], "-l", "kdag.dev/scheduled=true"
                )["items"],
                timeout=90,
                what="a scheduled run",
            )
            found = kubectl_json("get", "workflow", "minutely", "-n", served[1])
            assert not found["metadata"].get("finalizers"), found["metadata"]
            assert found.get("status"), "the operator wrote no Workflow status"
            assert operator.sample("kdag_kube_requests_total", code="403") == 0, operator.logs()
            # Nor was any of kopf's own requests (watches, namespace and CRD scans) refused.
            assert "Forbidden" not in operator.logs(), operator.logs()
            # While the operator runs (it holds no finalizer on it; an older one's it would
            # remove).
            kubectl("delete", "workflow", "minutely", "-n", served[1], "--timeout=60s")


def test_two_replicas_peer_and_only_the_higher_priority_one_works(
    cluster: Cluster, tmp_path: Path
) -> None:
    with installed(cluster, tmp_path, {"replicas": 2}, watch=[0]) as release:
        (namespace,) = release.workloads
        deployment = kubectl_json("get", "deployment", release.name, "-n", release.namespace)
        args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        assert f"--peering={release.name}" in args
        kubectl_json("get", "kopfpeering", release.name, "-n", namespace)  # the chart made it

        kubeconfig = service_account_kubeconfig(
            cluster.kubeconfig, release.namespace, release.service_account, tmp_path / "sa"
        )
        peering = [f"--peering={release.name}"]

        def peers() -> list[int]:
            found = kubectl_json("get", "kopfpeering", release.name, "-n", namespace)
            return sorted(p["priority"] for p in (found.get("status") or {}).values())

        # The standby starts first and runs alone for a moment; once the second, higher-priority
        # replica has written its keep-alive, kopf pauses the standby.
        with (
            only_identity_may_act(namespace, release.username),
            scoped_operator(kubeconfig, [namespace], [*peering, "--priority=1"]) as standby,
            scoped_operator(kubeconfig, [namespace], [*peering, "--priority=2"]) as active,
        ):
            wait_for(lambda: peers() == [1, 2], timeout=60, what="both replicas' keep-alives")
            _run_to_success(namespace)
            _assert_never_forbidden(active, jobs_created=len(NODES))
            # The paused replica made no request but asking who it is, at start-up before
            # peering: no Job, no status write, no Event.
            made = standby.sample("kdag_kube_requests_total")
            whoami = standby.sample("kdag_kube_requests_total", resource="selfsubjectreviews")
            assert made == whoami == 1, standby.logs()


def test_helm_upgrade_to_namespaced_mode_and_uninstall_leave_no_cluster_wide_grants(
    cluster: Cluster, tmp_path: Path
) -> None:
    with installed(cluster, tmp_path) as release:
        extra = f"{release.namespace}-extra"
        (namespace,) = release.workloads
        assert can_i(release.username, "create", "jobs.batch", "-n", "default")
        values = tmp_path / "namespaced.yaml"
        # As installed(): the suite's CRDs are not the release's.
        values.write_text(
            json.dumps(
                {
                    "watchNamespaces": [namespace],
                    "image": {"pullPolicy": "Never"},
                    "crds": {"install": False},
                }
            )
        )
        helm(
            cluster, "upgrade", release.name, str(CHART), "-n", release.namespace,
            "--values", str(values), "--wait", "--timeout", "3m",
        )  # fmt: skip
        assert can_i(release.username, "create", "jobs.batch", "-n", namespace)
        assert not can_i(release.username, "create", "jobs.batch", "-n", "default")
        create_namespace(extra)
        try:
            assert not can_i(release.username, "create", "jobs.batch", "-n", extra)
        finally:
            kubectl("delete", "namespace", extra, "--wait=false", "--ignore-not-found")
    # After uninstall nothing cluster-wide of the release is left.
    leftovers = kubectl(
        "get", "clusterroles,clusterrolebindings", "-o", "name",
        "-l", f"app.kubernetes.io/instance={release.name}",
    )  # fmt: skip
    assert leftovers == ""
