"""End-to-end tests on kind (real containers), through pytest-kind.

kind needs a Docker engine. Where ``docker info`` fails (as on the kdag
development machines, which have only the Docker client), every test here is
skipped with the reason. Where it works, the kind and kubectl binaries come
from kdag's own cache (``hack/build-cluster-bins.sh kind``, built from Go
modules) instead of pytest-kind's downloads.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.support.cluster import HACK, bin_dir


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "e2e: needs kind and a Docker engine")


@functools.cache
def docker_problem() -> str | None:
    """Why kind cannot run here, or None when a Docker engine answers."""
    if shutil.which("docker") is None:
        return "no docker CLI on PATH; kind e2e tests need a Docker engine"
    proc = subprocess.run(["docker", "info"], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        detail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        return f"`docker info` failed, so there is no Docker engine for kind: {detail}"
    return None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    e2e = [item for item in items if here in item.path.parents]
    if not e2e:
        return
    reason = docker_problem()
    for item in e2e:
        item.add_marker(pytest.mark.e2e)
        if reason:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def kind_tools(request: pytest.FixtureRequest) -> None:
    """Point pytest-kind at the cached kind and kubectl (no downloads)."""
    subprocess.run(
        ["bash", str(HACK / "build-cluster-bins.sh"), "kind"], check=True, stdout=subprocess.DEVNULL
    )
    option = request.config.option
    option.kind_bin = option.kind_bin or str(bin_dir() / "kind")
    option.kind_kubectl_bin = option.kind_kubectl_bin or str(bin_dir() / "kubectl")


@pytest.fixture(scope="session")
def kind_cluster(kind_tools: None, kind_cluster: Any) -> Any:
    """pytest-kind's cluster, created with kdag's cached binaries."""
    return kind_cluster
