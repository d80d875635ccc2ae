"""`{{ ... }}` templates in command, args, env values and forEachFrom.

A reference is one of `params.<p>`, `nodes.<n>.outputs.<k>`, `nodes.<n>.phase`, `item`,
`run.name`, `run.namespace`, `run.uid`, `run.phase`. Anything else is an error, never an
empty string: a typo must fail loudly at validation time.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

_TEMPLATE = re.compile(r"\{\{(.*?)\}\}")
_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_NODE = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_PARAM_REF = re.compile(rf"^params\.({_IDENT})$")
_OUTPUT_REF = re.compile(rf"^nodes\.({_NODE})\.outputs\.([A-Za-z0-9_.-]+)$")
_PHASE_REF = re.compile(rf"^nodes\.({_NODE})\.phase$")
RUN_FIELDS = ("name", "namespace", "uid", "phase")


class TemplateError(ValueError):
    """A template that cannot be parsed or rendered; the message names the reference."""


@dataclass(frozen=True)
class Reference:
    """One parsed `{{ ... }}` reference."""

    kind: str  # "param" | "output" | "phase" | "item" | "run"
    name: str = ""  # param name, node name, or run field
    key: str = ""  # output key

    @property
    def text(self) -> str:
        if self.kind == "param":
            return f"params.{self.name}"
        if self.kind == "output":
            return f"nodes.{self.name}.outputs.{self.key}"
        if self.kind == "phase":
            return f"nodes.{self.name}.phase"
        if self.kind == "run":
            return f"run.{self.name}"
        return "item"


def parse_reference(expression: str) -> Reference:
    expr = expression.strip()
    if expr == "item":
        return Reference("item")
    if m := _PARAM_REF.match(expr):
        return Reference("param", m.group(1))
    if m := _OUTPUT_REF.match(expr):
        return Reference("output", m.group(1), m.group(3))
    if m := _PHASE_REF.match(expr):
        return Reference("phase", m.group(1))
    if expr.startswith("run.") and expr[4:] in RUN_FIELDS:
        return Reference("run", expr[4:])
    raise TemplateError(
        f"unknown template reference {{{{ {expr} }}}}: expected params.<name>, "
        "nodes.<node>.outputs.<key>, nodes.<node>.phase, item or run.<name|namespace|uid|phase>"
    )


def references(text: str) -> list[Reference]:
    """Every reference in `text`; raises TemplateError on the first malformed one."""
    if "{{" not in text:
        return []
    refs = [parse_reference(m.group(1)) for m in _TEMPLATE.finditer(text)]
    rest = _TEMPLATE.sub("", text)
    if "{{" in rest:
        raise TemplateError(f"unterminated template in {text!r}")
    return refs


@dataclass(frozen=True)
class TemplateContext:
    """What references resolve to when a node starts.

    `nodes` maps node name to {"phase": str, "outputs": {key: str | list[str]}}; a fanned-out
    node's outputs are lists, one value per instance in fan-out order.
    """

    params: Mapping[str, str]
    nodes: Mapping[str, Mapping[str, Any]]
    run: Mapping[str, str]
    item: str | None = None


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def resolve(ref: Reference, ctx: TemplateContext) -> str:
    if ref.kind == "item":
        if ctx.item is None:
            raise TemplateError("{{ item }} is only defined in a node with forEach")
        return ctx.item
    if ref.kind == "param":
        if ref.name not in ctx.params:
            raise TemplateError(f"unknown param {ref.name!r}")
        return ctx.params[ref.name]
    if ref.kind == "run":
        return ctx.run.get(ref.name, "")
    node = ctx.nodes.get(ref.name)
    if node is None:
        raise TemplateError(f"node {ref.name!r} has not run")
    if ref.kind == "phase":
        return str(node.get("phase", ""))
    outputs = node.get("outputs") or {}
    if ref.key not in outputs:
        raise TemplateError(f"node {ref.name!r} has no output {ref.key!r}")
    return _as_text(outputs[ref.key])


def render(text: str, ctx: TemplateContext) -> str:
    """Substitute every reference; raises TemplateError naming the first it cannot resolve."""
    if "{{" not in text:
        return text
    references(text)  # reject malformed templates before substituting any
    return _TEMPLATE.sub(lambda m: resolve(parse_reference(m.group(1)), ctx), text)
