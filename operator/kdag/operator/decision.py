"""The pure part of a pass: plan the run and diff the new status against the stored one."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kdag.api import WorkflowRunStatus, WorkflowSpec
from kdag.engine.model import (
    DEFAULT_OUTPUT_BUDGET,
    JobRetentionPolicy,
    Observed,
    PlanResult,
    ServiceAccountRef,
)
from kdag.engine.planner import plan
from kdag.operator.runs import ParsedRun, run_context
from kdag.operator.status_patch import status_patch


@dataclass(frozen=True)
class Decision:
    """What one planning pass decided, with the minimal status patch to record it."""

    run: ParsedRun
    result: PlanResult
    status_patch: dict[str, Any]


def decide(
    body: Mapping[str, Any],
    run: ParsedRun,
    observed: Observed,
    workflow: WorkflowSpec | None,
    workflow_problem: str | None,
    now: datetime,
    max_nodes: int,
    operator_account: ServiceAccountRef | None = None,
    job_retention_policy: JobRetentionPolicy = "Retain",
    output_budget: int = DEFAULT_OUTPUT_BUDGET,
    base: WorkflowRunStatus | None = None,
) -> Decision:
    """Plan the run and diff the new status against the stored one (pure; runs in a thread).

    `base` is a status planned earlier but not written yet (`status_hold`): the plan goes
    on from it, and the patch still turns the stored status into the new one."""
    ctx = run_context(
        run,
        workflow=workflow,
        workflow_problem=workflow_problem,
        max_nodes=max_nodes,
        operator_account=operator_account,
        job_retention_policy=job_retention_policy,
        output_budget=output_budget,
    )
    result = plan(ctx, base if base is not None else run.status, observed, now)
    patch = status_patch(body.get("status") or {}, run.status, result.status)
    return Decision(run=run, result=result, status_patch=patch)
