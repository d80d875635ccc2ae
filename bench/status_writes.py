"""What a run's status writes cost the API server, apart from everything else.

    python -m bench.status_writes --chain 500 [--inline] [--repeat 2]

No operator and no Jobs: the status patches the operator writes for a chain of CHAIN nodes
(replayed offline by `bench.plan_profile`, one Job finishing between passes) are sent, one
after another, to a run on the local cluster, and kube-apiserver's and etcd's CPU seconds
(from /proc) are read before and after. The run references a Workflow (`workflowRef`, as
the chain scenario's runs do) or, with --inline, carries the workflow in its spec. Nothing
watches the run meanwhile, so no watch encoding is counted.

Prints one JSON line per repetition: writes, the run's final size and the API server's CPU
milliseconds per write. Other load on the cluster adds to the figures: compare runs made
back to back.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from typing import Any

import kubernetes

from bench import kube
from bench.plan_profile import replay
from bench.shapes import chain, workflow_manifest

GROUP, VERSION = "kdag.dev", "v1alpha1"


def measure(length: int, inline: bool) -> dict[str, Any]:
    shape = chain(length, 1000)
    patches = [p["patch"] for p in replay(shape, batch=1) if p["patch"]]
    kubeconfig = kube.default_kubeconfig()
    client = kube.api_client(kubeconfig)
    api = kubernetes.client.CustomObjectsApi(client)
    namespace = f"kdag-bench-status-{uuid.uuid4().hex[:6]}"
    kube.create_namespace(client, namespace)
    try:
        workflow = workflow_manifest("wf", shape, "status-writes")
        spec = {"workflow": workflow["spec"]} if inline else {"workflowRef": {"name": "wf"}}
        if not inline:
            api.create_namespaced_custom_object(GROUP, VERSION, namespace, "workflows", workflow)
        run = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "WorkflowRun",
               "metadata": {"name": "run"}, "spec": spec}  # fmt: skip
        api.create_namespaced_custom_object(GROUP, VERSION, namespace, "workflowruns", run)
        directory = kube.cluster_dir(kubeconfig)
        before, started = kube.control_plane_cpu(directory), time.monotonic()
        for patch in patches:
            api.patch_namespaced_custom_object_status(
                GROUP, VERSION, namespace, "workflowruns", "run", {"status": patch}
            )
        elapsed, after = time.monotonic() - started, kube.control_plane_cpu(directory)
        final = api.get_namespaced_custom_object(GROUP, VERSION, namespace, "workflowruns", "run")
    finally:
        kube.delete_namespace(client, namespace)
    cpu = kube.cpu_delta(before, after)
    apiserver = cpu.get("kube-apiserver", 0.0)
    return {
        "chain": length,
        "inline": inline,
        "writes": len(patches),
        "elapsed_s": round(elapsed, 1),
        "final_run_bytes": len(json.dumps(final, separators=(",", ":"))),
        "apiserver_cpu_s": apiserver,
        "etcd_cpu_s": cpu.get("etcd"),
        "apiserver_cpu_ms_per_write": round(1000 * apiserver / len(patches), 1),
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.status_writes", description=__doc__)
    parser.add_argument("--chain", type=int, default=500, help="a chain this long")
    parser.add_argument("--inline", action="store_true", help="the workflow in the run's spec")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args(argv)
    for _ in range(args.repeat):
        print(json.dumps(measure(args.chain, args.inline)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
