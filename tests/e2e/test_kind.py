"""A real container runs to completion on kind."""

from __future__ import annotations

from typing import Any


def test_job_runs_a_real_container(kind_cluster: Any) -> None:
    kind_cluster.kubectl(
        "create", "job", "hello", "--image=busybox:1.36", "--", "sh", "-c", "echo hello from kind"
    )
    kind_cluster.kubectl("wait", "--for=condition=Complete", "job/hello", "--timeout=300s")
    assert "hello from kind" in kind_cluster.kubectl("logs", "job/hello")
