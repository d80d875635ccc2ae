"""Fixtures for the end-to-end tests on real containers (hack/real-node/).

The local control plane comes up as for the integration tests (``hack/cluster-up.sh``,
reused when healthy), and the real node joins it once per session
(``tests/support/real_node.py``; seconds when warm). Where the node cannot start (not root,
no containerd, a kernel feature missing), every test here is skipped with the exact reason
``hack/real-node/up.sh`` gave; they never fall back to KWOK.

The kdag operator is the integration tests' local process (tests/support/operator.py), which
serves only this session's namespaces; its Jobs' pods tolerate the real node's taint
(``on_real_node()``), so the real kubelet runs them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import real_node
from tests.support.cluster import Cluster, cluster_up, current_kubeconfig, default_kubeconfig
from tests.support.operator import operator_namespace


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "e2e_real: runs real containers on the real node (hack/real-node/up.sh)"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.e2e_real)


@pytest.fixture(scope="session")
def cluster() -> Cluster:
    """The local cluster with the real node joined; skips the tests when it cannot join."""
    if os.geteuid() != 0:
        # Known before starting anything, so a non-root run skips at once.
        pytest.skip("the real node needs root (containerd, mounts, network namespaces)")
    kubeconfig = current_kubeconfig()
    if os.environ.get("KUBECONFIG") and kubeconfig != default_kubeconfig():
        pytest.skip(
            f"KUBECONFIG is another cluster ({kubeconfig}); the real node joins only the local one"
        )
    found = cluster_up()
    os.environ["KUBECONFIG"] = str(found.kubeconfig)
    reason = real_node.start()
    if reason:
        pytest.skip(reason)
    return found


@pytest.fixture
def namespace(cluster: Cluster) -> Iterator[str]:
    """A fresh namespace served by the session's kdag operator."""
    yield from operator_namespace(cluster)
