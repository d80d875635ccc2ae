"""`kubectl kdag` — look at and steer kdag runs.

kubectl kdag get runs|workflows [NAME...] [-o json|yaml|name|wide] [-l SEL] [-A]
kubectl kdag list [runs|workflows]        the same as get
kubectl kdag delete runs|workflows NAME... | --all
kubectl kdag tree RUN [-w] [-o ...]       the DAG with phase, attempts and duration per node
kubectl kdag approve RUN NODE             answer a gate as yourself
kubectl kdag reject RUN NODE --reason TEXT
kubectl kdag suspend|resume|cancel|rerun RUN
kubectl kdag logs RUN NODE [-f]           the log of the node's latest attempt
kubectl kdag submit WORKFLOW -p k=v --watch
kubectl kdag lint FILE...|-               offline validation with the engine's messages
kubectl kdag version [--client] [-o json|yaml]

kubectl's flags (-n/--namespace, --context, --kubeconfig, --as, --as-group,
--request-timeout) go before or after the verb, as with kubectl. approve/reject refuse a
node that is no gate of the run, or a gate already answered; rerun refuses an unfinished run
and clears spec.cancel of a cancelled one. An ordinary mistake (no kubeconfig, an unknown
context, an unreachable server, a refusal, a missing object) is one line on stderr and exit 1.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import Any

from kubernetes.client.exceptions import ApiException
from rich.live import Live

from kdag.api import API_VERSION, RunPhase, WorkflowRun
from kdag.cli import parser, resources
from kdag.cli.cluster import Cluster
from kdag.cli.errors import UserError, api_message, one_line
from kdag.cli.lint import lint_files
from kdag.cli.output import RUN, one_object
from kdag.cli.terminal import console, emit, say
from kdag.cli.tree import progress_lines, render_run
from kdag.engine import names
from kdag.engine.model import APPROVE_PREFIX, REJECT_PREFIX, RERUN_ANNOTATION
from kdag.engine.run_summary import short_list


def _params(pairs: list[str]) -> dict[str, str]:
    params = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"error: -p {pair!r}: expected KEY=VALUE")
        params[key] = value
    return params


def watch_run(cluster: Cluster, name: str, wide: bool = False) -> str:
    """Follow the run until it reaches a terminal phase; return it. On a terminal the tree
    is redrawn on every change; elsewhere each change is printed as a line, then the tree."""
    if console.is_terminal:
        with Live(console=console, auto_refresh=False) as live:
            for run, ended in _until_ended(cluster, name):
                live.update(render_run(run, datetime.now(UTC), wide=wide), refresh=True)
                if ended:
                    return ended
    before: dict[str, Any] | None = None
    for run, ended in _until_ended(cluster, name):
        if before is not None or not ended:  # a run found finished: just its tree
            for line in progress_lines(before, run):
                say(line)
        before = run
        if ended:
            console.print(render_run(run, datetime.now(UTC), wide=wide))
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
    command = args.command
    if command == "lint":
        return lint_files(args.files, console)
    connect = partial(Cluster.connect, parser.connection(args))
    if command == "version":
        return resources.version(args, connect)
    cluster = connect()
    if command in ("get", "list"):
        return resources.get(cluster, args)
    if command == "delete":
        return resources.delete(cluster, args)
    if command == "tree":
        return _tree(cluster, args.run, args.watch, args.output)
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
        return _logs(cluster, args.run, args.node, args.follow)
    if command == "submit":
        return _submit(cluster, args.workflow, _params(args.param), args.watch, args.output)
    raise AssertionError(command)


def _tree(cluster: Cluster, name: str, watch: bool, output: str | None) -> int:
    """The run's tree (-o wide: with each node's Job and exit code), or the run itself."""
    if watch:
        if output not in (None, "wide"):
            raise UserError(f"error: --watch draws the tree: -o {output} shows the run once")
        return 0 if watch_run(cluster, name, output == "wide") == RunPhase.SUCCEEDED else 1
    run = cluster.get_run(name)
    shown = one_object(RUN, run, output)
    if shown is not None:
        emit(shown)
    else:
        console.print(render_run(run, datetime.now(UTC), wide=output == "wide"))
    return 0


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


def _logs(cluster: Cluster, run_name: str, node: str, follow: bool = False) -> int:
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
        if follow:
            for chunk in cluster.follow_pod_logs(pod):
                sys.stdout.buffer.write(chunk)
                sys.stdout.buffer.flush()
        else:
            emit(cluster.pod_logs(pod))
    except ApiException as exc:
        say(
            f"error: cannot read the log of pod {pod} (Job {job}, attempt {status.attempt}):"
            f" {exc.status} {exc.reason}: {api_message(exc)}",
            error=True,
        )
        return 1
    return 0


def _submit(
    cluster: Cluster, workflow: str, params: dict[str, str], watch: bool, output: str | None
) -> int:
    cluster.get_workflow(workflow)  # a clear 404 before creating anything
    body = {
        "apiVersion": API_VERSION,
        "kind": "WorkflowRun",
        "metadata": {"generateName": f"{workflow}-"},
        "spec": {"workflowRef": {"name": workflow}, **({"params": params} if params else {})},
    }
    created = cluster.create_run(body)
    name = created["metadata"]["name"]
    shown = one_object(RUN, created, output)
    if shown is not None:
        emit(shown)
    else:
        say(f"workflowrun/{name} created")
    if not watch:
        return 0
    phase = watch_run(cluster, name)
    return 0 if phase == RunPhase.SUCCEEDED else 1


def main(argv: Sequence[str] | None = None) -> int:
    args = parser.parse(None if argv is None else list(argv))
    try:
        return run_command(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `kubectl kdag get runs | head -1`: the reader has all it wants
        # Nothing more reaches the pipe (not even the flush at exit); exit as kubectl,
        # which dies of SIGPIPE: 128 + 13.
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # stdout
        return 141
    except Exception as exc:
        line = one_line(exc)
        if line is None:
            raise  # a bug in the plugin: its traceback is what to report
        say(line, error=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
