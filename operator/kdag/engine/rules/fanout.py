"""Fan-out (SPEC §3): one instance per item, from a literal list or an upstream output."""

from __future__ import annotations

import json

from kdag.api import NodePhase, NodeSpec, NodeStatus, SkipReason
from kdag.engine import budget, names, templating
from kdag.engine.instance_keys import instance_key
from kdag.engine.pass_state import PassState


def create_nodes(state: PassState, node: NodeSpec) -> None:
    """The first status entries of a workflow node: itself, or one per literal item."""
    if node.for_each is None:
        state.put_node(node.name, NodeStatus(phase=NodePhase.PENDING))
        return
    labels = names.item_labels(node.for_each)
    for index, (item, label) in enumerate(zip(node.for_each, labels, strict=True)):
        state.put_node(instance_key(node.name, label), _new_instance(item, label, index))
    if not node.for_each:
        state.put_node(node.name, _no_items_status(state))


def expand(state: PassState, name: str) -> list[str]:
    """Fan out over the JSON array that forEachFrom renders to, now that it is known; the
    new instances' keys (none when the node failed or had no items)."""
    spec = state.specs[name]
    assert spec.for_each_from is not None
    try:
        text = templating.render(spec.for_each_from, state.template_context(None))
        items = json.loads(text)
    except templating.TemplateError as exc:
        state.finish_node(name, NodePhase.FAILED, f"forEachFrom: {exc}")
        return []
    except ValueError:
        state.finish_node(
            name, NodePhase.FAILED, f"forEachFrom: {text[:200]!r} is not a JSON array"
        )
        return []
    if not isinstance(items, list):
        state.finish_node(name, NodePhase.FAILED, "forEachFrom: the value is not a JSON array")
        return []
    room = state.ctx.max_nodes - len(state.nodes) + 1
    if len(items) > room:
        state.finish_node(
            name,
            NodePhase.FAILED,
            f"forEachFrom: {len(items)} items would exceed the maximum of "
            f"{state.ctx.max_nodes} nodes per run",
        )
        return []
    too_big = _expansion_too_big(state, len(items))
    if too_big is not None:
        state.finish_node(name, NodePhase.FAILED, f"forEachFrom: {too_big}")
        return []
    if not items:
        state.put_node(name, _no_items_status(state))
        return []
    values = [i if isinstance(i, str) else json.dumps(i, separators=(",", ":")) for i in items]
    state.remove_node(name)
    keys = []
    for index, (item, label) in enumerate(zip(values, names.item_labels(values), strict=True)):
        key = instance_key(name, label)
        state.put_node(key, _new_instance(item, label, index))
        keys.append(key)
    state.by_template[name] = keys
    return keys


def _expansion_too_big(state: PassState, count: int) -> str | None:
    """Why `count` more instances would let the run's object outgrow the API server's
    limit (with its output budget filled), or None."""
    named = sum(1 for ns in state.nodes.values() if ns.index is None) - 1
    instances = len(state.nodes) - 1 - named + count
    size = budget.fixed_bytes(state.workflow, named, instances) + state.ctx.output_budget
    if size <= budget.MAX_RUN_OBJECT_BYTES:
        return None
    return (
        f"{count} items would make the run's object about {size // 1024} KiB with its "
        f"output budget, more than the {budget.MAX_RUN_OBJECT_BYTES // 1024} KiB it may take"
    )


def _no_items_status(state: PassState) -> NodeStatus:
    return NodeStatus(
        phase=NodePhase.SKIPPED,
        skip_reason=SkipReason.NO_ITEMS,
        message="forEach has no items",
        finished_at=state.now_iso,
    )


def _new_instance(item: str, label: str, index: int) -> NodeStatus:
    return NodeStatus(phase=NodePhase.PENDING, item=None if item == label else item, index=index)
