"""The plugin's command line: its verbs, their arguments, and kubectl's connection flags.

kubectl users put `-n` anywhere (`kubectl kdag tree RUN -n prod`), so every verb takes the
connection flags too; SUPPRESS keeps a verb's absent flag from overwriting one given before
the verb.
"""

from __future__ import annotations

import argparse
from functools import partial
from pathlib import Path

from kdag import __version__
from kdag.cli.cluster import Connection, parse_request_timeout
from kdag.cli.output import FORMATS

# Verbs whose first argument is a run, and those whose second is one of its nodes.
RUN_VERBS = ("tree", "approve", "reject", "suspend", "resume", "cancel", "rerun", "logs")
GATE_VERBS = ("approve", "reject")
NODE_VERBS = ("logs",)
TYPE_VERBS = ("get", "list", "delete")  # first argument: runs or workflows
# Flags that take a value, as kubectl spells them (for completion, which must skip values).
CONNECTION_FLAGS = (
    "-n", "--namespace", "--context", "--kubeconfig", "--as", "--as-group", "--request-timeout",
)  # fmt: skip
DESCRIPTION = "look at and steer kdag runs (kubectl kdag VERB --help for each verb)"


def _timeout(text: str) -> float | None:
    try:
        return parse_request_timeout(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def connection_flags(parser: argparse.ArgumentParser, default: object) -> None:
    """kubectl's flags, with kubectl's meaning."""
    parser.add_argument(
        "-n", "--namespace", default=default, help="namespace (default: the context's)"
    )
    parser.add_argument(
        "--context", metavar="NAME", default=default, help="kubeconfig context to use"
    )
    parser.add_argument(
        "--kubeconfig",
        metavar="FILE",
        default=default,
        help="kubeconfig file (default: the files listed in $KUBECONFIG, else ~/.kube/config)",
    )
    parser.add_argument(
        "--as", dest="as_user", metavar="USER", default=default, help="user to impersonate"
    )
    parser.add_argument(
        "--as-group",
        # Given after the verb too: kept apart, since the verb's parser would start its own
        # list and overwrite the one given before the verb.
        dest="as_group" if default is None else "as_group_after_verb",
        action="append",
        metavar="GROUP",
        default=default,
        help="group to impersonate (repeat for more; needs --as)",
    )
    parser.add_argument(
        "--request-timeout",
        type=_timeout,
        metavar="DURATION",
        default=default,
        help="give up on a request after this long (1s, 2m, 3h; 0: never, the default)",
    )


def connection(args: argparse.Namespace) -> Connection:
    return Connection(
        kubeconfig=args.kubeconfig,
        context=args.context,
        namespace=args.namespace,
        user=args.as_user,
        groups=(*(args.as_group or ()), *(getattr(args, "as_group_after_verb", None) or ())),
        request_timeout=args.request_timeout,
    )


def _output(parser: argparse.ArgumentParser, formats: tuple[str, ...] = FORMATS) -> None:
    parser.add_argument(
        "-o", "--output", choices=formats, help=f"output format: {'|'.join(formats)}"
    )


def build() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kubectl kdag", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"kubectl-kdag {__version__}")
    connection_flags(parser, default=None)
    shared = argparse.ArgumentParser(add_help=False)
    connection_flags(shared, default=argparse.SUPPRESS)
    verbs = parser.add_subparsers(dest="command", required=True, metavar="VERB")
    add = partial(verbs.add_parser, parents=[shared])

    for verb, text in (
        ("get", "list runs or workflows, or show some by name, as kubectl get"),
        ("list", "list runs (or: list workflows); the same as get"),
    ):
        get = add(verb, help=text, description=text)
        get.add_argument(
            "type",
            nargs="?" if verb == "list" else None,
            default="runs",
            metavar="TYPE",
            help="runs (workflowruns, kwfr) or workflows (kwf); TYPE/NAME also works",
        )
        get.add_argument("names", nargs="*", metavar="NAME")
        _output(get)
        get.add_argument("-l", "--selector", help="label selector, as kubectl's -l")
        get.add_argument(
            "-A", "--all-namespaces", action="store_true", help="list across all namespaces"
        )

    delete = add("delete", help="delete runs or workflows by name, as kubectl delete")
    delete.add_argument("type", metavar="TYPE", help="runs or workflows; TYPE/NAME also works")
    delete.add_argument("names", nargs="*", metavar="NAME")
    delete.add_argument("--all", action="store_true", help="every one in the namespace")
    delete.add_argument("--ignore-not-found", action="store_true", help="no error if missing")
    _output(delete, ("name",))

    tree = add("tree", help="show a run's nodes with live status")
    tree.add_argument("run")
    tree.add_argument("-w", "--watch", action="store_true", help="refresh until the run ends")
    _output(tree)

    for verb in GATE_VERBS:
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
    logs.add_argument("-f", "--follow", action="store_true", help="follow the log as it grows")

    submit = add("submit", help="create a run of a workflow")
    submit.add_argument("workflow")
    submit.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE")
    submit.add_argument("-w", "--watch", action="store_true", help="show progress until it ends")
    _output(submit, ("json", "yaml", "name"))

    lint = add("lint", help="validate Workflow/WorkflowRun files offline (- reads stdin)")
    lint.add_argument("files", nargs="+", type=Path, metavar="FILE")

    version = add("version", help="the plugin's, the API server's and the operator's versions")
    version.add_argument("--client", action="store_true", help="the plugin's version only")
    _output(version, ("json", "yaml"))
    return parser


def verb_help(parser: argparse.ArgumentParser) -> dict[str, str]:
    """Each verb and its one-line help, in the order `--help` lists them."""
    verbs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {str(c.dest): str(c.help or "") for c in verbs._choices_actions}


def verb_parser(parser: argparse.ArgumentParser, verb: str) -> argparse.ArgumentParser | None:
    verbs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    found = verbs.choices.get(verb)
    return found if isinstance(found, argparse.ArgumentParser) else None


def parse(argv: list[str] | None) -> argparse.Namespace:
    """The arguments, with kubectl's freedom of order: `get runs -n prod a b` works although
    argparse's NAME... has already matched nothing by the time it meets `-n`."""
    parser = build()
    args, extra = parser.parse_known_args(argv)
    if extra:
        if args.command not in TYPE_VERBS or any(e.startswith("-") for e in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.names = [*args.names, *extra]
    return args
