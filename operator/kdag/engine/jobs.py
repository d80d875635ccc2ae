"""The batch/v1 Job manifest for one node attempt: a pure function of node and run."""

from __future__ import annotations

from typing import Any

from kdag.api import API_VERSION, EnvVar, NodeSpec, SecurityContext
from kdag.engine import model, names
from kdag.engine.defaults import deep_merge

CONTAINER_NAME = "main"


def job_labels(run: str, workflow: str, instance: str, attempt: int) -> dict[str, str]:
    return {
        model.LABEL_RUN: names.run_label(run),
        model.LABEL_NODE: names.label_value(instance),
        model.LABEL_ATTEMPT: str(attempt),
        model.LABEL_WORKFLOW: names.label_value(workflow),
        model.LABEL_MANAGED_BY: model.MANAGED_BY,
    }


def _env(env: list[EnvVar]) -> list[dict[str, Any]]:
    return [e.to_wire() for e in env]


def container_security_context(node: NodeSpec) -> dict[str, Any]:
    """The node's container securityContext, with a secure default for each field that
    neither the node nor the workflow defaults set, so pods pass the PodSecurity
    `restricted` level unless the workflow asks otherwise (runAsNonRoot excepted: only the
    workflow knows whether its image runs as a non-root user)."""
    own = node.security_context or SecurityContext()
    context = own.to_wire()
    pod = node.pod_template or {}
    if (pod.get("os") or {}).get("name") == "windows":
        return context  # the API refuses these Linux settings on a Windows pod
    adds = {
        c.upper().removeprefix("CAP_") for c in (own.capabilities and own.capabilities.add) or []
    }
    # The API refuses allowPrivilegeEscalation false next to either of these.
    if own.allow_privilege_escalation is None and not own.privileged and "SYS_ADMIN" not in adds:
        context["allowPrivilegeEscalation"] = False
    if own.capabilities is None or own.capabilities.drop is None:
        context.setdefault("capabilities", {})["drop"] = ["ALL"]
    # A pod-level profile the workflow chose applies to the container unless it sets its own.
    if own.seccomp_profile is None and "seccompProfile" not in (pod.get("securityContext") or {}):
        context["seccompProfile"] = {"type": "RuntimeDefault"}
    return context


def build_job(
    *,
    run_name: str,
    run_namespace: str,
    run_uid: str,
    workflow_name: str,
    instance: str,
    attempt: int,
    node: NodeSpec,
    command: list[str] | None,
    args: list[str] | None,
    env: list[EnvVar],
    ready_at: str | None = None,
) -> dict[str, Any]:
    """A Job that runs `node` (defaults already merged, templates already rendered).

    kdag owns retries, so the Job itself never retries (backoffLimit 0); the node timeout
    becomes activeDeadlineSeconds; the run owns the Job so deleting the run deletes it.
    """
    labels = job_labels(run_name, workflow_name, instance, attempt)
    annotations = {model.ANNOTATION_INSTANCE: instance, model.ANNOTATION_RUN: run_name}
    if ready_at is not None:
        annotations[model.ANNOTATION_READY_AT] = ready_at
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": node.image,
        # Failed containers that wrote no termination message report their log tail instead,
        # which gives the node a useful failure message.
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    if command is not None:
        container["command"] = command
    if args is not None:
        container["args"] = args
    if env:
        container["env"] = _env(env)
    if node.resources is not None:
        container["resources"] = node.resources.to_wire()
    if security_context := container_security_context(node):
        container["securityContext"] = security_context
    pod_spec = deep_merge(node.pod_template or {}, {"restartPolicy": "Never"})
    pod_spec["containers"] = [container]
    pod_meta = node.pod_metadata
    pod_labels = {**(pod_meta.labels or {} if pod_meta else {}), **labels}
    pod_annotations = {**(pod_meta.annotations or {} if pod_meta else {}), **annotations}
    spec: dict[str, Any] = {
        "backoffLimit": 0,
        "template": {
            "metadata": {"labels": pod_labels, "annotations": pod_annotations},
            "spec": pod_spec,
        },
    }
    if node.timeout_seconds is not None:
        spec["activeDeadlineSeconds"] = node.timeout_seconds
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": names.job_name(run_name, run_uid, instance, attempt),
            "namespace": run_namespace,
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": [
                {
                    "apiVersion": API_VERSION,
                    "kind": "WorkflowRun",
                    "name": run_name,
                    "uid": run_uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": spec,
    }
