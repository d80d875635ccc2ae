"""A `kdag-operator` process scoped to given namespaces, under a given identity.

The Helm tests run the operator as the chart's ServiceAccount (a token kubeconfig, not the
admin's) to prove the chart's RBAC is enough, and only on their own namespaces, because
other tests may share the cluster. (tests/support/operator.py has the session-wide
operator of the run tests; this one is per test and never cluster-wide.)
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from tests.support.chart_rbac import service_account_kubeconfig
from tests.support.cluster import wait_for
from tests.support.operator import OPERATOR, OperatorProcess

__all__ = ["ScopedOperator", "scoped_operator", "service_account_kubeconfig"]


class ScopedOperator(OperatorProcess):
    """The session operator's process handling (liveness wait, stop, metrics), but scoped to
    `namespaces`, with extra flags, and with a log file of its own."""

    def __init__(
        self, kubeconfig: Path, namespaces: Sequence[str], extra_args: Sequence[str] = ()
    ) -> None:
        assert namespaces, "a test operator must be scoped to its own namespaces"
        super().__init__(kubeconfig)
        self.namespaces = tuple(namespaces)
        self.extra_args = tuple(extra_args)
        fd, name = tempfile.mkstemp(prefix="kdag-helm-operator-", suffix=".log")
        os.close(fd)
        self.log_path = Path(name)

    def start(self) -> None:
        self._log = self.log_path.open("ab")
        self._proc = subprocess.Popen(
            [
                str(OPERATOR),
                *(f"--namespace={ns}" for ns in self.namespaces),
                f"--metrics-port={self.metrics_port}",
                f"--liveness=http://127.0.0.1:{self.liveness_port}/healthz",
                "--log-format=text",
                *self.extra_args,
            ],
            # Only this kubeconfig: nothing of the admin's environment may leak in.
            env={**os.environ, "KUBECONFIG": str(self.kubeconfig)},
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        wait_for(self._live, timeout=60, what="the operator's liveness endpoint")

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def sample(self, name: str, **labels: str) -> float:
        """The sum of the /metrics series `name` matching `labels` (0 when absent)."""
        total = 0.0
        for line in self.metrics().splitlines():
            match = re.fullmatch(r"([a-zA-Z_:][\w:]*)(\{.*\})? (\S+)", line)
            if not match or match.group(1) != name:
                continue
            found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(2) or ""))
            if labels.items() <= found.items():
                total += float(match.group(3))
        return total


@contextmanager
def scoped_operator(
    kubeconfig: Path, namespaces: Sequence[str], extra_args: Sequence[str] = ()
) -> Iterator[ScopedOperator]:
    """Start `kdag-operator` for `namespaces` with `kubeconfig`; stop it afterwards."""
    operator = ScopedOperator(kubeconfig, namespaces, extra_args)
    try:
        operator.start()
        yield operator
    finally:
        operator.stop()
