"""The API server's JSON decoded with orjson: watch events and the answers to requests.

Every node brings about ten watch events (its Job's, its pod's, its run's status writes),
each a whole object, and decoding them with the standard library was the largest single
cost in the operator's profile (`make bench BENCH_ARGS=--profile`: 8-9% of its CPU). orjson
decodes the same documents to the same Python values several times faster. Anything it
refuses (it is stricter: NaN, integers beyond 64 bits, which the API server does not send)
is decoded by the standard library, so the result and the errors are the same as before.
"""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

# kopf's API module, whose `stream` decodes each line of a watch with its module's
# `json.loads`: not exported by kopf, and pinned with it (pyproject.toml).
import kopf._cogs.clients.api as kopf_api
import orjson


def loads(data: bytes | str) -> Any:
    """One JSON document, as `json.loads` would decode it."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)  # what orjson refuses: the standard library's value or error


# What kopf's API module sees as `json`: only `loads` is used there (a watch line).
_FOR_KOPF = SimpleNamespace(loads=loads, dumps=json.dumps, JSONDecodeError=json.JSONDecodeError)


def decode_kopf_streams() -> None:
    """Make kopf's list-and-watch streams decode their events with `loads` (idempotent)."""
    setattr(kopf_api, "json", _FOR_KOPF)  # noqa: B010 (a module attribute mypy types as json)
