"""Model-based test: the reconciler against the fake API, with users and faults at every point.

Hypothesis drives one run through arbitrary interleavings of
- user actions: cancel, suspend/resume, approve, reject, rerun, a Job deleted by hand, an
  edit of the Workflow the run was started from;
- the cluster: pods ending (succeeded or failed, with outputs) and their Jobs marked after
  them, in agreement or not (a deadline passing in between), or Jobs finishing at once;
- server faults at every API call of a pass, before the call or after it (the write landed
  but its answer was lost): 500, 429, a full quota; and users writing between the pass's
  own writes;
- the watch delivering events late, restarting (410 Gone: a relist that never shows what
  was deleted meanwhile) and the operator restarting with an empty cache.

and checks what users rely on:
- no Job name (one per node attempt) is ever created twice;
- a node never leaves a terminal phase except by a rerun, and the run's workflow snapshot
  never changes;
- whenever the operator has nothing queued and no timer pending, every user intent visible
  on the server has been acted on (a cancel ended the run, an answered gate is no longer
  waiting, a rerun request was taken, a resumed run is not suspended);
- once every gate is answered and every Job has finished, the run reaches a terminal phase.

Bounded (examples and steps) and timeless: the clock is the harness's, timers are fired by
advancing it.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import os
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from conftest import (
    Clock,
    FakeKube,
    RecordingEvents,
    annotate,
    set_spec,
    status_error,
    watch_handlers_app,
)
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from kdag.engine import names
from kdag.operator.cache import Cache
from kdag.operator.handlers import handle_job_event, handle_pod_event, handle_run_event
from kdag.operator.kube import KubeError
from kdag.operator.metrics import Metrics
from kdag.operator.reconciler import Reconciler

NS, RUN = "ns", "r1"
KEY = (NS, RUN)
TERMINAL_RUN = {"Succeeded", "Failed", "Cancelled", "TimedOut", "Invalid"}
TERMINAL_NODE = {"Succeeded", "Failed", "TimedOut", "Skipped", "Cancelled"}
WORKFLOW = {
    "defaults": {"image": "busybox:1.36", "retry": {"limit": 1, "backoffSeconds": 1}},
    "nodes": [
        {"name": "a"},
        {"name": "gate", "dependsOn": ["a"], "approval": {"message": "go?"}},
        {"name": "b", "dependsOn": ["gate"]},
        {"name": "c", "dependsOn": ["a"], "forEach": ["x", "y"]},
    ],
    "finally": [{"name": "f"}],
}
USER_ACTIONS = ("cancel", "suspend", "resume", "approve", "reject", "rerun", "delete_job", "edit")
FAULTS = ("500", "429", "quota", "lost_answer")
# Settling is a bounded loop: a reconciler that keeps asking for passes without any input
# changing is spinning, which is a defect of its own.
MAX_PASSES_TO_SETTLE = 60


class InvariantBroken(AssertionError):  # noqa: N818 - reads as what it reports
    pass


class ModelKube(FakeKube):
    """The fake API, logging every change as the watches would deliver it, checking the
    write-side invariants, and calling `chaos` at every API call of a pass."""

    def __init__(self) -> None:
        super().__init__()
        self.log: list[tuple[str, str, dict[str, Any]]] = []
        self.created: set[str] = set()
        # Job names the operator recorded in a status write: the status is the checkpoint,
        # so one of these created again would be a second Job for that node attempt.
        self.recorded: set[str] = set()
        # Raised inside an API call, a violation would be caught as a failed pass; kept here
        # and reported by the state machine's invariant instead.
        self.violations: list[str] = []
        self.chaos: Callable[[str], str | None] | None = None

    def record(self, kind: str, event: str, body: Mapping[str, Any]) -> None:
        self.log.append((kind, event, copy.deepcopy(dict(body))))

    def _fault(self, verb: str) -> str | None:
        return self.chaos(verb) if self.chaos is not None else None

    @staticmethod
    def _raise(fault: str | None) -> None:
        if fault == "500":
            raise status_error(500, "InternalError")
        if fault == "429":
            raise status_error(429, "TooManyRequests")

    async def create_job(self, namespace: str, manifest: Mapping[str, Any]) -> dict[str, Any]:
        fault = self._fault("create_job")
        self._raise(fault)
        if fault == "quota":
            raise KubeError(
                403,
                "Forbidden",
                '{"kind":"Status","reason":"Forbidden","message":"exceeded quota: jobs"}',
            )
        name = manifest["metadata"]["name"]
        existed = (namespace, name) in self.jobs
        created = await super().create_job(namespace, manifest)
        if not existed:
            if name in self.recorded:
                self.violations.append(f"Job {name}, recorded in status, was created again")
            self.created.add(name)
            self.record("job", "ADDED", created)
        if fault == "lost_answer":
            raise status_error(500, "InternalError")
        return created

    async def delete_job(self, namespace: str, name: str) -> bool:
        fault = self._fault("delete_job")
        self._raise(fault)
        job = self.jobs.get((namespace, name))
        gone = await super().delete_job(namespace, name)
        if job is not None:
            self.record("job", "DELETED", job)
        if fault == "lost_answer":
            raise status_error(500, "InternalError")
        return gone

    async def patch_run_status(
        self, namespace: str, name: str, patch: Mapping[str, Any]
    ) -> dict[str, Any]:
        fault = self._fault("patch_run_status")
        self._raise(fault)
        before = copy.deepcopy(self.runs[(namespace, name)].get("status") or {})
        stored = await super().patch_run_status(namespace, name, patch)
        after = stored.get("status") or {}
        try:
            self.violations.extend(status_moves_backwards(before, after))
            self.recorded.update(recorded_jobs(after))
        except Exception as exc:  # the reconciler would take it for a failed write
            self.violations.append(f"the model's own check failed: {exc!r}")
        self.record("run", "MODIFIED", stored)
        if fault == "lost_answer":
            raise status_error(500, "InternalError")
        return stored

    async def patch_run(
        self, namespace: str, name: str, patch: Mapping[str, Any]
    ) -> dict[str, Any]:
        fault = self._fault("patch_run")
        self._raise(fault)
        stored = await super().patch_run(namespace, name, patch)
        self.record("run", "MODIFIED", stored)
        if fault == "lost_answer":
            raise status_error(500, "InternalError")
        return stored

    def write_run(self, change: Callable[[dict[str, Any]], None]) -> None:
        """A user's write to the run (kubectl edit, annotate)."""
        change(self.runs[KEY])
        self.touch(KEY)
        self.record("run", "MODIFIED", self.runs[KEY])


def status_moves_backwards(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    rerun = before.get("rerunToken") != after.get("rerunToken")
    found = []
    if before.get("workflow") is not None and after.get("workflow") != before.get("workflow"):
        found.append("the run's workflow snapshot changed")
    for name, node in (before.get("nodes") or {}).items():
        new = (after.get("nodes") or {}).get(name)
        left = new is None or new.get("phase") != node.get("phase")
        if node.get("phase") in TERMINAL_NODE and not rerun and left:
            found.append(
                f"node {name} went from {node.get('phase')} to "
                f"{new.get('phase') if new else 'nothing'} without a rerun"
            )
    return found


def recorded_jobs(status: Mapping[str, Any]) -> set[str]:
    found = set()
    for instance, node in (status.get("nodes") or {}).items():
        attempt = node.get("attempt")
        if attempt:
            job = names.current_job(RUN, f"uid-{RUN}", instance, node.get("job"), attempt)
            if job:
                found.add(job)
    return found


class OperatorModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.kube = ModelKube()
        self.clock = Clock()
        self.kube.workflows[(NS, "wf")] = {
            "metadata": {"name": "wf", "namespace": NS},
            "spec": copy.deepcopy(WORKFLOW),
        }
        body = self.kube.add_run(
            {
                "apiVersion": "kdag.dev/v1alpha1",
                "kind": "WorkflowRun",
                "metadata": {"name": RUN, "namespace": NS},
                "spec": {"workflowRef": {"name": "wf"}},
            }
        )
        self.kube.record("run", "ADDED", body)
        self.due: datetime | None = None
        self.reruns = 0
        self.edits = 0
        self._start_operator()

    # ------------------------------------------------------------ the operator

    def _start_operator(self) -> None:
        """A fresh operator: empty cache, and watches that list what exists now."""
        self.cache = Cache(clock=self.clock)
        self.reconciler = Reconciler(
            self.kube,  # type: ignore[arg-type]
            self.cache,
            Metrics(),
            RecordingEvents(),  # type: ignore[arg-type]
            clock=self.clock,
            plan_in_thread=False,
        )
        # Pods refused by admission are not modelled (test_op_refusals.py covers them).
        self.app = watch_handlers_app(self.cache, self.reconciler)
        self.due = None
        self._relist()

    def _relist(self) -> None:
        """A watch (re)started: what exists now arrives as ADDED; deletions are never shown."""
        self.kube.log.clear()
        for run in list(self.kube.runs.values()):
            handle_run_event(self.app, "ADDED", copy.deepcopy(run))  # type: ignore[arg-type]
        for job in list(self.kube.jobs.values()):
            handle_job_event(self.app, "ADDED", copy.deepcopy(job))  # type: ignore[arg-type]
        for pod in list(self.kube.pods.values()):
            handle_pod_event(self.app, "ADDED", copy.deepcopy(pod))  # type: ignore[arg-type]

    def _deliver(self, count: int | None = None) -> None:
        """The watches deliver the oldest `count` pending events (all when None), in order."""
        taken = self.kube.log if count is None else self.kube.log[:count]
        self.kube.log = [] if count is None else self.kube.log[count:]
        for kind, event, body in taken:
            handler = {"run": handle_run_event, "job": handle_job_event, "pod": handle_pod_event}
            handler[kind](self.app, event, body)  # type: ignore[arg-type]

    def _wanted(self) -> bool:
        r = self.reconciler
        return KEY in r._queued or KEY in r._dirty

    def _pass(self, chaos: Callable[[str], str | None] | None = None) -> None:
        """One pass as a queue worker runs it (the write pause is skipped: no wall clock)."""
        r = self.reconciler
        r._queued.discard(KEY)
        r._busy.add(KEY)
        self.kube.chaos = chaos
        try:
            asyncio.run(r.reconcile_safely(KEY))
        finally:
            self.kube.chaos = None
            r._busy.discard(KEY)
            timer = r._timers.pop(KEY, None)
            if timer is not None:
                timer[1].cancel()
            self.due = timer[0] if timer is not None else None
            if KEY in r._dirty:
                r._dirty.discard(KEY)
                r.enqueue(KEY)

    def _fire_timer(self) -> None:
        assert self.due is not None
        self.clock.now = max(self.clock.now, self.due)
        self.due = None
        self.reconciler.enqueue(KEY)

    def _settle(self) -> None:
        """Deliver everything and run the passes the operator asks for (timers included)
        until it asks for none; then every visible user intent must have been acted on."""
        for _ in range(MAX_PASSES_TO_SETTLE):
            self._deliver()
            if self._wanted():
                self._pass()
            elif self.due is not None:
                self._fire_timer()
            else:
                break
        else:
            raise InvariantBroken(
                f"the operator did not settle within {MAX_PASSES_TO_SETTLE} passes"
            )
        self._check_intents_honoured()

    def _check_intents_honoured(self) -> None:
        run = self.kube.runs[KEY]
        spec, status = run["spec"], run.get("status") or {}
        annotations = run["metadata"].get("annotations") or {}
        phase = status.get("phase")
        if spec.get("cancel") and phase not in TERMINAL_RUN:
            # A cancelled run still runs its `finally` nodes; everything else must be over.
            finals = {n["name"] for n in WORKFLOW["finally"]}
            unfinished = [
                name
                for name, node in (status.get("nodes") or {}).items()
                if name not in finals and node.get("phase") not in TERMINAL_NODE
            ]
            if not status.get("endingPhase") or unfinished:
                raise InvariantBroken(
                    f"spec.cancel is true but the settled run is {phase}: {unfinished}"
                )
        if not spec.get("suspend") and phase == "Suspended":
            raise InvariantBroken("the run was resumed but is still Suspended")
        if spec.get("suspend") and phase == "Running" and not status.get("nodes"):
            raise InvariantBroken("the run was suspended but reports Running with nothing started")
        gate = (status.get("nodes") or {}).get("gate") or {}
        answered = {"approve.kdag.dev/gate", "reject.kdag.dev/gate"} & set(annotations)
        if answered and gate.get("phase") == "WaitingForApproval":
            raise InvariantBroken(f"gate answered ({sorted(answered)}) but still waiting")
        token = annotations.get("kdag.dev/rerun")
        if token is not None and phase in TERMINAL_RUN and token != status.get("rerunToken"):
            raise InvariantBroken(f"rerun {token} requested of a settled run but never taken")

    # ------------------------------------------------------------ users

    def _user(self, action: str, data: st.DataObject | None = None) -> None:
        kube = self.kube
        if action == "cancel":
            kube.write_run(set_spec(cancel=True))
        elif action == "suspend":
            kube.write_run(set_spec(suspend=True))
        elif action == "resume":
            kube.write_run(set_spec(suspend=False))
        elif action == "approve":
            kube.write_run(annotate("approve.kdag.dev/gate", "alice"))
        elif action == "reject":
            kube.write_run(annotate("reject.kdag.dev/gate", "not today"))
        elif action == "rerun":
            # As `kubectl kdag rerun` does it: a new token, and spec.cancel cleared.
            self.reruns += 1
            kube.write_run(annotate("kdag.dev/rerun", str(self.reruns)))
            kube.write_run(set_spec(cancel=False))
        elif action == "delete_job" and kube.jobs:
            names = sorted(name for _, name in kube.jobs)
            name = data.draw(st.sampled_from(names)) if data is not None else names[0]
            job = kube.jobs.pop((NS, name))
            kube.record("job", "DELETED", job)
        elif action == "edit":
            self.edits += 1
            spec = kube.workflows[(NS, "wf")]["spec"]
            spec["nodes"] = [*spec["nodes"], {"name": f"added{self.edits}"}]

    @rule(action=st.sampled_from(USER_ACTIONS), data=st.data())
    def user_acts(self, action: str, data: st.DataObject) -> None:
        self._user(action, data)

    # ------------------------------------------------------------ the cluster

    @rule(data=st.data(), ok=st.booleans(), outputs=st.booleans())
    def a_pod_ends(self, data: st.DataObject, ok: bool, outputs: bool) -> None:
        """A Job's pod ends; the Job controller marks the Job later (`a_job_finishes`)."""
        running = sorted(
            name
            for (_, name), job in self.kube.jobs.items()
            if not job["status"] and (NS, f"{name}-pod") not in self.kube.pods
        )
        if not running:
            return
        name = data.draw(st.sampled_from(running))
        extra = {"message": '{"rows": "3"}'} if outputs else {}
        self.kube.record("pod", "MODIFIED", self.kube.end_pod(NS, name, ok=ok, **extra))

    @rule(data=st.data(), ok=st.booleans(), outputs=st.booleans())
    def a_job_finishes(self, data: st.DataObject, ok: bool, outputs: bool) -> None:
        active = sorted(name for (_, name), job in self.kube.jobs.items() if not job["status"])
        if not active:
            return
        name = data.draw(st.sampled_from(active))
        extra: dict[str, str] = {"message": '{"rows": "3"}'} if outputs else {}
        ended = self.kube.pods.get((NS, f"{name}-pod"))
        if ended is None:
            self.kube.finish_job(NS, name, ok=ok, **extra)
        else:
            # The Job follows its pod, or its deadline passes in the second between the
            # pod ending and the Job being marked: a Job Failed after its pod succeeded.
            pod_ok = ended["status"]["phase"] == "Succeeded"
            if pod_ok and not ok:
                extra["reason"] = "DeadlineExceeded"
            self.kube.finish_job(NS, name, ok=ok and pod_ok, **extra)
            self.kube.pods[(NS, f"{name}-pod")] = ended  # a pod that ended stays as it ended
        self.kube.record("job", "MODIFIED", self.kube.jobs[(NS, name)])
        self.kube.record("pod", "ADDED", self.kube.pods[(NS, f"{name}-pod")])

    @rule(count=st.integers(min_value=1, max_value=4))
    def watch_delivers(self, count: int) -> None:
        self._deliver(count)

    @rule()
    def watch_restarts(self) -> None:
        """410 Gone: the pending events are lost; the watch lists again."""
        self._relist()

    @rule()
    def periodic_resync(self) -> None:
        """The operator's resync timer: re-read the run and list its Jobs."""
        self._resync()

    def _resync(self) -> None:
        # A failed resync is logged and tried again next period by the real loop.
        with contextlib.suppress(KubeError):
            asyncio.run(self.reconciler.resync(KEY))

    @rule()
    def operator_restarts(self) -> None:
        self._start_operator()

    # ------------------------------------------------------------ the operator's passes

    @rule(data=st.data())
    def operator_passes(self, data: st.DataObject) -> None:
        """The pass the queue asks for (or a timer's), with faults and users at its calls."""
        if not self._wanted():
            if self.due is None:
                return
            self._fire_timer()

        def chaos(verb: str) -> str | None:
            what = data.draw(
                st.sampled_from((None, None, None, "user", *FAULTS)), label=f"at {verb}"
            )
            if what == "user":
                self._user(data.draw(st.sampled_from(USER_ACTIONS), label="user"), data)
                return None
            return what

        self._pass(chaos)

    @rule()
    def operator_settles(self) -> None:
        self._settle()

    # ------------------------------------------------------------ invariants

    @invariant()
    def no_violation_so_far(self) -> None:
        if self.kube.violations:
            raise InvariantBroken("; ".join(self.kube.violations))

    def teardown(self) -> None:
        """Answer every gate, resume, let every Job finish: the run must end (a Job deleted
        while the watch was down is noticed by the periodic resync)."""
        for _ in range(8):
            self._settle()
            self._resync()
            self._settle()
            run = self.kube.runs[KEY]
            if (run.get("status") or {}).get("phase") in TERMINAL_RUN:
                return
            if run["spec"].get("suspend"):
                self._user("resume")
            gate = ((run.get("status") or {}).get("nodes") or {}).get("gate") or {}
            annotations = run["metadata"].get("annotations") or {}
            if gate.get("phase") == "WaitingForApproval" and not any(
                k.endswith("kdag.dev/gate") for k in annotations
            ):
                self._user("approve")
            for (_, name), job in list(self.kube.jobs.items()):
                if not job["status"]:
                    self.kube.finish_job(NS, name)
                    self.kube.record("job", "MODIFIED", self.kube.jobs[(NS, name)])
                    self.kube.record("pod", "ADDED", self.kube.pods[(NS, f"{name}-pod")])
        phase = (self.kube.runs[KEY].get("status") or {}).get("phase")
        raise InvariantBroken(f"every Job finished and every gate answered, yet the run is {phase}")


OperatorModel.TestCase.settings = settings(
    # A longer hunt: KDAG_MODEL_EXAMPLES=1500 pytest tests/unit/operator/test_op_model.py
    max_examples=int(os.environ.get("KDAG_MODEL_EXAMPLES", "15")),
    stateful_step_count=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
test_operator_honours_users_under_faults = OperatorModel.TestCase
