"""`helm test` of an installed release on the local cluster (docs/chart.md, "helm test").

KWOK plays the kubelet here, so the test pod never runs a container: KWOK ends it as its
`sim.kdag.dev/*` annotations say (given through tests.podAnnotations). What `helm test`
proves here is the hook's wiring: the pod is created, Helm waits for its outcome and reports
it, passing and failing. That the pod's script really checks the operator is shown apart:
the script, taken from the installed release, is run by busybox against the real operator's
/metrics (the operator running as a local process, as in test_helm_install.py).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.support.cluster import Cluster, kubectl_json
from tests.support.helm_release import helm, installed
from tests.support.operator_process import scoped_operator, service_account_kubeconfig

TEST_POD = "templates/tests/operator-answers.yaml"


def _helm_test(cluster: Cluster, release: str, namespace: str) -> subprocess.CompletedProcess[str]:
    return helm(cluster, "test", release, "--namespace", namespace, "--timeout", "2m", check=False)


@pytest.mark.parametrize(
    ("outcome", "passes"),
    [({"sim.kdag.dev/duration": "1s"}, True), ({"sim.kdag.dev/exit-code": "1"}, False)],
)
def test_helm_test_reports_the_test_pods_outcome(
    cluster: Cluster, tmp_path: Path, outcome: dict[str, str], passes: bool
) -> None:
    values = {"tests": {"podAnnotations": outcome}}
    with installed(cluster, tmp_path, values, watch=[0]) as release:
        proc = _helm_test(cluster, release.name, release.namespace)
        output = proc.stdout + proc.stderr
        assert (proc.returncode == 0) is passes, output
        pod = f"{release.name}-test-metrics"
        assert f"TEST SUITE:     {pod}" in output
        assert ("Phase:          Succeeded" if passes else "Phase:          Failed") in output
        if not passes:
            # A failed test pod is left for its logs (hook-delete-policy hook-succeeded).
            found = kubectl_json("get", "pod", pod, "-n", release.namespace)
            assert found["status"]["phase"] == "Failed"


def test_the_test_pods_script_finds_the_real_operator(cluster: Cluster, tmp_path: Path) -> None:
    busybox = shutil.which("busybox")
    if busybox is None:
        pytest.skip("busybox is not installed (Debian package `busybox`)")
    bin_dir = tmp_path / "busybox"
    bin_dir.mkdir()
    for applet in ("sh", "wget", "grep", "sleep", "timeout"):
        (bin_dir / applet).symlink_to(busybox)
    with installed(cluster, tmp_path, watch=[0]) as release:
        hooks = helm(cluster, "get", "hooks", release.name, "-n", release.namespace).stdout
        (pod,) = [d for d in yaml.safe_load_all(hooks) if d and d["kind"] == "Pod"]
        script = pod["spec"]["containers"][0]["command"][-1]
        service = f"http://{release.name}-metrics.{release.namespace}.svc:8080/metrics"
        assert service in script

        def run(url: str) -> subprocess.CompletedProcess[str]:
            local = script.replace(service, url).replace("sleep 5", "sleep 1")
            return subprocess.run(
                [str(bin_dir / "sh"), "-c", local],
                capture_output=True, text=True, timeout=120, env={"PATH": str(bin_dir)},
                cwd=tmp_path, check=False,
            )  # fmt: skip

        kubeconfig = service_account_kubeconfig(
            cluster.kubeconfig, release.namespace, release.service_account, tmp_path / "sa"
        )
        with scoped_operator(kubeconfig, list(release.workloads)) as operator:
            found = run(f"http://127.0.0.1:{operator.metrics_port}/metrics")
            assert found.returncode == 0, found.stdout + found.stderr
            assert "the kdag operator answers" in found.stdout
        # The same script with nothing behind the address fails: a port this test holds
        # without listening (the operator's port, once free, could be taken by another).
        with socket.socket() as held:
            held.bind(("127.0.0.1", 0))
            gone = run(f"http://127.0.0.1:{held.getsockname()[1]}/metrics")
        assert gone.returncode != 0 and "no kdag metrics" in gone.stderr
