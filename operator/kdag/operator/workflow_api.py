"""The API calls the Workflow side of the operator makes (status, scheduled runs, Events).

`WorkflowApi` is what `kdag.operator.workflow_controller` depends on; tests substitute a fake. The
operator's own `KubeClient` satisfies it, so these calls share its thread pool, timeouts and
request metrics.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol


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

    async def create_event(self, namespace: str, event: Mapping[str, Any]) -> dict[str, Any]: ...
