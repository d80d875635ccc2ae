"""kubectl's verbs on kdag's two kinds: get (and list), delete, version."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

from kubernetes.client.exceptions import ApiException

from kdag import __version__
from kdag.cli.cluster import OPERATOR_SELECTOR, Cluster
from kdag.cli.errors import UserError, api_message, one_line
from kdag.cli.output import Kind, as_document, kind_named, render
from kdag.cli.terminal import emit, say


def kind_of(name: str) -> Kind:
    kind = kind_named(name)
    if kind is None:
        raise UserError(
            f'error: the server doesn\'t have a resource type "{name}" (kdag has runs and'
            " workflows)"
        )
    return kind


def targets(type_: str, names: list[str]) -> list[tuple[Kind, list[str]]]:
    """What `get TYPE NAME...` or `get TYPE/NAME...` names: each kind with its names, in
    the order given ([] names: all of that kind)."""
    if "/" not in type_:
        return [(kind_of(type_), names)]
    grouped: dict[str, tuple[Kind, list[str]]] = {}
    for word in (type_, *names):
        type_name, sep, name = word.partition("/")
        if not sep or not name:
            raise UserError(
                "error: there is no need to specify a resource type as a separate argument"
                f" when passing arguments in resource/name form: {word!r}"
            )
        kind = kind_of(type_name)
        grouped.setdefault(kind.plural, (kind, []))[1].append(name)
    return list(grouped.values())


def _nothing_found(cluster: Cluster, all_namespaces: bool) -> None:
    where = "" if all_namespaces else f" in {cluster.namespace} namespace"
    say(f"No resources found{where}.", error=True)


def get(cluster: Cluster, args: argparse.Namespace) -> int:
    """`kubectl get`: a table (or -o json|yaml|name|wide); named objects that do not exist
    are reported one line each on stderr, the others still printed, and exit 1."""
    wanted = targets(args.type, args.names)
    if args.selector and any(names for _, names in wanted):
        raise UserError("error: name cannot be provided when a selector is specified")
    now = datetime.now(UTC)
    status = 0
    for kind, names in wanted:
        if not names:
            found = cluster.list_objects(kind.plural, args.all_namespaces, args.selector)
            if not found and args.output not in ("json", "yaml"):
                _nothing_found(cluster, args.all_namespaces)
                continue
            emit(render(kind, found, args.output, now, all_namespaces=args.all_namespaces))
            continue
        objects: list[dict[str, Any]] = []
        for name in names:
            try:
                objects.append(cluster.get(kind.plural, name))
            except ApiException as exc:
                if exc.status != 404:
                    raise
                say(str(one_line(exc)), error=True)
                status = 1
        if objects:
            single = len(wanted) == 1 and len(names) == 1
            emit(render(kind, objects, args.output, now, single=single))
    return status


def delete(cluster: Cluster, args: argparse.Namespace) -> int:
    """`kubectl delete`: by name or --all; a missing one is an error unless
    --ignore-not-found, and the others are still deleted."""
    wanted = targets(args.type, args.names)
    if args.all:
        if any(names for _, names in wanted):
            raise UserError("error: no NAME may be given with --all")
        wanted = [
            (k, [o["metadata"]["name"] for o in cluster.list_objects(k.plural)]) for k, _ in wanted
        ]
    elif not any(names for _, names in wanted):
        raise UserError("error: resource(s) were provided, but no name was specified (or --all)")
    status = 0
    for kind, names in wanted:
        for name in names:
            try:
                cluster.delete(kind.plural, name)
            except ApiException as exc:
                if exc.status == 404 and args.ignore_not_found:
                    continue
                if exc.status != 404:
                    raise
                say(str(one_line(exc)), error=True)
                status = 1
                continue
            say(f"{kind.resource}/{name}" if args.output == "name" else
                f'{kind.resource} "{name}" deleted')  # fmt: skip
    return status


def version(args: argparse.Namespace, connect: Any) -> int:
    """The plugin's version; then, unless --client, the API server's and the operator's
    (its Deployment's version label, where the caller may list Deployments)."""
    report: dict[str, Any] = {"clientVersion": __version__}
    if args.client:
        return _print_version(report, args.output)
    if args.output is None:
        say(f"Client Version: {__version__}")
    cluster: Cluster = connect()
    report["serverVersion"] = cluster.server_version()
    try:
        report["operators"] = [
            {"deployment": where, "version": v} for where, v in cluster.operator_versions()
        ]
    except ApiException as exc:
        if exc.status != 403:
            raise
        report["operatorVersionUnknown"] = f"cannot list Deployments: {api_message(exc)}"
    if args.output is not None:
        return _print_version(report, args.output)
    say(f"Server Version: {report['serverVersion']}")
    operators = report.get("operators")
    if operators is None:
        say(f"Operator Version: unknown ({report['operatorVersionUnknown']})")
    elif not operators:
        say(f"Operator Version: none found (no Deployment labelled {OPERATOR_SELECTOR})")
    for operator in operators or []:
        say(f"Operator Version: {operator['version']} (deployment {operator['deployment']})")
    return 0


def _print_version(report: dict[str, Any], output: str | None) -> int:
    if output is None:
        say(f"Client Version: {report['clientVersion']}")
    else:
        emit(as_document(report, output))
    return 0
