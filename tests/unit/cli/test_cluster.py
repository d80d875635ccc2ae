"""kubectl's connection flags, read as kubectl reads them (no cluster: the requests the
client would send are caught before they leave)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from kdag.cli.cluster import Cluster, Connection, kubeconfig_paths, parse_request_timeout
from kdag.cli.errors import UserError


def _kubeconfig(path: Path, *contexts: tuple[str, str | None], current: str | None = None) -> Path:
    """A kubeconfig with one token user and one cluster per context (server named after it)."""
    doc: dict[str, Any] = {"apiVersion": "v1", "kind": "Config", "clusters": [], "contexts": []}
    doc["users"] = [{"name": "u", "user": {"token": "t"}}]
    for name, namespace in contexts:
        doc["clusters"].append({"name": name, "cluster": {"server": f"https://{name}.test:6443"}})
        context = {"cluster": name, "user": "u", **({"namespace": namespace} if namespace else {})}
        doc["contexts"].append({"name": name, "context": context})
    if current:
        doc["current-context"] = current
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.fixture
def no_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("1s", 1.0), ("1m30s", 90.0), ("500ms", 0.5), ("2h", 7200.0), ("5", 5.0), ("0", None)],
)
def test_request_timeout_is_a_go_duration_or_seconds(text: str, seconds: float | None) -> None:
    assert parse_request_timeout(text) == seconds


@pytest.mark.parametrize("text", ["soon", "1x", "1s2", "-1s", ""])
def test_a_malformed_request_timeout_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="invalid timeout value"):
        parse_request_timeout(text)


@pytest.mark.usefixtures("no_env")
def test_kubeconfig_env_lists_files_merged_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = _kubeconfig(tmp_path / "a", ("one", "ns-one"), current="one")
    second = _kubeconfig(tmp_path / "b", ("two", "ns-two"), current="two")
    monkeypatch.setenv("KUBECONFIG", f"{first}:{tmp_path / 'missing'}:{second}")
    assert kubeconfig_paths(None) == [first, second]
    # Both files' contexts are there; the current context is the first file's, as kubectl
    # merges them (the Python client alone would take the last one's).
    assert Cluster.connect(Connection()).namespace == "ns-one"
    assert Cluster.connect(Connection(context="two")).host == "https://two.test:6443"


@pytest.mark.usefixtures("no_env")
def test_the_context_s_namespace_is_the_default_and_n_overrides_it(tmp_path: Path) -> None:
    path = str(_kubeconfig(tmp_path / "k", ("c", "team"), ("bare", None), current="c"))
    assert Cluster.connect(Connection(kubeconfig=path)).namespace == "team"
    assert Cluster.connect(Connection(kubeconfig=path, namespace="prod")).namespace == "prod"
    assert Cluster.connect(Connection(kubeconfig=path, context="bare")).namespace == "default"


@pytest.mark.usefixtures("no_env")
def test_an_unknown_context_is_refused_as_kubectl_does(tmp_path: Path) -> None:
    path = str(_kubeconfig(tmp_path / "k", ("c", None), current="c"))
    with pytest.raises(UserError, match=r'^error: context "nope" does not exist$'):
        Cluster.connect(Connection(kubeconfig=path, context="nope"))


@pytest.mark.usefixtures("no_env")
def test_no_kubeconfig_says_where_it_looked() -> None:
    with pytest.raises(UserError, match=r"no kubeconfig found \(looked for ~/.kube/config\)"):
        Cluster.connect(Connection())
    with pytest.raises(UserError, match="stat /no/such: no such file or directory"):
        Cluster.connect(Connection(kubeconfig="/no/such"))


@pytest.mark.usefixtures("no_env")
def test_no_current_context_asks_for_one(tmp_path: Path) -> None:
    path = str(_kubeconfig(tmp_path / "k", ("c", "team")))
    with pytest.raises(UserError, match="no current context"):
        Cluster.connect(Connection(kubeconfig=path))
    assert Cluster.connect(Connection(kubeconfig=path, context="c")).namespace == "team"


@pytest.mark.usefixtures("no_env")
def test_as_group_needs_as(tmp_path: Path) -> None:
    path = str(_kubeconfig(tmp_path / "k", ("c", None), current="c"))
    with pytest.raises(UserError, match="add --as"):
        Cluster.connect(Connection(kubeconfig=path, groups=("g",)))


class SentError(Exception):
    """Raised in place of sending: carries what would have been sent."""

    def __init__(self, url: str, headers: Any, timeout: Any) -> None:
        self.url, self.headers, self.timeout = url, headers, timeout


def _sent(cluster: Cluster, call: Any) -> SentError:
    def request(method: str, url: str, headers: Any = None, **kwargs: Any) -> None:
        raise SentError(url, headers, kwargs.get("_request_timeout"))

    cluster.api.rest_client.request = request
    with pytest.raises(SentError) as caught:
        call()
    return caught.value


@pytest.mark.usefixtures("no_env")
def test_as_and_as_group_impersonate_with_one_header_a_group(tmp_path: Path) -> None:
    path = str(_kubeconfig(tmp_path / "k", ("c", None), current="c"))
    cluster = Cluster.connect(
        Connection(kubeconfig=path, user="alice", groups=("data-leads", "ops"), request_timeout=2)
    )
    sent = _sent(cluster, lambda: cluster.get_run("r"))
    assert sent.headers["Impersonate-User"] == "alice"
    assert sent.headers.getlist("Impersonate-Group") == ["data-leads", "ops"]
    assert sent.headers["Authorization"] == "Bearer t"
    assert sent.timeout == 2


@pytest.mark.usefixtures("no_env")
def test_a_watch_or_followed_log_limits_only_the_connect_time(tmp_path: Path) -> None:
    path = str(_kubeconfig(tmp_path / "k", ("c", None), current="c"))
    cluster = Cluster.connect(Connection(kubeconfig=path, request_timeout=2))
    # A watch of a run starts with a plain GET, so that a missing run is a NotFound at once.
    runs = cluster.watch_run("r")
    first = _sent(cluster, lambda: next(runs))
    assert (first.url.endswith("/workflowruns/r"), first.timeout) == (True, 2)
    cluster.get_run = lambda name: {"metadata": {"name": name}}  # type: ignore[method-assign]
    runs = cluster.watch_run("r")
    assert next(runs) == {"metadata": {"name": "r"}}
    watch = _sent(cluster, lambda: next(runs))
    assert "watch=true" in watch.url and "fieldSelector=metadata.name%3Dr" in watch.url
    assert watch.timeout == (2, None)
    assert _sent(cluster, lambda: next(cluster.follow_pod_logs("p"))).timeout == (2, None)
    sent = _sent(cluster, lambda: cluster.pod_logs("p"))
    assert sent.timeout == 2
    assert "Impersonate-User" not in sent.headers
