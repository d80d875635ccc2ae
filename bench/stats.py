"""Quantiles, Prometheus histogram quantiles, and latencies derived from watched Jobs."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from bench.kube import Samples
from bench.shapes import Shape, template_of
from bench.watch import JobSeen


def quantile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated quantile (numpy's default); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    low, high = math.floor(pos), math.ceil(pos)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def summary(
    values: Sequence[float], unit_scale: float = 1.0, digits: int = 4
) -> dict[str, float | int | None]:
    """count, p50, p90, p99 and max, each multiplied by `unit_scale`."""

    def scaled(v: float | None) -> float | None:
        return None if v is None else round(v * unit_scale, digits)

    return {
        "count": len(values),
        "p50": scaled(quantile(values, 0.5)),
        "p90": scaled(quantile(values, 0.9)),
        "p99": scaled(quantile(values, 0.99)),
        "max": scaled(max(values) if values else None),
    }


def histogram_delta(before: Samples, after: Samples, name: str) -> list[tuple[float, float]]:
    """(upper bound, cumulative count) of a histogram's growth between two scrapes."""
    buckets: dict[float, float] = {}
    for (sample, labels), value in after.items():
        if sample != f"{name}_bucket":
            continue
        bound = float(dict(labels)["le"])
        buckets[bound] = buckets.get(bound, 0.0) + value - before.get((sample, labels), 0.0)
    return sorted(buckets.items())


def histogram_quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float | None:
    """Prometheus' histogram_quantile: linear within the bucket the rank falls into."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    total = buckets[-1][1]
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound  # beyond the last finite bucket: its bound is all we know
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (
                count - lower_count
            )
        lower_bound, lower_count = bound, count
    return None


def histogram_summary(buckets: Sequence[tuple[float, float]]) -> dict[str, Any]:
    def ms(v: float | None) -> float | None:
        return None if v is None else round(v * 1000, 1)

    return {
        "count": int(buckets[-1][1]) if buckets else 0,
        "p50_ms": ms(histogram_quantile(0.5, buckets)),
        "p90_ms": ms(histogram_quantile(0.9, buckets)),
        "p99_ms": ms(histogram_quantile(0.99, buckets)),
        "buckets": {("+Inf" if math.isinf(b) else str(b)): int(c) for b, c in buckets},
    }


def parse_time(text: str) -> float | None:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC).timestamp()
    except ValueError:
        return None


# --------------------------------------------------------------------- latencies from Jobs

Identify = Callable[[JobSeen], tuple[str, str] | None]
"""(run, node instance) of a Job, or None for a Job that is not part of the scenario."""


def observed_latencies(
    jobs: Iterable[JobSeen],
    shape: Shape,
    identify: Identify,
    finished_by: Iterable[JobSeen] | None = None,
) -> dict[str, list[float]]:
    """Seconds from "the last dependency was seen finished" to "the Job was seen created".

    Both ends are this harness's watch, so the figure means the same with and without the
    operator: what a user watching the cluster sees. A dependency is finished when its Jobs
    are, or, with `finished_by` (the pods), when its pods are. Root nodes have no dependency
    and are reported separately (`start`: run seen created -> root Job seen).
    """
    created = _by_run_and_template(jobs, identify)
    finished = created if finished_by is None else _by_run_and_template(finished_by, identify)
    waits: list[float] = []
    for run, templates in created.items():
        done: dict[str, float] = {}
        for name, members in finished.get(run, {}).items():
            ended = [j.done_at for j in members if j.done_at is not None]
            if len(ended) == len(members):
                done[name] = max(ended)
        for name, members in templates.items():
            deps = shape.deps.get(name, ())
            if not deps or any(d not in done for d in deps):
                continue
            ready = max(done[d] for d in deps)
            waits.extend(j.added_at - ready for j in members)
    return {"dependency_done_to_job_seen": waits}


def _by_run_and_template(
    seen: Iterable[JobSeen], identify: Identify
) -> dict[str, dict[str, list[JobSeen]]]:
    by_run: dict[str, dict[str, list[JobSeen]]] = {}
    for obj in seen:
        found = identify(obj)
        if found is not None:
            run, instance = found
            by_run.setdefault(run, {}).setdefault(template_of(instance), []).append(obj)
    return by_run


def annotation_latencies(jobs: Iterable[JobSeen], ready_at_key: str) -> dict[str, list[float]]:
    """From the operator's `kdag.dev/ready-at` (ms) to the Job's creationTimestamp (whole
    seconds, so each value is up to 1 s too low) and to when the harness saw the Job."""
    created, seen = [], []
    for job in jobs:
        ready = parse_time(job.annotations.get(ready_at_key, ""))
        if ready is None:
            continue
        stamp = parse_time(job.created)
        if stamp is not None:
            created.append(stamp - ready)
        seen.append(job.added_at - ready)
    return {"ready_at_to_creation_timestamp": created, "ready_at_to_job_seen": seen}


def execution_overheads(jobs: Iterable[JobSeen], shape: Shape) -> list[float]:
    """Per Job: seen created -> seen finished, minus the simulated pod duration: what the Job
    controller, scheduler and KWOK add to every node, with or without kdag."""
    return [
        j.done_at - j.added_at - shape.duration_ms / 1000 for j in jobs if j.done_at is not None
    ]


def ms_summary(values: Sequence[float]) -> dict[str, float | int | None]:
    return summary(values, unit_scale=1000, digits=1)


def group_counts(values: Mapping[str, int]) -> int:
    return sum(values.values())
