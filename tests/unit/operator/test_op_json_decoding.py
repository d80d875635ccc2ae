"""Watch events and API answers decode with orjson to exactly what the standard library
gives, and kopf's watch streams use it."""

from __future__ import annotations

import inspect
import json
import math
from typing import Any

import kopf._cogs.clients.api as kopf_api
import pytest

from kdag.operator import json_decoding
from kdag.operator.config import OperatorConfig, kopf_settings
from kdag.operator.json_decoding import loads
from kdag.operator.object_watches import kopf_stream

A_JOB_EVENT = json.dumps(
    {
        "type": "MODIFIED",
        "object": {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {
                "name": "run-a-1",
                "labels": {"kdag.dev/node": "ünïcode-☃"},
                "annotations": {"note": 'quotes " and \\ backslashes\n'},
            },
            "spec": {"backoffLimit": 0, "activeDeadlineSeconds": 9223372036854775807},
            "status": {"ready": 0, "succeeded": 1, "ratio": 0.25, "conditions": [], "x": None},
        },
    }
)


@pytest.mark.parametrize(
    "text",
    [A_JOB_EVENT, A_JOB_EVENT.encode(), "{}", "[]", '"s"', "1e400", "-0.0", '{"a":1.5e-7}'],
)
def test_a_document_decodes_to_what_the_standard_library_gives(text: str | bytes) -> None:
    assert loads(text) == json.loads(text)
    assert type(loads(text)) is type(json.loads(text))


@pytest.mark.parametrize("text", ["NaN", '{"big": 1180591620717411303424}', "[Infinity]"])
def test_what_orjson_refuses_still_decodes_as_the_standard_library_does(text: str) -> None:
    decoded: Any = loads(text)
    expected: Any = json.loads(text)
    if isinstance(expected, float) and math.isnan(expected):
        assert math.isnan(decoded)
    else:
        assert decoded == expected


@pytest.mark.parametrize("text", ["", "{", '{"a": }', b"\xff\xfe"])
def test_malformed_json_raises_the_standard_librarys_error(text: str | bytes) -> None:
    with pytest.raises((json.JSONDecodeError, UnicodeDecodeError)):
        loads(text)


def test_documents_go_through_orjson(monkeypatch: pytest.MonkeyPatch) -> None:
    decoded: list[object] = []
    real = json_decoding.orjson.loads

    def counting(data: bytes | str) -> Any:
        decoded.append(data)
        return real(data)

    monkeypatch.setattr(json_decoding.orjson, "loads", counting)
    assert loads(A_JOB_EVENT)["object"]["metadata"]["name"] == "run-a-1"
    assert decoded == [A_JOB_EVENT]


def test_kopfs_watch_streams_decode_their_lines_with_orjson_once_kdag_streams_are_made(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(kopf_api, "json", json)  # as kopf has it
    kopf_stream(kopf_settings(OperatorConfig(all_namespaces=True)))
    assert kopf_api.json.loads is loads
    # The pinned kopf decodes each watch line with its module's `json.loads`; a kopf that
    # decodes otherwise would make this patch do nothing, silently.
    assert "json.loads(" in inspect.getsource(kopf_api.stream)
