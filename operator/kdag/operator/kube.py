"""Kubernetes API access: the few REST calls the operator makes, counted for metrics.

Requests go out on the event loop through aiohttp (as kopf's own watches do), with the
connection settings and credentials of the official client's configuration: its
`param_serialize` builds each URL and auth header (so a rotated token is re-read). Answers
are plain dicts (raw JSON): the generated model classes would cost more CPU than the planner.
`KubeApi` is the interface the reconciler depends on; tests substitute a fake.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote

import aiohttp
import kubernetes
import yarl
from kubernetes.client.rest import is_socks_proxy_url, should_bypass_proxies

from kdag.api import GROUP, RUNS, VERSION, WORKFLOWS
from kdag.operator.json_decoding import loads
from kdag.operator.objects import resource_version

logger = logging.getLogger(__name__)

MERGE_PATCH = "application/merge-patch+json"
# Short requests only; watches are kopf's. A hung request must not hold a pass forever.
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=5.0, sock_read=30.0)

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
    return config


def ssl_context(config: kubernetes.client.Configuration) -> ssl.SSLContext:
    """TLS as the official client sets it up: its CA (file or data), client certificate,
    and `verify_ssl` / `assert_hostname`."""
    context = ssl.create_default_context(cafile=config.ssl_ca_cert, cadata=config.ca_cert_data)
    if config.cert_file:
        context.load_cert_chain(config.cert_file, config.key_file)
    if not config.verify_ssl:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif config.assert_hostname is False:
        context.check_hostname = False
    return context


@dataclass(frozen=True)
class Route:
    """Where a request goes beyond the URL: the name TLS checks, and a proxy."""

    server_hostname: str | None
    proxy: str | None
    proxy_headers: Mapping[str, str] | None


def route(config: kubernetes.client.Configuration) -> Route:
    assert_hostname = config.assert_hostname if isinstance(config.assert_hostname, str) else None
    proxy = config.proxy
    if proxy and should_bypass_proxies(config.host, config.no_proxy or ""):
        proxy = None
    if proxy and is_socks_proxy_url(proxy):  # type: ignore[no-untyped-call]
        # kopf's watches (aiohttp) cannot use one either, so the operator could not run.
        raise ValueError(f"a SOCKS proxy is not supported: {proxy}")
    return Route(
        server_hostname=config.tls_server_name or assert_hostname,
        proxy=proxy or None,
        proxy_headers=dict(config.proxy_headers) if proxy and config.proxy_headers else None,
    )


class KubeClient:
    """`KubeApi` over aiohttp on the event loop; at most `workers` requests at once."""

    def __init__(
        self,
        configuration: kubernetes.client.Configuration,
        observe_request: RequestObserver,
        workers: int = 16,
        timeout: aiohttp.ClientTimeout = REQUEST_TIMEOUT,
    ) -> None:
        self._api = kubernetes.client.ApiClient(configuration)
        self._route = route(configuration)
        self._workers = workers
        self._timeout = timeout
        self._observe_request = observe_request
        self._session: aiohttp.ClientSession | None = None
        self._closing = False
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    async def close(self) -> None:
        self._closing = True
        if self._session is not None:
            await self._session.close()
        self._api.close()  # type: ignore[no-untyped-call]

    async def drain(self) -> None:
        """Send nothing more, and wait for the requests already sent (shards: before this
        replica's Lease is deleted, nothing of its may still be on its way)."""
        self._closing = True
        await self._idle.wait()

    # -- transport

    def _session_now(self) -> aiohttp.ClientSession:
        """The session, made in the running loop at the first request."""
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self._workers, ssl=ssl_context(self._api.configuration)
            )
            # No compressed answers: gzipping a large run costs the API server more CPU
            # than sending it over the cluster's network.
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=self._timeout,
                skip_auto_headers=("Accept-Encoding",),
            )
        return self._session

    async def _send(
        self,
        verb: str,
        resource: str,
        method: str,
        path: str,
        query: list[tuple[str, str]] | None,
        body: Any,
        content_type: str,
    ) -> tuple[int, bytes]:
        if self._closing:
            raise KubeError(0, "ClientClosed", "the API client is closed")
        headers = {"Accept": "application/json", "Content-Type": content_type}
        # The official client builds the URL (query encoded) and the auth header.
        _, url, headers, _, _ = self._api.param_serialize(
            method,
            path,
            query_params=query or None,
            header_params=headers,
            auth_settings=["BearerToken"],
        )
        data = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        self._in_flight += 1
        self._idle.clear()
        try:
            async with self._session_now().request(
                method,
                yarl.URL(url, encoded=True),
                data=data,
                headers=headers,
                server_hostname=self._route.server_hostname,
                proxy=self._route.proxy,
                proxy_headers=self._route.proxy_headers,
            ) as response:
                answer = await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            self._observe_request(verb, resource, "error")
            raise KubeError(0, type(exc).__name__, str(exc)) from exc
        finally:
            self._in_flight -= 1
            if not self._in_flight:
                self._idle.set()
        self._observe_request(verb, resource, str(status))
        return status, answer

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
        status, data = await self._send(verb, resource, method, path, query, body, content_type)
        if status in allow:
            return None
        if status >= 300:
            raise KubeError(status, _status_reason(status), data.decode(errors="replace"))
        return loads(data) if data else {}

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
