"""The API client's transport: requests on the event loop (aiohttp) with the official
client's configuration, against a small local HTTP server standing in for the API server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import kubernetes
import pytest
from aiohttp import web

from kdag.operator.kube import KubeClient, KubeError, route

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def configuration(host: str, token: str = "t0k3n") -> kubernetes.client.Configuration:
    config = kubernetes.client.Configuration()
    config.host = host
    config.api_key = {"authorization": token}
    config.api_key_prefix = {"authorization": "Bearer"}
    return config


def serve(handler: Handler, scenario: Callable[[str], Awaitable[Any]]) -> Any:
    """Run `scenario(base_url)` while a local server answers every request with `handler`."""

    async def main() -> Any:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        try:
            return await scenario(f"http://127.0.0.1:{port}")
        finally:
            await runner.cleanup()

    return asyncio.run(main())


def test_a_request_carries_the_token_the_body_and_no_compression_and_its_answer_is_parsed() -> None:
    seen: dict[str, Any] = {}

    async def handler(request: web.Request) -> web.Response:
        seen.update(
            method=request.method,
            path=request.path_qs,
            auth=request.headers.get("Authorization"),
            encoding=request.headers.get("Accept-Encoding"),
            type=request.headers.get("Content-Type"),
            body=await request.json(),
        )
        return web.json_response({"metadata": {"name": "r", "resourceVersion": "7"}})

    requests: list[tuple[str, str, str]] = []

    async def scenario(host: str) -> dict[str, Any]:
        client = KubeClient(configuration(host), lambda *r: requests.append(r))
        try:
            return await client.patch_run_status("team a", "r", {"status": {"phase": "Running"}})
        finally:
            await client.close()

    answer = serve(handler, scenario)
    assert answer == {"metadata": {"name": "r", "resourceVersion": "7"}}
    assert seen == {
        "method": "PATCH",
        "path": "/apis/kdag.dev/v1alpha1/namespaces/team%20a/workflowruns/r/status",
        "auth": "Bearer t0k3n",
        "encoding": None,  # a large run gzipped would cost the API server more than sending it
        "type": "application/merge-patch+json",
        "body": {"status": {"phase": "Running"}},
    }
    assert requests == [("patch", "workflowruns/status", "200")]


def test_query_parameters_are_encoded_once() -> None:
    seen: list[tuple[str, dict[str, str]]] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append((request.raw_path, dict(request.query)))
        return web.json_response({"items": [], "metadata": {"resourceVersion": "1"}})

    async def scenario(host: str) -> None:
        client = KubeClient(configuration(host), lambda *r: None)
        try:
            await client.list_jobs("ns", "kdag.dev/run=a b,app.kubernetes.io/managed-by=kdag")
        finally:
            await client.close()

    serve(handler, scenario)
    [(raw, query)] = seen
    assert "%25" not in raw  # not encoded twice
    assert query == {
        "labelSelector": "kdag.dev/run=a b,app.kubernetes.io/managed-by=kdag",
        "limit": "500",
    }


def test_an_error_status_is_a_kube_error_with_the_api_reason_and_an_allowed_one_is_none() -> None:
    async def handler(request: web.Request) -> web.Response:
        if request.method == "GET":
            return web.json_response({"reason": "NotFound"}, status=404)
        status = {"kind": "Status", "reason": "AlreadyExists", "message": "jobs x exists"}
        return web.json_response(status, status=409)

    async def scenario(host: str) -> tuple[Any, KubeError]:
        client = KubeClient(configuration(host), lambda *r: None)
        try:
            missing = await client.get_job("ns", "x")
            with pytest.raises(KubeError) as conflict:
                await client.create_job("ns", {"metadata": {"name": "x"}})
            return missing, conflict.value
        finally:
            await client.close()

    missing, conflict = serve(handler, scenario)
    assert missing is None
    assert (conflict.status, conflict.api_reason, conflict.api_message) == (
        409,
        "AlreadyExists",
        "jobs x exists",
    )
    assert not conflict.transient


def test_no_answer_is_a_transient_kube_error_counted_as_an_error() -> None:
    requests: list[tuple[str, str, str]] = []
    given_up = asyncio.Event()

    async def handler(request: web.Request) -> web.Response:
        await given_up.wait()  # no answer while the client waits for one
        return web.json_response({})

    async def scenario(host: str) -> KubeError:
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=0.05)
        client = KubeClient(configuration(host), lambda *r: requests.append(r), timeout=timeout)
        try:
            with pytest.raises(KubeError) as failed:
                await client.get_run("ns", "r")
            return failed.value
        finally:
            given_up.set()
            await client.close()

    error = serve(handler, scenario)
    assert error.status == 0
    assert error.transient
    assert requests == [("get", "workflowruns", "error")]


def test_a_refused_connection_is_a_transient_kube_error() -> None:
    async def scenario() -> KubeError:
        # A port nothing listens on: bind one, and close it before the request.
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        server.close()
        await server.wait_closed()
        client = KubeClient(configuration(f"http://127.0.0.1:{port}"), lambda *r: None)
        try:
            with pytest.raises(KubeError) as failed:
                await client.get_run("ns", "r")
            return failed.value
        finally:
            await client.close()

    error = asyncio.run(scenario())
    assert (error.status, error.transient) == (0, True)


def test_drain_waits_for_the_requests_sent_and_sends_nothing_more() -> None:
    release = asyncio.Event()
    arrived = asyncio.Event()
    order: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        arrived.set()
        await release.wait()
        order.append("answered")
        return web.json_response({})

    async def scenario(host: str) -> KubeError:
        client = KubeClient(configuration(host), lambda *r: None)
        try:
            sent = asyncio.create_task(client.get_run("ns", "r"))
            await arrived.wait()
            draining = asyncio.create_task(client.drain())
            await asyncio.sleep(0)
            order.append("draining")
            release.set()
            await draining
            order.append("drained")
            assert sent.done()
            with pytest.raises(KubeError) as refused:
                await client.get_run("ns", "r")
            return refused.value
        finally:
            await client.close()

    refused = serve(handler, scenario)
    assert order == ["draining", "answered", "drained"]
    assert refused.reason == "ClientClosed"


def test_the_route_follows_the_configurations_tls_name_and_proxy() -> None:
    config = configuration("https://10.0.0.1:6443")
    config.tls_server_name = "kubernetes.default"
    config.proxy = "http://proxy:3128"
    config.proxy_headers = {"Proxy-Authorization": "Basic x"}
    assert route(config).server_hostname == "kubernetes.default"
    assert route(config).proxy == "http://proxy:3128"
    assert route(config).proxy_headers == {"Proxy-Authorization": "Basic x"}
    config.no_proxy = "10.0.0.1"
    assert route(config).proxy is None
    config.no_proxy = None
    config.proxy = "socks5://proxy:1080"
    with pytest.raises(ValueError, match="SOCKS"):
        route(config)


def test_a_json_body_is_sent_as_compact_json() -> None:
    bodies: list[bytes] = []

    async def handler(request: web.Request) -> web.Response:
        bodies.append(await request.read())
        return web.json_response({})

    async def scenario(host: str) -> None:
        client = KubeClient(configuration(host), lambda *r: None)
        try:
            await client.create_event("ns", {"a": [1, 2], "b": {"c": "d"}})
        finally:
            await client.close()

    serve(handler, scenario)
    assert bodies == [json.dumps({"a": [1, 2], "b": {"c": "d"}}, separators=(",", ":")).encode()]
