"""The real node: a kubelet with containerd beside the KWOK nodes (hack/real-node/).

Tests that need real containers give their Workflows ``on_real_node()`` defaults: the
toleration of the node's taint, a nodeSelector for it, and the locally built busybox image.
``start()`` brings the node up once per session (seconds when warm) and returns ``None``, or
the exact reason it cannot start here (the last line ``up.sh`` printed), which the tests
report as their skip reason. Like the cluster, the node is left running for the next session;
``make cluster-down`` or ``make real-node-down`` removes it.
"""

from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path
from typing import Any

from tests.support.cluster import HACK

NODE_LABEL = "kdag.dev/real-node"
TAINT_KEY = "kdag.dev/real-node"
# hack/real-node/env.sh; built from Debian's busybox-static, never pulled.
BUSYBOX = "kdag.local/busybox:debian"
# Built by hack/build-image.sh under this name and imported under it, never pulled.
OPERATOR_IMAGE = "kdag.local/kdag-operator:e2e"


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


@functools.cache
def start() -> str | None:
    """Start (or reuse) the real node for the current cluster; the reason it cannot, or None.

    The cluster must be up (the caller's ``cluster`` fixture). Builds the kubelet into the
    binary cache first when it is missing (docs/local-cluster.md gives the cost).
    """
    if os.geteuid() != 0:
        return "the real node needs root (containerd, mounts, network namespaces)"
    build = subprocess.run(
        ["bash", str(HACK / "build-cluster-bins.sh"), "kubelet"],
        capture_output=True,
        text=True,
        check=False,
    )
    if build.returncode != 0:
        return f"building the kubelet failed: {_last_line(build.stderr)}"
    up = subprocess.run(
        ["bash", str(HACK / "real-node" / "up.sh")], capture_output=True, text=True, check=False
    )
    if up.returncode != 0:
        return f"hack/real-node/up.sh failed: {_last_line(up.stderr)}"
    return None


def node_name() -> str:
    """The real node's Node name (``<cluster>-real-node``, hack/real-node/env.sh)."""
    return f"{os.environ.get('KDAG_CLUSTER', 'kdag')}-real-node"


def on_real_node(**defaults: Any) -> dict[str, Any]:
    """Workflow ``defaults`` that put every node's pod on the real node, with busybox."""
    pod_template = {
        "nodeSelector": {NODE_LABEL: "true"},
        "tolerations": [{"key": TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}],
    }
    return {"image": BUSYBOX, "podTemplate": pod_template, **defaults}


def apiserver_endpoint() -> tuple[str, int]:
    """Where pods on the real node reach the API server (hack/real-node/apiserver_forward.py):
    the `kubernetes` Service's endpoint, forwarded by up.sh."""
    host, port = Path("/run/kdag-real-node/apiserver-endpoint").read_text().split()
    return host, int(port)


@functools.cache
def operator_image() -> str:
    """The operator image (`make image`'s hack/build-image.sh), imported into the real node's
    containerd; its reference. Raises when the build fails: a test that asks for it fails."""
    archive = Path(_cache_dir()) / "real-node" / "images" / "operator.tar"
    archive.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["bash", str(HACK / "build-image.sh"), "--archive", str(archive)],
        env={**os.environ, "IMAGE": OPERATOR_IMAGE},
        check=True,
        stdout=subprocess.DEVNULL,
    )
    subprocess.run(
        ["bash", str(HACK / "real-node" / "images.sh"), str(archive)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return OPERATOR_IMAGE


def _cache_dir() -> str:
    return subprocess.run(
        [
            "bash",
            "-c",
            'source "$1" && printf %s "$KDAG_CACHE"',
            "bash",
            str(HACK / "cluster-env.sh"),
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
