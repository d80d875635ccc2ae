"""Workflow status and schedules, driven like the watches would, against a fake API."""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kdag.engine.schedule import ObservedRun, scheduled_run_name
from kdag.operator.kube import KubeError
from kdag.operator.status_patch import apply_merge_patch
from kdag.operator.workflows import (
    CONDITION_SCHEDULED,
    CONDITION_VALID,
    WorkflowController,
    WorkflowObject,
    observe_run,
)

NS = "team"
T0 = datetime(2026, 11, 22, 8, 59, 30, tzinfo=UTC)
TICK = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)


def status_error(status: int, reason: str) -> KubeError:
    return KubeError(status, reason, json.dumps({"kind": "Status", "reason": reason}))


class FakeApi:
    """Workflows and runs in memory; every call recorded."""

    def __init__(self) -> None:
        self.workflows: dict[str, dict[str, Any]] = {}
        self.runs: dict[str, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        self.calls: list[tuple[str, str]] = []
        self.status_patches: list[dict[str, Any]] = []
        self.status_patch_error: KubeError | None = None  # raised once by the next patch
        self.now = T0
        self._versions = itertools.count(101)

    def next_rv(self) -> str:
        return str(next(self._versions))

    async def patch_workflow_status(
        self, namespace: str, name: str, patch: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        self.calls.append(("patch_workflow_status", name))
        error, self.status_patch_error = self.status_patch_error, None
        if error is not None:
            raise error
        self.status_patches.append(copy.deepcopy(dict(patch)))
        if name not in self.workflows:
            return None
        body = apply_merge_patch(self.workflows[name], patch)
        body["metadata"]["resourceVersion"] = self.next_rv()
        self.workflows[name] = body
        return copy.deepcopy(body)

    async def create_run(self, namespace: str, manifest: Mapping[str, Any]) -> dict[str, Any]:
        name = manifest["metadata"]["name"]
        self.calls.append(("create_run", name))
        if name in self.runs:
            raise status_error(409, "AlreadyExists")
        body = copy.deepcopy(dict(manifest))
        body["metadata"].update(
            uid=f"uid-{name}",
            resourceVersion=self.next_rv(),
            creationTimestamp=self.now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        )
        self.runs[name] = body
        return copy.deepcopy(body)

    async def patch_run(
        self, namespace: str, name: str, patch: Mapping[str, Any]
    ) -> dict[str, Any]:
        self.calls.append(("patch_run", name))
        if name not in self.runs:
            raise status_error(404, "NotFound")
        self.runs[name] = apply_merge_patch(self.runs[name], patch)
        return copy.deepcopy(self.runs[name])

    async def delete_run(self, namespace: str, name: str, uid: str) -> bool:
        self.calls.append(("delete_run", name))
        found = self.runs.get(name)
        if found is None or found["metadata"]["uid"] != uid:
            return False
        del self.runs[name]
        return True

    async def create_event(self, namespace: str, event: Mapping[str, Any]) -> dict[str, Any]:
        self.events.append(dict(event))
        return dict(event)

    def writes(self) -> list[tuple[str, str]]:
        return [c for c in self.calls if c[0] != "create_event"]


class Harness:
    """A controller over the fake API; `index()` is what the watches would show."""

    def __init__(self) -> None:
        self.api = FakeApi()
        self.controller = self.new_controller()

    def new_controller(self) -> WorkflowController:
        return WorkflowController(self.api, max_nodes=100, clock=lambda: self.api.now)

    def at(self, moment: datetime) -> None:
        self.api.now = moment

    def apply(self, name: str, spec: dict[str, Any], generation: int = 1) -> None:
        existing = self.api.workflows.get(name)
        self.api.workflows[name] = {
            "metadata": {
                "name": name,
                "namespace": NS,
                "uid": f"wf-uid-{name}",
                "generation": generation,
                "resourceVersion": self.api.next_rv(),
                "creationTimestamp": "2026-11-22T08:00:00Z",
            },
            "spec": copy.deepcopy(spec),
            "status": (existing or {}).get("status", {}),
        }

    def workflow(self, name: str = "etl") -> WorkflowObject:
        return WorkflowObject.from_body(copy.deepcopy(self.api.workflows[name]))

    def status(self, name: str = "etl") -> dict[str, Any]:
        status: dict[str, Any] = self.api.workflows[name]["status"]
        return status

    def condition(self, kind: str, name: str = "etl") -> dict[str, Any]:
        return next(c for c in self.status(name)["conditions"] if c["type"] == kind)

    def index(self) -> dict[tuple[str, str], list[ObservedRun]]:
        index: dict[tuple[str, str], list[ObservedRun]] = {}
        for body in self.api.runs.values():
            observed = observe_run(body)
            if observed is not None:
                index.setdefault(observed[0], []).append(observed[1])
        return index

    def sync(self, name: str = "etl") -> None:
        workflow = self.workflow(name)
        asyncio.run(self.controller.sync_status(workflow, self.index().get(workflow.key, [])))

    def step(self, name: str = "etl", *, stale_index: bool = False) -> datetime | None:
        workflow = self.workflow(name)
        runs = [] if stale_index else self.index().get(workflow.key, [])
        return asyncio.run(self.controller.schedule_once(workflow, runs))

    def add_run(
        self, name: str, phase: str | None, *, scheduled_at: datetime | None = None, **extra: Any
    ) -> None:
        labels = {"kdag.dev/scheduled": "true"} if scheduled_at else {}
        annotations = (
            {"kdag.dev/scheduled-at": scheduled_at.strftime("%Y-%m-%dT%H:%M:%SZ")}
            if scheduled_at
            else {}
        )
        created = (scheduled_at or self.api.now) + timedelta(seconds=1)
        self.api.runs[name] = {
            "metadata": {
                "name": name,
                "namespace": NS,
                "uid": f"uid-{name}",
                "labels": labels,
                "annotations": annotations,
                "creationTimestamp": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
            },
            "spec": {"workflowRef": {"name": "etl"}, **extra},
            "status": {"phase": phase} if phase else {},
        }

    def finish(self, name: str, phase: str, at: datetime) -> None:
        self.api.runs[name]["status"] = {
            "phase": phase,
            "finishedAt": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }


def spec(**schedule: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "params": [{"name": "day", "default": "today"}],
        "defaults": {"image": "busybox:1.36"},
        "nodes": [
            {"name": "extract", "forEach": ["eu", "us"]},
            {"name": "load", "dependsOn": ["extract"]},
        ],
    }
    if schedule:
        body["schedule"] = schedule
    return body


@pytest.fixture
def h() -> Harness:
    return Harness()


# -- status


def test_a_valid_workflow_gets_its_status_once(h: Harness) -> None:
    h.apply("etl", spec())
    h.sync()
    status = h.status()
    assert status["valid"] is True
    assert status["nodeCount"] == 3
    assert status["observedGeneration"] == 1
    assert "message" not in status
    valid = h.condition(CONDITION_VALID)
    assert (valid["status"], valid["reason"], valid["observedGeneration"]) == ("True", "Valid", 1)
    assert all(c["type"] != CONDITION_SCHEDULED for c in status["conditions"])
    # The echo of our own write, and any later event, writes nothing.
    h.at(T0 + timedelta(minutes=5))
    h.sync()
    assert len(h.api.status_patches) == 1


def test_an_invalid_workflow_says_which_field_is_wrong(h: Harness) -> None:
    broken = spec()
    broken["nodes"][1]["dependsOn"] = ["nope"]
    h.apply("etl", broken)
    h.sync()
    status = h.status()
    assert status["valid"] is False
    assert "nodes[load].dependsOn" in status["message"]
    valid = h.condition(CONDITION_VALID)
    assert (valid["status"], valid["reason"]) == ("False", "Invalid")
    assert valid["message"] == status["message"]


def test_a_spec_the_models_reject_is_reported_not_raised(h: Harness) -> None:
    h.apply("etl", {"nodes": [{"name": "a", "image": "x", "retry": {"limit": "lots"}}]})
    h.sync()
    assert h.status()["valid"] is False
    assert h.status()["message"].startswith("spec.nodes[0].retry.limit:")
    assert "nodeCount" not in h.status()


def test_fixing_a_workflow_flips_its_condition_and_time(h: Harness) -> None:
    broken = spec()
    broken["nodes"][1]["dependsOn"] = ["nope"]
    h.apply("etl", broken)
    h.sync()
    first = h.condition(CONDITION_VALID)["lastTransitionTime"]
    h.at(T0 + timedelta(minutes=1))
    h.apply("etl", spec(), generation=2)
    h.sync()
    status = h.status()
    assert status["valid"] is True
    assert "message" not in status
    assert status["observedGeneration"] == 2
    assert h.condition(CONDITION_VALID)["lastTransitionTime"] > first


@pytest.mark.parametrize(
    ("schedule", "field"),
    [
        ({"cron": "every day"}, "schedule.cron"),
        ({"cron": "0 2 * * *", "timezone": "Mars/Olympus"}, "schedule.timezone"),
    ],
)
def test_a_bad_cron_or_zone_makes_the_workflow_invalid_and_schedules_nothing(
    h: Harness, schedule: dict[str, Any], field: str
) -> None:
    h.apply("etl", spec(**schedule))
    assert h.step() is None
    h.at(T0 + timedelta(days=1))
    assert h.step() is None
    assert field in h.status()["message"]
    assert h.condition(CONDITION_SCHEDULED)["reason"] == "InvalidWorkflow"
    assert not h.api.runs


def test_a_cron_that_never_fires_says_so(h: Harness) -> None:
    h.apply("etl", spec(cron="0 0 31 2 *"))
    assert h.step() is None
    scheduled = h.condition(CONDITION_SCHEDULED)
    assert (scheduled["status"], scheduled["reason"]) == ("False", "NeverFires")


def test_last_run_is_the_newest_run_manual_or_scheduled(h: Harness) -> None:
    h.apply("etl", spec())
    h.add_run("etl-manual-1", "Succeeded")
    h.at(T0 + timedelta(minutes=1))
    h.add_run("etl-manual-2", "Running")
    h.sync()
    assert h.status()["lastRun"] == "etl-manual-2"
    assert "activeRuns" not in h.status()  # only scheduled runs are listed


def test_runs_of_inline_workflows_belong_to_no_workflow() -> None:
    body = {"metadata": {"name": "r", "namespace": NS}, "spec": {"workflow": {"nodes": []}}}
    assert observe_run(body) is None


# -- schedules


def test_a_tick_creates_one_run_with_the_schedules_params(h: Harness) -> None:
    h.apply("etl", spec(cron="0 * * * *", params={"day": "2026-11-22"}))
    assert h.step() == TICK  # nothing due yet: sleep until 09:00
    assert not h.api.runs
    assert h.condition(CONDITION_SCHEDULED)["status"] == "True"

    h.at(TICK + timedelta(seconds=0.2))
    assert h.step() == TICK + timedelta(hours=1)
    name = scheduled_run_name("etl", TICK)
    run = h.api.runs[name]
    assert run["spec"] == {"workflowRef": {"name": "etl"}, "params": {"day": "2026-11-22"}}
    assert run["metadata"]["labels"]["kdag.dev/workflow"] == "etl"
    assert run["metadata"]["labels"]["kdag.dev/scheduled"] == "true"
    assert run["metadata"]["annotations"]["kdag.dev/scheduled-at"] == "2026-11-22T09:00:00Z"
    assert "ownerReferences" not in run["metadata"]
    status = h.status()
    assert status["lastScheduleTime"] == "2026-11-22T09:00:00Z"
    assert status["lastRun"] == name
    assert status["activeRuns"] == [name]
    assert [e["reason"] for e in h.api.events] == ["RunCreated"]
    assert h.api.events[0]["involvedObject"]["kind"] == "Workflow"


def test_waking_again_before_the_watch_shows_the_new_run_creates_nothing(h: Harness) -> None:
    h.apply("etl", spec(cron="0 * * * *"))
    h.step()
    h.at(TICK + timedelta(seconds=1))
    h.step()
    writes = len(h.api.writes())
    h.step(stale_index=True)
    h.at(TICK + timedelta(seconds=30))
    h.step()
    assert len(h.api.writes()) == writes
    assert len(h.api.runs) == 1


def test_a_restarted_operator_adopts_the_run_of_a_tick_already_done(h: Harness) -> None:
    h.apply("etl", spec(cron="0 * * * *"))
    h.step()
    h.at(TICK + timedelta(seconds=1))
    # The run was created, then the operator died before it wrote lastScheduleTime.
    h.api.status_patch_error = status_error(503, "ServiceUnavailable")
    with pytest.raises(KubeError):
        h.step()
    assert len(h.api.runs) == 1
    h.controller = h.new_controller()
    h.at(TICK + timedelta(seconds=20))
    h.step()
    assert [c for c in h.api.calls if c[0] == "create_run"] == [
        ("create_run", scheduled_run_name("etl", TICK))
    ]
    assert h.status()["lastScheduleTime"] == "2026-11-22T09:00:00Z"


def test_already_exists_means_the_tick_is_done(h: Harness) -> None:
    h.apply("etl", spec(cron="0 * * * *"))
    h.step()
    h.at(TICK + timedelta(seconds=1))
    # Another replica created it; our watch has not shown it yet.
    h.add_run(scheduled_run_name("etl", TICK), None, scheduled_at=TICK)
    h.step(stale_index=True)
    assert h.status()["lastScheduleTime"] == "2026-11-22T09:00:00Z"
    assert [e["reason"] for e in h.api.events] == []


def test_a_run_labelled_scheduled_by_hand_is_not_the_schedules(h: Harness) -> None:
    h.apply("etl", spec(cron="0 * * * *", historyLimit={"succeeded": 0, "failed": 0}))
    h.step()
    # Anyone who may create runs can label one; its claimed tick is far in the future.
    h.add_run("etl-forged", "Succeeded", scheduled_at=datetime(2099, 1, 1, tzinfo=UTC))
    h.api.runs["etl-forged"]["metadata"]["creationTimestamp"] = "2026-11-22T08:59:40Z"
    h.at(TICK + timedelta(seconds=1))
    h.step()
    assert scheduled_run_name("etl", TICK) in h.api.runs
    assert h.status()["lastScheduleTime"] == "2026-11-22T09:00:00Z"
    assert "etl-forged" in h.api.runs  # not the schedule's to prune either


def test_a_run_named_for_a_tick_is_not_trusted_with_a_tick_after_its_creation(
    h: Harness,
) -> None:
    h.apply("etl", spec(cron="0 * * * *"))
    h.step()
    later = TICK + timedelta(hours=5)
    h.add_run(scheduled_run_name("etl", later), "Succeeded", scheduled_at=later)
    h.api.runs[scheduled_run_name("etl", later)]["metadata"]["creationTimestamp"] = (
        "2026-11-22T08:59:40Z"
    )
    h.at(TICK + timedelta(seconds=1))
    h.step()
    assert scheduled_run_name("etl", TICK) in h.api.runs
    assert h.status()["lastScheduleTime"] == "2026-11-22T09:00:00Z"


def test_a_last_schedule_time_in_the_future_is_not_trusted_and_is_corrected(
    h: Harness,
) -> None:
    h.apply("etl", spec(cron="0 * * * *"))
    h.step()
    # Written by an operator that trusted a forged run, before this one started.
    h.api.workflows["etl"]["status"]["lastScheduleTime"] = "2099-01-01T00:00:00Z"
    h.api.workflows["etl"]["metadata"]["resourceVersion"] = h.api.next_rv()
    h.controller = h.new_controller()
    h.at(TICK + timedelta(seconds=1))
    h.step()
    assert scheduled_run_name("etl", TICK) in h.api.runs
    assert h.status()["lastScheduleTime"] == "2026-11-22T09:00:00Z"


def first_run_still_running_at_next_tick(h: Harness, policy: str) -> str:
    """The 09:00 run is created and still running when the 10:00 tick comes."""
    h.apply("etl", spec(cron="0 * * * *", concurrencyPolicy=policy))
    h.step()
    h.at(TICK + timedelta(seconds=1))
    h.step()
    first = scheduled_run_name("etl", TICK)
    h.api.runs[first]["status"] = {"phase": "Running"}
    h.at(TICK + timedelta(hours=1, seconds=1))
    h.step()
    return first


def test_forbid_skips_while_a_scheduled_run_is_active_and_says_so_once(h: Harness) -> None:
    first = first_run_still_running_at_next_tick(h, "Forbid")
    h.step()
    assert list(h.api.runs) == [first]
    assert [e["reason"] for e in h.api.events] == ["RunCreated", "RunSkipped"]
    assert first in h.api.events[1]["message"]
    # It ends after the skipped tick: that tick stays skipped, the next one runs.
    h.finish(first, "Succeeded", TICK + timedelta(hours=1, minutes=5))
    h.at(TICK + timedelta(hours=1, minutes=6))
    h.step()
    assert list(h.api.runs) == [first]
    h.at(TICK + timedelta(hours=2))
    h.step()
    assert len(h.api.runs) == 2


def test_replace_cancels_the_active_run_then_starts_the_new_one(h: Harness) -> None:
    first = first_run_still_running_at_next_tick(h, "Replace")
    second = scheduled_run_name("etl", TICK + timedelta(hours=1))
    writes = [c for c in h.api.calls if c[0] in ("patch_run", "create_run")]
    assert writes[-2:] == [("patch_run", first), ("create_run", second)]
    assert h.api.runs[first]["spec"]["cancel"] is True
    assert h.status()["activeRuns"] == [first, second]


def test_history_keeps_the_newest_finished_runs(h: Harness) -> None:
    h.apply("etl", spec(cron="0 * * * *", historyLimit={"succeeded": 1, "failed": 1}))
    for hours, phase in enumerate(["Succeeded", "Failed", "Succeeded", "Cancelled"], start=-4):
        tick = TICK + timedelta(hours=hours)
        h.add_run(scheduled_run_name("etl", tick), phase, scheduled_at=tick)
    h.add_run("etl-by-hand", "Succeeded")
    h.step()
    deleted = sorted(c[1] for c in h.api.calls if c[0] == "delete_run")
    assert deleted == sorted(
        [
            scheduled_run_name("etl", TICK - timedelta(hours=4)),
            scheduled_run_name("etl", TICK - timedelta(hours=3)),
        ]
    )
    assert "etl-by-hand" in h.api.runs
    assert {e["reason"] for e in h.api.events} == {"RunDeleted"}


def test_suspend_stops_runs_and_resuming_does_not_catch_up(h: Harness) -> None:
    h.apply("etl", spec(cron="0 * * * *", suspend=True))
    assert h.step() is None
    assert h.condition(CONDITION_SCHEDULED)["reason"] == "Suspended"
    h.at(TICK + timedelta(minutes=30))
    h.apply("etl", spec(cron="0 * * * *", suspend=False), generation=2)
    assert h.step() == TICK + timedelta(hours=1)
    assert not h.api.runs  # the 09:00 tick passed while suspended
    assert h.condition(CONDITION_SCHEDULED)["lastTransitionTime"] == "2026-11-22T09:30:00Z"
    h.at(TICK + timedelta(hours=1))
    h.step()
    assert list(h.api.runs) == [scheduled_run_name("etl", TICK + timedelta(hours=1))]


def test_removing_the_schedule_drops_the_condition(h: Harness) -> None:
    h.apply("etl", spec(cron="0 * * * *"))
    h.step()
    h.apply("etl", spec(), generation=2)
    assert h.step() is None
    assert all(c["type"] != CONDITION_SCHEDULED for c in h.status()["conditions"])


def test_timezone_decides_the_tick(h: Harness) -> None:
    h.apply("etl", spec(cron="0 10 * * *", timezone="Europe/Berlin"))
    assert h.step() == datetime(2026, 11, 22, 9, 0, tzinfo=UTC)  # 10:00 CET


# -- events from the watches


def test_only_relevant_run_changes_refresh_the_status() -> None:
    h = Harness()
    h.apply("etl", spec())
    h.add_run("etl-1", None)

    async def scenario() -> None:
        workflows = {("team", "etl"): [h.workflow()]}
        controller = h.controller
        body = h.api.runs["etl-1"]
        controller.run_changed(None, body, workflows, h.index())
        controller.run_changed("MODIFIED", copy.deepcopy(body), workflows, h.index())
        for _ in range(100):  # let the coalesced background sync run
            await asyncio.sleep(0)
        assert h.status()["lastRun"] == "etl-1"
        patches = len(h.api.status_patches)
        # A node's progress changes the run, but nothing the workflow shows.
        progressed = copy.deepcopy(body)
        progressed["status"] = {"progress": "1/3"}
        controller.run_changed("MODIFIED", progressed, workflows, h.index())
        for _ in range(100):
            await asyncio.sleep(0)
        assert len(h.api.status_patches) == patches
        await controller.close()

    asyncio.run(scenario())


def test_the_schedule_daemon_creates_the_due_run_and_returns_when_stopped(h: Harness) -> None:
    h.apply("etl", spec(cron="0 * * * *"))
    h.at(TICK + timedelta(seconds=1))
    h.api.workflows["etl"]["status"] = {
        "conditions": [
            {
                "type": CONDITION_SCHEDULED,
                "status": "True",
                "reason": "Active",
                "message": "",
                "lastTransitionTime": "2026-11-22T08:30:00Z",
            }
        ]
    }

    async def scenario() -> None:
        stop = asyncio.Event()
        daemon = asyncio.create_task(
            h.controller.run_schedule(h.api.workflows["etl"], h.index(), stop=stop)
        )
        for _ in range(1000):
            if h.api.runs:
                break
            await asyncio.sleep(0)
        # It now sleeps until the next tick; kopf's stop ends it without a cancellation.
        stop.set()
        h.controller.wake(("team", "etl"))
        await daemon

    asyncio.run(scenario())
    assert list(h.api.runs) == [scheduled_run_name("etl", TICK)]


def test_deleting_a_workflow_forgets_it(h: Harness) -> None:
    h.apply("etl", spec(cron="0 * * * *"))
    body = copy.deepcopy(h.api.workflows["etl"])
    asyncio.run(h.controller.workflow_changed(None, body, {}))
    asyncio.run(h.controller.workflow_changed("DELETED", body, {}))
    assert h.controller.current_status(WorkflowObject.from_body(body)) == {}
