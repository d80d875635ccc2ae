"""Fixtures for integration tests on the real local control plane.

The ``cluster`` fixture brings the kwokctl cluster up once per session
(``hack/cluster-up.sh``, which reuses a healthy running cluster in seconds),
or, when ``$KUBECONFIG`` is exported and points at another cluster, uses that
one as it is.

The cluster is deliberately NOT torn down at the end of the session: the next
session (or the developer's shell after ``eval "$(make -s cluster-up | tail -1)"``)
reuses it, which saves the start-up on every run. ``make cluster-down`` removes
it. Tests isolate themselves with the per-test ``namespace`` fixture instead.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cluster import (
    Cluster,
    cluster_up,
    current_kubeconfig,
    default_kubeconfig,
    ensure_bins,
    fresh_namespace,
    kubectl,
)
from tests.support.operator import operator_namespace


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "integration: needs the local Kubernetes control plane (hack/cluster-up.sh)"
    )
    config.addinivalue_line(
        "markers", "operator: the test's `namespace` is served by the session's kdag operator"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Every test under tests/integration is an integration test, so that
    # `-m "not integration"` deselects them without each file repeating it.
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def cluster() -> Cluster:
    """The cluster the integration tests run on (see the module docstring)."""
    kubeconfig = current_kubeconfig()
    if os.environ.get("KUBECONFIG") and kubeconfig != default_kubeconfig():
        found = Cluster(kubeconfig=kubeconfig, bin_dir=ensure_bins())
        # Fail loudly rather than quietly starting a second cluster.
        kubectl("get", "--raw=/readyz", kubeconfig=kubeconfig)
        return found
    found = cluster_up()
    # Code under test (the operator's Kubernetes client, helm) reads it too.
    os.environ["KUBECONFIG"] = str(found.kubeconfig)
    return found


@pytest.fixture
def namespace(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace for one test, deleted afterwards; in modules marked
    `pytest.mark.operator`, one that the session's kdag operator serves."""
    if request.node.get_closest_marker("operator") is not None:
        yield from operator_namespace(cluster)
    else:
        yield from fresh_namespace("kdag-test-")
