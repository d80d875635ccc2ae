"""The bad-input corpus (tests/badinput/) on the real API server (SPEC §3
"Invalid input").

Every malformed Workflow and WorkflowRun goes in the way a user sends it (`kubectl apply` a
Workflow, `kubectl create` a run) into one namespace that an operator serves, while a good
run there is in flight. Each is either refused at admission with a message containing the
case's text, or accepted and then reported by the operator: a run ends `Invalid`, a Workflow
shows `status.valid: false`, with the text (naming the field) in `status.message`. At the
end the good run finishes, a new run still succeeds, and the operator is alive with no
traceback in its log. (tests/unit/test_bad_input_corpus.py is the offline half.)
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from tests.badinput.corpus import Case, load_cases
from tests.support.cluster import Cluster, KubectlError, kubectl, kubectl_json, wait_for
from tests.support.faults import is_running, operator_for, own_namespace, release_when_started
from tests.support.operator import (
    apply,
    create,
    run_of,
    sim,
    status,
    wait_node,
    wait_phase,
    workflow,
)
from tests.support.operator_process import ScopedOperator

CASES = load_cases()
REFUSABLE = ("admission", "admission-or-invalid")


@dataclass
class Env:
    namespace: str
    operator: ScopedOperator
    good_run: str
    outcomes: dict[str, str] = field(default_factory=dict)


@pytest.fixture(scope="module")
def env(cluster: Cluster) -> Iterator[Env]:
    with (
        own_namespace("badin") as namespace,
        operator_for(cluster.kubeconfig, [namespace]) as operator,
    ):
        nodes = [{"name": "hold", **sim(hang=True)}, {"name": "after", "dependsOn": ["hold"]}]
        apply(namespace, workflow("good", nodes), workflow("quick", [{"name": "a"}]))
        good_run = create(namespace, run_of("good"))
        wait_node(namespace, good_run, "hold", "Running")
        yield Env(namespace, operator, good_run)
        # While the operator still runs: it removes an older version's finalizer from a
        # scheduled Workflow, which would keep the namespace Terminating (docs/limits.md).
        kubectl("delete", "workflows", "--all", "-n", namespace, "--timeout=120s")


def _send(namespace: str, case: Case) -> str:
    """`kubectl apply` a Workflow, `kubectl create` a run: the API server's refusal, or ""."""
    verb = "apply" if case.document["kind"] == "Workflow" else "create"
    try:
        kubectl(verb, "-n", namespace, "-f", str(case.path))
    except KubectlError as refused:
        return str(refused.stderr)
    return ""


def _workflow_verdict(namespace: str, name: str) -> dict[str, object] | None:
    found = kubectl_json("get", "workflow", name, "-n", namespace).get("status") or {}
    return found if found.get("valid") is not None else None


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_refused_at_admission_or_reported_naming_the_field(
    env: Env, case: Case
) -> None:
    refused = _send(env.namespace, case)
    if refused:
        env.outcomes[case.name] = "admission"
        assert case.outcome in REFUSABLE, f"refused, expected {case.outcome}: {refused}"
        assert case.text in refused
        return
    assert case.outcome != "admission", f"{case.name} was accepted"
    name = case.document["metadata"]["name"]
    if case.outcome == "workflow-invalid":
        verdict = wait_for(
            lambda: _workflow_verdict(env.namespace, name),
            timeout=60,
            what=f"Workflow {name}'s validity",
        )
        env.outcomes[case.name] = "workflow-invalid"
        assert verdict is not None
        assert verdict["valid"] is False, verdict
        assert case.text in str(verdict.get("message")), verdict
        return
    found = wait_phase(env.namespace, name, "Invalid", timeout=60)
    env.outcomes[case.name] = "invalid"
    assert case.text in found.get("message", ""), found.get("message")


@pytest.mark.parametrize(
    ("entry", "text"),
    [
        ({"nodes": {"hold": {"phase": "Bogus"}}}, "status.nodes.hold.phase: Input should be"),
        ({"workflow": {"nodes": "none"}}, "status.workflow.nodes: Input should be a valid list"),
    ],
    ids=["node-phase", "snapshot-nodes"],
)
def test_a_status_the_models_reject_makes_its_run_invalid_naming_the_field(
    env: Env, entry: dict[str, object], text: str
) -> None:
    # The API server stores node entries and the snapshot without checking them against a
    # schema (kdag.api.status_schema), so a status written by hand is checked on reading.
    held = create(env.namespace, run_of("good"))
    wait_node(env.namespace, held, "hold", "Running")
    kubectl("patch", "workflowrun", held, "-n", env.namespace, "--subresource=status",
            "--type=merge", "-p", json.dumps({"status": entry}))  # fmt: skip
    found = wait_phase(env.namespace, held, "Invalid", timeout=60)
    assert text in found.get("message", ""), found


def test_the_operator_keeps_serving_good_runs_through_the_bad_input(env: Env) -> None:
    assert len(env.outcomes) == len(CASES), "run the whole module: the cases go first"
    release_when_started(env.namespace, env.good_run, "hold", attempt=1)
    wait_phase(env.namespace, env.good_run, "Succeeded", timeout=240)
    after = create(env.namespace, run_of("quick"))
    wait_phase(env.namespace, after, "Succeeded", timeout=240)
    assert status(env.namespace, env.good_run)["nodes"]["after"]["phase"] == "Succeeded"
    assert is_running(env.operator), env.operator.tail(40)
    log = env.operator.logs()
    assert "Traceback" not in log, log
    assert log.count("kdag operator starting") == 1, "the operator restarted"
