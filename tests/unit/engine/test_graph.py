"""The workflow graph's derived views agree with networkx's own answers."""

from __future__ import annotations

from typing import Any

import networkx as nx
from hypothesis import given
from hypothesis import strategies as st

from kdag.engine.graph import build_graph
from tests.unit.engine.sim import workflow


@st.composite
def dags(draw: st.DrawFn) -> dict[str, Any]:
    def section(prefix: str, count: int) -> list[dict[str, Any]]:
        nodes = []
        for i in range(count):
            deps = draw(st.sets(st.integers(0, i - 1), max_size=3)) if i else set()
            nodes.append({"name": f"{prefix}{i}", "dependsOn": [f"{prefix}{d}" for d in deps]})
        return nodes

    return {
        "nodes": section("n", draw(st.integers(1, 12))),
        "finally": section("f", draw(st.integers(0, 4))),
    }


@given(spec=dags())
def test_ancestor_sets_are_each_nodes_ancestors_within_its_section(spec: dict[str, Any]) -> None:
    graph = build_graph(workflow(**spec))
    found = graph.ancestor_sets()
    assert set(found) == set(graph.order)
    for name in graph.order:
        section = graph.main if name in graph.main else graph.final
        assert found[name] == nx.ancestors(section, name)


def test_a_long_chains_ancestors_are_everything_before_each_node() -> None:
    names = [f"c{i:03d}" for i in range(500)]
    nodes = [
        {"name": n, **({"dependsOn": [names[i - 1]]} if i else {})} for i, n in enumerate(names)
    ]
    found = build_graph(workflow(nodes=nodes)).ancestor_sets()
    assert all(found[n] == set(names[:i]) for i, n in enumerate(names))
