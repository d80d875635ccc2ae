"""`kubectl kdag` against the real local cluster, run as a user runs it: a subprocess.

Every test calls the installed console script (or `kubectl kdag`, found on PATH) with the
test cluster's KUBECONFIG, and checks what it printed, its exit status and what it did to
the run, read back with kubectl. The unit tests in tests/unit/cli cover rendering and lint
messages in detail; these cover the plugin's commands end to end.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.cluster import (
    REPO_ROOT,
    bin_dir,
    current_kubeconfig,
    job_of,
    kubectl,
    wait_for,
    wait_job_deleted,
)
from tests.support.operator import (
    WAIT_SECONDS,
    apply,
    create,
    get_run,
    jobs,
    node_phases,
    pods,
    release_pod,
    run_of,
    sim,
    status,
    wait_node,
    wait_phase,
    workflow,
)

pytestmark = pytest.mark.operator

PLUGIN = Path(sys.executable).parent / "kubectl-kdag"
ANSI_ESCAPE = "\x1b["


def _env(**extra: str) -> dict[str, str]:
    # A terminal type that supports colour: the plugin must still print none into a pipe.
    env = {**os.environ, "KUBECONFIG": str(current_kubeconfig()), "TERM": "xterm-256color"}
    for name in ("FORCE_COLOR", "NO_COLOR", "COLUMNS"):
        env.pop(name, None)
    return {**env, **extra}


def kdag(
    *args: str,
    namespace: str | None = None,
    env: dict[str, str | None] | None = None,
    input: str | None = None,  # same name as subprocess.run's
) -> subprocess.CompletedProcess[str]:
    """`kubectl-kdag [-n NAMESPACE] ARGS...` with the test cluster's KUBECONFIG (`env`
    changes or, with a None value, removes variables); never raises on a non-zero exit."""
    ns = ("-n", namespace) if namespace else ()
    environment = {**_env(), **(env or {})}
    return subprocess.run(
        [str(PLUGIN), *ns, *args],
        env={k: v for k, v in environment.items() if v is not None},
        input=input,
        capture_output=True,
        text=True,
        timeout=WAIT_SECONDS,
        check=False,
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    """The command's stdout, after checking that it succeeded."""
    assert result.returncode == 0, f"{result.args} exited {result.returncode}:\n{_both(result)}"
    return result.stdout


def _both(result: subprocess.CompletedProcess[str]) -> str:
    return f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"


def whoami() -> str:
    return kubectl("auth", "whoami", "-o", "jsonpath={.status.userInfo.username}").strip()


def job_names(namespace: str, run: str) -> set[str]:
    return {j["metadata"]["name"] for j in jobs(namespace, run)}


def row(tree: str, key: str) -> tuple[int, str, str, str]:
    """A node's row of `kubectl kdag tree`: indent, phase, attempts, duration ("" if none)."""
    pattern = rf"^( *)(?:finally )?{re.escape(key)} +(\S+)(?: +(\d+) +((?:\d+[dhm])?\d+[hms]))?"
    found = re.search(pattern, tree, re.MULTILINE)
    assert found, f"no row for {key} in:\n{tree}"
    indent, phase, attempts, duration = found.groups()
    return len(indent), phase, attempts or "", duration or ""


# --------------------------------------------------------------------- tree


def test_tree_shows_every_node_with_phase_attempts_and_duration(namespace: str) -> None:
    nodes = [
        {"name": "extract", **sim(duration="1s")},
        {"name": "transform", "dependsOn": ["extract"], "forEach": ["eu", "us"]},
        {
            "name": "flaky",
            "dependsOn": ["extract"],
            "retry": {"limit": 1, "backoffSeconds": 0},
            **sim(exit_code=3),
        },
        {"name": "load", "dependsOn": ["transform", "flaky"]},
    ]
    finally_nodes = [{"name": "notify"}]
    apply(
        namespace,
        workflow("shape", nodes, onFailure="continue", **{"finally": finally_nodes}),
    )
    run = create(namespace, run_of("shape"))
    done = wait_phase(namespace, run, "Failed")

    out = ok(kdag("tree", run, namespace=namespace))
    assert ANSI_ESCAPE not in out  # not a terminal: no colour, even with TERM set
    assert out.splitlines()[0].split() == [run, "Failed", done["progress"]]
    assert node_phases(done) == {
        "extract": "Succeeded",
        "transform[eu]": "Succeeded",
        "transform[us]": "Succeeded",
        "flaky": "Failed",
        "load": "Skipped",
        "notify": "Succeeded",
    }
    shown = {key: row(out, key) for key in done["nodes"]}
    for key, entry in done["nodes"].items():
        _, phase, attempts, duration = shown[key]
        assert phase == entry["phase"], out
        assert attempts == str(entry.get("attempt") or ""), out
        assert bool(duration) == bool(entry.get("startedAt")), out
    assert shown["flaky"][2] == "2"  # failed, retried once, failed again
    assert shown["load"][3] == ""  # skipped: never started
    assert "upstream node flaky failed" in out
    # Dependency order, indented by depth; finally nodes last and marked as such.
    lines = [line.strip() for line in out.splitlines()]

    def position(key: str) -> int:
        return next(i for i, line in enumerate(lines) if line.startswith(f"{key} "))

    assert position("extract") < position("transform[eu]") < position("load")
    assert position("flaky") < position("load") < position("finally notify")
    assert shown["extract"][0] < shown["transform[eu]"][0] < shown["load"][0]

    # --watch on a finished run: the same tree, at once, and the exit status says Failed.
    watched = kdag("tree", run, "--watch", namespace=namespace)
    assert watched.returncode == 1, _both(watched)
    assert watched.stdout.splitlines()[0].split() == [run, "Failed", done["progress"]]


def test_tree_of_a_missing_run_says_so(namespace: str) -> None:
    result = kdag("tree", "no-such-run", namespace=namespace)
    assert result.returncode == 1, _both(result)
    assert result.stderr == (
        'Error from server (NotFound): workflowruns.kdag.dev "no-such-run" not found\n'
    ), _both(result)


def test_kubectl_finds_the_plugin_and_passes_the_namespace(namespace: str) -> None:
    apply(namespace, workflow("hello", [{"name": "hi"}]))
    run = create(namespace, run_of("hello"))
    wait_phase(namespace, run, "Succeeded")
    path = f"{PLUGIN.parent}{os.pathsep}{os.environ.get('PATH', '')}"
    # kubectl users put -n after the command as often as before it.
    for args in (["-n", namespace, "tree", run], ["tree", run, "-n", namespace]):
        result = subprocess.run(
            [str(bin_dir() / "kubectl"), "kdag", *args],
            env=_env(PATH=path),
            capture_output=True,
            text=True,
            timeout=WAIT_SECONDS,
            check=False,
        )
        assert row(ok(result), "hi")[1] == "Succeeded", _both(result)


# --------------------------------------------------------------------- gates


def _gated(namespace: str, name: str) -> str:
    nodes = [
        {"name": "build"},
        {"name": "publish", "dependsOn": ["build"], "approval": {"message": "Ship it?"}},
        {"name": "load", "dependsOn": ["publish"]},
    ]
    apply(namespace, workflow(name, nodes))
    run = create(namespace, run_of(name))
    wait_phase(namespace, run, "WaitingForApproval")
    return run


def test_approve_answers_as_the_caller_and_the_run_goes_on(namespace: str) -> None:
    run = _gated(namespace, "gate")
    me = whoami()
    out = ok(kdag("approve", run, "publish", namespace=namespace))
    assert me in out
    done = wait_phase(namespace, run, "Succeeded")
    assert done["nodes"]["publish"]["approvedBy"] == me
    assert done["nodes"]["publish"]["answeredAt"]
    assert done["nodes"]["load"]["phase"] == "Succeeded"
    assert job_of(namespace, run, "load") in job_names(namespace, run)


def test_reject_fails_the_gate_with_the_reason(namespace: str) -> None:
    run = _gated(namespace, "nogo")
    ok(kdag("reject", run, "publish", "--reason", "not today", namespace=namespace))
    done = wait_phase(namespace, run, "Failed")
    assert node_phases(done) == {"build": "Succeeded", "publish": "Failed", "load": "Skipped"}
    assert done["nodes"]["publish"]["message"] == "rejected: not today"
    assert "rejected: not today" in ok(kdag("tree", run, namespace=namespace))
    assert job_of(namespace, run, "load") not in job_names(namespace, run)


def test_an_answer_to_no_gate_is_refused_and_not_written(namespace: str) -> None:
    run = _gated(namespace, "typo")
    for verb in (["approve", run, "pubish"], ["reject", run, "build", "--reason", "x"]):
        result = kdag(*verb, namespace=namespace)
        assert result.returncode == 1, _both(result)
        assert "no approval gate" in result.stderr and "(gates: publish)" in result.stderr
    annotations = get_run(namespace, run)["metadata"].get("annotations") or {}
    assert not [k for k in annotations if k.startswith(("approve.", "reject."))]
    assert status(namespace, run)["phase"] == "WaitingForApproval"


def test_reject_needs_a_reason() -> None:
    result = kdag("reject", "any-run", "publish")
    assert result.returncode == 2 and "--reason" in result.stderr, _both(result)


# --------------------------------------------------------------------- suspend, cancel, rerun


def test_suspend_starts_nothing_new_until_resume(namespace: str) -> None:
    nodes = [{"name": "a", **sim(hang=True)}, {"name": "b", "dependsOn": ["a"]}]
    apply(namespace, workflow("pause", nodes))
    run = create(namespace, run_of("pause"))
    wait_node(namespace, run, "a", "Running")
    ok(kdag("suspend", run, namespace=namespace))
    paused = wait_phase(namespace, run, "Suspended")
    assert "no new nodes start" in paused["message"]
    assert row(ok(kdag("tree", run, namespace=namespace)), "a")[1] == "Running"
    release_pod(namespace, run, "a", attempt=1)
    wait_node(namespace, run, "a", "Succeeded")
    wait_node(namespace, run, "b", "Queued")  # ready, held back by the suspension
    assert status(namespace, run)["phase"] == "Suspended"
    assert job_names(namespace, run) == {job_of(namespace, run, "a")}
    ok(kdag("resume", run, namespace=namespace))
    wait_phase(namespace, run, "Succeeded")
    assert job_names(namespace, run) == {job_of(namespace, run, "a"), job_of(namespace, run, "b")}


def test_cancel_ends_the_run_and_rerun_runs_it_again(namespace: str) -> None:
    nodes = [{"name": "a", **sim(hang=True)}, {"name": "b", "dependsOn": ["a"]}]
    apply(namespace, workflow("stopme", nodes, **{"finally": [{"name": "notify"}]}))
    run = create(namespace, run_of("stopme"))
    wait_node(namespace, run, "a", "Running")

    # The operator would ignore a rerun of a run that has not finished: the plugin refuses it.
    busy = kdag("rerun", run, namespace=namespace)
    assert busy.returncode == 1, _both(busy)
    assert f"workflowrun {run} is Running: only a finished run can be rerun" in busy.stderr
    assert "kdag.dev/rerun" not in (get_run(namespace, run)["metadata"].get("annotations") or {})

    ok(kdag("cancel", run, namespace=namespace))
    cancelled = wait_phase(namespace, run, "Cancelled")
    assert node_phases(cancelled) == {"a": "Cancelled", "b": "Cancelled", "notify": "Succeeded"}
    wait_job_deleted(namespace, run, "a")

    # `kubectl annotate ... kdag.dev/rerun` alone would be cancelled again at once (spec.cancel
    # is still true); the plugin clears it in the same write.
    assert "spec.cancel cleared" in ok(kdag("rerun", run, namespace=namespace))
    release_pod(namespace, run, "a", attempt=2)
    done = wait_phase(namespace, run, "Succeeded")
    assert done["reruns"] == 1
    assert node_phases(done) == {"a": "Succeeded", "b": "Succeeded", "notify": "Succeeded"}
    assert get_run(namespace, run)["spec"]["cancel"] is False


def test_rerun_reruns_only_the_failed_nodes_in_place(namespace: str) -> None:
    nodes = [
        {"name": "fine"},
        {"name": "shaky", **sim(hang=True)},
        {"name": "after", "dependsOn": ["fine", "shaky"]},
    ]
    apply(namespace, workflow("again", nodes))
    run = create(namespace, run_of("again"))
    release_pod(namespace, run, "shaky", attempt=1, exit_code=1)
    failed = wait_phase(namespace, run, "Failed")
    assert node_phases(failed) == {"fine": "Succeeded", "shaky": "Failed", "after": "Skipped"}
    ok(kdag("rerun", run, namespace=namespace))
    release_pod(namespace, run, "shaky", attempt=2)
    done = wait_phase(namespace, run, "Succeeded")
    assert done["reruns"] == 1
    assert (done["nodes"]["fine"]["attempt"], done["nodes"]["shaky"]["attempt"]) == (1, 2)
    assert job_names(namespace, run) == {
        job_of(namespace, run, node, attempt)
        for node, attempt in (("fine", 1), ("shaky", 1), ("shaky", 2), ("after", 1))
    }  # fmt: skip
    # In place: still the one run.
    runs = kubectl("get", "workflowruns", "-n", namespace, "-o", "name").split()
    assert runs == [f"workflowrun.kdag.dev/{run}"]


# --------------------------------------------------------------------- logs


def test_logs_reads_the_pod_of_the_latest_attempt(namespace: str) -> None:
    # KWOK runs no container, so there is no log to print: the API server answers with KWOK's
    # "no logs found". What is checked is that the plugin asked for the right pod (the one of
    # the node's last attempt's Job) and says which, on one line, with a non-zero exit.
    nodes = [
        {"name": "say"},
        {"name": "flaky", "retry": {"limit": 1, "backoffSeconds": 0}, **sim(exit_code=3)},
        {"name": "gate", "dependsOn": ["say"], "approval": {"message": "ok?"}},
    ]
    apply(namespace, workflow("talk", nodes, onFailure="continue"))
    run = create(namespace, run_of("talk"))
    wait_node(namespace, run, "flaky", "Failed")
    wait_node(namespace, run, "gate", "WaitingForApproval")

    for node, attempt in (("say", 1), ("flaky", 2)):
        result = kdag("logs", run, node, namespace=namespace)
        assert result.returncode == 1, _both(result)
        [line] = result.stderr.splitlines()
        job = job_of(namespace, run, node, attempt)
        pod = pods(namespace, f"job-name={job}")[0]["metadata"]["name"]
        assert line.startswith(f"error: cannot read the log of pod {pod} (Job {job},"), line
        assert f"attempt {attempt})" in line and "no logs found" in line, line

    gate = kdag("logs", run, "gate", namespace=namespace)
    assert gate.returncode == 1 and "is an approval gate" in gate.stderr, _both(gate)
    missing = kdag("logs", run, "nope", namespace=namespace)
    assert missing.returncode == 1, _both(missing)
    assert f"workflowrun {run} has no node 'nope' (nodes: flaky, gate, say)" in missing.stderr


# --------------------------------------------------------------------- submit


def test_submit_with_a_param_watches_the_run_to_its_end(namespace: str) -> None:
    examples = REPO_ROOT / "examples" / "etl-workflow.yaml"
    kubectl("apply", "-n", namespace, "-f", str(examples))
    submit = subprocess.Popen(
        [str(PLUGIN), "-n", namespace, "submit", "etl", "-p", "date=2026-12-01", "--watch"],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        run = wait_for(
            lambda: kubectl("get", "workflowruns", "-n", namespace, "-o", "name").strip(),
            timeout=WAIT_SECONDS,
            what="the submitted run",
        ).split("/", 1)[1]
        waiting = wait_phase(namespace, run, "WaitingForApproval")
        assert waiting["params"] == {"date": "2026-12-01"}
        assert submit.poll() is None, "submit --watch returned before the run ended"
        ok(kdag("approve", run, "publish", namespace=namespace))
        stdout, stderr = submit.communicate(timeout=WAIT_SECONDS)
    finally:
        if submit.poll() is None:
            submit.kill()
            submit.wait()
    assert submit.returncode == 0, f"stdout:\n{stdout}\nstderr:\n{stderr}"
    assert f"workflowrun/{run} created" in stdout
    assert status(namespace, run)["phase"] == "Succeeded"
    # Into a pipe: a line per change, then the finished tree once, without colour.
    assert ANSI_ESCAPE not in stdout
    assert "  publish: Pending -> WaitingForApproval" in stdout, stdout
    assert "run Succeeded" in stdout, stdout
    assert stdout.count("NODE") == 1, stdout
    assert row(stdout, "publish")[1] == row(stdout, "load")[1] == "Succeeded", stdout


def test_submit_exits_non_zero_when_the_run_does_not_succeed(namespace: str) -> None:
    nodes = [{"name": "day", "env": [{"name": "DAY", "value": "{{ params.day }}"}]}]
    apply(namespace, workflow("daily", nodes, params=[{"name": "day"}]))
    apply(namespace, workflow("doomed", [{"name": "a", **sim(exit_code=1)}]))

    out = ok(kdag("submit", "daily", "-p", "day=mon", "--watch", namespace=namespace))
    run = re.search(r"workflowrun/(\S+) created", out)
    assert run, out
    assert status(namespace, run[1])["params"] == {"day": "mon"}
    [job] = jobs(namespace, run[1])
    [container] = job["spec"]["template"]["spec"]["containers"]
    assert {"name": "DAY", "value": "mon"} in container["env"]

    failed = kdag("submit", "doomed", "--watch", namespace=namespace)
    assert failed.returncode == 1, _both(failed)
    assert "run Failed 1/1" in failed.stdout, _both(failed)  # a progress line
    assert row(failed.stdout, "a")[1] == "Failed", _both(failed)  # the finished tree

    invalid = kdag("submit", "daily", "-p", "nope=1", "--watch", namespace=namespace)
    assert invalid.returncode == 1, _both(invalid)
    assert "Invalid" in invalid.stdout and "nope" in invalid.stdout, _both(invalid)

    # Nothing is created for a workflow that does not exist, or for a malformed -p.
    before = kubectl("get", "workflowruns", "-n", namespace, "-o", "name").split()
    missing = kdag("submit", "nosuch", namespace=namespace)
    assert missing.returncode == 1 and "(NotFound)" in missing.stderr, _both(missing)
    malformed = kdag("submit", "daily", "-p", "day", namespace=namespace)
    assert malformed.returncode != 0 and "KEY=VALUE" in malformed.stderr, _both(malformed)
    assert kubectl("get", "workflowruns", "-n", namespace, "-o", "name").split() == before


# --------------------------------------------------------------------- lint


def test_lint_passes_the_examples_and_names_the_bad_field(tmp_path: Path) -> None:
    examples = sorted(str(p) for p in (REPO_ROOT / "examples").glob("*.yaml"))
    out = ok(kdag("lint", *examples))
    assert "document(s) valid" in out
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        """
apiVersion: kdag.dev/v1alpha1
kind: Workflow
metadata: {name: nightly}
spec:
  defaults: {image: busybox}
  nodes:
    - {name: fetch, resources: {requests: {cpu: lots}}}
    - {name: report, dependsOn: [fetch], when: "nodes.fetch.phase =="}
"""
    )
    result = kdag("lint", str(bad))
    assert result.returncode == 1, _both(result)
    lines = result.stdout.splitlines()
    prefix = f"{bad}: Workflow/nightly: spec.nodes"
    assert any(line.startswith(f"{prefix}[fetch].resources.requests.cpu: 'lots'") for line in lines)
    assert any(line.startswith(f"{prefix}[report].when: invalid CEL") for line in lines), lines
