"""Template references and rendering."""

from __future__ import annotations

import pytest

from kdag.engine.templating import Reference, TemplateContext, TemplateError, references, render

CTX = TemplateContext(
    params={"day": "mon"},
    nodes={
        "a": {"phase": "Succeeded", "outputs": {"rows": "7"}},
        "t": {"phase": "Succeeded", "outputs": {"n": ["1", "2"]}},
    },
    run={"name": "r1", "namespace": "ns", "uid": "u", "phase": "Failed"},
    item="eu",
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain", "plain"),
        ("{{ params.day }}", "mon"),
        ("{{params.day}}-{{ item }}", "mon-eu"),
        ("rows={{ nodes.a.outputs.rows }}", "rows=7"),
        ("{{ nodes.t.outputs.n }}", '["1","2"]'),
        ("{{ nodes.a.phase }}", "Succeeded"),
        ("{{ run.name }}/{{ run.namespace }} {{ run.phase }}", "r1/ns Failed"),
    ],
)
def test_render_substitutes_every_reference(text: str, expected: str) -> None:
    assert render(text, CTX) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{{ params.other }}", "unknown param 'other'"),
        ("{{ nodes.zz.outputs.k }}", "node 'zz' has not run"),
        ("{{ nodes.a.outputs.nope }}", "node 'a' has no output 'nope'"),
        ("{{ what }}", "unknown template reference"),
        ("{{ params.day", "unterminated template"),
    ],
)
def test_unresolvable_references_are_errors_not_empty_strings(text: str, message: str) -> None:
    with pytest.raises(TemplateError, match=message):
        render(text, CTX)


def test_references_are_parsed_into_kinds() -> None:
    assert references("{{ params.x }} {{ nodes.n-1.outputs.k }} {{ item }} {{ run.uid }}") == [
        Reference("param", "x"),
        Reference("output", "n-1", "k"),
        Reference("item"),
        Reference("run", "uid"),
    ]
