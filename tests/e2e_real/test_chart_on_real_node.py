"""The operator deployed by its own chart, as a real pod on the real node.

`helm install` with the locally built operator image (`make image`, imported into the real
node's containerd): the operator runs under the chart's ServiceAccount and RBAC (namespaced
here, so it serves only its own workload namespace and never the session's runs), the
kubelet probes its liveness endpoint, `/metrics` answers, and a run in its namespace is
carried out by it alone, on real containers.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from tests.support.cluster import Cluster, kubectl, kubectl_json, wait_for
from tests.support.helm_release import CHART, helm, installed, only_identity_may_act
from tests.support.operator import (
    RBAC_DENIAL,
    WAIT_SECONDS,
    apply,
    create,
    run_of,
    wait_phase,
    workflow,
)
from tests.support.real_node import (
    NODE_LABEL,
    TAINT_KEY,
    apiserver_endpoint,
    node_name,
    on_real_node,
    operator_image,
)


def _values(**extra: Any) -> dict[str, Any]:
    repository, tag = operator_image().rsplit(":", 1)
    host, port = apiserver_endpoint()
    env = [
        {"name": "KUBERNETES_SERVICE_HOST", "value": host},
        {"name": "KUBERNETES_SERVICE_PORT", "value": str(port)},
        *extra.pop("env", []),
    ]
    return {
        "image": {"repository": repository, "tag": tag, "pullPolicy": "Never"},
        "nodeSelector": {NODE_LABEL: "true"},
        "tolerations": [{"key": TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}],
        # No kube-proxy: the in-cluster config's Service address is replaced by the
        # Service's endpoint, which the real node forwards to the API server.
        "operator": {"extraEnv": env},
        # The suite applies the CRDs itself; no test release may own them.
        "crds": {"install": False},
        **extra,
    }


def test_the_operator_image_starts_under_the_charts_user(cluster: Cluster, tmp_path: Path) -> None:
    uid = uuid.uuid4().hex[:6]
    release, namespace = f"kdag-{uid}", f"kdag-system-{uid}"
    values = tmp_path / "values.json"
    values.write_text(json.dumps(_values(watchNamespaces=[namespace])))
    # No --wait: a crash-looping operator would hold it for its whole timeout.
    helm(
        cluster, "install", release, str(CHART), "--namespace", namespace,
        "--create-namespace", "--values", str(values),
    )  # fmt: skip
    try:

        def outcome() -> str | None:
            for pod in kubectl_json("get", "pods", "-n", namespace)["items"]:
                name = pod["metadata"]["name"]
                for status in pod["status"].get("containerStatuses") or []:
                    if status.get("restartCount") or (status.get("state") or {}).get("terminated"):
                        return kubectl("logs", f"pod/{name}", "-n", namespace, check=False)
                    # Ready means only "running" (no readiness probe): ask kopf itself.
                    healthz = f"/api/v1/namespaces/{namespace}/pods/{name}:8081/proxy/healthz"
                    if kubectl("get", "--raw", healthz, check=False):
                        return "ready"
            return None

        seen = wait_for(outcome, timeout=WAIT_SECONDS, what="the operator pod to start or crash")
        # The image's uid 65532 has no passwd entry: kopf names the replica by the chart's
        # POD_ID instead of asking the OS for a user name (it exited at start before).
        assert seen == "ready", seen[-2000:]
    finally:
        helm(cluster, "uninstall", release, "--namespace", namespace, check=False)
        kubectl("delete", "namespace", namespace, "--wait=false", "--ignore-not-found")


def test_the_chart_runs_the_operator_on_the_real_node(cluster: Cluster, tmp_path: Path) -> None:
    values = _values()
    with installed(cluster, tmp_path, values=values, watch=[0]) as release:
        (pod,) = kubectl_json(
            "get", "pods", "-n", release.namespace, "-l", "app.kubernetes.io/name=kdag"
        )["items"]
        name = pod["metadata"]["name"]
        assert pod["spec"]["nodeName"] == node_name()
        assert pod["spec"]["serviceAccountName"] == release.service_account
        (container,) = pod["status"]["containerStatuses"]
        assert container["ready"] and container["restartCount"] == 0, json.dumps(container)
        assert container["imageID"], container  # containerd ran the image
        # The API server reaches the pod through the real node's bridge.
        proxy = f"/api/v1/namespaces/{release.namespace}/pods/{name}"
        # The chart has no readiness probe: the liveness endpoint answers once kopf is up.
        wait_for(
            lambda: kubectl("get", "--raw", f"{proxy}:8081/proxy/healthz", check=False),
            timeout=120,
            what="the operator pod's /healthz",
        )
        metrics = kubectl("get", "--raw", f"{proxy}:8080/proxy/metrics")
        assert "kdag_" in metrics, metrics[:500]

        (workload,) = release.workloads
        with only_identity_may_act(workload, release.username):
            nodes = [
                {
                    "name": "hello",
                    "command": ["sh", "-c", """printf '{"said": "hi"}' > /dev/termination-log"""],
                }
            ]
            apply(workload, workflow("hello", nodes, defaults=on_real_node()))
            run = create(workload, run_of("hello"))
            done = wait_phase(workload, run, "Succeeded")
        assert done["nodes"]["hello"]["outputs"] == {"said": "hi"}
        # Nothing the chart's RBAC refused along the way (kopf logs some refusals and goes on).
        logs = kubectl("logs", f"pod/{name}", "-n", release.namespace)
        assert not RBAC_DENIAL.search(logs), logs
