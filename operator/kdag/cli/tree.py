"""Rendering a run as a tree of nodes with phase, attempts and duration (pure, no I/O)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rich.table import Table
from rich.text import Text

from kdag.api import NodePhase, NodeStatus, WorkflowRun
from kdag.engine.graph import build_graph
from kdag.engine.instance_keys import template_of
from kdag.engine.names import current_job
from kdag.engine.timeutil import format_duration, parse_iso

PHASE_STYLE = {
    NodePhase.PENDING: "dim",
    NodePhase.QUEUED: "cyan",
    NodePhase.RUNNING: "bold blue",
    NodePhase.RETRYING: "yellow",
    NodePhase.WAITING_FOR_APPROVAL: "bold magenta",
    NodePhase.SUCCEEDED: "green",
    NodePhase.FAILED: "bold red",
    NodePhase.TIMED_OUT: "red",
    NodePhase.SKIPPED: "dim",
    NodePhase.CANCELLED: "yellow",
}
RUN_STYLE = {
    "Succeeded": "green",
    "Failed": "bold red",
    "TimedOut": "red",
    "Cancelled": "yellow",
    "Invalid": "bold red",
    "WaitingForApproval": "bold magenta",
}


def node_duration(ns: NodeStatus, now: datetime) -> str:
    if not ns.started_at:
        return ""
    end = parse_iso(ns.finished_at) if ns.finished_at else now
    return format_duration((end - parse_iso(ns.started_at)).total_seconds())


def _depths(run: WorkflowRun) -> dict[str, int]:
    """Longest distance from a root, per workflow node; finally nodes come after all."""
    status = run.status
    if status is None or status.workflow is None:
        return {}
    graph = build_graph(status.workflow)
    depth: dict[str, int] = {}
    for name in graph.order:
        g = graph.main if name in graph.main else graph.final
        preds = list(g.predecessors(name))
        depth[name] = 1 + max((depth[p] for p in preds), default=-1)
    return depth


def render_run(raw: dict[str, Any], now: datetime, wide: bool = False) -> Table:
    """A table of the run's nodes in dependency order, indented by depth; `wide` adds each
    node's current Job and its exit code (`-o wide`)."""
    run = WorkflowRun.model_validate(raw)
    status = run.status
    phase = str(status.phase) if status and status.phase else "Pending"
    title = Text.assemble(
        (run.metadata.name or "?", "bold"),
        "  ",
        (phase, RUN_STYLE.get(phase, "bold blue")),
        f"  {status.progress or ''}" if status else "",
    )
    table = Table(title=title, title_justify="left", box=None, pad_edge=False)
    columns = ["NODE", "PHASE", "ATTEMPTS", "DURATION", "MESSAGE"]
    if wide:
        columns[4:4] = ["JOB", "EXIT"]
    for column in columns:
        table.add_column(column, overflow="fold" if column == "MESSAGE" else "ellipsis")
    if status is None or not status.nodes:
        if status and status.message:
            table.caption = Text(status.message)
        return table
    depths = _depths(run)
    order = {name: i for i, name in enumerate(depths)}
    finals = {n.name for n in status.workflow.finally_nodes} if status.workflow else set()
    keys = sorted(
        status.nodes,
        key=lambda k: (order.get(template_of(k), 1 << 30), status.nodes[k].index or 0, k),  # type: ignore[index]
    )
    for key in keys:
        ns = status.nodes[key]
        template = template_of(key)
        indent = "  " * depths.get(template, 0)
        marker = "finally " if template in finals else ""
        # Text, not str: rich would read `transform[eu]` as a markup tag.
        cells: list[Text | str] = [
            Text(f"{indent}{marker}{key}"),
            Text(str(ns.phase), style=PHASE_STYLE.get(ns.phase, "")),
            str(ns.attempt or ""),
            node_duration(ns, now),
        ]
        if wide:
            job = current_job(
                run.metadata.name or "", run.metadata.uid or "", key, ns.job, ns.attempt
            )
            cells += [job or "", "" if ns.exit_code is None else str(ns.exit_code)]
        table.add_row(*cells, Text(ns.message or ""))
    if status.message:
        table.caption = Text(status.message)
    return table


def progress_lines(before: dict[str, Any] | None, after: dict[str, Any]) -> list[str]:
    """What changed between two versions of a run, one line per change, for output that is
    not a terminal (a pipe, a CI log), where a redrawn tree would show nothing until the end."""
    old = (before or {}).get("status") or {}
    new = after.get("status") or {}
    lines: list[str] = []
    old_nodes, new_nodes = old.get("nodes") or {}, new.get("nodes") or {}
    for name, node in new_nodes.items():
        phase = node.get("phase")
        was = (old_nodes.get(name) or {}).get("phase")
        if phase != was:
            message = f": {node['message']}" if node.get("message") else ""
            lines.append(f"  {name}: {was or '-'} -> {phase}{message}")
    if (new.get("phase"), new.get("progress")) != (old.get("phase"), old.get("progress")):
        message = f": {new['message']}" if new.get("message") else ""
        lines.append(f"run {new.get('phase') or 'Pending'} {new.get('progress') or ''}{message}")
    return lines
