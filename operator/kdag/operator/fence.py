"""The reconciler's API calls, refused for runs this replica does not own (active-active shards).

A pass checks ownership when it starts, but it awaits the API between its writes: ownership
may be lost meanwhile (a new member appeared, or this replica's own Lease lapsed). Every
write of a run's state (Job create, run and status patches, the run's deletion) asks again
just before it is sent, so a pass cut short by a handover stops at its next write. A refused
write fails the pass like a lost connection (a transient KubeError); the next pass finds the
run not owned and does nothing.

What is not fenced: reads, Events (a courtesy, not state), and Job deletions (a Job is named
by its run and attempt, not looked up here; a plan deletes only Jobs whose result its run's
status already records, so a late delete from a former owner loses nothing).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from kdag.operator.kube import KubeApi, KubeError, Listing
from kdag.operator.objects import RunKey


class NotOwnerError(KubeError):
    """The run is not this replica's (any more): the write was not sent."""

    def __init__(self, key: RunKey) -> None:
        super().__init__(0, "NotOwner", f"run {key[0]}/{key[1]} is driven by another replica")


def _owner_run(manifest: Mapping[str, Any]) -> str:
    """The name of the WorkflowRun a Job manifest belongs to (its controller reference)."""
    for ref in (manifest.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("kind") == "WorkflowRun":
            return str(ref.get("name", ""))
    return ""


class FencedKube:
    """`KubeApi` that sends a run's writes only while `owns(run)` says so."""

    def __init__(self, inner: KubeApi, owns: Callable[[RunKey], bool]) -> None:
        self._inner = inner
        self._owns = owns

    def _check(self, namespace: str, name: str) -> None:
        key = (namespace, name)
        if not self._owns(key):
            raise NotOwnerError(key)

    async def create_job(self, namespace: str, manifest: Mapping[str, Any]) -> dict[str, Any]:
        self._check(namespace, _owner_run(manifest))
        return await self._inner.create_job(namespace, manifest)

    async def get_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._inner.get_job(namespace, name)

    async def delete_job(self, namespace: str, name: str) -> bool:
        return await self._inner.delete_job(namespace, name)

    async def list_jobs(self, namespace: str, selector: str) -> Listing:
        return await self._inner.list_jobs(namespace, selector)

    async def list_pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        return await self._inner.list_pods(namespace, selector)

    async def list_events(self, namespace: str, field_selector: str) -> list[dict[str, Any]]:
        return await self._inner.list_events(namespace, field_selector)

    async def get_run(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._inner.get_run(namespace, name)

    async def get_workflow(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._inner.get_workflow(namespace, name)

    async def patch_run_status(
        self, namespace: str, name: str, patch: Mapping[str, Any]
    ) -> dict[str, Any]:
        self._check(namespace, name)
        return await self._inner.patch_run_status(namespace, name, patch)

    async def patch_run(
        self, namespace: str, name: str, patch: Mapping[str, Any]
    ) -> dict[str, Any]:
        self._check(namespace, name)
        return await self._inner.patch_run(namespace, name, patch)

    async def delete_run(self, namespace: str, name: str, uid: str) -> bool:
        self._check(namespace, name)
        return await self._inner.delete_run(namespace, name, uid)

    async def create_event(self, namespace: str, event: Mapping[str, Any]) -> dict[str, Any]:
        return await self._inner.create_event(namespace, event)

    async def patch_event(self, namespace: str, name: str, patch: Mapping[str, Any]) -> None:
        await self._inner.patch_event(namespace, name, patch)
