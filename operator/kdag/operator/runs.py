"""Reading a WorkflowRun object into what the planner needs (pure).

Nothing a user writes may crash the operator: a spec or Workflow that pydantic rejects
becomes a `problem` naming the field, which the planner turns into an Invalid run.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from kdag.api import RunPhase, WorkflowRunSpec, WorkflowRunStatus, WorkflowSpec
from kdag.engine.model import (
    DEFAULT_OUTPUT_BUDGET,
    JobRetentionPolicy,
    RunContext,
    ServiceAccountRef,
)
from kdag.engine.problems import describe_validation_error
from kdag.engine.run_requests import rerun_requested


@dataclass(frozen=True)
class ParsedRun:
    """A run object read into models; `problem` says what could not be read."""

    namespace: str
    name: str
    uid: str
    generation: int | None
    annotations: Mapping[str, str]
    spec: WorkflowRunSpec
    status: WorkflowRunStatus | None
    problem: str | None

    @property
    def started(self) -> bool:
        """Whether the run has its workflow snapshot (so the Workflow is no longer needed)."""
        return self.status is not None and self.status.workflow is not None

    @property
    def workflow_ref(self) -> str | None:
        return self.spec.workflow_ref.name if self.spec.workflow_ref else None


def parse_run(body: Mapping[str, Any]) -> ParsedRun:
    meta = body.get("metadata") or {}
    raw_spec = body.get("spec") or {}
    problem = None
    try:
        status = WorkflowRunStatus.model_validate(body.get("status") or {})
    except ValidationError as exc:
        status, problem = None, describe_validation_error(exc, "status")
    try:
        spec = WorkflowRunSpec.model_validate(raw_spec)
    except ValidationError as exc:
        problem = problem or describe_validation_error(exc, "spec")
        spec = _controls_only(raw_spec)
    return ParsedRun(
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name", "")),
        uid=str(meta.get("uid", "")),
        generation=meta.get("generation"),
        annotations=dict(meta.get("annotations") or {}),
        spec=spec,
        status=status,
        problem=problem,
    )


def _controls_only(raw_spec: Mapping[str, Any]) -> WorkflowRunSpec:
    """suspend/cancel/params of a spec whose workflow part is broken.

    A started run no longer reads its workflow from the spec, so it can still be steered.
    """
    # Built without validation: the spec as a whole failed it, and these three fields are
    # read defensively below.
    params = raw_spec.get("params")
    return WorkflowRunSpec.model_construct(
        suspend=raw_spec.get("suspend") is True,
        cancel=raw_spec.get("cancel") is True,
        params={str(k): str(v) for k, v in params.items()} if isinstance(params, dict) else None,
    )


def is_settled(body: Mapping[str, Any]) -> bool:
    """A finished run with no new rerun request: planning it would change nothing."""
    status = body.get("status") or {}
    try:
        phase = RunPhase(str(status.get("phase")))
    except ValueError:
        return False
    annotations = (body.get("metadata") or {}).get("annotations") or {}
    return phase.terminal and not rerun_requested(annotations, status.get("rerunToken"))


def workflow_from_object(
    run: ParsedRun, workflow: Mapping[str, Any] | None
) -> tuple[WorkflowSpec | None, str | None]:
    """The referenced Workflow's spec, or the problem that makes the run Invalid."""
    name = run.workflow_ref
    if workflow is None:
        return None, (
            f'spec.workflowRef.name: Workflow "{name}" not found in namespace "{run.namespace}"'
        )
    try:
        return WorkflowSpec.model_validate(workflow.get("spec") or {}), None
    except ValidationError as exc:
        detail = describe_validation_error(exc, "spec")
        return None, f'spec.workflowRef.name: Workflow "{name}" is not valid: {detail}'


def run_context(
    run: ParsedRun,
    *,
    workflow: WorkflowSpec | None,
    workflow_problem: str | None,
    max_nodes: int,
    operator_account: ServiceAccountRef | None = None,
    job_retention_policy: JobRetentionPolicy = "Retain",
    output_budget: int = DEFAULT_OUTPUT_BUDGET,
) -> RunContext:
    """The planner's view of the run. `workflow` matters only before the snapshot is taken."""
    if run.workflow_ref is None:
        workflow = run.spec.workflow
    return RunContext(
        name=run.name,
        namespace=run.namespace,
        uid=run.uid,
        spec=run.spec,
        workflow=workflow,
        workflow_name=run.workflow_ref,
        annotations=run.annotations,
        generation=run.generation,
        problem=run.problem or workflow_problem,
        max_nodes=max_nodes,
        operator_account=operator_account,
        job_retention_policy=job_retention_policy,
        output_budget=output_budget,
    )
