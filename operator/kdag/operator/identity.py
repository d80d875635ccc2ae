"""The operator's own ServiceAccount: learned once at start-up, never lent to a Job.

A run in the operator's namespace could name that account in `podTemplate` (or name none,
when the operator runs as `default`) and its pods would hold the operator's token. The
operator asks the API server who it is (`own_service_account`) and hands the answer to the
reconciler, where such a run ends `Invalid` before it starts
(`kdag.engine.validation.borrowed_account_problems`). `GuardedKubeClient` refuses such a Job
even so: the last line for a run that started before this operator knew its account (under
an older version, or another identity).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

from kdag.engine.model import ServiceAccountRef
from kdag.engine.validation import runs_as
from kdag.operator.backoff import Backoff
from kdag.operator.kube import KubeClient, KubeError

logger = logging.getLogger(__name__)

ASKING_BACKOFF = Backoff(base_seconds=0.5, max_seconds=30.0)


class IdentityError(Exception):
    """The API server will not say who the operator is: running without knowing would let a
    run borrow the operator's ServiceAccount, so the operator does not start."""


class _Whoami(Protocol):
    async def username(self) -> str: ...


async def own_service_account(
    kube: _Whoami, *, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
) -> ServiceAccountRef | None:
    """The ServiceAccount the operator runs as; None when it runs as anything else (a
    kubeconfig user: there is no account of its own to protect).

    Asked once (a SelfSubjectReview). While the API server cannot answer, asked again with
    backoff, as kopf waits for its watches; a refusal raises `IdentityError`.
    """
    failures = 0
    while True:
        try:
            username = await kube.username()
        except KubeError as exc:
            if not exc.transient:
                raise IdentityError(
                    "cannot tell which ServiceAccount the operator runs as (SelfSubjectReview "
                    f"answered {exc.status} {exc.api_message}); every authenticated user may "
                    "create one through the system:basic-user ClusterRole"
                ) from exc
            failures += 1
            delay = ASKING_BACKOFF.delay(failures)
            logger.warning(
                "asking the API server who the operator is failed (retry in %.1fs): %s",
                delay,
                exc,
            )
            await sleep(delay)
            continue
        account = ServiceAccountRef.from_username(username)
        if account is None:
            logger.info("running as %r, not a ServiceAccount: no account to protect", username)
        else:
            logger.info(
                "running as ServiceAccount %s: no run in namespace %s may use it",
                account,
                account.namespace,
            )
        return account


class GuardedKubeClient(KubeClient):
    """A KubeClient that never creates a Job whose pods would run as `operator_account`.

    The refusal is a 403 answered without asking the API server, so the reconciler treats it
    as it treats the API refusing a Job: a failed attempt whose message says why.
    """

    operator_account: ServiceAccountRef | None = None

    async def create_job(self, namespace: str, manifest: Mapping[str, Any]) -> dict[str, Any]:
        account = self.operator_account
        pod_spec = ((manifest.get("spec") or {}).get("template") or {}).get("spec")
        if account is not None and runs_as(account, namespace, pod_spec):
            message = (
                f"its pods would run as the operator's own ServiceAccount ({account}), "
                "which no node may use"
            )
            status = {"kind": "Status", "reason": "Forbidden", "message": message}
            raise KubeError(403, "Forbidden", json.dumps(status))
        return await super().create_job(namespace, manifest)
