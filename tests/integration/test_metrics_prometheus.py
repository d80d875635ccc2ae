"""A real Prometheus server scrapes the operator; PromQL sees kdag's runs (SPEC §5)."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.cluster import Cluster, wait_for
from tests.support.operator import (
    OperatorProcess,
    _free_port,
    apply,
    create,
    ensure_operator,
    run_of,
    sim,
    wait_phase,
    workflow,
)


class Prometheus:
    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"

    def query(self, promql: str) -> list[dict[str, Any]]:
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(url, timeout=5) as answer:
            body = json.loads(answer.read())
        assert body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def value(self, promql: str) -> float:
        result = self.query(promql)
        return float(result[0]["value"][1]) if result else 0.0


pytestmark = pytest.mark.operator


@pytest.fixture
def prometheus(cluster: Cluster) -> Iterator[tuple[Prometheus, OperatorProcess]]:
    binary = shutil.which("prometheus")
    assert binary, "Debian's prometheus is not installed: run `make test-deps`"
    operator = ensure_operator(cluster)
    port = _free_port()
    workdir = Path(tempfile.mkdtemp(prefix="kdag-prometheus-"))
    config = workdir / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        "  - job_name: kdag\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{operator.metrics_port}']}}]\n"
    )
    log = (workdir / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    server = Prometheus(port)

    def scraping() -> bool:
        try:
            return server.value('up{job="kdag"}') == 1.0
        except OSError:  # not listening yet
            return False

    try:
        wait_for(
            scraping,
            timeout=60,
            what="Prometheus scraping the operator",
        )
        yield server, operator
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
        shutil.rmtree(workdir, ignore_errors=True)


def _finished(prom: Prometheus, phase: str) -> float:
    return prom.value(f'sum(kdag_runs_finished_total{{phase="{phase}"}})')


def test_prometheus_sees_finished_runs_and_duration_histograms(
    prometheus: tuple[Prometheus, OperatorProcess], namespace: str
) -> None:
    prom, _ = prometheus
    succeeded_before = _finished(prom, "Succeeded")
    failed_before = _finished(prom, "Failed")
    apply(
        namespace,
        workflow("ok", [{"name": "a", **sim("500ms")}, {"name": "b", "dependsOn": ["a"]}]),
        workflow("bad", [{"name": "a", **sim(exit_code=3)}]),
    )
    runs = [create(namespace, run_of("ok")) for _ in range(2)]
    failing = create(namespace, run_of("bad"))
    for run in runs:
        wait_phase(namespace, run, "Succeeded")
    wait_phase(namespace, failing, "Failed")

    # The counters move by exactly our runs (the session's operator may serve others too,
    # but not concurrently: integration tests run one at a time).
    wait_for(
        lambda: (
            _finished(prom, "Succeeded") >= succeeded_before + 2
            and _finished(prom, "Failed") >= failed_before + 1
        ),
        timeout=60,
        what="Prometheus to scrape the finished runs",
    )
    assert _finished(prom, "Succeeded") == succeeded_before + 2
    assert _finished(prom, "Failed") == failed_before + 1
    assert prom.value("sum(kdag_run_duration_seconds_count)") >= 3
    buckets = prom.query('kdag_run_duration_seconds_bucket{phase="Succeeded"}')
    assert buckets, "no run duration histogram"
    assert prom.value("sum(kdag_nodes_finished_total)") >= 5
    assert prom.value("sum(kdag_scheduling_latency_seconds_count)") > 0
    assert prom.value('sum(kdag_kube_requests_total{verb="create",resource="jobs"})') >= 5


def test_metric_labels_never_carry_run_or_node_names(
    prometheus: tuple[Prometheus, OperatorProcess], namespace: str
) -> None:
    prom, _ = prometheus
    apply(namespace, workflow("labels", [{"name": "distinctive-node-name"}]))
    run = create(namespace, run_of("labels"))
    wait_phase(namespace, run, "Succeeded")
    wait_for(lambda: prom.value("sum(kdag_runs_finished_total)") > 0, timeout=30, what="a scrape")
    series = prom.query('{__name__=~"kdag_.*"}')
    assert series
    values = {v for s in series for k, v in s["metric"].items() if k != "__name__"}
    assert run not in values
    assert "distinctive-node-name" not in values
    assert namespace not in values
    label_names = {k for s in series for k in s["metric"]}
    assert label_names <= {
        *("__name__", "job", "instance", "phase", "verb", "resource", "code", "le"),
        *("version", "python_version"),  # kdag_build_info's, one series
    }


def test_the_operators_metrics_pass_promtool(cluster: Cluster, namespace: str) -> None:
    operator = ensure_operator(cluster)
    apply(namespace, workflow("promtool", [{"name": "a"}]))
    wait_phase(namespace, create(namespace, run_of("promtool")), "Succeeded")
    promtool = shutil.which("promtool")
    assert promtool, "Debian's prometheus (with promtool) is not installed: run `make test-deps`"
    text = operator.metrics()
    checked = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout + checked.stderr == ""  # no lint warnings either
    assert 'kdag_build_info{python_version="' in text
    assert "process_resident_memory_bytes" in text
    assert "python_gc_objects_collected_total" in text
    assert "_created" not in text
