"""The API calls the Workflow side of the operator makes (status, scheduled runs, Events).

`WorkflowApi` is what `kdag.operator.workflows` depends on; tests substitute a fake.
`KubeWorkflowApi` sends the calls through the operator's `KubeClient`, so they share its
thread pool, timeouts and request metrics.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from kdag.operator.kube import MERGE_PATCH, RUNS, WORKFLOWS, KubeClient


class WorkflowApi(Protocol):
    """Every method raises `KubeError` on failure, except where a result says otherwise."""

    async def patch_workflow_status(
        self, namespace: str, name: str, patch: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        """The patched Workflow; None when it no longer exists."""
        ...

    async def create_run(self, namespace: str, manifest: Mapping[str, Any]) -> dict[str, Any]:
        """The created run; `KubeError` with status 409 when the name is taken."""
        ...

    async def patch_run(
        self, namespace: str, name: str, patch: Mapping[str, Any]
    ) -> dict[str, Any]: ...

    async def delete_run(self, namespace: str, name: str, uid: str) -> bool:
        """False when the run is already gone (or was replaced by a new one of that name)."""
        ...

    async def create_event(self, namespace: str, event: Mapping[str, Any]) -> None: ...


class KubeWorkflowApi:
    """`WorkflowApi` over the operator's `KubeClient`."""

    def __init__(self, kube: KubeClient) -> None:
        self._kube = kube

    async def patch_workflow_status(
        self, namespace: str, name: str, patch: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        path = self._kube._kdag_path(namespace, WORKFLOWS, name) + "/status"
        # KubeClient has no generic public request method yet; these two calls are the only
        # ones it lacks, so they reuse its transport rather than a second client.
        return await self._kube._request(
            "patch",
            f"{WORKFLOWS}/status",
            "PATCH",
            path,
            body=patch,
            content_type=MERGE_PATCH,
            allow=(404,),
        )

    async def create_run(self, namespace: str, manifest: Mapping[str, Any]) -> dict[str, Any]:
        path = self._kube._kdag_path(namespace, RUNS)
        result = await self._kube._request("create", RUNS, "POST", path, body=manifest)
        assert result is not None
        return result

    async def patch_run(
        self, namespace: str, name: str, patch: Mapping[str, Any]
    ) -> dict[str, Any]:
        return await self._kube.patch_run(namespace, name, patch)

    async def delete_run(self, namespace: str, name: str, uid: str) -> bool:
        return await self._kube.delete_run(namespace, name, uid)

    async def create_event(self, namespace: str, event: Mapping[str, Any]) -> None:
        await self._kube.create_event(namespace, event)
