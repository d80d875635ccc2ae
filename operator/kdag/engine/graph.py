"""The node graph of a workflow: structure checks and orderings (networkx)."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass

import networkx as nx

from kdag.api import NodeSpec, WorkflowSpec
from kdag.engine.problems import Problem


@dataclass(frozen=True)
class WorkflowGraph:
    """Dependency graphs of the main nodes and of the `finally` nodes, edges dep -> node,
    and the lookups every planning pass needs (built once per workflow, never changed)."""

    main: nx.DiGraph
    final: nx.DiGraph
    order: tuple[str, ...]  # main then finally, topological, ties broken by declaration
    position: Mapping[str, int]  # each node's place in `order`
    specs: Mapping[str, NodeSpec]  # each node by name
    final_names: frozenset[str]
    main_names: tuple[str, ...]  # the main nodes, in `order`

    def ancestor_sets(self) -> dict[str, frozenset[str]]:
        """Every node's ancestors, found in one walk in topological order (a search per node
        cost a 500-node chain a quarter of a second of Python, twice per run)."""
        found: dict[str, frozenset[str]] = {}
        for name in self.order:
            graph = self.main if name in self.main else self.final
            mine: set[str] = set()
            for dep in graph.predecessors(name):
                mine |= found[dep]
                mine.add(dep)
            found[name] = frozenset(mine)
        return found


def _build(nodes: list[NodeSpec]) -> nx.DiGraph:
    graph = nx.DiGraph()
    for node in nodes:
        graph.add_node(node.name)
    for node in nodes:
        for dep in node.dependencies:
            if dep in graph:
                graph.add_edge(dep, node.name)
    return graph


def structure_problems(workflow: WorkflowSpec) -> list[Problem]:
    """Duplicate names, unknown or misplaced dependencies, and cycles (naming their nodes)."""
    problems: list[Problem] = []
    seen: set[str] = set()
    main_names = {n.name for n in workflow.nodes}
    final_names = {n.name for n in workflow.finally_nodes}
    for section, nodes in (("nodes", workflow.nodes), ("finally", workflow.finally_nodes)):
        own = main_names if section == "nodes" else final_names
        for node in nodes:
            where = f"{section}[{node.name}]"
            if node.name in seen:
                problems.append(Problem(f"{where}.name", f"duplicate node name {node.name!r}"))
            seen.add(node.name)
            for i, dep in enumerate(node.dependencies):
                field = f"{where}.dependsOn[{i}]"
                if dep == node.name:
                    problems.append(Problem(field, "a node cannot depend on itself"))
                elif dep in own:
                    continue
                elif section == "nodes" and dep in final_names:
                    problems.append(
                        Problem(field, f"{dep!r} is a finally node; main nodes cannot wait for it")
                    )
                elif section == "finally" and dep in main_names:
                    problems.append(
                        Problem(
                            field,
                            f"{dep!r} is a main node; finally nodes run after all of them "
                            "anyway, so depend only on other finally nodes",
                        )
                    )
                else:
                    problems.append(Problem(field, f"unknown node {dep!r}"))
    for section, nodes in (("nodes", workflow.nodes), ("finally", workflow.finally_nodes)):
        problems.extend(_cycle_problems(section, _build(nodes)))
    return problems


def _cycle_problems(section: str, graph: nx.DiGraph) -> list[Problem]:
    problems = []
    for component in nx.strongly_connected_components(graph):
        if len(component) < 2:
            continue
        cycle = nx.find_cycle(graph.subgraph(component))
        names = [edge[0] for edge in cycle] + [cycle[0][0]]
        first = min(component)
        problems.append(
            Problem(f"{section}[{first}].dependsOn", "dependency cycle: " + " -> ".join(names))
        )
    return sorted(problems)


def build_graph(workflow: WorkflowSpec) -> WorkflowGraph:
    """Graphs of a workflow that passed `structure_problems`."""
    main = _build(workflow.nodes)
    final = _build(workflow.finally_nodes)
    position = {n.name: i for i, n in enumerate(workflow.all_nodes)}
    order = [
        *nx.lexicographical_topological_sort(main, key=lambda n: position[n]),
        *nx.lexicographical_topological_sort(final, key=lambda n: position[n]),
    ]
    final_names = frozenset(n.name for n in workflow.finally_nodes)
    return WorkflowGraph(
        main=main,
        final=final,
        order=tuple(order),
        position={name: i for i, name in enumerate(order)},
        specs={n.name: n for n in workflow.all_nodes},
        final_names=final_names,
        main_names=tuple(name for name in order if name not in final_names),
    )


@dataclass(frozen=True, eq=False)
class _Same:
    """A workflow compared by identity: a run's snapshot is the same object from one planning
    pass to the next while the operator holds the run parsed, and is never changed."""

    workflow: WorkflowSpec

    def __hash__(self) -> int:
        return id(self.workflow)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Same) and other.workflow is self.workflow


@functools.lru_cache(maxsize=256)
def _remembered(same: _Same) -> WorkflowGraph:
    return build_graph(same.workflow)


def graph_of(workflow: WorkflowSpec) -> WorkflowGraph:
    """`build_graph`, remembered per workflow object: rebuilding and sorting a 500-node graph
    on every pass cost a 500-node chain half of its planning time."""
    return _remembered(_Same(workflow))
