"""`kdag-operator`: run kdag's kopf operator with kdag's settings.

    kdag-operator --all-namespaces
    kdag-operator --namespace team-a --namespace team-b --log-format json
    kdag-operator --all-namespaces --peering kdag    # replicas > 1: one active, others wait
    kdag-operator --all-namespaces --shards kdag     # replicas > 1: each drives a share

Every flag has an environment variable (KDAG_<FLAG>, e.g. KDAG_LOG_FORMAT=json) so the Helm
chart can set them either way.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
import sys
from collections.abc import Sequence
from typing import Any

import kopf

# kopf's record of the namespaces it serves; see kdag.operator.object_watches.
from kopf._cogs.structs.references import Insights
from pydantic import ValidationError

# kdag's kopf handlers register on kopf's default registry as they are imported: Workflows'
# status and schedules (for effect). Runs, Jobs and pods are kdag's own watches.
import kdag.operator.workflow_handlers  # noqa: F401
from kdag import __version__
from kdag.engine.model import DEFAULT_OUTPUT_BUDGET
from kdag.operator.app import Operator
from kdag.operator.config import OperatorConfig, kopf_settings
from kdag.operator.handlers import watched_kinds
from kdag.operator.identity import IdentityError
from kdag.operator.logs import configure_logging
from kdag.operator.object_watches import follow_namespaces, kopf_stream
from kdag.operator.peering import PauseState, follow_pause, spawn_operator

logger = logging.getLogger("kdag.operator")


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(f"KDAG_{name}", default)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kdag-operator", description="Run kdag workflows (WorkflowRuns) as Jobs."
    )
    parser.add_argument("--version", action="version", version=f"kdag-operator {__version__}")
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "--namespace",
        "-n",
        action="append",
        default=[n for n in (_env("NAMESPACE") or "").split(",") if n],
        help="namespace to serve (repeatable; kopf globs like 'team-*' work); env KDAG_NAMESPACE "
        "(comma-separated)",
    )
    scope.add_argument(
        "--all-namespaces",
        "-A",
        action="store_true",
        default=_env("ALL_NAMESPACES", "") in ("1", "true", "yes"),
        help="serve every namespace; env KDAG_ALL_NAMESPACES=true",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=int(_env("METRICS_PORT", "8080") or 8080),
        help="port of /metrics (0: off); default 8080",
    )
    parser.add_argument(
        "--liveness",
        default=_env("LIVENESS", "http://0.0.0.0:8081/healthz"),
        help="liveness endpoint URL; empty: off; default http://0.0.0.0:8081/healthz",
    )
    peering = parser.add_mutually_exclusive_group()
    peering.add_argument(
        "--peering",
        metavar="NAME",
        default=_env("PEERING"),
        help="kopf peering object for replicas > 1 (needs kopf's peering CRDs)",
    )
    peering.add_argument("--standalone", action="store_true", help="no peering (the default)")
    peering.add_argument(
        "--shards",
        metavar="GROUP",
        default=_env("SHARDS"),
        help="active-active replicas: each drives a share of the runs, members known by "
        "Leases labelled with this group (docs/install.md 'Shards'); env KDAG_SHARDS",
    )
    parser.add_argument(
        "--shard-namespace",
        default=_env("SHARD_NAMESPACE") or os.environ.get("POD_NAMESPACE") or "default",
        help="namespace of the shard Leases; default $POD_NAMESPACE, else 'default'",
    )
    parser.add_argument(
        "--shard-identity",
        default=_env("SHARD_IDENTITY")
        or os.environ.get("POD_ID")
        or f"{socket.gethostname()}-{os.getpid()}",
        help="this replica's name among the shards; default $POD_ID, else <host>-<pid>",
    )
    parser.add_argument(
        "--shard-lease-seconds",
        type=int,
        default=int(_env("SHARD_LEASE_SECONDS", "15") or 15),
        help="shard Lease duration: a replica that stops renewing loses its runs after this "
        "long; default 15",
    )
    parser.add_argument(
        "--shard-renew-seconds",
        type=float,
        default=float(_env("SHARD_RENEW_SECONDS", "5") or 5),
        help="how often a replica renews its shard Lease (at most half the duration); default 5",
    )
    parser.add_argument(
        "--priority", type=int, default=int(_env("PRIORITY", "0") or 0), help="peering priority"
    )
    parser.add_argument(
        "--log-format",
        choices=("json", "text"),
        default=_env("LOG_FORMAT", "text"),
        help="log line format; default text",
    )
    parser.add_argument("--verbose", "-v", action="store_true", help="debug logging")
    parser.add_argument(
        "--max-nodes",
        type=int,
        default=int(_env("MAX_NODES", "10000") or 10000),
        help="most nodes (after fan-out) a run may have; default 10000",
    )
    parser.add_argument(
        "--job-retention-policy",
        choices=("Retain", "DeleteSucceeded", "Delete"),
        default=_env("JOB_RETENTION_POLICY", "Retain"),
        help="what happens to a node's finished Jobs once their result is recorded, for "
        "workflows that do not set jobRetentionPolicy: Retain, DeleteSucceeded or Delete "
        "(frees a count/jobs.batch quota); default Retain",
    )
    parser.add_argument(
        "--max-run-output-bytes",
        type=int,
        default=int(_env("MAX_RUN_OUTPUT_BYTES", str(DEFAULT_OUTPUT_BUDGET)) or 0),
        help="bytes of node outputs one run may keep in its status; a node whose outputs "
        f"would exceed it fails (OutputTooLarge); default {DEFAULT_OUTPUT_BUDGET}",
    )
    parser.add_argument(
        "--resync-seconds",
        type=float,
        default=float(_env("RESYNC_SECONDS", "300") or 300),
        help="re-read active runs and their Jobs this often, to catch deletions a watch "
        "missed while it was down; 0 never; default 300",
    )
    parser.add_argument(
        "--status-hold-seconds",
        type=float,
        default=float(_env("STATUS_HOLD_SECONDS", "2") or 0),
        help="write a run's progress (nodes finishing and starting) to its status at most "
        "this often; a change of the run's phase is written at once; 0 every change; "
        "default 2",
    )
    return parser


def parse_config(argv: Sequence[str] | None = None) -> OperatorConfig:
    parser = build_parser()
    args = parser.parse_args(argv)
    namespaces = tuple(args.namespace) if not args.all_namespaces else ()
    try:
        return OperatorConfig(
            namespaces=namespaces,
            all_namespaces=args.all_namespaces,
            metrics_port=args.metrics_port,
            liveness=args.liveness or None,
            peering=None if args.standalone else args.peering,
            priority=args.priority,
            shards=None if args.standalone else args.shards,
            shard_namespace=args.shard_namespace,
            shard_identity=args.shard_identity,
            shard_lease_seconds=args.shard_lease_seconds,
            shard_renew_seconds=args.shard_renew_seconds,
            log_format=args.log_format,
            verbose=args.verbose,
            max_nodes=args.max_nodes,
            job_retention_policy=args.job_retention_policy,
            max_run_output_bytes=args.max_run_output_bytes,
            resync_seconds=args.resync_seconds,
            status_hold_seconds=args.status_hold_seconds,
        )
    except ValidationError as exc:
        parser.error("; ".join(_flag_error(e) for e in exc.errors()))


def _flag_error(error: Any) -> str:
    """A config error naming the flag it came from (`--shard-lease-seconds: Input should be
    ...`); a check across flags names none."""
    field = next((str(part) for part in error.get("loc") or () if isinstance(part, str)), "")
    message = str(error["msg"])
    return f"--{field.replace('_', '-')}: {message}" if field else message


async def run(config: OperatorConfig) -> None:
    app = await Operator.build(config)
    app.start()
    logger.info(
        "kdag operator starting: %s, metrics on :%d",
        "all namespaces" if config.all_namespaces else f"namespaces {', '.join(config.namespaces)}",
        config.metrics_port,
    )
    settings = kopf_settings(config)
    insights = Insights()  # the namespaces kopf serves, which kdag's own watches follow
    options: dict[str, Any] = {
        "settings": settings,
        "insights": insights,
        "clusterwide": config.all_namespaces,
        "namespaces": config.namespaces,
        "standalone": config.peering is None,
        "peering_name": config.peering,
        "priority": config.priority,
        "liveness_endpoint": config.liveness,
        "memo": kopf.Memo(kdag=app),
    }
    try:
        # What kopf.operator() does, plus kdag's root tasks. They are created after kopf's,
        # in the context where kopf put its credentials.
        existing = asyncio.all_tasks()
        paused: PauseState | None = None
        if config.peering is None:
            tasks = await kopf.spawn_tasks(**options)
        else:
            tasks, paused = await spawn_operator(**options)
        watches = follow_namespaces(insights, watched_kinds(app), kopf_stream(settings, paused))
        ours = [asyncio.create_task(watches, name="kdag run, Job and pod watches")]
        if paused is not None:
            ours.append(
                asyncio.create_task(
                    follow_pause(paused, app.pause, app.resume), name="kdag peering pause"
                )
            )
        await kopf.run_tasks([*tasks, *ours], ignored=existing)
    finally:
        await app.stop()


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_config(argv)
    configure_logging(config.log_format, config.verbose)
    try:
        asyncio.run(run(config))
    except IdentityError as exc:
        logger.error("kdag operator not started: %s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
