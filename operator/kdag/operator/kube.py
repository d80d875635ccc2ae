"""Kubernetes API access: the few REST calls the operator makes, counted for metrics.

The official client is synchronous, so every call runs in a bounded thread pool and returns
plain dicts (raw JSON): the generated model classes would cost more CPU than the planner.
`KubeApi` is the interface the reconciler depends on; tests substitute a fake.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote

import kubernetes
import urllib3

from kdag.api import GROUP, RUNS, VERSION, WORKFLOWS
from kdag.operator.objects import resource_version

logger = logging.getLogger(__name__)

MERGE_PATCH = "application/merge-patch+json"
# Short requests only; watches are kopf's. A hung request must not hold a worker forever.
REQUEST_TIMEOUT = (5.0, 30.0)

RequestObserver = Callable[[str, str, str], None]
"""Called once per request with (verb, resource, code); `code` is the HTTP status or 'error'."""


class KubeError(Exception):
    """An API request that did not succeed; `status` is the HTTP status (0: no response)."""

    def __init__(self, status: int, reason: str, body: str = "") -> None:
        super().__init__(f"{status} {reason}: {body[:500]}")
        self.status = status
        self.reason = reason
        self.body = body

    @property
    def api_reason(self) -> str:
        """The Status object's `reason` (AlreadyExists, NotFound, Invalid, ...) when present."""
        try:
            return str(json.loads(self.body).get("reason", ""))
        except (ValueError, AttributeError):
            return ""

    @property
    def api_message(self) -> str:
        try:
            return str(json.loads(self.body).get("message", self.reason))
        except (ValueError, AttributeError):
            return self.reason

    @property
    def transient(self) -> bool:
        """Worth retrying the same request later (server trouble, throttling, no response)."""
        return self.status in (0, 408, 429) or self.status >= 500


@dataclass(frozen=True)
class Listing:
    """The items of a LIST and the resourceVersion they were read at."""

    items: list[dict[str, Any]]
    resource_version: str


class KubeApi(Protocol):
    """The API calls the reconciler makes; every method raises KubeError on failure."""

    async def create_job(self, namespace: str, manifest: Mapping[str, Any]) -> dict[str, Any]: ...

    async def get_job(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    async def delete_job(self, namespace: str, name: str) -> bool: ...

    async def list_jobs(self, namespace: str, selector: str) -> Listing: ...

    async def list_pods(self, namespace: str, selector: str) -> list[dict[str, Any]]: ...

    async def list_events(self, namespace: str, field_selector: str) -> list[dict[str, Any]]: ...

    async def get_run(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    async def get_workflow(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    async def patch_run_status(
        self, namespace: str, name: str, patch: Mapping[str, Any]
    ) -> dict[str, Any]: ...

    async def patch_run(
        self, namespace: str, name: str, patch: Mapping[str, Any]
    ) -> dict[str, Any]: ...

    async def delete_run(self, namespace: str, name: str, uid: str) -> bool: ...

    async def create_event(self, namespace: str, event: Mapping[str, Any]) -> dict[str, Any]: ...

    async def patch_event(self, namespace: str, name: str, patch: Mapping[str, Any]) -> None: ...


def load_client_configuration(pool_size: int) -> kubernetes.client.Configuration:
    """In-cluster service account when running in a pod, else the current kubeconfig."""
    config = kubernetes.client.Configuration()
    try:
        kubernetes.config.load_incluster_config(client_configuration=config)  # type: ignore[no-untyped-call]
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config(client_configuration=config)  # type: ignore[no-untyped-call]
    config.connection_pool_maxsize = pool_size
    # kdag retries on its own schedule (reconcile backoff); urllib3 must not stall a worker.
    config.retries = False
    return config


class KubeClient:
    """`KubeApi` over the official client's REST layer, in a bounded thread pool."""

    def __init__(
        self,
        configuration: kubernetes.client.Configuration,
        observe_request: RequestObserver,
        workers: int = 16,
    ) -> None:
        self._api = kubernetes.client.ApiClient(configuration)
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kube")
        self._observe_request = observe_request

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._api.close()  # type: ignore[no-untyped-call]

    async def drain(self) -> None:
        """Send nothing more, and wait for the requests already sent (shards: before this
        replica's Lease is deleted, nothing of its may still be on its way)."""
        await asyncio.to_thread(self._executor.shutdown, wait=True, cancel_futures=True)

    # -- transport

    def _request_sync(
        self,
        verb: str,
        resource: str,
        method: str,
        path: str,
        query: list[tuple[str, str]] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> tuple[int, bytes]:
        headers = {"Accept": "application/json", "Content-Type": content_type}
        try:
            # The client builds the URL and the auth header (a rotated token re-read); the
            # body, plain JSON already, is encoded once and sent by its urllib3 pool:
            # the client's own path walks every body's dicts to "sanitize" them first,
            # 5% of the operator's CPU in the benchmark's profile.
            _, url, headers, _, _ = self._api.param_serialize(
                method,
                path,
                query_params=query or None,
                header_params=headers,
                auth_settings=["BearerToken"],
            )
            response = self._api.rest_client.pool_manager.request(
                method,
                url,
                body=None if body is None else json.dumps(body, separators=(",", ":")),
                headers=headers,
                timeout=urllib3.Timeout(connect=REQUEST_TIMEOUT[0], read=REQUEST_TIMEOUT[1]),
                preload_content=False,
            )
            try:
                data = response.read() or b""
            finally:
                response.release_conn()
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            self._observe_request(verb, resource, "error")
            raise KubeError(0, type(exc).__name__, str(exc)) from exc
        self._observe_request(verb, resource, str(response.status))
        return response.status, data

    async def _request(
        self,
        verb: str,
        resource: str,
        method: str,
        path: str,
        *,
        query: list[tuple[str, str]] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        allow: tuple[int, ...] = (),
    ) -> dict[str, Any] | None:
        """The parsed JSON answer; None for an allowed error status (e.g. 404)."""
        loop = asyncio.get_running_loop()
        status, data = await loop.run_in_executor(
            self._executor,
            lambda: self._request_sync(verb, resource, method, path, query, body, content_type),
        )
        if status in allow:
            return None
        if status >= 300:
            raise KubeError(status, _status_reason(status), data.decode(errors="replace"))
        return json.loads(data) if data else {}

    # -- who we are

    async def username(self) -> str:
        """The user the API server takes this client for (a SelfSubjectReview, which every
        authenticated user may create), e.g. `system:serviceaccount:kdag-system:kdag`."""
        path = "/apis/authentication.k8s.io/v1/selfsubjectreviews"
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
        review = await self._request("create", "selfsubjectreviews", "POST", path, body=body)
        assert review is not None
        return str(((review.get("status") or {}).get("userInfo") or {}).get("username", ""))

    # -- jobs and pods

    async def create_job(self, namespace: str, manifest: Mapping[str, Any]) -> dict[str, Any]:
        path = f"/apis/batch/v1/namespaces/{_q(namespace)}/jobs"
        result = await self._request("create", "jobs", "POST", path, body=manifest)
        assert result is not None
        return result

    async def get_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        path = f"/apis/batch/v1/namespaces/{_q(namespace)}/jobs/{_q(name)}"
        return await self._request("get", "jobs", "GET", path, allow=(404,))

    async def delete_job(self, namespace: str, name: str) -> bool:
        path = f"/apis/batch/v1/namespaces/{_q(namespace)}/jobs/{_q(name)}"
        body = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"}
        result = await self._request("delete", "jobs", "DELETE", path, body=body, allow=(404,))
        return result is not None

    async def list_jobs(self, namespace: str, selector: str) -> Listing:
        path = f"/apis/batch/v1/namespaces/{_q(namespace)}/jobs"
        return await self._list("jobs", path, selector)

    async def list_pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        path = f"/api/v1/namespaces/{_q(namespace)}/pods"
        return (await self._list("pods", path, selector)).items

    async def list_events(self, namespace: str, field_selector: str) -> list[dict[str, Any]]:
        """Events matching a field selector (e.g. involvedObject.uid=...,reason=...)."""
        path = f"/api/v1/namespaces/{_q(namespace)}/events"
        query = [("fieldSelector", field_selector), ("limit", "100")]
        page = await self._request("list", "events", "GET", path, query=query)
        assert page is not None
        return list(page.get("items") or [])

    async def _list(self, resource: str, path: str, selector: str) -> Listing:
        items: list[dict[str, Any]] = []
        token = version = ""
        while True:
            query = [("labelSelector", selector), ("limit", "500")]
            if token:
                query.append(("continue", token))
            page = await self._request("list", resource, "GET", path, query=query)
            assert page is not None
            items.extend(page.get("items") or [])
            meta = page.get("metadata") or {}
            # Every page of a paginated list is read at the first page's resourceVersion.
            version = version or resource_version(page)
            token = meta.get("continue") or ""
            if not token:
                return Listing(items, version)

    # -- kdag objects

    def _kdag_path(self, namespace: str, plural: str, name: str = "") -> str:
        base = f"/apis/{GROUP}/{VERSION}/namespaces/{_q(namespace)}/{plural}"
        return f"{base}/{_q(name)}" if name else base

    async def get_run(self, namespace: str, name: str) -> dict[str, Any] | None:
        path = self._kdag_path(namespace, RUNS, name)
        return await self._request("get", RUNS, "GET", path, allow=(404,))

    async def get_workflow(self, namespace: str, name: str) -> dict[str, Any] | None:
        path = self._kdag_path(namespace, WORKFLOWS, name)
        return await self._request("get", WORKFLOWS, "GET", path, allow=(404,))

    async def patch_run_status(
        self, namespace: str, name: str, patch: Mapping[str, Any]
    ) -> dict[str, Any]:
        path = self._kdag_path(namespace, RUNS, name) + "/status"
        result = await self._request(
            "patch", f"{RUNS}/status", "PATCH", path, body=patch, content_type=MERGE_PATCH
        )
        assert result is not None
        return result

    async def patch_run(
        self, namespace: str, name: str, patch: Mapping[str, Any]
    ) -> dict[str, Any]:
        path = self._kdag_path(namespace, RUNS, name)
        result = await self._request(
            "patch", RUNS, "PATCH", path, body=patch, content_type=MERGE_PATCH
        )
        assert result is not None
        return result

    async def create_run(self, namespace: str, manifest: Mapping[str, Any]) -> dict[str, Any]:
        """Create a WorkflowRun (scheduled runs); 409 when the name is taken."""
        result = await self._request(
            "create", RUNS, "POST", self._kdag_path(namespace, RUNS), body=manifest
        )
        assert result is not None
        return result

    async def patch_workflow_status(
        self, namespace: str, name: str, patch: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        """The patched Workflow; None when it no longer exists."""
        path = self._kdag_path(namespace, WORKFLOWS, name) + "/status"
        return await self._request(
            "patch",
            f"{WORKFLOWS}/status",
            "PATCH",
            path,
            body=patch,
            content_type=MERGE_PATCH,
            allow=(404,),
        )

    async def delete_run(self, namespace: str, name: str, uid: str) -> bool:
        # The uid precondition keeps a TTL timer from deleting a new run of the same name.
        body = {
            "kind": "DeleteOptions",
            "apiVersion": "v1",
            "propagationPolicy": "Background",
            "preconditions": {"uid": uid},
        }
        path = self._kdag_path(namespace, RUNS, name)
        result = await self._request("delete", RUNS, "DELETE", path, body=body, allow=(404, 409))
        return result is not None

    async def create_event(self, namespace: str, event: Mapping[str, Any]) -> dict[str, Any]:
        path = f"/api/v1/namespaces/{_q(namespace)}/events"
        created = await self._request("create", "events", "POST", path, body=event)
        assert created is not None
        return created

    async def patch_event(self, namespace: str, name: str, patch: Mapping[str, Any]) -> None:
        path = f"/api/v1/namespaces/{_q(namespace)}/events/{_q(name)}"
        await self._request("patch", "events", "PATCH", path, body=patch, content_type=MERGE_PATCH)

    # -- Leases (active-active shards: kdag.operator.shards)

    def _lease_path(self, namespace: str, name: str = "") -> str:
        base = f"/apis/coordination.k8s.io/v1/namespaces/{_q(namespace)}/leases"
        return f"{base}/{_q(name)}" if name else base

    async def get_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._request(
            "get", "leases", "GET", self._lease_path(namespace, name), allow=(404,)
        )

    async def create_lease(self, namespace: str, lease: Mapping[str, Any]) -> dict[str, Any]:
        """Create a Lease; 409 (AlreadyExists) when the name is taken."""
        created = await self._request(
            "create", "leases", "POST", self._lease_path(namespace), body=lease
        )
        assert created is not None
        return created

    async def replace_lease(
        self, namespace: str, name: str, lease: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Replace a Lease (PUT): 409 (Conflict) when its resourceVersion is not the stored one."""
        path = self._lease_path(namespace, name)
        replaced = await self._request("update", "leases", "PUT", path, body=lease)
        assert replaced is not None
        return replaced

    async def list_leases(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        return (await self._list("leases", self._lease_path(namespace), selector)).items

    async def delete_lease(self, namespace: str, name: str) -> bool:
        path = self._lease_path(namespace, name)
        return await self._request("delete", "leases", "DELETE", path, allow=(404,)) is not None


def _q(segment: str) -> str:
    return quote(segment, safe="")


def _status_reason(status: int) -> str:
    return {
        400: "BadRequest",
        401: "Unauthorized",
        403: "Forbidden",
        404: "NotFound",
        409: "Conflict",
        410: "Gone",
        422: "Invalid",
        429: "TooManyRequests",
        500: "InternalError",
        503: "ServiceUnavailable",
        504: "GatewayTimeout",
    }.get(status, "Error")
