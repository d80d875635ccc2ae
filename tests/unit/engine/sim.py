"""A tiny simulated cluster for planner tests: Jobs appear when asked for, finish when told.

`World.step()` calls the real planner with the current status and observed Jobs, then
applies its actions the way the operator would (create -> the Job exists and is active,
delete -> gone, remove annotations -> gone).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from kdag.api import (
    NodePhase,
    NodeStatus,
    RunPhase,
    WorkflowRunSpec,
    WorkflowRunStatus,
    WorkflowSpec,
)
from kdag.engine import names
from kdag.engine.model import (
    DEFAULT_OUTPUT_BUDGET,
    CreateJob,
    DeleteJob,
    EmitEvent,
    JobObservation,
    JobRetentionPolicy,
    JobState,
    Observed,
    PlanResult,
    RemoveAnnotations,
    RunContext,
)
from kdag.engine.planner import plan

T0 = datetime(2026, 11, 22, 2, 0, 0, tzinfo=UTC)
S = NodePhase.SUCCEEDED
# A four-item fan-out and its instances, shared by the tests of room (quota, budget, cleanup).
FAN = [{"name": "fan", "forEach": ["a", "b", "c", "d"]}]
INSTANCES = ["fan[a]", "fan[b]", "fan[c]", "fan[d]"]


def workflow(**spec: Any) -> WorkflowSpec:
    """A WorkflowSpec from camelCase keys; nodes get busybox unless they say otherwise."""
    spec.setdefault("defaults", {"image": "busybox:1.36"})
    return WorkflowSpec.model_validate(spec)


def chain(*names: str) -> list[dict[str, Any]]:
    """Nodes a -> b -> c ..."""
    return [
        {"name": n, **({"dependsOn": [names[i - 1]]} if i else {})} for i, n in enumerate(names)
    ]


@dataclass(frozen=True)
class Outcome:
    exit_code: int = 0
    message: str | None = None
    timed_out: bool = False


OK = Outcome()
FAIL = Outcome(exit_code=1, message="boom")
TIMEOUT = Outcome(timed_out=True)


@dataclass
class World:
    spec: WorkflowSpec
    params: dict[str, str] | None = None
    annotations: dict[str, str] = field(default_factory=dict)
    name: str = "run1"
    now: datetime = T0
    suspend: bool = False
    cancel: bool = False
    status: WorkflowRunStatus | None = None
    jobs: dict[str, JobObservation] = field(default_factory=dict)
    created: list[CreateJob] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    events: list[EmitEvent] = field(default_factory=list)
    last: PlanResult | None = None
    max_nodes: int = 10_000
    max_running_seen: int = 0
    # A count/jobs.batch ResourceQuota: the most Jobs (finished or not) that may exist.
    job_quota: int | None = None
    job_retention_policy: JobRetentionPolicy = "Retain"
    output_budget: int = DEFAULT_OUTPUT_BUDGET
    refused: list[str] = field(default_factory=list)

    def context(self) -> RunContext:
        return RunContext(
            name=self.name,
            namespace="default",
            uid="uid-1",
            spec=WorkflowRunSpec(
                workflow=self.spec, params=self.params, suspend=self.suspend, cancel=self.cancel
            ),
            workflow=self.spec,
            annotations=dict(self.annotations),
            generation=1,
            max_nodes=self.max_nodes,
            job_retention_policy=self.job_retention_policy,
            output_budget=self.output_budget,
        )

    def job_name(self, instance: str, attempt: int = 1) -> str:
        """The name the planner gives the Job of this attempt."""
        return names.job_name(self.name, self.context().uid, instance, attempt)

    def step(self) -> PlanResult:
        """One pass, as the operator makes it: plan, apply; when the quota refused a create,
        plan again told so, and record that plan."""
        result = self._plan({})
        refused = self._apply(result)
        if refused:
            result = self._plan(refused)
            assert not self._apply(result), "a plan told of refusals asked for a new Job"
        self.last = result
        self.status = result.status
        running = sum(1 for j in self.jobs.values() if j.state is JobState.ACTIVE)
        self.max_running_seen = max(self.max_running_seen, running)
        return result

    def _plan(self, refused: dict[str, str]) -> PlanResult:
        """The planner never changes the status it is given: the operator keeps it as the
        stored status (and shares its unchanged nodes with the next one)."""
        given = self.status.model_dump() if self.status is not None else None
        result = plan(self.context(), self.status, Observed(dict(self.jobs), refused), self.now)
        after = self.status.model_dump() if self.status is not None else None
        assert after == given, "the planner changed the status it was given"
        return result

    def _apply(self, result: PlanResult) -> dict[str, str]:
        refused: dict[str, str] = {}
        for action in result.actions:
            if isinstance(action, CreateJob):
                assert action.name not in self.jobs, f"duplicate Job {action.name}"
                if self.job_quota is not None and len(self.jobs) >= self.job_quota:
                    self.refused.append(action.name)
                    refused[action.name] = (
                        f'jobs.batch "{action.name}" is forbidden: exceeded quota: jobs, '
                        f"requested: count/jobs.batch=1, used: count/jobs.batch={len(self.jobs)}, "
                        f"limited: count/jobs.batch={self.job_quota}"
                    )
                    continue
                self.created.append(action)
                self.jobs[action.name] = JobObservation(
                    name=action.name,
                    instance=action.instance,
                    attempt=action.attempt,
                    state=JobState.ACTIVE,
                    started_at=self.now,
                )
            elif isinstance(action, DeleteJob):
                self.deleted.append(action.name)
                self.jobs.pop(action.name, None)
            elif isinstance(action, EmitEvent):
                self.events.append(action)
            elif isinstance(action, RemoveAnnotations):
                for key in action.keys:
                    self.annotations.pop(key, None)
        return refused

    # --- the simulated cluster

    def active_jobs(self) -> list[JobObservation]:
        return [j for j in self.jobs.values() if j.state is JobState.ACTIVE]

    def finish_job(self, job: JobObservation, outcome: Outcome = OK) -> None:
        if outcome.timed_out:
            updated = replace(
                job,
                state=JobState.FAILED,
                reason="DeadlineExceeded",
                message="Job was active longer than specified deadline",
                finished_at=self.now,
                seen_at=self.now,
            )
        elif outcome.exit_code:
            updated = replace(
                job,
                state=JobState.FAILED,
                reason="BackoffLimitExceeded",
                exit_code=outcome.exit_code,
                termination_message=outcome.message,
                finished_at=self.now,
                seen_at=self.now,
            )
        else:
            updated = replace(
                job,
                state=JobState.SUCCEEDED,
                exit_code=0,
                termination_message=outcome.message,
                finished_at=self.now,
                seen_at=self.now,
            )
        self.jobs[job.name] = updated

    def finish(self, instance: str, outcome: Outcome = OK) -> None:
        """Finish the active Job of `instance`."""
        matches = [j for j in self.active_jobs() if j.instance == instance]
        assert matches, f"no active Job for {instance}; active: {self.active_instances()}"
        self.finish_job(matches[0], outcome)

    def active_instances(self) -> list[str]:
        return sorted(j.instance for j in self.active_jobs())

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    # --- reading the run

    @property
    def phase(self) -> RunPhase | None:
        return self.status.phase if self.status else None

    def node(self, key: str) -> NodeStatus:
        assert self.status is not None and self.status.nodes is not None
        return self.status.nodes[key]

    def phases(self) -> dict[str, NodePhase]:
        assert self.status is not None
        return {k: ns.phase for k, ns in (self.status.nodes or {}).items()}

    def run(
        self,
        outcome: Callable[[str, int], Outcome] = lambda instance, attempt: OK,
        max_steps: int = 10_000,
    ) -> RunPhase:
        """Drive the run to a terminal phase: finish Jobs per `outcome(instance, attempt)`,
        and jump the clock to the planner's requeue time when nothing is running."""
        for _ in range(max_steps):
            result = self.step()
            if self.phase is not None and self.phase.terminal:
                return self.phase
            if not self.settle(result, outcome):
                return self.phase or RunPhase.PENDING  # stuck: the caller asserts
        raise AssertionError("run did not settle")

    def settle(self, result: PlanResult, outcome: Callable[[str, int], Outcome]) -> bool:
        """Let the cluster move on after a plan: finish the active Jobs per `outcome`, or,
        with none active, jump the clock to the planner's requeue time. False: stuck."""
        active = self.active_jobs()
        if active:
            for job in active:
                self.finish_job(job, outcome(job.instance, job.attempt))
        elif result.requeue_at is not None:
            self.now = max(self.now, result.requeue_at)
        else:
            return False
        return True
