"""`kubectl kdag` behaves like kubectl, against the real local cluster: get/list/delete/
version, `-o` formats, kubectl's connection flags, completion through kubectl, and one line
and exit 1 for each ordinary mistake (docs/plugin.md). Run as a user runs it: a subprocess.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from kdag import __version__
from tests.integration.test_plugin_cli import PLUGIN, _both, _env, kdag, ok
from tests.support.cluster import (
    bin_dir,
    current_kubeconfig,
    job_of,
    kubectl,
    kubectl_json,
    wait_for,
)
from tests.support.operator import (
    WAIT_SECONDS,
    apply,
    create,
    get_run,
    pods,
    run_of,
    sim,
    wait_node,
    wait_phase,
    workflow,
)

pytestmark = pytest.mark.operator


def _names(out: str) -> list[str]:
    return out.split()


def _cell(table: list[str], name: str, column: str) -> str:
    """A cell of a kubectl-style table, found by its column's position in the header (an
    empty cell leaves no word behind for split() to count)."""
    header = table[0]
    start = header.index(column)
    rest = header[start + len(column) :]
    end = start + len(column) + len(rest) - len(rest.lstrip()) if rest.strip() else None
    row = next(line for line in table[1:] if line.split()[0] == name)
    return row[start:end].strip()


def _one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single stderr line of a command that failed as kubectl fails: exit 1, no
    traceback, nothing on stdout."""
    assert result.returncode == 1, _both(result)
    assert "Traceback" not in result.stderr, _both(result)
    [line] = result.stderr.splitlines()
    assert result.stdout == "", _both(result)
    return line


def _two_runs(namespace: str) -> tuple[str, str]:
    apply(namespace, workflow("hello", [{"name": "hi"}]))
    apply(namespace, workflow("stuck", [{"name": "a", **sim(hang=True)}]))
    done = create(namespace, run_of("hello"))
    busy = create(namespace, run_of("stuck"))
    wait_phase(namespace, done, "Succeeded")
    wait_node(namespace, busy, "a", "Running")
    return done, busy


# --------------------------------------------------------------------- get, list


def test_get_runs_in_every_output_format(namespace: str) -> None:
    done, busy = _two_runs(namespace)

    table = ok(kdag("get", "runs", namespace=namespace)).splitlines()
    assert table[0].split() == ["NAME", "WORKFLOW", "PHASE", "PROGRESS", "AGE", "DURATION"]
    rows = {line.split()[0]: line.split() for line in table[1:]}
    assert rows[done][1:4] == ["hello", "Succeeded", "1/1"]
    assert rows[busy][1:4] == ["stuck", "Running", "0/1"]

    wide = ok(kdag("get", "runs", "-o", "wide", namespace=namespace)).splitlines()
    assert wide[0].split()[-3:] == ["ACTIVE", "FAILED", "MESSAGE"]
    assert _cell(wide, busy, "ACTIVE") == "a"
    assert _cell(wide, done, "ACTIVE") == ""
    assert _cell(wide, done, "DURATION") != ""

    names = ok(kdag("get", "runs", "-o", "name", namespace=namespace))
    expected = kubectl("get", "workflowruns", "-n", namespace, "-o", "name")
    assert sorted(_names(names)) == sorted(_names(expected))
    assert f"workflowrun.kdag.dev/{done}" in _names(names)

    listed = json.loads(ok(kdag("get", "runs", "-o", "json", namespace=namespace)))
    assert listed["kind"] == "List"
    assert {i["metadata"]["name"] for i in listed["items"]} == {done, busy}
    one = yaml.safe_load(ok(kdag("get", "runs", done, "-o", "yaml", namespace=namespace)))
    assert one == get_run(namespace, done)

    # `list` is `get runs`; -o name output feeds back in as TYPE/NAME.
    assert ok(kdag("list", "-o", "name", namespace=namespace)) == names
    again = ok(kdag("get", *_names(names), "-o", "name", namespace=namespace))
    assert sorted(_names(again)) == sorted(_names(names))


def test_get_workflows_and_across_namespaces(namespace: str) -> None:
    apply(namespace, workflow("nightly", [{"name": "a"}, {"name": "b", "dependsOn": ["a"]}]))
    out = ok(kdag("get", "workflows", "nightly", namespace=namespace)).splitlines()
    assert out[0].split()[:3] == ["NAME", "NODES", "SCHEDULE"]
    assert out[1].split()[:2] == ["nightly", "2"]
    assert ok(kdag("get", "kwf", "-o", "name", namespace=namespace)) == (
        "workflow.kdag.dev/nightly\n"
    )
    everywhere = ok(kdag("get", "workflows", "-A")).splitlines()
    assert everywhere[0].split()[:2] == ["NAMESPACE", "NAME"]
    assert [namespace, "nightly"] in [line.split()[:2] for line in everywhere]


def test_get_of_a_missing_name_prints_the_others_and_exits_1(namespace: str) -> None:
    done, _ = _two_runs(namespace)
    result = kdag("get", "runs", done, "nope", "-o", "name", namespace=namespace)
    assert result.returncode == 1, _both(result)
    assert result.stdout == f"workflowrun.kdag.dev/{done}\n"
    assert result.stderr == (
        'Error from server (NotFound): workflowruns.kdag.dev "nope" not found\n'
    )
    empty = kdag("get", "workflows", namespace=f"{namespace}-none")
    assert empty.returncode == 0, _both(empty)
    assert empty.stderr == f"No resources found in {namespace}-none namespace.\n"


# --------------------------------------------------------------------- delete


def test_delete_removes_runs_and_reports_the_missing(namespace: str) -> None:
    done, busy = _two_runs(namespace)
    out = ok(kdag("delete", "runs", done, namespace=namespace))
    assert out == f'workflowrun.kdag.dev "{done}" deleted\n'
    missing = kdag("delete", "runs", done, namespace=namespace)
    assert _one_error_line(missing) == (
        f'Error from server (NotFound): workflowruns.kdag.dev "{done}" not found'
    )
    quiet = kdag("delete", "run", done, "--ignore-not-found", namespace=namespace)
    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, "", "")
    assert ok(kdag("delete", "runs", "--all", "-o", "name", namespace=namespace)) == (
        f"workflowrun.kdag.dev/{busy}\n"
    )
    assert kubectl("get", "workflowruns", "-n", namespace, "-o", "name", "--ignore-not-found") in (
        "",
        f"workflowrun.kdag.dev/{busy}\n",  # still finalizing
    )


# --------------------------------------------------------------------- version


def test_version_prints_the_plugin_s_the_server_s_and_the_operator_s(namespace: str) -> None:
    # An operator Deployment as the chart labels it (no pods: replicas 0).
    labels = {"app.kubernetes.io/name": "kdag", "app.kubernetes.io/version": "9.9.9-test"}
    pod = {"containers": [{"name": "operator", "image": "kdag-operator:test"}]}
    template = {"metadata": {"labels": {"app": "fake-kdag"}}, "spec": pod}
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "fake-kdag", "labels": labels},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": "fake-kdag"}},
            "template": template,
        },
    }
    apply(namespace, deployment)
    server = kubectl_json("version")["serverVersion"]["gitVersion"]
    lines = ok(kdag("version")).splitlines()
    assert lines[:2] == [f"Client Version: {__version__}", f"Server Version: {server}"]
    assert f"Operator Version: 9.9.9-test (deployment {namespace}/fake-kdag)" in lines[2:]
    report = json.loads(ok(kdag("version", "-o", "json")))
    assert (report["clientVersion"], report["serverVersion"]) == (__version__, server)
    assert {"deployment": f"{namespace}/fake-kdag", "version": "9.9.9-test"} in report["operators"]
    assert ok(kdag("version", "--client")) == f"Client Version: {__version__}\n"
    # Who may not list Deployments still learns the rest.
    denied = ok(kdag("version", "--as", "nobody")).splitlines()
    assert denied[1] == f"Server Version: {server}"
    assert denied[2].startswith("Operator Version: unknown (cannot list Deployments: ")


# --------------------------------------------------------------------- kubectl's flags


def _kubeconfig(tmp_path: Path, server: str | None = None, context: str | None = None) -> Path:
    """The test cluster's kubeconfig, flattened, with another server or context name."""
    view = yaml.safe_load(kubectl("config", "view", "--raw", "--flatten", "--minify"))
    if server is not None:
        view["clusters"][0]["cluster"]["server"] = server
    if context is not None:
        view["contexts"][0]["name"] = context
        view["current-context"] = context
    path = tmp_path / f"kubeconfig-{context or 'copy'}"
    path.write_text(yaml.safe_dump(view))
    return path


def test_kubeconfig_list_and_context_flags_are_kubectl_s(namespace: str, tmp_path: Path) -> None:
    done, _ = _two_runs(namespace)
    other = _kubeconfig(tmp_path, context="second")
    listed = f"{tmp_path / 'missing'}{os.pathsep}{current_kubeconfig()}{os.pathsep}{other}"
    name = f"workflowrun.kdag.dev/{done}"
    for args in (
        ["--context", "second"],
        ["--kubeconfig", str(other), "--context", "second"],
        [],
    ):
        result = kdag("get", "runs", done, "-o", "name", *args, namespace=namespace,
                      env={"KUBECONFIG": listed})  # fmt: skip
        assert ok(result) == f"{name}\n"
    unknown = kdag("get", "runs", "--context", "nope", env={"KUBECONFIG": listed})
    assert _one_error_line(unknown) == 'error: context "nope" does not exist'


def test_as_and_as_group_impersonate(namespace: str) -> None:
    nodes = [
        {"name": "publish", "approval": {"message": "ok?"}},
        {"name": "b", "dependsOn": ["publish"]},
    ]
    apply(namespace, workflow("gate", nodes))
    run = create(namespace, run_of("gate"))
    wait_phase(namespace, run, "WaitingForApproval")
    out = ok(kdag("approve", run, "publish", "--as", "alice", "--as-group", "system:masters",
                  namespace=namespace))  # fmt: skip
    assert "approved by alice" in out
    assert wait_phase(namespace, run, "Succeeded")["nodes"]["publish"]["approvedBy"] == "alice"

    forbidden = kdag("get", "runs", run, "--as", "nobody", namespace=namespace)
    assert _one_error_line(forbidden) == (
        f'Error from server (Forbidden): workflowruns.kdag.dev "{run}" is forbidden: User'
        f' "nobody" cannot get resource "workflowruns" in API group "kdag.dev" in the'
        f' namespace "{namespace}"'
    )
    groupless = kdag("get", "runs", "--as-group", "g", namespace=namespace)
    assert _one_error_line(groupless).endswith("add --as")


# --------------------------------------------------------------------- ordinary mistakes


def test_no_kubeconfig_is_one_line(tmp_path: Path) -> None:
    env = {"KUBECONFIG": None, "HOME": str(tmp_path), "KUBERNETES_SERVICE_HOST": None}
    line = _one_error_line(kdag("get", "runs", env=env))
    assert line == (
        "error: no kubeconfig found (looked for ~/.kube/config): set KUBECONFIG or pass"
        " --kubeconfig"
    )
    missing = kdag("tree", "r", "--kubeconfig", str(tmp_path / "nope"))
    assert _one_error_line(missing) == f"error: stat {tmp_path / 'nope'}: no such file or directory"


def test_credentials_the_server_refuses_are_one_line(tmp_path: Path) -> None:
    view = yaml.safe_load(_kubeconfig(tmp_path).read_text())
    view["users"][0]["user"] = {"token": "not-a-valid-token"}
    config = tmp_path / "bad-token"
    config.write_text(yaml.safe_dump(view))
    result = kdag("get", "runs", "--kubeconfig", str(config))
    assert _one_error_line(result) == "error: You must be logged in to the server (Unauthorized)"


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A loopback port whose connections are accepted (by the kernel's backlog) and never
    answered."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield int(sock.getsockname()[1])


def test_an_unreachable_server_is_one_line(tmp_path: Path, closed_port: int) -> None:
    config = _kubeconfig(tmp_path, server=f"https://127.0.0.1:{closed_port}")
    for verb in (["get", "runs"], ["tree", "r"], ["version"]):
        result = kdag(*verb, "--kubeconfig", str(config))
        line = result.stderr.strip()
        assert result.returncode == 1 and "Traceback" not in result.stderr, _both(result)
        assert line == (
            f"The connection to the server 127.0.0.1:{closed_port} was refused - did you"
            " specify the right host or port?"
        )


def test_a_silent_server_times_out_after_request_timeout(
    tmp_path: Path, silent_server: int
) -> None:
    config = _kubeconfig(tmp_path, server=f"http://127.0.0.1:{silent_server}")
    result = kdag("get", "runs", "--request-timeout", "1s", "--kubeconfig", str(config))
    assert _one_error_line(result) == (
        f"Unable to connect to the server: 127.0.0.1:{silent_server} did not answer within"
        " the request timeout (--request-timeout)"
    )


def test_a_missing_run_and_a_bad_flag(namespace: str) -> None:
    for verb in (["tree", "nope"], ["tree", "nope", "--watch"], ["logs", "nope", "a", "-f"]):
        line = _one_error_line(kdag(*verb, namespace=namespace))
        assert line == 'Error from server (NotFound): workflowruns.kdag.dev "nope" not found'
    bad = kdag("get", "runs", "--request-timeout", "soon")
    assert bad.returncode == 2 and "invalid timeout value 'soon'" in bad.stderr, _both(bad)


# --------------------------------------------------------------------- logs -f, lint -


def test_logs_follow_reads_the_pod_of_the_latest_attempt(namespace: str) -> None:
    # KWOK runs no container: the API server answers the follow with KWOK's "no logs
    # found". What is checked: the plugin followed the right pod and said so on one line.
    apply(namespace, workflow("talk", [{"name": "say", **sim(hang=True)}]))
    run = create(namespace, run_of("talk"))
    wait_node(namespace, run, "say", "Running")
    job = job_of(namespace, run, "say")
    # The node is Running once its Job is created; its pod follows.
    found = wait_for(
        lambda: pods(namespace, f"job-name={job}"), timeout=WAIT_SECONDS, what="the pod"
    )
    pod = found[0]["metadata"]["name"]
    result = kdag("logs", "-f", run, "say", namespace=namespace)
    line = _one_error_line(result)
    assert line.startswith(f"error: cannot read the log of pod {pod} (Job {job},"), line
    assert "attempt 1)" in line and "no logs found" in line, line


def test_lint_dash_reads_stdin() -> None:
    manifest = yaml.safe_dump(workflow("w", [{"name": "a", "dependsOn": ["a"]}]))
    result = kdag("lint", "-", input=manifest)
    assert result.returncode == 1, _both(result)
    assert result.stdout == (
        "STDIN: Workflow/w: spec.nodes[a].dependsOn[0]: a node cannot depend on itself\n"
    ), _both(result)
    good = yaml.safe_dump(workflow("w", [{"name": "a"}]))
    assert ok(kdag("lint", "-", input=good)) == "1 document(s) valid\n"


# --------------------------------------------------------------------- completion


def _completion_path(tmp_path: Path) -> str:
    """PATH with the plugin and its completion executable: the console script where the
    package is installed with it, else a stand-in that runs the same module."""
    script = PLUGIN.parent / "kubectl_complete-kdag"
    if not script.exists():
        script = tmp_path / "kubectl_complete-kdag"
        script.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m kdag.cli.completion "$@"\n')
        script.chmod(0o755)
    return os.pathsep.join([str(script.parent), str(PLUGIN.parent), os.environ["PATH"]])


def test_kubectl_completes_verbs_runs_and_gates_through_the_plugin(
    namespace: str, tmp_path: Path
) -> None:
    nodes = [
        {"name": "build"},
        {"name": "publish", "dependsOn": ["build"], "approval": {"message": "ok?"}},
    ]
    apply(namespace, workflow("ship", nodes))
    run = create(namespace, run_of("ship"))
    wait_phase(namespace, run, "WaitingForApproval")
    env = {**_env(PATH=_completion_path(tmp_path))}

    def complete(*words: str) -> list[str]:
        result = subprocess.run(
            [str(bin_dir() / "kubectl"), "__complete", "kdag", *words],
            env=env, capture_output=True, text=True, timeout=WAIT_SECONDS, check=False,
        )  # fmt: skip
        assert result.returncode == 0, _both(result)
        return result.stdout.splitlines()

    verbs = complete("")
    assert "tree\tshow a run's nodes with live status" in verbs
    assert verbs[-1] == ":4"
    assert complete("tree", "-n", namespace, "") == [run, ":4"]
    assert complete("-n", namespace, "approve", run, "") == ["publish", ":4"]
    assert complete("logs", "-n", namespace, run, "") == ["build", "publish", ":4"]
    assert complete("get", "-n", namespace, "runs", run[:3]) == [run, ":4"]
