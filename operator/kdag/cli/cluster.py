"""The plugin's Kubernetes access: kubectl's connection flags, and the few calls it makes."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import urllib3
import yaml
from kubernetes import client, config, watch

from kdag.api import GROUP, RUNS, VERSION, WORKFLOWS
from kdag.cli.errors import UserError

DEFAULT_KUBECONFIG = "~/.kube/config"
# Helm's and the chart's label on the operator's Deployment (charts/kdag/templates/_helpers.tpl).
OPERATOR_SELECTOR = "app.kubernetes.io/name=kdag"
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_STREAMS = re.compile(r"[?&](watch|follow)=true\b")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_request_timeout(text: str) -> float | None:
    """kubectl's `--request-timeout`: a Go duration (`1s`, `2m3s`, `500ms`) or whole seconds
    (`5`); 0 means no timeout (None)."""
    value = text.strip()
    if re.fullmatch(r"\d+", value):
        seconds = float(value)
    else:
        parts = _DURATION_PART.findall(value)
        if not parts or "".join(n + u for n, u in parts) != value:
            raise ValueError(
                f"invalid timeout value {text!r}: expected a duration such as 1s, 2m or 1m30s"
            )
        seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)
    return seconds or None


@dataclass(frozen=True)
class Connection:
    """kubectl's connection flags, as given (None: not given)."""

    kubeconfig: str | None = None
    context: str | None = None
    namespace: str | None = None
    user: str | None = None  # --as
    groups: tuple[str, ...] = ()  # --as-group
    request_timeout: float | None = None  # seconds; None: no limit


def kubeconfig_paths(flag: str | None) -> list[Path]:
    """The kubeconfig files kubectl would read: --kubeconfig, else every file named in
    $KUBECONFIG (a list, merged, first wins), else ~/.kube/config."""
    if flag:
        path = Path(flag).expanduser()
        if not path.is_file():
            raise UserError(f"error: stat {flag}: no such file or directory")
        return [path]
    listed = os.environ.get("KUBECONFIG") or DEFAULT_KUBECONFIG
    return [p for p in (Path(x).expanduser() for x in listed.split(os.pathsep) if x) if p.is_file()]


class _ApiClient(client.ApiClient):
    """An ApiClient that sends kubectl's impersonation headers (one Impersonate-Group header
    a group, which a plain header dict cannot hold) and applies --request-timeout to every
    request that does not choose its own: to the whole of an ordinary request, and to the
    connecting only of a watch or a followed log, which may rightly wait for long."""

    def __init__(self, configuration: Any, groups: tuple[str, ...], timeout: float | None) -> None:
        super().__init__(configuration)
        self._groups = groups
        self._timeout = timeout

    def call_api(
        self,
        method: str,
        url: str,
        header_params: dict[str, str] | None = None,
        body: Any = None,
        post_params: Any = None,
        _request_timeout: Any = None,
    ) -> Any:
        headers = urllib3.HTTPHeaderDict(header_params or {})
        for group in self._groups:
            headers.add("Impersonate-Group", group)
        timeout = self._timeout if _request_timeout is None else _request_timeout
        if _request_timeout is None and timeout is not None and _STREAMS.search(url):
            timeout = (timeout, None)  # connect only: a watch or a followed log may be quiet
        return super().call_api(method, url, headers, body, post_params, timeout)


def _configuration(conn: Connection) -> tuple[Any, str]:
    """The client configuration and the default namespace, as kubectl would resolve them."""
    configuration = client.Configuration()
    paths = kubeconfig_paths(conn.kubeconfig)
    if not paths:
        if os.environ.get("KUBERNETES_SERVICE_HOST") and conn.context is None:
            # In a pod with no kubeconfig: its ServiceAccount, as kubectl does.
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
            return configuration, _incluster_namespace()
        where = os.environ.get("KUBECONFIG") or DEFAULT_KUBECONFIG
        raise UserError(
            f"error: no kubeconfig found (looked for {where}): set KUBECONFIG or pass --kubeconfig"
        )
    contexts, current = read_contexts(paths)
    name = conn.context or current
    if conn.context is not None and conn.context not in contexts:
        raise UserError(f'error: context "{conn.context}" does not exist')
    if not name:
        raise UserError(
            f"error: no current context in {os.pathsep.join(map(str, paths))}: pass --context"
            " or set one with `kubectl config use-context`"
        )
    if name not in contexts:
        raise UserError(f'error: the current context "{name}" does not exist in the kubeconfig')
    try:
        config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=os.pathsep.join(map(str, paths)),
            context=name,
            client_configuration=configuration,
            persist_config=False,
        )
    except config.ConfigException as exc:
        raise UserError(f"error: kubeconfig: {exc}") from exc
    return configuration, contexts[name].get("namespace") or "default"


def read_contexts(paths: list[Path]) -> tuple[dict[str, dict[str, Any]], str | None]:
    """The contexts of the merged kubeconfig files and the current one, by kubectl's rules:
    the first file to name a context or set current-context wins."""
    contexts: dict[str, dict[str, Any]] = {}
    current: str | None = None
    for path in paths:
        try:
            doc = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise UserError(f"error: cannot read kubeconfig {path}: {exc}") from exc
        if not isinstance(doc, dict):
            raise UserError(f"error: kubeconfig {path} is not a kubeconfig (not a mapping)")
        for entry in doc.get("contexts") or []:
            if isinstance(entry, dict) and entry.get("name"):
                contexts.setdefault(str(entry["name"]), entry.get("context") or {})
        current = current or doc.get("current-context") or None
    return contexts, current


def _incluster_namespace() -> str:
    path = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
    return path.read_text().strip() if path.is_file() else "default"


@dataclass
class Cluster:
    """A kubeconfig context and the namespace the user works in, like kubectl's."""

    api: client.ApiClient
    namespace: str
    host: str = ""
    request_timeout: float | None = field(default=None)

    @classmethod
    def connect(cls, conn: Connection) -> Cluster:
        if conn.groups and not conn.user:
            raise UserError("error: requesting groups without impersonating a user: add --as")
        configuration, default_namespace = _configuration(conn)
        # One try, as kubectl: an unreachable server is reported at once, not after retries.
        configuration.retries = 0
        api = _ApiClient(configuration, conn.groups, conn.request_timeout)
        if conn.user:
            api.set_default_header("Impersonate-User", conn.user)  # type: ignore[no-untyped-call]
        namespace = conn.namespace or default_namespace
        return cls(api, namespace, str(configuration.host), conn.request_timeout)

    @property
    def custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.api)

    @property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api)

    def get(self, plural: str, name: str) -> dict[str, Any]:
        obj = self.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, plural, name)
        return cast(dict[str, Any], obj)

    def list_objects(
        self, plural: str, all_namespaces: bool = False, selector: str | None = None
    ) -> list[dict[str, Any]]:
        if all_namespaces:
            found = self.custom.list_cluster_custom_object(
                GROUP, VERSION, plural, label_selector=selector
            )
        else:
            found = self.custom.list_namespaced_custom_object(
                GROUP, VERSION, self.namespace, plural, label_selector=selector
            )
        return cast(list[dict[str, Any]], cast(dict[str, Any], found).get("items") or [])

    def delete(self, plural: str, name: str) -> None:
        self.custom.delete_namespaced_custom_object(GROUP, VERSION, self.namespace, plural, name)

    def get_run(self, name: str) -> dict[str, Any]:
        return self.get(RUNS, name)

    def watch_run(self, name: str) -> Iterator[dict[str, Any]]:
        """The run now, then again every time it changes (a watch, not polling). A run that
        does not exist is a NotFound at once, as with kubectl, not a watch that waits for it."""
        yield self.get_run(name)
        while True:  # the API server ends a watch after a while: start another
            stream = watch.Watch().stream(  # type: ignore[no-untyped-call]
                self.custom.list_namespaced_custom_object,
                GROUP,
                VERSION,
                self.namespace,
                RUNS,
                field_selector=f"metadata.name={name}",
            )
            for event in stream:
                if event["type"] == "DELETED":
                    raise UserError(f"error: workflowrun {name} was deleted")
                if event["type"] in ("ADDED", "MODIFIED"):
                    yield cast(dict[str, Any], event["object"])

    def patch_run(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        obj = self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, self.namespace, RUNS, name, body
        )
        return cast(dict[str, Any], obj)

    def create_run(self, body: dict[str, Any]) -> dict[str, Any]:
        obj = self.custom.create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, RUNS, body
        )
        return cast(dict[str, Any], obj)

    def get_workflow(self, name: str) -> dict[str, Any]:
        return self.get(WORKFLOWS, name)

    def username(self) -> str:
        """Who the API server says we are (`kubectl auth whoami`)."""
        review = client.AuthenticationV1Api(self.api).create_self_subject_review(
            client.V1SelfSubjectReview(
                api_version="authentication.k8s.io/v1", kind="SelfSubjectReview"
            )
        )
        info = review.status.user_info if review.status else None
        if info is None or not info.username:
            raise UserError("error: the API server did not say who you are (SelfSubjectReview)")
        return str(info.username)

    def pod_of_job(self, job: str) -> str | None:
        pods = self.core.list_namespaced_pod(self.namespace, label_selector=f"job-name={job}")
        names = sorted(
            (p.metadata.name for p in pods.items if p.metadata and p.metadata.name), reverse=True
        )
        return names[0] if names else None

    def pod_logs(self, pod: str) -> str:
        return str(self.core.read_namespaced_pod_log(pod, self.namespace, container="main"))

    def follow_pod_logs(self, pod: str) -> Iterator[bytes]:
        """The pod's log as it is written, until its container ends (`kubectl logs -f`)."""
        response: Any = self.core.read_namespaced_pod_log(
            pod,
            self.namespace,
            container="main",
            follow=True,
            _preload_content=False,
        )
        try:
            yield from response.stream(4096, decode_content=True)
        finally:
            response.release_conn()

    def server_version(self) -> str:
        return str(client.VersionApi(self.api).get_code().git_version)

    def operator_versions(self) -> list[tuple[str, str]]:
        """`namespace/name` and version label of every kdag operator Deployment found."""
        found = client.AppsV1Api(self.api).list_deployment_for_all_namespaces(
            label_selector=OPERATOR_SELECTOR
        )
        return [
            (
                f"{d.metadata.namespace}/{d.metadata.name}",
                (d.metadata.labels or {}).get("app.kubernetes.io/version", "unknown"),
            )
            for d in found.items
            if d.metadata
        ]

    def namespaces(self) -> list[str]:
        return [str(n.metadata.name) for n in self.core.list_namespace().items if n.metadata]


def context_names(kubeconfig: str | None) -> list[str]:
    """The contexts of the kubeconfig kubectl would read (for completion)."""
    return sorted(read_contexts(kubeconfig_paths(kubeconfig))[0])
