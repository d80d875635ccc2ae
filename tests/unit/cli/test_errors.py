"""Ordinary mistakes are one line, as kubectl words them; anything else is a bug."""

from __future__ import annotations

import json

import pytest
from kubernetes.client.exceptions import ApiException
from kubernetes.config import ConfigException
from urllib3 import HTTPConnectionPool
from urllib3 import exceptions as http

from kdag.cli.errors import UserError, one_line

POOL = HTTPConnectionPool("127.0.0.1", 6443)


def _status(code: int, reason: str, message: str) -> ApiException:
    body = json.dumps({"kind": "Status", "status": "Failure", "reason": reason, "message": message})
    return ApiException(status=code, reason=reason, body=body)


def test_not_found_is_kubectl_s_error_from_server() -> None:
    exc = _status(404, "NotFound", 'workflowruns.kdag.dev "nope" not found')
    assert one_line(exc) == 'Error from server (NotFound): workflowruns.kdag.dev "nope" not found'


def test_forbidden_says_who_may_not_do_what() -> None:
    message = (
        'workflowruns.kdag.dev "r" is forbidden: User "bob" cannot get resource "workflowruns"'
    )
    assert (
        one_line(_status(403, "Forbidden", message)) == f"Error from server (Forbidden): {message}"
    )


def test_unauthorized_asks_to_log_in() -> None:
    exc = _status(401, "Unauthorized", "Unauthorized")
    assert one_line(exc) == "error: You must be logged in to the server (Unauthorized)"


def test_a_body_that_is_no_status_is_quoted_on_one_line() -> None:
    exc = ApiException(status=502, reason="Bad Gateway", body="upstream down\nmore detail")
    assert one_line(exc) == "Error from server (Bad Gateway): upstream down"


def test_a_refused_connection_names_the_server() -> None:
    refused = http.NewConnectionError(None, "Connection refused")  # type: ignore[arg-type]
    line = one_line(http.MaxRetryError(POOL, "/apis", refused))
    assert line == (
        "The connection to the server 127.0.0.1:6443 was refused - did you specify the right"
        " host or port?"
    )


@pytest.mark.parametrize(
    "reason",
    [
        http.ReadTimeoutError(POOL, "/apis", "Read timed out. (read timeout=1)"),
        http.ConnectTimeoutError("timed out"),
    ],
)
def test_a_silent_server_is_a_timeout(reason: Exception) -> None:
    line = one_line(http.MaxRetryError(POOL, "/apis", reason))
    assert line == (
        "Unable to connect to the server: 127.0.0.1:6443 did not answer within the request"
        " timeout (--request-timeout)"
    )


def test_an_unknown_host_is_no_such_host() -> None:
    reason = http.NameResolutionError("nohost", None, OSError("Name or service not known"))  # type: ignore[arg-type]
    pool = HTTPConnectionPool("nohost", 443)
    assert one_line(http.MaxRetryError(pool, "/", reason)) == (
        "Unable to connect to the server: dial tcp: lookup nohost:443: no such host"
    )


def test_a_tls_failure_is_one_line() -> None:
    exc = ApiException(status=0, reason="SSLError\n[SSL: CERTIFICATE_VERIFY_FAILED] bad cert")
    assert one_line(exc) == "Unable to connect to the server: SSLError"


def test_kubeconfig_and_plugin_errors_are_their_message() -> None:
    assert one_line(ConfigException("Invalid kube-config file.\nmore")) == (
        "error: kubeconfig: Invalid kube-config file."
    )
    assert one_line(UserError('error: context "x" does not exist')) == (
        'error: context "x" does not exist'
    )


def test_a_bug_is_not_an_ordinary_mistake() -> None:
    assert one_line(KeyError("status")) is None
    assert one_line(AssertionError()) is None
