"""`kubectl kdag` — look at and steer kdag runs.

kubectl kdag tree RUN                 the DAG with phase, attempts and duration per node
kubectl kdag approve RUN NODE         answer a gate as yourself
kubectl kdag reject RUN NODE --reason TEXT
kubectl kdag suspend|resume|cancel|rerun RUN
kubectl kdag logs RUN NODE            the log of the node's latest attempt
kubectl kdag submit WORKFLOW -p k=v --watch
kubectl kdag lint FILE...             offline validation with the engine's messages

-n/--namespace, --context and --kubeconfig go before or after the command, as with kubectl.
approve/reject refuse a node that is no gate of the run, or a gate already answered; rerun
refuses an unfinished run and clears spec.cancel of a cancelled one.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from kubernetes.client.exceptions import ApiException
from rich.console import Console
from rich.live import Live

from kdag import __version__
from kdag.api import API_VERSION, RunPhase, WorkflowRun
from kdag.cli.cluster import Cluster
from kdag.cli.lint import lint_files
from kdag.cli.tree import progress_lines, render_run
from kdag.engine import names
from kdag.engine.model import APPROVE_PREFIX, REJECT_PREFIX, RERUN_ANNOTATION
from kdag.engine.run_summary import short_list

console = Console()
errors = Console(stderr=True)


def say(text: str, error: bool = False) -> None:
    """One line as it is: no markup (`transform[eu]` is a node, not a style), no colouring,
    and no wrapping at the terminal's width, so scripts and CI logs get it whole."""
    (errors if error else console).print(text, markup=False, highlight=False, soft_wrap=True)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kubectl kdag", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=f"kubectl-kdag {__version__}")
    _connection_options(parser, default=None)
    # kubectl users put -n anywhere (`kubectl kdag tree RUN -n prod`), so every command takes
    # the connection options too; SUPPRESS keeps a command's absent option from overwriting
    # one given before the command.
    connection = argparse.ArgumentParser(add_help=False)
    _connection_options(connection, default=argparse.SUPPRESS)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add = partial(commands.add_parser, parents=[connection])

    tree = add("tree", help="show a run's nodes with live status")
    tree.add_argument("run")
    tree.add_argument("-w", "--watch", action="store_true", help="refresh until the run ends")

    for verb in ("approve", "reject"):
        gate = add(verb, help=f"{verb} an approval gate as yourself")
        gate.add_argument("run")
        gate.add_argument("node")
        if verb == "reject":
            gate.add_argument("--reason", required=True, help="why (recorded in status)")

    for verb, text in (
        ("suspend", "start no new nodes; running ones finish"),
        ("resume", "undo suspend"),
        ("cancel", "delete running Jobs, cancel the rest, run finally"),
        ("rerun", "rerun the failed, timed-out, cancelled and skipped nodes of a finished run"),
    ):
        add(verb, help=text).add_argument("run")

    logs = add("logs", help="print the log of a node's latest attempt")
    logs.add_argument("run")
    logs.add_argument("node")

    submit = add("submit", help="create a run of a workflow")
    submit.add_argument("workflow")
    submit.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE")
    submit.add_argument("-w", "--watch", action="store_true", help="show progress until it ends")

    lint = add("lint", help="validate Workflow/WorkflowRun files offline")
    lint.add_argument("files", nargs="+", type=Path)
    return parser


def _connection_options(parser: argparse.ArgumentParser, default: object) -> None:
    parser.add_argument(
        "-n", "--namespace", default=default, help="namespace (default: the context's)"
    )
    parser.add_argument("--context", default=default, help="kubeconfig context to use")
    parser.add_argument(
        "--kubeconfig", default=default, help="kubeconfig file (default: $KUBECONFIG)"
    )


def _params(pairs: list[str]) -> dict[str, str]:
    params = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"error: -p {pair!r}: expected KEY=VALUE")
        params[key] = value
    return params


def watch_run(cluster: Cluster, name: str) -> str:
    """Follow the run until it reaches a terminal phase; return it. On a terminal the tree
    is redrawn on every change; elsewhere each change is printed as a line, then the tree."""
    if console.is_terminal:
        with Live(console=console, auto_refresh=False) as live:
            for run, ended in _until_ended(cluster, name):
                live.update(render_run(run, datetime.now(UTC)), refresh=True)
                if ended:
                    return ended
    before: dict[str, Any] | None = None
    for run, ended in _until_ended(cluster, name):
        if before is not None or not ended:  # a run found finished: just its tree
            for line in progress_lines(before, run):
                say(line)
        before = run
        if ended:
            console.print(render_run(run, datetime.now(UTC)))
            return ended
    raise AssertionError("unreachable: Cluster.watch_run only ends by raising")


def _until_ended(cluster: Cluster, name: str) -> Iterator[tuple[dict[str, Any], str | None]]:
    """The run on every change, with its phase once that is terminal (the last one)."""
    for run in cluster.watch_run(name):
        phase = (run.get("status") or {}).get("phase")
        ended = str(phase) if phase and RunPhase(phase).terminal else None
        yield run, ended
        if ended:
            return


def _annotate(cluster: Cluster, run: str, key: str, value: str | None) -> None:
    cluster.patch_run(run, {"metadata": {"annotations": {key: value}}})


def run_command(args: argparse.Namespace) -> int:
    if args.command == "lint":
        return lint_files(args.files, console)
    cluster = Cluster.connect(args.kubeconfig, args.context, args.namespace)
    command = args.command
    if command == "tree":
        if args.watch:
            return 0 if watch_run(cluster, args.run) == RunPhase.SUCCEEDED else 1
        console.print(render_run(cluster.get_run(args.run), datetime.now(UTC)))
        return 0
    if command in ("approve", "reject"):
        problem = gate_problem(cluster.get_run(args.run), args.node)
        if problem:
            say(f"error: workflowrun {args.run}: {problem}", error=True)
            return 1
        if command == "approve":
            user = cluster.username()
            _annotate(cluster, args.run, APPROVE_PREFIX + args.node, user)
            say(f"workflowrun/{args.run}: gate {args.node} approved by {user}")
        else:
            _annotate(cluster, args.run, REJECT_PREFIX + args.node, args.reason)
            say(f"workflowrun/{args.run}: gate {args.node} rejected: {args.reason}")
        return 0
    if command in ("suspend", "resume", "cancel"):
        field = "cancel" if command == "cancel" else "suspend"
        cluster.patch_run(args.run, {"spec": {field: command != "resume"}})
        say(f"workflowrun/{args.run}: {command} requested")
        return 0
    if command == "rerun":
        return _rerun(cluster, args.run)
    if command == "logs":
        return _logs(cluster, args.run, args.node)
    if command == "submit":
        return _submit(cluster, args.workflow, _params(args.param), args.watch)
    raise AssertionError(command)


def _gates(run: WorkflowRun) -> list[str] | None:
    """The approval gates of the run's snapshot; None before the run has started."""
    if run.status is None or run.status.workflow is None:
        return None
    return [n.name for n in run.status.workflow.nodes if n.approval is not None]


def gate_problem(raw: dict[str, Any], node: str) -> str | None:
    """Why answering `node` of this run would do nothing, or None if the answer would count.

    The operator ignores an answer to a node that is not a gate, and to a gate that has
    already finished, so `kubectl annotate` "succeeds" and nothing happens: say so instead.
    A run that has not started yet (no snapshot) may be answered ahead of time.
    """
    run = WorkflowRun.model_validate(raw)
    gates = _gates(run)
    if gates is None:
        return None
    if node not in gates:
        return f"no approval gate {node!r} (gates: {short_list(gates) or 'none'})"
    entry = ((run.status.nodes if run.status else None) or {}).get(node)
    if entry is not None and entry.phase.terminal:
        answer = f" ({entry.message})" if entry.message else ""
        return f"gate {node} is already {entry.phase}{answer}; rerun the run to ask again"
    return None


def _rerun(cluster: Cluster, name: str) -> int:
    """Annotate a finished run for a rerun; clear `spec.cancel`, which would cancel it again."""
    run = cluster.get_run(name)
    status = run.get("status") or {}
    phase = status.get("phase")
    if phase is None or not RunPhase(phase).terminal:
        say(
            f"error: workflowrun {name} is {phase or 'not started'}: only a finished run can be"
            " rerun (cancel it first to stop it)",
            error=True,
        )
        return 1
    if phase == RunPhase.INVALID:
        say(f"error: workflowrun {name} is Invalid ({status.get('message')}): fix it", error=True)
        return 1
    token = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    patch: dict[str, Any] = {"metadata": {"annotations": {RERUN_ANNOTATION: token}}}
    if (run.get("spec") or {}).get("cancel"):
        patch["spec"] = {"cancel": False}
    cluster.patch_run(name, patch)
    cleared = ", spec.cancel cleared" if "spec" in patch else ""
    say(f"workflowrun/{name}: rerun requested ({RERUN_ANNOTATION}={token}{cleared})")
    return 0


def _logs(cluster: Cluster, run_name: str, node: str) -> int:
    run = WorkflowRun.model_validate(cluster.get_run(run_name))
    nodes = (run.status.nodes if run.status else None) or {}
    status = nodes.get(node)
    where = f"node {node} of workflowrun {run_name}"
    if status is None:
        known = short_list(sorted(nodes)) or "none yet"
        say(f"error: workflowrun {run_name} has no node {node!r} (nodes: {known})", error=True)
        return 1
    if not status.attempt:
        gate = node in (_gates(run) or [])
        why = "is an approval gate: it runs no container" if gate else "has not started"
        say(f"error: {where} {why} ({status.phase})", error=True)
        return 1
    job = names.current_job(run_name, run.metadata.uid or "", node, status.job, status.attempt)
    assert job is not None  # it has an attempt
    pod = cluster.pod_of_job(job)
    if pod is None:
        say(f"error: Job {job} of {where} has no pod (yet, or any more)", error=True)
        return 1
    try:
        text = cluster.pod_logs(pod)
    except ApiException as exc:
        say(
            f"error: cannot read the log of pod {pod} (Job {job}, attempt {status.attempt}):"
            f" {exc.status} {exc.reason}: {_api_message(exc)}",
            error=True,
        )
        return 1
    # Verbatim: not through rich, which would wrap long lines and replace :emoji: codes.
    sys.stdout.write(text)
    sys.stdout.flush()
    return 0


def _submit(cluster: Cluster, workflow: str, params: dict[str, str], watch: bool) -> int:
    cluster.get_workflow(workflow)  # a clear 404 before creating anything
    body = {
        "apiVersion": API_VERSION,
        "kind": "WorkflowRun",
        "metadata": {"generateName": f"{workflow}-"},
        "spec": {"workflowRef": {"name": workflow}, **({"params": params} if params else {})},
    }
    created = cluster.create_run(body)
    name = created["metadata"]["name"]
    say(f"workflowrun/{name} created")
    if not watch:
        return 0
    phase = watch_run(cluster, name)
    return 0 if phase == RunPhase.SUCCEEDED else 1


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return run_command(args)
    except ApiException as exc:
        say(f"error: {exc.status} {exc.reason}: {_api_message(exc)}", error=True)
        return 1
    except KeyboardInterrupt:
        return 130


def _api_message(exc: ApiException) -> str:
    try:
        return str(json.loads(exc.body or "{}").get("message", exc.body))
    except ValueError:
        return str(exc.body)


if __name__ == "__main__":
    sys.exit(main())
