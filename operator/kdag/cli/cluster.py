"""The plugin's Kubernetes access: kubeconfig, namespace, and the few calls it makes."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, cast

from kubernetes import client, config, watch

from kdag.api import GROUP, RUNS, VERSION, WORKFLOWS


@dataclass
class Cluster:
    """A kubeconfig context and the namespace the user works in, like kubectl's."""

    api: client.ApiClient
    namespace: str

    @classmethod
    def connect(cls, kubeconfig: str | None, context: str | None, namespace: str | None) -> Cluster:
        config.load_kube_config(config_file=kubeconfig, context=context)  # type: ignore[no-untyped-call]
        contexts, active = config.list_kube_config_contexts(kubeconfig)  # type: ignore[no-untyped-call]
        if context is not None:
            active = next((c for c in contexts if c["name"] == context), active)
        default_ns = (active or {}).get("context", {}).get("namespace") or "default"
        return cls(client.ApiClient(), namespace or default_ns)

    @property
    def custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.api)

    @property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api)

    def get_run(self, name: str) -> dict[str, Any]:
        obj = self.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, RUNS, name)
        return cast(dict[str, Any], obj)

    def watch_run(self, name: str) -> Iterator[dict[str, Any]]:
        """The run now, then again every time it changes (a watch, not polling)."""
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
                    raise RuntimeError(f"workflowrun {name} was deleted")
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
        obj = self.custom.get_namespaced_custom_object(
            GROUP, VERSION, self.namespace, WORKFLOWS, name
        )
        return cast(dict[str, Any], obj)

    def username(self) -> str:
        """Who the API server says we are (`kubectl auth whoami`)."""
        review = client.AuthenticationV1Api(self.api).create_self_subject_review(
            client.V1SelfSubjectReview(
                api_version="authentication.k8s.io/v1", kind="SelfSubjectReview"
            )
        )
        info = review.status.user_info if review.status else None
        if info is None or not info.username:
            raise RuntimeError("the API server did not say who you are (SelfSubjectReview)")
        return str(info.username)

    def pod_of_job(self, job: str) -> str | None:
        pods = self.core.list_namespaced_pod(self.namespace, label_selector=f"job-name={job}")
        names = sorted(
            (p.metadata.name for p in pods.items if p.metadata and p.metadata.name), reverse=True
        )
        return names[0] if names else None

    def pod_logs(self, pod: str) -> str:
        return str(self.core.read_namespaced_pod_log(pod, self.namespace, container="main"))
