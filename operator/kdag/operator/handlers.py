"""Watch-event handlers: each only updates the cache and wakes the owning run.

Runs, Jobs and pods come straight from their watch streams (`kdag.operator.object_watches`),
past kopf's per-object processing, and nothing is written onto them, so watching costs no
API writes. A run's event also updates the runs each Workflow has (`workflow_runs`) and
reaches the Workflow controller. The planning happens in the reconciler, one run at a time,
however many events arrive.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from kdag.engine.model import JobState
from kdag.engine.rules.attempts import job_change_matters
from kdag.operator.app import Operator
from kdag.operator.cache import user_inputs
from kdag.operator.config import JOBS_RESOURCE, PODS_RESOURCE, RUNS_RESOURCE
from kdag.operator.object_watches import WatchedKind
from kdag.operator.objects import DELETED, run_key
from kdag.operator.observe import pod_job_name, pod_result, pod_waiting, run_of


def _changed_inputs(
    before: Mapping[str, Any], after: Mapping[str, Any], *, writing_status: bool
) -> bool:
    """What users change (spec, annotations, deletion) or a status someone else wrote.

    Our own status writes come back through the watch too. Mostly their answer is cached
    first, and the event is not newer; when the event comes first, while our write is still
    in flight, a status change is taken for ours (kdag alone writes a run's status): the
    pass that writes it is running, and a user's change in the same object is still seen.
    """
    if user_inputs(before) != user_inputs(after):
        return True
    return not writing_status and before.get("status") != after.get("status")


def handle_run_event(app: Operator, event_type: str | None, body: dict[str, Any]) -> None:
    key = run_key(body)
    if event_type == DELETED:
        app.cache.remove_run(key)
        app.reconciler.forget(key)
        return
    before = app.cache.run(key)
    if app.cache.put_run(body) and (
        before is None
        or _changed_inputs(before, body, writing_status=app.reconciler.writing_status(key))
    ):
        app.reconciler.enqueue(key)


def handle_job_event(app: Operator, event_type: str | None, body: dict[str, Any]) -> None:
    if event_type == DELETED:
        key = app.cache.remove_job(body)
        if key is not None:
            app.reconciler.enqueue(key)
        return
    update = app.cache.put_job(body)
    if update is None:
        return
    key = update.key
    if job_change_matters(
        update.before,
        update.after,
        deletes_finished_jobs=app.reconciler.deletes_finished_jobs(key),
    ):
        app.reconciler.enqueue(key)
    job = app.cache.job(key, str((body.get("metadata") or {}).get("name", "")))
    if job is not None:
        app.refusals.consider(key, job)


def handle_pod_event(app: Operator, event_type: str | None, body: dict[str, Any]) -> None:
    if event_type == DELETED:
        return  # the result, if any, was seen before; the Job's deletion clears it
    result = pod_result(body)
    job_name = pod_job_name(body)
    meta = body.get("metadata") or {}
    run = run_of(meta)
    if job_name is None or not run:
        return
    namespace = str(meta.get("namespace", ""))
    if result is None:
        # Not ended: a container that cannot start (its image cannot be pulled) is news.
        if app.cache.put_pod_waiting(namespace, job_name, pod_waiting(body)):
            app.reconciler.enqueue((namespace, run))
        return
    app.cache.put_pod_waiting(namespace, job_name, None)
    if not app.cache.put_pod_result(namespace, job_name, result):
        return
    key = (namespace, run)
    job = app.cache.job(key, job_name)
    # A pod that ended decides its attempt before the Job does; a finished Job planned
    # without its pod's result listed the pods. A result seen while the pod is being deleted
    # waits for the Job's own status.
    if job is not None and (
        result.pod_state is not None or job.observation.state is not JobState.ACTIVE
    ):
        app.reconciler.enqueue(key)


def handle_run(app: Operator, event_type: str | None, body: dict[str, Any]) -> None:
    """A run's event: the Workflows' view of their runs first, then the run's own pass and
    the Workflow controller."""
    app.workflow_runs.observe(event_type, body)
    handle_run_event(app, event_type, body)
    app.run_changed(event_type, body)


def watched_kinds(app: Operator) -> tuple[WatchedKind, ...]:
    """Runs, Jobs and pods with their handlers, for `object_watches.follow_namespaces`."""
    return (
        WatchedKind(RUNS_RESOURCE, functools.partial(handle_run, app), app.workflow_runs),
        WatchedKind(JOBS_RESOURCE, functools.partial(handle_job_event, app)),
        WatchedKind(PODS_RESOURCE, functools.partial(handle_pod_event, app)),
    )
