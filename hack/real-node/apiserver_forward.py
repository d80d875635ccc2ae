#!/usr/bin/env python3
"""Forward LISTEN_HOST:PORT to 127.0.0.1:PORT, so that pods on the real node reach the API
server.

    apiserver_forward.py LISTEN_HOST PORT

kwokctl binds the API server to 127.0.0.1, which a pod (in its own network namespace) cannot
reach, and no kube-proxy makes the `kubernetes` Service's ClusterIP work. The Service's
endpoint is already the node's address and the API server's port (kube-apiserver advertises
the host's address), and the serving certificate names that address, so forwarding exactly
there makes the endpoint true: a pod sets KUBERNETES_SERVICE_HOST/PORT to it and its
in-cluster config verifies TLS as usual. Plain TCP: TLS stays end to end.
"""

from __future__ import annotations

import asyncio
import sys


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


async def _serve(host: str, port: int) -> None:
    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            server_r, server_w = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            client_w.close()
            return
        await asyncio.gather(_pipe(client_r, server_w), _pipe(server_r, client_w))

    server = await asyncio.start_server(handle, host, port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(_serve(sys.argv[1], int(sys.argv[2])))
