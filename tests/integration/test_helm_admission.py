"""The chart's approval ValidatingAdmissionPolicy on the real API server (SPEC §3 Approval).

Installed with `admissionPolicy.enabled`, bound (through watchNamespaces) to this test's
namespace only, so other tests on the shared cluster are never affected. Users act through
`kubectl --as=<user>` (impersonation, as the API server sees a real user), with a Role that
lets them update runs: RBAC allows them all, and the policy decides.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import kubernetes
import pytest

from tests.support.cluster import Cluster, KubectlError, kubectl, kubectl_json, wait_for
from tests.support.helm_release import Release, installed
from tests.support.operator import (
    apply,
    create,
    get_run,
    run_of,
    status,
    wait_node,
    wait_phase,
    workflow,
)
from tests.support.operator_process import scoped_operator, service_account_kubeconfig

USERS = ("alice", "bob", "carol", "eve")
NODES = [
    {"name": "build"},
    # Only alice and the data-leads group may answer this gate.
    {
        "name": "publish",
        "dependsOn": ["build"],
        "approval": {"message": "Publish?", "approvers": ["alice", "group:data-leads"]},
    },
    # No approvers list: anyone who may update the run may answer, under their own name.
    {"name": "review", "dependsOn": ["build"], "approval": {"message": "Looks right?"}},
    {"name": "load", "dependsOn": ["publish", "review"]},
]


@pytest.fixture(scope="module")
def policy_release(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Release]:
    tmp = tmp_path_factory.mktemp("helm-admission")
    values = {"admissionPolicy": {"enabled": True}}
    with installed(cluster, tmp, values, watch=[0]) as release:
        (namespace,) = release.workloads
        _let_users_update_runs(namespace)
        policy = f"{release.name}-approvals"
        _assert_policy_type_checks(policy)
        kubeconfig = service_account_kubeconfig(
            cluster.kubeconfig, release.namespace, release.service_account, tmp / "sa"
        )
        with scoped_operator(kubeconfig, [namespace]):
            apply(namespace, workflow("gated", NODES))
            yield release


def _let_users_update_runs(namespace: str) -> None:
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": "run-answerer", "namespace": namespace},
        "rules": [
            {
                "apiGroups": ["kdag.dev"],
                "resources": ["workflowruns"],
                "verbs": ["get", "list", "create", "patch", "update"],
            }
        ],
    }
    subjects = [{"kind": "User", "name": u, "apiGroup": "rbac.authorization.k8s.io"} for u in USERS]
    # A user whose name merely looks like a group entry must not pass as that group.
    subjects.append(
        {"kind": "User", "name": "group:data-leads", "apiGroup": "rbac.authorization.k8s.io"}
    )
    subjects.append(
        {"kind": "Group", "name": "data-leads", "apiGroup": "rbac.authorization.k8s.io"}
    )
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "run-answerer", "namespace": namespace},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": "run-answerer",
        },
        "subjects": subjects,
    }
    items = {"apiVersion": "v1", "kind": "List", "items": [role, binding]}
    kubectl("apply", "-f", "-", input=json.dumps(items))


def _assert_policy_type_checks(name: str) -> None:
    """The API server type-checked every expression against the CRD's schema: no warnings."""

    def checked() -> dict[str, object] | None:
        policy = kubectl_json("get", "validatingadmissionpolicy", name)
        found = policy.get("status") or {}
        ready = found.get("observedGeneration") == policy["metadata"]["generation"]
        return found if ready else None

    found = wait_for(checked, timeout=30, what=f"type checking of {name}")
    warnings = (found.get("typeChecking") or {}).get("expressionWarnings") or []  # type: ignore[union-attr]
    assert not warnings, warnings


def annotate(
    namespace: str, run: str, annotation: str, user: str, *groups: str, dry_run: bool = False
) -> str:
    """`kubectl annotate` as `user`; returns the API server's refusal, or "" if allowed."""
    args = [f"--as={user}", *(f"--as-group={g}" for g in groups)]
    try:
        kubectl(
            "annotate", "workflowrun", run, "-n", namespace, "--overwrite", annotation, *args,
            *(["--dry-run=server"] if dry_run else []),
        )  # fmt: skip
    except KubectlError as refused:
        return str(refused.stderr)
    return ""


def _waiting_run(release: Release) -> tuple[str, str]:
    (namespace,) = release.workloads
    run = create(namespace, run_of("gated"))
    wait_node(namespace, run, "publish", "WaitingForApproval")
    wait_node(namespace, run, "review", "WaitingForApproval")
    # A policy takes a moment to reach the admission plugin after it is created.
    wait_for(
        lambda: annotate(namespace, run, "approve.kdag.dev/publish=eve", "eve", dry_run=True),
        timeout=30,
        what="the approval policy to be in force",
    )
    return namespace, run


def test_listed_approver_approves_under_their_own_name(policy_release: Release) -> None:
    namespace, run = _waiting_run(policy_release)

    refused = annotate(namespace, run, "approve.kdag.dev/publish=eve", "eve")
    assert (
        'user "eve" is not an approver of gate "publish" (approvers: alice, group:data-leads)'
        in refused
    )
    refused = annotate(namespace, run, "approve.kdag.dev/publish=bob", "alice")
    assert 'approve.kdag.dev/publish must be set to your own username "alice", not "bob"' in refused
    refused = annotate(namespace, run, "approve.kdag.dev/pubish=alice", "alice")
    assert 'has no approval gate "pubish" (gates: publish, review)' in refused
    assert "Forbidden" in refused  # HTTP 403, not a validation error of the object

    assert annotate(namespace, run, "approve.kdag.dev/publish=alice", "alice") == ""
    # No approvers list: anyone may answer, but still only under their own name.
    refused = annotate(namespace, run, "approve.kdag.dev/review=alice", "eve")
    assert 'approve.kdag.dev/review must be set to your own username "eve", not "alice"' in refused
    assert annotate(namespace, run, "approve.kdag.dev/review=eve", "eve") == ""

    done = wait_phase(namespace, run, "Succeeded")
    assert done["nodes"]["publish"]["approvedBy"] == "alice"
    assert done["nodes"]["review"]["approvedBy"] == "eve"
    # An answer may be withdrawn (removing is never checked), and re-setting it is checked.
    assert annotate(namespace, run, "approve.kdag.dev/publish-", "eve") == ""
    assert "is not an approver" in annotate(namespace, run, "approve.kdag.dev/publish=eve", "eve")


def test_group_member_rejects_with_a_free_text_reason(policy_release: Release) -> None:
    namespace, run = _waiting_run(policy_release)
    refused = annotate(namespace, run, "reject.kdag.dev/publish=nope", "eve")
    assert 'user "eve" is not an approver of gate "publish"' in refused
    # A group entry matches the caller's groups, never a username that merely looks alike.
    refused = annotate(namespace, run, "reject.kdag.dev/publish=nope", "group:data-leads")
    assert "is not an approver" in refused
    assert (
        annotate(namespace, run, "reject.kdag.dev/publish=numbers look off", "carol", "data-leads")
        == ""
    )
    wait_phase(namespace, run, "Failed")
    assert "numbers look off" in status(namespace, run)["nodes"]["publish"]["message"]


def test_the_operator_is_exempt(cluster: Cluster, policy_release: Release, tmp_path: Path) -> None:
    namespace, run = _waiting_run(policy_release)
    # The operator changes answers (it removes consumed ones on reruns) with a merge patch,
    # as here, with its own token; though "kdag" is neither an approver nor its username,
    # nothing is checked for it. (kubectl would need `get`, which the operator lacks.)
    kubeconfig = service_account_kubeconfig(
        cluster.kubeconfig,
        policy_release.namespace,
        policy_release.service_account,
        tmp_path / "sa",
    )
    api = kubernetes.client.CustomObjectsApi(
        kubernetes.config.new_client_from_config(config_file=str(kubeconfig))
    )
    patch = {"metadata": {"annotations": {"approve.kdag.dev/publish": "kdag"}}}
    api.patch_namespaced_custom_object(
        "kdag.dev", "v1alpha1", namespace, "workflowruns", run, patch
    )
    assert get_run(namespace, run)["metadata"]["annotations"]["approve.kdag.dev/publish"] == "kdag"


def test_a_new_run_cannot_carry_an_answer(policy_release: Release) -> None:
    (namespace,) = policy_release.workloads
    manifest = run_of("gated")
    manifest["metadata"]["annotations"] = {"approve.kdag.dev/publish": "alice"}
    with pytest.raises(KubectlError) as refused:
        kubectl("create", "-n", namespace, "-f", "-", "--as=alice", input=json.dumps(manifest))
    assert (
        "a new workflowrun cannot carry an answer (approve.kdag.dev/publish)"
        in refused.value.stderr
    )
    # Runs without answers, and changes that answer nothing, pass untouched.
    run = create(namespace, run_of("gated"))
    kubectl("annotate", "workflowrun", run, "-n", namespace, "note=hello", "--as=eve")
    kubectl(
        "patch",
        "workflowrun",
        run,
        "-n",
        namespace,
        "--as=eve",
        "--type=merge",
        "-p",
        '{"spec":{"cancel":true}}',
    )
