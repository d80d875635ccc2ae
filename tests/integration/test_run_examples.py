"""Every file in examples/ works on the local cluster as its comments say."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.support.cluster import REPO_ROOT, kubectl
from tests.support.operator import wait_phase

EXAMPLES = sorted((REPO_ROOT / "examples").glob("*.yaml"))


pytestmark = pytest.mark.operator


def _kinds(path: Path) -> list[dict[str, object]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def test_the_examples_run_to_success_once_the_gate_is_approved(namespace: str) -> None:
    assert EXAMPLES, "examples/ is empty"
    runs: list[str] = []
    # Templates first, then runs: apply what has a name, create what has a generateName.
    for path in sorted(EXAMPLES, key=lambda p: any(d["kind"] == "WorkflowRun" for d in _kinds(p))):
        for doc in _kinds(path):
            metadata = doc["metadata"]
            assert isinstance(metadata, dict)
            verb = "create" if "generateName" in metadata else "apply"
            out = kubectl(verb, "-n", namespace, "-f", "-", "-o", "name", input=yaml.safe_dump(doc))
            if doc["kind"] == "WorkflowRun":
                runs.append(out.strip().split("/", 1)[1])
    assert runs, "no example WorkflowRun"
    for run in runs:
        waiting = wait_phase(namespace, run, "WaitingForApproval", "Succeeded")
        for node, entry in (waiting.get("nodes") or {}).items():
            if entry["phase"] == "WaitingForApproval":
                kubectl(
                    "annotate", "workflowrun", run, "-n", namespace,
                    f"approve.kdag.dev/{node}=alice",
                )  # fmt: skip
        done = wait_phase(namespace, run, "Succeeded")
        assert done["progress"].split("/")[0] == done["progress"].split("/")[1]
