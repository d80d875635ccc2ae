"""kubectl's `-o` formats for kdag's two kinds: json, yaml, name, wide, and the table.

Pure: objects in, text out. The table's columns are the CRDs' printer columns (what
`kubectl get workflowruns` shows), and `-o wide` adds more, as kubectl's wide does.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import yaml

from kdag.api import GROUP, RUNS, WORKFLOWS
from kdag.engine.timeutil import format_duration, parse_iso

FORMATS = ("json", "yaml", "name", "wide")
COLUMN_GAP = "   "  # kubectl's tabwriter padding

Getter = Callable[[dict[str, Any], datetime], str]


@dataclass(frozen=True)
class Kind:
    """One of kdag's resource types, with the names kubectl accepts for it."""

    kind: str
    singular: str
    plural: str
    short: str
    nicknames: tuple[str, ...]  # the plugin's own short forms: `kubectl kdag get runs`
    columns: tuple[tuple[str, Getter], ...]
    wide: tuple[tuple[str, Getter], ...]

    @property
    def resource(self) -> str:
        """`workflowrun.kdag.dev`: how `-o name` and kubectl's messages name it."""
        return f"{self.singular}.{GROUP}"

    @property
    def aliases(self) -> set[str]:
        names = {self.singular, self.plural, self.short, *self.nicknames}
        return names | {f"{n}.{GROUP}" for n in (self.singular, self.plural)}


def _field(*path: str) -> Getter:
    def get(obj: dict[str, Any], now: datetime) -> str:
        value: Any = obj
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if value is None:
            return ""
        if isinstance(value, list):
            return ",".join(map(str, value))
        return str(value)

    return get


def _since(*path: str) -> Getter:
    def get(obj: dict[str, Any], now: datetime) -> str:
        stamp = _field(*path)(obj, now)
        return format_duration((now - parse_iso(stamp)).total_seconds()) if stamp else "<unknown>"

    return get


def _run_nodes(*phases: str) -> Getter:
    def get(obj: dict[str, Any], now: datetime) -> str:
        nodes = (obj.get("status") or {}).get("nodes") or {}
        return ",".join(sorted(k for k, v in nodes.items() if (v or {}).get("phase") in phases))

    return get


def _workflow_params(obj: dict[str, Any], now: datetime) -> str:
    return ",".join(p.get("name", "") for p in (obj.get("spec") or {}).get("params") or [])


RUN = Kind(
    kind="WorkflowRun",
    singular="workflowrun",
    plural=RUNS,
    short="kwfr",
    nicknames=("run", "runs"),
    columns=(
        ("WORKFLOW", _field("status", "workflowName")),
        ("PHASE", _field("status", "phase")),
        ("PROGRESS", _field("status", "progress")),
        ("AGE", _since("metadata", "creationTimestamp")),
        ("DURATION", _field("status", "duration")),
    ),
    wide=(
        ("ACTIVE", _run_nodes("Running", "Retrying", "WaitingForApproval")),
        ("FAILED", _run_nodes("Failed", "TimedOut")),
        ("MESSAGE", _field("status", "message")),
    ),
)
WORKFLOW = Kind(
    kind="Workflow",
    singular="workflow",
    plural=WORKFLOWS,
    short="kwf",
    nicknames=("wf",),
    columns=(
        ("NODES", _field("status", "nodeCount")),
        ("SCHEDULE", _field("spec", "schedule", "cron")),
        ("LAST RUN", _field("status", "lastRun")),
        ("AGE", _since("metadata", "creationTimestamp")),
    ),
    wide=(
        ("PARAMS", _workflow_params),
        ("ACTIVE RUNS", _field("status", "activeRuns")),
        ("VALID", _field("status", "valid")),
        ("DESCRIPTION", _field("spec", "description")),
    ),
)
KINDS = (RUN, WORKFLOW)


def kind_named(name: str) -> Kind | None:
    """The kind a kubectl-style type name means: runs, workflowrun, kwfr, workflows.kdag.dev..."""
    return next((k for k in KINDS if name.lower() in k.aliases), None)


def resource_name(kind: Kind, obj: dict[str, Any]) -> str:
    return f"{kind.resource}/{obj['metadata']['name']}"


def render(
    kind: Kind,
    objects: Sequence[dict[str, Any]],
    output: str | None,
    now: datetime,
    single: bool = False,
    all_namespaces: bool = False,
) -> str:
    """The objects as `kubectl get -o OUTPUT` prints them. `single`: one object asked for by
    name, printed as itself in json/yaml rather than as a List, as kubectl does."""
    if single and len(objects) == 1 and output in ("json", "yaml", "name"):
        return str(one_object(kind, objects[0], output))
    if output in ("json", "yaml"):
        listed = {
            "apiVersion": "v1",
            "kind": "List",
            "items": [_shown(o) for o in objects],
            "metadata": {"resourceVersion": ""},
        }
        return as_document(listed, output)
    if output == "name":
        return "".join(resource_name(kind, o) + "\n" for o in objects)
    columns = (("NAME", _field("metadata", "name")), *kind.columns)
    if output == "wide":
        columns += kind.wide
    if all_namespaces:
        columns = (("NAMESPACE", _field("metadata", "namespace")), *columns)
    rows = [[title for title, _ in columns]]
    rows += [[get(o, now) for _, get in columns] for o in objects]
    return table(rows)


def table(rows: list[list[str]]) -> str:
    """Left-aligned columns three spaces apart, as kubectl's tabwriter; no trailing blanks."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [COLUMN_GAP.join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return "".join(line.rstrip() + "\n" for line in lines)


def one_object(kind: Kind, obj: dict[str, Any], output: str | None) -> str | None:
    """One object as `-o json|yaml|name` prints it; None for the other formats, which each
    verb prints its own way (a table, a tree, a message)."""
    if output in ("json", "yaml"):
        return as_document(_shown(obj), output)
    if output == "name":
        return resource_name(kind, obj) + "\n"
    return None


def _shown(obj: dict[str, Any]) -> dict[str, Any]:
    """The object without metadata.managedFields, which kubectl leaves out of its output too
    (bookkeeping of who wrote which field; `kubectl get --show-managed-fields` shows it)."""
    metadata = {k: v for k, v in (obj.get("metadata") or {}).items() if k != "managedFields"}
    return {**obj, "metadata": metadata} if "metadata" in obj else obj


def as_document(obj: Any, output: str) -> str:
    """Plain data (an object, a List, a version report) as `-o json` or `-o yaml`, keys
    sorted as kubectl's are."""
    if output == "json":
        return json.dumps(obj, indent=4, sort_keys=True) + "\n"
    return str(yaml.safe_dump(obj, default_flow_style=False, sort_keys=True))
