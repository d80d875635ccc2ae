"""`kubectl kdag` — look at and steer kdag runs.

kubectl kdag tree RUN                 the DAG with phase, attempts and duration per node
kubectl kdag approve RUN NODE         answer a gate as yourself
kubectl kdag reject RUN NODE --reason TEXT
kubectl kdag suspend|resume|cancel|rerun RUN
kubectl kdag logs RUN NODE            the log of the node's latest attempt
kubectl kdag submit WORKFLOW -p k=v --watch
kubectl kdag lint FILE...             offline validation with the engine's messages
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from kubernetes.client.exceptions import ApiException
from rich.console import Console
from rich.live import Live

from kdag.api import API_VERSION, RunPhase
from kdag.cli.cluster import Cluster
from kdag.cli.lint import lint_files
from kdag.cli.tree import render_run
from kdag.engine import names
from kdag.engine.model import APPROVE_PREFIX, REJECT_PREFIX, RERUN_ANNOTATION

console = Console()
errors = Console(stderr=True)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kubectl kdag", description=__doc__.split("\n")[0])
    parser.add_argument("-n", "--namespace", help="namespace (default: the context's)")
    parser.add_argument("--context", help="kubeconfig context to use")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    tree = sub.add_parser("tree", help="show a run's nodes with live status")
    tree.add_argument("run")
    tree.add_argument("-w", "--watch", action="store_true", help="refresh until the run ends")

    for verb in ("approve", "reject"):
        gate = sub.add_parser(verb, help=f"{verb} an approval gate as yourself")
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
        sub.add_parser(verb, help=text).add_argument("run")

    logs = sub.add_parser("logs", help="print the log of a node's latest attempt")
    logs.add_argument("run")
    logs.add_argument("node")

    submit = sub.add_parser("submit", help="create a run of a workflow")
    submit.add_argument("workflow")
    submit.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE")
    submit.add_argument("-w", "--watch", action="store_true", help="show progress until it ends")

    lint = sub.add_parser("lint", help="validate Workflow/WorkflowRun files offline")
    lint.add_argument("files", nargs="+", type=Path)
    return parser


def _params(pairs: list[str]) -> dict[str, str]:
    params = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"error: -p {pair!r}: expected KEY=VALUE")
        params[key] = value
    return params


def watch_run(cluster: Cluster, name: str) -> str:
    """Redraw the run's tree on every change until it reaches a terminal phase; return it."""
    with Live(console=console, auto_refresh=False) as live:
        for run in cluster.watch_run(name):
            live.update(render_run(run, datetime.now(UTC)), refresh=True)
            phase = (run.get("status") or {}).get("phase")
            if phase and RunPhase(phase).terminal:
                return str(phase)
    raise AssertionError("unreachable: Cluster.watch_run only ends by raising")


def _annotate(cluster: Cluster, run: str, key: str, value: str | None) -> None:
    cluster.patch_run(run, {"metadata": {"annotations": {key: value}}})


def run_command(args: argparse.Namespace) -> int:
    if args.command == "lint":
        return lint_files(args.files, console)
    cluster = Cluster.connect(args.context, args.namespace)
    command = args.command
    if command == "tree":
        if args.watch:
            return 0 if watch_run(cluster, args.run) == RunPhase.SUCCEEDED else 1
        console.print(render_run(cluster.get_run(args.run), datetime.now(UTC)))
        return 0
    if command == "approve":
        user = cluster.username()
        _annotate(cluster, args.run, APPROVE_PREFIX + args.node, user)
        console.print(f"workflowrun/{args.run}: gate {args.node} approved by {user}")
        return 0
    if command == "reject":
        _annotate(cluster, args.run, REJECT_PREFIX + args.node, args.reason)
        console.print(f"workflowrun/{args.run}: gate {args.node} rejected: {args.reason}")
        return 0
    if command in ("suspend", "resume", "cancel"):
        field = "cancel" if command == "cancel" else "suspend"
        cluster.patch_run(args.run, {"spec": {field: command != "resume"}})
        console.print(f"workflowrun/{args.run}: {command} requested")
        return 0
    if command == "rerun":
        token = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        _annotate(cluster, args.run, RERUN_ANNOTATION, token)
        console.print(f"workflowrun/{args.run}: rerun requested ({RERUN_ANNOTATION}={token})")
        return 0
    if command == "logs":
        return _logs(cluster, args.run, args.node)
    if command == "submit":
        return _submit(cluster, args.workflow, _params(args.param), args.watch)
    raise AssertionError(command)


def _logs(cluster: Cluster, run_name: str, node: str) -> int:
    run = cluster.get_run(run_name)
    status = ((run.get("status") or {}).get("nodes") or {}).get(node)
    if not status or not status.get("attempt"):
        errors.print(f"error: node {node!r} of run {run_name} has not started")
        return 1
    job = names.current_job(run_name, node, status.get("job"), int(status["attempt"]))
    assert job is not None  # it has an attempt
    pod = cluster.pod_of_job(job)
    if pod is None:
        errors.print(f"error: Job {job} has no pod (yet, or any more)")
        return 1
    console.print(cluster.pod_logs(pod), end="", markup=False, highlight=False)
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
    console.print(f"workflowrun/{name} created")
    if not watch:
        return 0
    phase = watch_run(cluster, name)
    return 0 if phase == RunPhase.SUCCEEDED else 1


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return run_command(args)
    except ApiException as exc:
        errors.print(f"error: {exc.status} {exc.reason}: {_api_message(exc)}")
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
