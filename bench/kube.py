"""Cluster access for the benchmarks: an API client, namespaces, private KWOK nodes, scrapes.

Everything the harness measures comes from outside the operator: the API server's and etcd's
own metrics and storage, the operator's /metrics and /proc, and the harness's own watches.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes
import yaml
from kubernetes.client.exceptions import ApiException
from prometheus_client.parser import text_string_to_metric_families
from tests.support.cluster import default_kubeconfig, kubectl
from urllib3.exceptions import HTTPError

# Every verb the API server's apiserver_request_total counts as a write.
WRITE_VERBS = frozenset({"POST", "PUT", "PATCH", "DELETE", "DELETECOLLECTION", "APPLY"})
# What running a scenario writes, by anyone (operator, Job controller, scheduler, KWOK). The
# API server's counters are cluster-wide and not per namespace, so writes to anything else
# come from other sessions sharing the cluster and are only totalled, as a noise indicator.
SCENARIO_RESOURCES = frozenset(
    {
        "jobs", "jobs/status", "pods", "pods/status", "pods/binding", "events",
        "workflowruns", "workflowruns/status",
    }
)  # fmt: skip
BENCH_LABEL = "kdag.dev/bench"
NODE_TAINT_KEY = "kdag.dev/bench"

logger = logging.getLogger(__name__)

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def api_client(kubeconfig: Path, pool: int = 32) -> kubernetes.client.ApiClient:
    """A client with a connection pool big enough for the floor's concurrent creates."""
    config = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]
        config_file=str(kubeconfig), client_configuration=config
    )
    config.connection_pool_maxsize = pool
    return kubernetes.client.ApiClient(config)


# --------------------------------------------------------------------- namespaces


def create_namespace(client: kubernetes.client.ApiClient, name: str) -> None:
    core = kubernetes.client.CoreV1Api(client)
    body = {"metadata": {"name": name, "labels": {BENCH_LABEL: "true"}}}
    core.create_namespace(body)  # type: ignore[arg-type]  # the client takes plain dicts
    # Pods are only admitted once the serviceaccount controller made `default`.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            core.read_namespaced_service_account("default", name)
            return
        except ApiException as exc:
            if exc.status != 404:
                raise
        time.sleep(0.2)
    raise TimeoutError(f"namespace {name}: no default ServiceAccount after 60s")


def delete_namespace(
    client: kubernetes.client.ApiClient, name: str, timeout: float = 900, wait: bool = True
) -> bool:
    """Empty and delete a namespace, waiting (with `wait`) until it is gone; False if it
    outlived `timeout`.

    Deleting a namespace with thousands of Jobs through the namespace controller and the
    garbage collector takes minutes at the controller manager's client rate limit, and would
    load the cluster during the next scenario. Collection deletes are one request each: pods
    first (so the garbage collector has nothing left to cascade), then Jobs, then runs.
    """
    batch = kubernetes.client.BatchV1Api(client)
    core = kubernetes.client.CoreV1Api(client)
    custom = kubernetes.client.CustomObjectsApi(client)
    steps: list[Callable[[], object]] = [
        lambda: custom.delete_collection_namespaced_custom_object(
            "kdag.dev", "v1alpha1", name, "workflowruns"
        ),
        lambda: core.delete_collection_namespaced_pod(name, grace_period_seconds=0),
        lambda: batch.delete_collection_namespaced_job(name, propagation_policy="Background"),
        lambda: core.delete_namespace(name),
    ]
    for step in steps:
        # A collection delete of thousands of pods can outlast the API server's 60 s request
        # timeout (504) while it goes on deleting; try again, then let the namespace
        # controller finish whatever is left.
        for _ in range(5):
            try:
                step()
                break
            except ApiException as exc:
                if exc.status == 404:
                    break
                logger.warning("cleaning up %s: %s %s; retrying", name, exc.status, exc.reason)
            except (HTTPError, OSError) as exc:
                logger.warning("cleaning up %s: %s; retrying", name, exc)
    deadline = time.monotonic() + timeout
    while wait and time.monotonic() < deadline:
        try:
            core.read_namespace(name)
        except ApiException as exc:
            if exc.status == 404:
                return True
            raise
        time.sleep(1)  # the namespace controller has no event to wait on from here
    return not wait


# --------------------------------------------------------------------- private fake nodes


def node_manifest(name: str, group: str, index: int, pods: int) -> dict[str, Any]:
    """A KWOK node only benchmark pods use: tainted, so nobody else's pods land on it, with a
    pod capacity far above the shared nodes' 110 and a /16 pod CIDR so KWOK never runs out
    of pod IPs."""
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "type": "kwok",
                BENCH_LABEL: group,
            },
        },
        "spec": {
            "podCIDR": f"10.{200 + index}.0.0/16",
            "taints": [{"key": NODE_TAINT_KEY, "value": group, "effect": "NoSchedule"}],
        },
        "status": {
            "allocatable": {"cpu": "64", "memory": "256Gi", "pods": str(pods)},
            "capacity": {"cpu": "64", "memory": "256Gi", "pods": str(pods)},
        },
    }


def pod_placement(group: str) -> dict[str, Any]:
    """The podTemplate part that puts a pod on this harness's private nodes."""
    return {
        "nodeSelector": {BENCH_LABEL: group},
        "tolerations": [{"key": NODE_TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}],
    }


def create_nodes(group: str, count: int, pods: int) -> list[str]:
    names = [f"kdag-bench-{group}-{i}" for i in range(count)]
    items = [node_manifest(n, group, i, pods) for i, n in enumerate(names)]
    kubectl(
        "apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": items})
    )
    kubectl(
        "wait", "--for=condition=Ready", "node", "-l", f"{BENCH_LABEL}={group}", "--timeout=120s"
    )
    return names


def delete_nodes(group: str) -> None:
    kubectl("delete", "node", "-l", f"{BENCH_LABEL}={group}", "--ignore-not-found", "--wait=false")


# --------------------------------------------------------------------- metrics


def parse_samples(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = (sample.name, frozenset(sample.labels.items()))
            samples[key] = samples.get(key, 0.0) + sample.value
    return samples


def delta(before: Samples, after: Samples, name: str) -> list[tuple[dict[str, str], float]]:
    """Per label set, how much the series `name` grew (counters only)."""
    out = []
    for (sample_name, labels), value in after.items():
        if sample_name != name:
            continue
        grown = value - before.get((sample_name, labels), 0.0)
        if grown:
            out.append((dict(labels), grown))
    return out


def apiserver_samples() -> Samples:
    return parse_samples(kubectl("get", "--raw", "/metrics"))


def http_samples(url: str) -> Samples:
    with urllib.request.urlopen(url, timeout=10) as answer:
        return parse_samples(answer.read().decode())


def api_writes(before: Samples, after: Samples) -> dict[str, int]:
    """Writes the API server answered between two scrapes, by `resource[/subresource] VERB`;
    writes to resources no scenario touches are summed under `other`."""
    writes: dict[str, int] = {}
    for labels, grown in delta(before, after, "apiserver_request_total"):
        if labels.get("verb") not in WRITE_VERBS:
            continue
        resource = labels.get("resource", "")
        if labels.get("subresource"):
            resource += "/" + labels["subresource"]
        key = f"{resource} {labels['verb']}" if resource in SCENARIO_RESOURCES else "other"
        writes[key] = writes.get(key, 0) + round(grown)
    return dict(sorted(writes.items(), key=lambda kv: -kv[1]))


# --------------------------------------------------------------------- processes


CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class ProcStats:
    rss_peak_bytes: int
    rss_bytes: int
    cpu_seconds: float


def proc_stats(pid: int) -> ProcStats:
    """Peak and current RSS (VmHWM, VmRSS) and user+system CPU seconds of a live process."""
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(re.findall(r"^(\w+):\s+(\d+) kB", status, flags=re.MULTILINE))
    # Fields after the command (which may contain spaces) start after the last ')'.
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    utime, stime = int(stat[11]), int(stat[12])
    return ProcStats(
        rss_peak_bytes=int(fields["VmHWM"]) * 1024,
        rss_bytes=int(fields["VmRSS"]) * 1024,
        cpu_seconds=(utime + stime) / CLK_TCK,
    )


def cluster_dir(kubeconfig: Path) -> Path | None:
    """kwokctl's directory of the local cluster (pids, kwok.yaml); None for another cluster."""
    if kubeconfig.resolve() != default_kubeconfig().resolve():
        return None
    found = default_kubeconfig().parent / "kwok" / "clusters" / "kdag"
    return found if found.is_dir() else None


def control_plane_cpu(directory: Path | None) -> dict[str, float]:
    """CPU seconds so far of each control-plane process (etcd, kube-apiserver, ...)."""
    if directory is None:
        return {}
    seconds = {}
    for pidfile in sorted((directory / "pids").glob("*.pid")):
        try:
            seconds[pidfile.stem] = proc_stats(int(pidfile.read_text())).cpu_seconds
        except (OSError, ValueError, KeyError):
            continue
    return seconds


def cpu_delta(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
    return {k: round(after[k] - before[k], 2) for k in after if k in before}


# --------------------------------------------------------------------- etcd


def etcd_url(directory: Path | None) -> str | None:
    """etcd's client URL from kwokctl's component list (it serves the v3 JSON gateway)."""
    if directory is None:
        return None
    try:
        documents = list(yaml.safe_load_all((directory / "kwok.yaml").read_text()))
    except (OSError, yaml.YAMLError):
        return None
    components = [c for d in documents if isinstance(d, dict) for c in d.get("components") or []]
    for component in components:
        if component.get("name") != "etcd":
            continue
        for arg in component.get("args") or []:
            if arg.startswith("--advertise-client-urls="):
                return str(arg.split("=", 1)[1].split(",")[0])
    return None


def etcd_value_bytes(url: str | None, key: str) -> int | None:
    """Size of the value etcd stores under `key` (what its 1.5 MiB request limit applies to)."""
    if url is None:
        return None
    body = json.dumps({"key": base64.b64encode(key.encode()).decode()}).encode()
    request = urllib.request.Request(f"{url}/v3/kv/range", data=body, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            found = json.loads(answer.read())
    except OSError:
        return None
    kvs = found.get("kvs") or []
    return len(base64.b64decode(kvs[0]["value"])) if kvs else None


def kubectl_json_bytes(*args: str) -> int:
    """`kubectl get ... -o json | wc -c`."""
    return len(kubectl("get", *args, "-o", "json").encode())


def run_lines(cmd: Iterable[str]) -> str:
    return subprocess.run(list(cmd), capture_output=True, text=True, check=False).stdout.strip()
