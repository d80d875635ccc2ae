"""`kubectl_complete-kdag`: shell completion of `kubectl kdag`, through kubectl's own.

kubectl (1.26 and later) completes a plugin's arguments by running the executable
`kubectl_complete-<plugin>` found on PATH with the words typed after the plugin's name, the
last one being the word to complete ("" for a new word). It reads one candidate a line
(`candidate<TAB>description` shows the description in zsh and fish) and, last, an optional
`:<directive>` line: cobra's ShellCompDirective bit set, e.g. 4 (no file completion after
these) or 8 (complete files with these extensions). kubectl passes the words as typed,
`-n NAMESPACE` and `--context` included, so run and node names come from the namespace and
cluster the command would use.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from kdag.api import RUNS, WORKFLOWS, WorkflowRun
from kdag.cli import parser as cli
from kdag.cli.cluster import Cluster, Connection, context_names, parse_request_timeout
from kdag.cli.output import kind_named

# cobra's ShellCompDirective values.
DEFAULT = 0  # the shell's own completion (files) when there is no candidate
NO_FILE_COMP = 4
FILTER_FILE_EXT = 8
# Completion talks to the cluster while the user waits: give up soon unless told otherwise.
LOOKUP_TIMEOUT = 5.0
TYPES = ("runs", "workflows")


class Lookup(Protocol):
    """What completion asks the cluster (a fake one in the unit tests)."""

    def names(self, plural: str) -> list[str]: ...
    def run(self, name: str) -> WorkflowRun: ...
    def namespaces(self) -> list[str]: ...
    def contexts(self) -> list[str]: ...


@dataclass
class Words:
    """The words before the one being completed, read as the plugin's parser reads them."""

    verb: str | None = None
    positionals: list[str] = field(default_factory=list)
    flags: dict[str, str] = field(default_factory=dict)  # dest -> value
    pending: argparse.Action | None = None  # a flag whose value is the word being completed


def _action(parser: argparse.ArgumentParser, option: str) -> argparse.Action | None:
    return next((a for a in parser._actions if option in a.option_strings), None)


def read_words(words: Sequence[str]) -> Words:
    top = cli.build()
    read = Words()
    for word in words:
        if read.pending is not None:
            read.flags[read.pending.dest] = word
            read.pending = None
            continue
        if word.startswith("-") and len(word) > 1:
            option, eq, value = word.partition("=")
            action = _action(cli.verb_parser(top, read.verb) or top if read.verb else top, option)
            if action is not None and action.nargs != 0:
                if eq:
                    read.flags[action.dest] = value
                else:
                    read.pending = action
            continue
        if read.verb is None:
            read.verb = word
        else:
            read.positionals.append(word)
    return read


def candidates(words: Sequence[str], lookup: Lookup) -> tuple[list[str], int]:
    """The candidates for the last word (the one being completed), and the directive."""
    *before, current = list(words) or [""]
    read = read_words(before)
    top = cli.build()
    verb_parser = cli.verb_parser(top, read.verb) if read.verb else None
    found, directive = _for(read, current, top, verb_parser, lookup)
    return [c for c in found if c.startswith(current)], directive


def _for(
    read: Words,
    current: str,
    top: argparse.ArgumentParser,
    verb_parser: argparse.ArgumentParser | None,
    lookup: Lookup,
) -> tuple[list[str], int]:
    if read.pending is not None:
        return _flag_values(read.pending, lookup)
    if current.startswith("-"):
        options = (verb_parser or top)._option_string_actions
        return sorted(o for o in options if o.startswith("--") or len(o) == 2), NO_FILE_COMP
    if read.verb is None:
        return [f"{v}\t{h}" for v, h in cli.verb_help(top).items()], NO_FILE_COMP
    verb, given = read.verb, read.positionals
    if verb == "lint":
        return ["yaml", "yml"], FILTER_FILE_EXT
    if verb in cli.TYPE_VERBS:
        if not given:
            return list(TYPES), NO_FILE_COMP
        kind = kind_named(given[0])
        names = lookup.names(kind.plural) if kind else []
        return [n for n in names if n not in given[1:]], NO_FILE_COMP
    if verb == "submit" and not given:
        return lookup.names(WORKFLOWS), NO_FILE_COMP
    if verb in cli.RUN_VERBS and not given:
        return lookup.names(RUNS), NO_FILE_COMP
    if len(given) == 1 and verb in (*cli.GATE_VERBS, *cli.NODE_VERBS):
        return _nodes(lookup.run(given[0]), gates_only=verb in cli.GATE_VERBS), NO_FILE_COMP
    return [], NO_FILE_COMP


def _flag_values(action: argparse.Action, lookup: Lookup) -> tuple[list[str], int]:
    if action.dest == "namespace":
        return lookup.namespaces(), NO_FILE_COMP
    if action.dest == "context":
        return lookup.contexts(), NO_FILE_COMP
    if action.dest == "kubeconfig":
        return [], DEFAULT  # a file
    return [str(c) for c in action.choices or ()], NO_FILE_COMP


def _nodes(run: WorkflowRun, gates_only: bool) -> list[str]:
    """A run's node keys (fan-out instances included), or its approval gates, waiting first."""
    status = run.status
    nodes = (status.nodes if status else None) or {}
    if not gates_only:
        return sorted(nodes)
    spec = status.workflow if status else None
    gates = [n.name for n in spec.nodes if n.approval is not None] if spec else []
    waiting = [g for g in gates if g in nodes and nodes[g].phase == "WaitingForApproval"]
    return waiting + sorted(set(gates) - set(waiting))


class ClusterLookup:
    """The lookups against the cluster the typed command would use; any failure (no
    kubeconfig, unreachable, forbidden) means no candidates, never an error in the shell."""

    def __init__(self, flags: dict[str, str]) -> None:
        self.flags = flags
        self._cluster: Cluster | None = None

    @property
    def cluster(self) -> Cluster:
        if self._cluster is None:
            timeout = self.flags.get("request_timeout")
            groups = self.flags.get("as_group")
            self._cluster = Cluster.connect(
                Connection(
                    kubeconfig=self.flags.get("kubeconfig"),
                    context=self.flags.get("context"),
                    namespace=self.flags.get("namespace"),
                    user=self.flags.get("as_user"),
                    groups=(groups,) if groups else (),
                    request_timeout=parse_request_timeout(timeout) if timeout else LOOKUP_TIMEOUT,
                )
            )
        return self._cluster

    def names(self, plural: str) -> list[str]:
        return sorted(o["metadata"]["name"] for o in self.cluster.list_objects(plural))

    def run(self, name: str) -> WorkflowRun:
        return WorkflowRun.model_validate(self.cluster.get_run(name))

    def namespaces(self) -> list[str]:
        return sorted(self.cluster.namespaces())

    def contexts(self) -> list[str]:
        return context_names(self.flags.get("kubeconfig"))


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    if words[:1] == ["__complete"]:  # also answer cobra's own form of the request
        words = words[1:]
    lookup = ClusterLookup(read_words(words[:-1]).flags)
    try:
        found, directive = candidates(words, lookup)
    except Exception:  # a completion must never break the user's shell
        found, directive = [], NO_FILE_COMP
    sys.stdout.write("".join(f"{c}\n" for c in found) + f":{directive}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
