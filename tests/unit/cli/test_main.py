"""`kubectl kdag` commands without a cluster: option parsing and the checks made before
writing to a run (tests/integration/test_plugin_cli.py runs them against a cluster)."""

from __future__ import annotations

from typing import Any

import pytest

from kdag.cli import main, parser
from kdag.engine.model import RERUN_ANNOTATION
from tests.unit.engine.sim import World, workflow


@pytest.mark.parametrize(
    "argv",
    [
        ["-n", "prod", "--context", "c", "--kubeconfig", "k", "tree", "r"],
        ["tree", "r", "-n", "prod", "--context", "c", "--kubeconfig", "k"],
        ["--kubeconfig", "k", "tree", "-n", "prod", "r", "--context", "c"],
    ],
)
def test_connection_options_go_before_or_after_the_command(argv: list[str]) -> None:
    args = parser.build().parse_args(argv)
    assert (args.namespace, args.context, args.kubeconfig, args.run) == ("prod", "c", "k", "r")


def test_connection_options_default_to_the_kubeconfig_s() -> None:
    args = parser.build().parse_args(["lint", "a.yaml"])
    assert (args.namespace, args.context, args.kubeconfig) == (None, None, None)


def _raw(world: World, cancel: bool = False) -> dict[str, Any]:
    assert world.status is not None
    return {
        "apiVersion": "kdag.dev/v1alpha1",
        "kind": "WorkflowRun",
        "metadata": {"name": "run1", "uid": world.context().uid},
        "spec": {"workflowRef": {"name": "etl"}, "cancel": cancel},
        "status": world.status.to_wire(),
    }


def _gated() -> World:
    world = World(
        workflow(
            nodes=[
                {"name": "build"},
                {"name": "publish", "dependsOn": ["build"], "approval": {"message": "ok?"}},
            ]
        )
    )
    world.run()  # stops at the gate
    assert world.node("publish").phase == "WaitingForApproval"
    return world


def test_a_waiting_gate_may_be_answered() -> None:
    assert main.gate_problem(_raw(_gated()), "publish") is None


def test_an_answer_to_a_node_that_is_no_gate_is_refused_with_the_gates() -> None:
    raw = _raw(_gated())
    assert main.gate_problem(raw, "pubish") == "no approval gate 'pubish' (gates: publish)"
    assert main.gate_problem(raw, "build") == "no approval gate 'build' (gates: publish)"


def test_an_answered_gate_is_not_answered_again() -> None:
    world = _gated()
    world.annotations["reject.kdag.dev/publish"] = "no"
    world.run()
    problem = main.gate_problem(_raw(world), "publish")
    assert problem == "gate publish is already Failed (rejected: no); rerun the run to ask again"


def test_a_run_that_has_not_started_may_be_answered_ahead() -> None:
    raw = {"apiVersion": "kdag.dev/v1alpha1", "kind": "WorkflowRun", "metadata": {"name": "r"}}
    raw["spec"] = {"workflowRef": {"name": "etl"}}
    assert main.gate_problem(raw, "anything") is None


class FakeCluster:
    def __init__(self, run: dict[str, Any]) -> None:
        self.run = run
        self.patches: list[dict[str, Any]] = []

    def get_run(self, name: str) -> dict[str, Any]:
        return self.run

    def patch_run(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        self.patches.append(body)
        return self.run

    def pod_of_job(self, job: str) -> str | None:
        return f"{job}-abcde"

    def pod_logs(self, pod: str) -> str:
        return f"{pod}: {'x' * 150} :thumbs_up: [bold]not markup[/bold]\n"


def test_rerun_of_an_active_run_is_refused() -> None:
    cluster = FakeCluster(_raw(_gated()))
    assert main._rerun(cluster, "run1") == 1  # type: ignore[arg-type]
    assert cluster.patches == []


def test_rerun_of_a_cancelled_run_clears_cancel_in_the_same_patch() -> None:
    world = _gated()
    world.cancel = True
    world.run()
    assert world.phase == "Cancelled"
    cluster = FakeCluster(_raw(world, cancel=True))
    assert main._rerun(cluster, "run1") == 0  # type: ignore[arg-type]
    [patch] = cluster.patches
    assert patch["spec"] == {"cancel": False}
    assert RERUN_ANNOTATION in patch["metadata"]["annotations"]


def test_rerun_of_a_failed_run_only_annotates() -> None:
    world = _gated()
    world.annotations["reject.kdag.dev/publish"] = "no"
    world.run()
    cluster = FakeCluster(_raw(world))
    assert main._rerun(cluster, "run1") == 0  # type: ignore[arg-type]
    assert list(cluster.patches[0]) == ["metadata"]


def test_logs_are_printed_verbatim(capsys: pytest.CaptureFixture[str]) -> None:
    world = _gated()
    cluster = FakeCluster(_raw(world))
    assert main._logs(cluster, "run1", "build") == 0  # type: ignore[arg-type]
    assert capsys.readouterr().out == cluster.pod_logs(f"{world.job_name('build')}-abcde")


def test_logs_of_a_fan_out_instance_come_from_its_job(capsys: pytest.CaptureFixture[str]) -> None:
    world = World(workflow(nodes=[{"name": "t", "forEach": ["eu", "us"]}]))
    world.step()  # running; instances keep their Job names out of status
    cluster = FakeCluster(_raw(world))
    assert main._logs(cluster, "run1", "t[us]") == 0  # type: ignore[arg-type]
    assert capsys.readouterr().out == cluster.pod_logs(f"{world.job_name('t[us]')}-abcde")


def test_logs_of_a_gate_or_an_unknown_node_say_why_not(capsys: pytest.CaptureFixture[str]) -> None:
    cluster = FakeCluster(_raw(_gated()))
    assert main._logs(cluster, "run1", "publish") == 1  # type: ignore[arg-type]
    assert main._logs(cluster, "run1", "transform[eu]") == 1  # type: ignore[arg-type]
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "error: node publish of workflowrun run1 is an approval gate: it runs no container"
        " (WaitingForApproval)",
        "error: workflowrun run1 has no node 'transform[eu]' (nodes: build, publish)",
    ]


def test_names_may_follow_flags_as_with_kubectl() -> None:
    args = parser.parse(["get", "runs", "-n", "prod", "a", "b", "-o", "wide"])
    assert (args.type, args.names, args.namespace, args.output) == (
        "runs",
        ["a", "b"],
        "prod",
        "wide",
    )


def test_as_and_as_group_and_request_timeout_are_kubectl_s() -> None:
    args = parser.parse(
        ["--as", "bob", "tree", "r", "--as-group", "a", "--as-group", "b", "--request-timeout=2m"]
    )
    conn = parser.connection(args)
    assert (conn.user, conn.groups, conn.request_timeout) == ("bob", ("a", "b"), 120.0)
    # Groups given before and after the verb add up.
    args = parser.parse(["--as-group", "a", "tree", "r", "--as-group", "b", "--as", "bob"])
    assert parser.connection(args).groups == ("a", "b")
    assert parser.connection(parser.parse(["tree", "r"])).groups == ()


@pytest.mark.parametrize(
    ("argv", "complaint"),
    [
        (["--request-timeout", "soon", "tree", "r"], "invalid timeout value 'soon'"),
        (["get", "runs", "-o", "table"], "invalid choice: 'table'"),
        (["tree", "r", "extra"], "unrecognized arguments: extra"),
        (["get", "runs", "--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_a_malformed_command_line_exits_2_with_usage(
    argv: list[str], complaint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        parser.parse(argv)
    assert exited.value.code == 2
    assert complaint in capsys.readouterr().err


def test_an_ordinary_mistake_is_one_line_and_exit_1(
    capsys: pytest.CaptureFixture[str], no_kubeconfig: str
) -> None:
    assert main.main(["get", "runs"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        f"error: no kubeconfig found (looked for {no_kubeconfig}): set KUBECONFIG or pass"
        " --kubeconfig\n"
    )


def test_a_bug_still_shows_its_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(args: object) -> int:
        raise KeyError("status")

    monkeypatch.setattr(main, "run_command", broken)
    with pytest.raises(KeyError):
        main.main(["get", "runs"])


def test_logs_follow_streams_the_pod_log_as_it_comes(capsys: pytest.CaptureFixture[str]) -> None:
    world = _gated()
    cluster = FakeCluster(_raw(world))
    chunks = [b"line 1\n", b"line 2 \xe2\x9c\x93\n"]
    cluster.follow_pod_logs = lambda pod: iter(chunks)  # type: ignore[attr-defined]
    assert main._logs(cluster, "run1", "build", follow=True) == 0  # type: ignore[arg-type]
    assert capsys.readouterr().out == "line 1\nline 2 \u2713\n"


def test_a_closed_pipe_ends_quietly_as_kubectl_does(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def reader_went_away(args: object) -> int:
        raise BrokenPipeError

    monkeypatch.setattr(main, "run_command", reader_went_away)
    dup2: list[int] = []
    monkeypatch.setattr(main.os, "dup2", lambda fd, to: dup2.append(to))
    assert main.main(["get", "runs"]) == 141
    assert dup2 == [1] and capsys.readouterr().err == ""
