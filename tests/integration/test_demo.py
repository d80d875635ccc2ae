"""`make demo`, the README's first command, does what the README says on the local cluster."""

from __future__ import annotations

import os
import re
import subprocess
import uuid

from tests.support.cluster import HACK, Cluster, kubectl, kubectl_json


def test_demo_takes_the_example_run_through_its_gate_to_success(cluster: Cluster) -> None:
    # Its own namespace (the demo serves exactly one), so it neither meets the session's
    # operator nor another session's demo; deleted afterwards.
    namespace = f"kdag-demo-test-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "KUBECONFIG": str(cluster.kubeconfig),
        "KDAG_DEMO_NAMESPACE": namespace,
        "PATH": f"{cluster.bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    try:
        done = subprocess.run(
            ["bash", str(HACK / "demo.sh")],
            check=False,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,  # a guard against a hang, not a performance bound
        )
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        out = done.stdout
        assert "Using the cluster of your KUBECONFIG" in out
        assert "The run waits at its approval gate" in out
        approved = re.search(r"kubectl annotate workflowrun (\S+) approve\.kdag\.dev/(\S+)=", out)
        assert approved, out[-3000:]
        run, gate = approved.groups()
        status = kubectl_json("get", "workflowrun", run, "-n", namespace)["status"]
        assert status["phase"] == "Succeeded"
        assert status["nodes"][gate]["approvedBy"]
        # The last thing shown is the finished tree, every node in it.
        tail = out[out.rindex("Done") :]
        for node in status["nodes"]:
            assert node.split("[")[0] in tail
    finally:
        kubectl("delete", "namespace", namespace, "--wait=false", "--ignore-not-found")
