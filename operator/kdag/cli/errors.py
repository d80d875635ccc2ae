"""Ordinary mistakes as kubectl reports them: one line on stderr, exit 1, no traceback.

No kubeconfig, an unknown context, an unreachable or silent server, a refusal (401, 403), a
missing object: each is something the user can fix, so it is said in one line; only a bug
in the plugin shows a traceback.
"""

from __future__ import annotations

import json

from kubernetes.client.exceptions import ApiException
from kubernetes.config import ConfigException
from urllib3 import exceptions as http


class UserError(Exception):
    """A mistake or refusal, reported as its message (one line, as printed) and exit 1."""


def one_line(exc: BaseException) -> str | None:
    """The line kubectl would print for this error; None if it is no ordinary mistake."""
    if isinstance(exc, UserError):
        return str(exc)
    if isinstance(exc, ApiException):
        return _from_server(exc)
    if isinstance(exc, ConfigException):
        return f"error: kubeconfig: {_first_line(str(exc))}"
    if isinstance(exc, http.MaxRetryError):
        return _unreachable(exc.reason, _where(exc.pool))
    if isinstance(exc, http.HTTPError):
        pool = getattr(exc, "pool", None)
        return _unreachable(exc, _where(pool) if pool is not None else "the server")
    return None


def _from_server(exc: ApiException) -> str:
    if exc.status == 0:  # the client's wrapping of a TLS failure
        return f"Unable to connect to the server: {_first_line(str(exc.reason))}"
    if exc.status == 401:
        return "error: You must be logged in to the server (Unauthorized)"
    reason, message = str(exc.reason or exc.status), str(exc.body or "").strip()
    try:
        status = json.loads(message)
    except ValueError:
        status = None
    if isinstance(status, dict):
        reason = str(status.get("reason") or reason)
        message = str(status.get("message") or message)
    return f"Error from server ({reason}): {_first_line(message) or exc.status}"


def api_message(exc: ApiException) -> str:
    """The message of the API server's Status in an error response, else its body."""
    line = _from_server(exc)
    return line.split("): ", 1)[1] if line.startswith("Error from server (") else line


def _where(pool: object) -> str:
    host, port = getattr(pool, "host", None), getattr(pool, "port", None)
    if host is None:
        return "the server"
    return f"{host}:{port}" if port else str(host)


def _unreachable(reason: BaseException | None, where: str) -> str:
    if isinstance(reason, http.NameResolutionError):
        return f"Unable to connect to the server: dial tcp: lookup {where}: no such host"
    if isinstance(reason, http.NewConnectionError):
        return (
            f"The connection to the server {where} was refused - did you specify the right"
            " host or port?"
        )
    # After the two above: urllib3 makes a refused connection a kind of connect timeout.
    if isinstance(reason, http.TimeoutError):
        return (
            f"Unable to connect to the server: {where} did not answer within the request"
            " timeout (--request-timeout)"
        )
    if isinstance(reason, http.SSLError):
        return f"Unable to connect to the server: TLS: {_first_line(str(reason))}"
    return f"Unable to connect to the server {where}: {_first_line(str(reason))}"


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""
