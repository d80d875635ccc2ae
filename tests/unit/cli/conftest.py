"""Fixtures of the plugin's unit tests."""

from __future__ import annotations

import pytest

MISSING_KUBECONFIG = "/no/such/kubeconfig"


@pytest.fixture
def no_kubeconfig(monkeypatch: pytest.MonkeyPatch) -> str:
    """KUBECONFIG names a file that does not exist, and this is not a pod: no cluster."""
    monkeypatch.setenv("KUBECONFIG", MISSING_KUBECONFIG)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    return MISSING_KUBECONFIG
