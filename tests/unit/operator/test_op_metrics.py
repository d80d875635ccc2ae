from __future__ import annotations

from prometheus_client import generate_latest

from kdag import __version__
from kdag.operator.metrics import Metrics


def test_metrics_carry_build_info_and_runtime_collectors_without_created_series() -> None:
    metrics = Metrics()
    metrics.runs_started.inc()
    metrics.scheduling_latency.observe(0.01)
    text = generate_latest(metrics.registry).decode()
    assert 'kdag_build_info{python_version="' in text
    assert f'version="{__version__}"' in text
    assert "kdag_runs_started_total 1.0" in text
    assert "process_cpu_seconds_total" in text
    assert "python_info{" in text
    assert "python_gc_collections_total" in text
    assert "_created" not in text


def test_each_registry_gets_its_own_collectors() -> None:
    # Tests (and benchmarks) make many; none may clash with another's registration.
    first, second = Metrics(), Metrics()
    assert generate_latest(first.registry) and generate_latest(second.registry)
