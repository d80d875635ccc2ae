"""Attempts (SPEC §3 Jobs, Parallelism): starting a node's Job within the run's parallelism,
following it to its end, and backing off while the API server refuses Jobs for now."""

from __future__ import annotations

import math
from dataclasses import fields, replace
from datetime import datetime, timedelta

from kdag.api import NodePhase, NodeStatus
from kdag.engine import jobs, names, templating
from kdag.engine.defaults import effective_node
from kdag.engine.instance_keys import template_of
from kdag.engine.model import (
    PODS_REFUSED_REASON,
    CreateJob,
    DeleteJob,
    JobObservation,
    JobState,
)
from kdag.engine.outputs import failure_message
from kdag.engine.pass_state import PassState, item_of
from kdag.engine.rules import outputs, retry, stop
from kdag.engine.run_summary import short_list
from kdag.engine.timeutil import parse_iso, to_iso

# A Job the API server refuses for now (a full ResourceQuota) is tried again after 1 s,
# 2 s, 4 s, ... at most 30 s: the quota frees as Jobs are deleted, which the run cannot see.
REFUSAL_BACKOFF_SECONDS = 1
REFUSAL_MAX_BACKOFF_SECONDS = 30
JOB_REFUSED = "JobRefused"


def observe(state: PassState, key: str, ns: NodeStatus) -> None:
    """A Running node follows its Job: success, failure (maybe retried), or deletion."""
    name = state.job_of(key, ns)
    if name in state.creating:
        return  # asked for in this plan: it cannot have been deleted yet
    job = state.observed.jobs.get(name or "")
    if job is None or job.deleting:
        retry.attempt_failed(
            state, key, ns, NodePhase.FAILED, f"Job {name} was deleted before it finished", None
        )
        return
    job = decided(job)
    if job.state is JobState.ACTIVE:
        if ns.message != job.pod_waiting:
            # Why its container cannot start (an image that cannot be pulled), while it
            # cannot; the node waits so until it starts or its timeout ends the Job.
            state.writable(key).message = job.pod_waiting
        return
    if job.reason == PODS_REFUSED_REASON:
        # Still active: the Job controller would go on trying until the deadline, and
        # start a pod for this finished attempt should the refusal end.
        state.actions.append(DeleteJob(job.name, "its pods were refused"))
    finished = to_iso(job.finished_at) if job.finished_at else state.now_iso
    if job.state is JobState.SUCCEEDED:
        outputs.record_success(state, key, ns, job, finished)
        return
    timed_out = job.reason == "DeadlineExceeded"
    retry.attempt_failed(
        state,
        key,
        ns,
        NodePhase.TIMED_OUT if timed_out else NodePhase.FAILED,
        failure_message(job, timed_out),
        job.exit_code,
        finished,
    )


def decided(job: JobObservation) -> JobObservation:
    """The attempt as its pod decided it: a Job still active whose one pod has ended is
    finished as the pod ended (the Job controller marks the Job a second later, after
    batching its pod events). A Job that ends otherwise (its deadline, a pod deleted before
    it ended) keeps the Job's own status, which the pod does not override."""
    if job.state is not JobState.ACTIVE or job.pod_state is None:
        return job
    return replace(
        job,
        state=job.pod_state,
        finished_at=job.pod_finished_at or job.finished_at,
        seen_at=job.pod_seen_at or job.seen_at,
    )


_STARTED_AT = frozenset({"started_at"})  # the planner never reads when an active Job started
# What only the Job controller writes on a Job: once its pod has decided the attempt, the
# planner has already acted on everything else.
_JOB_OWN_FIELDS = frozenset({"state", "reason", "message", "started_at", "finished_at", "seen_at"})
_OBSERVATION_FIELDS = tuple(f.name for f in fields(JobObservation))


def _same_but(before: JobObservation, after: JobObservation, ignored: frozenset[str]) -> bool:
    """Whether the observations agree on every field but the ignored ones (compared in
    place: this runs on every Job event, and copying them was a measurable cost)."""
    return all(
        getattr(before, name) == getattr(after, name)
        for name in _OBSERVATION_FIELDS
        if name not in ignored
    )


def job_change_matters(
    before: JobObservation | None, after: JobObservation, *, deletes_finished_jobs: bool
) -> bool:
    """Whether the planner may act differently on `after` than on `before` (both with their
    pod's result folded in), so the run is worth a pass.

    The planner never reads when an active Job started. A Job marked finished as its pod
    already decided it is news only where finished Jobs are deleted (jobRetentionPolicy);
    one that ends otherwise (a deadline raced its pod) is news, as is any other change.
    """
    if before is None:
        return True
    caught_up = (
        before.state is JobState.ACTIVE
        and before.pod_state is not None
        and after.state is before.pod_state
        and _same_but(before, after, _JOB_OWN_FIELDS)
    )
    if caught_up:
        return deletes_finished_jobs
    return not _same_but(before, after, _STARTED_AT)


def schedule(state: PassState) -> None:
    """Start queued nodes in a stable order while the run's parallelism has room."""
    if stop.suspended(state):
        return
    limit = state.workflow.parallelism or math.inf
    active = 0
    queued = []
    for k, ns in state.nodes.items():  # one walk: it runs on every pass over every node
        if ns.phase is NodePhase.RUNNING:
            active += 1
        elif ns.phase is NodePhase.QUEUED:
            queued.append(k)
    queued.sort(key=lambda k: (state.position[template_of(k)], state.nodes[k].index or 0))
    for key in queued:
        if active >= limit:
            break
        due = state.nodes[key].next_attempt_at
        if due and parse_iso(due) > state.now:
            continue  # its Job was refused for now: it backs off
        if _start(state, key):
            active += 1


def _start(state: PassState, key: str) -> bool:
    """Render the node's templates and ask for its next attempt's Job (or adopt it)."""
    ns = state.nodes[key]
    if state.observed.refused:
        # The namespace has no room for Jobs now: adopt what this pass made, make nothing.
        name = names.job_name(state.ctx.name, state.ctx.uid, key, (ns.attempt or 0) + 1)
        if name not in state.observed.jobs:
            refusal = state.observed.refused.get(name)
            if refusal is not None:
                _refuse(state, key, ns, refusal)
            return False
    node = effective_node(state.workflow, state.specs[template_of(key)])
    ctx = state.template_context(item_of(key, ns))
    try:
        command = [templating.render(t, ctx) for t in node.command] if node.command else None
        args = [templating.render(t, ctx) for t in node.args] if node.args else None
        env = [
            e.model_copy(update={"value": templating.render(e.value, ctx)})
            if e.value is not None
            else e
            for e in node.env or []
        ]
    except templating.TemplateError as exc:
        state.finish_node(key, NodePhase.FAILED, f"template: {exc}")
        state.advance_again = True
        return False
    attempt = (ns.attempt or 0) + 1
    manifest = jobs.build_job(
        run_name=state.ctx.name,
        run_namespace=state.ctx.namespace,
        run_uid=state.ctx.uid,
        workflow_name=state.status.workflow_name or state.ctx.name,
        instance=key,
        attempt=attempt,
        node=node,
        command=command,
        args=args,
        env=env,
        ready_at=ns.ready_at,
    )
    name = manifest["metadata"]["name"]
    existing = state.observed.jobs.get(name)
    if existing is None:
        state.actions.append(CreateJob(key, attempt, manifest))
        state.creating.add(name)
    state.move(ns, NodePhase.RUNNING)
    ns.attempt = attempt
    ns.job = name if ns.index is None else None  # instances: derivable, kept out of status
    ns.started_at = to_iso(existing.started_at) if existing and existing.started_at else None
    ns.started_at = ns.started_at or state.now_iso
    ns.ready_at = None
    ns.message = None
    ns.reason = None
    ns.refusals = None
    ns.next_attempt_at = None
    ns.exit_code = None
    if existing is not None and decided(existing).state is not JobState.ACTIVE:
        state.advance_again = True  # adopted a finished Job: observe it in another pass
    return True


def _refuse(state: PassState, key: str, ns: NodeStatus, message: str) -> None:
    """Its Job was refused for now: stay Queued, back off, and say why. Not an attempt."""
    refusals = (ns.refusals or 0) + 1
    delay = retry.retry_delay(REFUSAL_BACKOFF_SECONDS, 2, REFUSAL_MAX_BACKOFF_SECONDS, refusals)
    ns.refusals = refusals
    ns.reason = JOB_REFUSED
    ns.next_attempt_at = to_iso(state.now + timedelta(seconds=math.ceil(delay)))
    ns.message = f"the API server refused its Job for now: {message}"
    state.refused.append(key)


def report_refusals(state: PassState) -> None:
    """One Event for all the Jobs this pass was refused."""
    if state.refused:
        message = state.observed.refused[next(iter(state.observed.refused))]
        state.event(
            "Warning",
            JOB_REFUSED,
            f"{len(state.refused)} Job(s) refused for now, trying again with backoff "
            f"({short_list(state.refused)}): {message}",
        )


def node_due(state: PassState, key: str, ns: NodeStatus) -> datetime | None:
    """A Queued node whose Job was refused is due when its backoff ends.

    Only a future time: a refused node that is due but waits for a slot (or for the run to
    resume) is started by the pass that frees it.
    """
    if not ns.next_attempt_at:
        return None
    due = parse_iso(ns.next_attempt_at)
    return due if due > state.now else None
