"""The benchmark scenarios: DAG shapes, how many runs of each, and the manifests for both the
operator (a Workflow) and the floor (the same Jobs, created directly)."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bench.kube import pod_placement

IMAGE = "busybox:1.36"
# The floor's own bookkeeping on its Jobs (never kdag's labels: no operator may adopt them).
FLOOR_RUN_LABEL = "bench.kdag.dev/run"
FLOOR_INSTANCE_ANNOTATION = "bench.kdag.dev/instance"


@dataclass(frozen=True)
class Template:
    """One Workflow node; `width` makes it a `forEach` fan-out of that many instances."""

    name: str
    deps: tuple[str, ...] = ()
    width: int | None = None

    def instances(self) -> list[str]:
        if self.width is None:
            return [self.name]
        return [f"{self.name}[{i}]" for i in range(self.width)]


@dataclass(frozen=True)
class Shape:
    templates: tuple[Template, ...]
    # How long every simulated pod runs (KWOK's sim.kdag.dev/duration).
    duration_ms: int

    @functools.cached_property
    def deps(self) -> dict[str, tuple[str, ...]]:
        return {t.name: t.deps for t in self.templates}

    @property
    def nodes(self) -> int:
        return sum(len(t.instances()) for t in self.templates)

    @functools.cached_property
    def depth(self) -> int:
        """Nodes on the longest path (templates are listed in dependency order)."""
        longest: dict[str, int] = {}
        for t in self.templates:
            longest[t.name] = 1 + max((longest[d] for d in t.deps), default=0)
        return max(longest.values())

    @property
    def critical_path_seconds(self) -> float:
        """The simulated critical path: the sum of the pod durations along the longest path."""
        return self.depth * self.duration_ms / 1000


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    shape: Shape
    runs: int
    # How long the harness waits for every run (or the floor's Jobs) to finish.
    timeout_seconds: float
    # One run of this shape started just before the measured runs, and not measured itself:
    # the load that must not delay them (SPEC §8: a big run never delays small ones).
    background: Shape | None = None

    @property
    def nodes(self) -> int:
        """Every node the scenario runs, the background's too (per-node costs divide by it)."""
        return self.shape.nodes * self.runs + (self.background.nodes if self.background else 0)


def fan(width: int, duration_ms: int) -> Shape:
    """A root, a `forEach` of `width` instances, and a join that waits for all of them."""
    return Shape(
        (Template("root"), Template("fan", ("root",), width), Template("join", ("fan",))),
        duration_ms,
    )


def chain(length: int, duration_ms: int) -> Shape:
    templates = [Template("c000")]
    templates += [Template(f"c{i:03d}", (f"c{i - 1:03d}",)) for i in range(1, length)]
    return Shape(tuple(templates), duration_ms)


def layered(width: int, duration_ms: int) -> Shape:
    """20 nodes when width is 6: a root, a fan-out, as many named nodes each waiting for the
    whole fan-out, a second fan-out after them, and a join (fan-in three times)."""
    mids = tuple(f"mid{i}" for i in range(width))
    return Shape(
        (
            Template("start"),
            Template("spread", ("start",), width),
            *(Template(m, ("spread",)) for m in mids),
            Template("gather", mids, width),
            Template("end", ("gather",)),
        ),
        duration_ms,
    )


def scenarios(quick: bool) -> dict[str, Scenario]:
    """The scenarios of SPEC §8 at full scale, or tiny (`--quick`) for smoke tests."""
    if quick:
        return {
            "fanout": Scenario("fanout", "one run, wide fan-out and fan-in", fan(20, 300), 1, 300),
            "chain": Scenario("chain", "one run, a chain", chain(5, 300), 1, 300),
            "concurrent": Scenario(
                "concurrent", "concurrent runs of 20 nodes", layered(6, 300), 4, 300
            ),
            "latency": Scenario("latency", "concurrent runs, latency", chain(4, 300), 4, 300),
            "loaded": Scenario(
                "loaded",
                "concurrent runs beside a wide one, latency",
                chain(4, 300),
                4,
                300,
                background=fan(50, 300),
            ),
        }
    return {
        "fanout": Scenario(
            "fanout", "1 run of 5,002 nodes (root, forEach 5,000, join)", fan(5000, 1000), 1, 5400
        ),
        "chain": Scenario("chain", "1 run, a 500-node chain", chain(500, 500), 1, 5400),
        "concurrent": Scenario(
            "concurrent", "200 concurrent runs of 20 nodes", layered(6, 1000), 200, 5400
        ),
        "latency": Scenario(
            "latency", "100 concurrent runs of a 10-node chain", chain(10, 1000), 100, 3600
        ),
        "loaded": Scenario(
            "loaded",
            "50 runs of a 10-node chain beside one run of 2,002 nodes (forEach 2,000)",
            chain(10, 1000),
            50,
            3600,
            background=fan(2000, 1000),
        ),
    }


# --------------------------------------------------------------------- manifests


def pod_annotations(shape: Shape) -> dict[str, str]:
    return {"sim.kdag.dev/duration": f"{shape.duration_ms}ms"}


def workflow_manifest(name: str, shape: Shape, node_group: str) -> dict[str, Any]:
    nodes: list[dict[str, Any]] = []
    for t in shape.templates:
        node: dict[str, Any] = {"name": t.name}
        if t.deps:
            node["dependsOn"] = list(t.deps)
        if t.width is not None:
            node["forEach"] = [str(i) for i in range(t.width)]
        nodes.append(node)
    return {
        "apiVersion": "kdag.dev/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": name},
        "spec": {
            "defaults": {
                "image": IMAGE,
                "podMetadata": {"annotations": pod_annotations(shape)},
                "podTemplate": pod_placement(node_group),
            },
            "nodes": nodes,
        },
    }


def run_manifest(workflow: str, name: str) -> dict[str, Any]:
    return {
        "apiVersion": "kdag.dev/v1alpha1",
        "kind": "WorkflowRun",
        "metadata": {"name": name},
        "spec": {"workflowRef": {"name": workflow}},
    }


def floor_job_name(run: str, instance: str) -> str:
    return f"{run}-{instance.replace('[', '-').replace(']', '')}"


def floor_job(
    namespace: str, run: str, instance: str, shape: Shape, node_group: str
) -> dict[str, Any]:
    """The Job kdag would create for this node, minus kdag's labels and owner reference."""
    pod = floor_pod(namespace, run, instance, shape, node_group)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": pod["metadata"],
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {
                    "labels": pod["metadata"]["labels"],
                    "annotations": pod_annotations(shape),
                },
                "spec": pod["spec"],
            },
        },
    }


def floor_pod(
    namespace: str, run: str, instance: str, shape: Shape, node_group: str
) -> dict[str, Any]:
    """The pod of that Job, created bare: what an engine that runs pods (Argo) creates."""
    annotations: Mapping[str, str] = {FLOOR_INSTANCE_ANNOTATION: instance}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": floor_job_name(run, instance),
            "namespace": namespace,
            "labels": {FLOOR_RUN_LABEL: run},
            "annotations": {**annotations, **pod_annotations(shape)},
        },
        "spec": {
            **pod_placement(node_group),
            "restartPolicy": "Never",
            "containers": [
                {
                    "name": "main",
                    "image": IMAGE,
                    "terminationMessagePolicy": "FallbackToLogsOnError",
                }
            ],
        },
    }


def template_of(instance: str) -> str:
    return instance.split("[", 1)[0]
