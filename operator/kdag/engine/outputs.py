"""What a finished container reports: outputs from its termination message, failure text."""

from __future__ import annotations

import json

from kdag.engine.model import PODS_REFUSED_REASON, JobObservation

# A PodSecurity refusal lists every violated check; this keeps the whole of a usual one.
REFUSAL_CHARS = 1000


def parse_outputs(message: str | None) -> tuple[dict[str, str] | None, str | None]:
    """Outputs from a termination message: a flat JSON object; non-string values become JSON.

    Returns (outputs, note); the note explains why a non-empty message gave no outputs.
    """
    if not message or not message.strip():
        return None, None
    try:
        value = json.loads(message)
    except ValueError:
        return None, "termination message is not JSON, so the node has no outputs"
    if not isinstance(value, dict):
        return None, "termination message is not a JSON object, so the node has no outputs"
    return {
        str(k): v if isinstance(v, str) else json.dumps(v, separators=(",", ":"))
        for k, v in value.items()
    }, None


def failure_message(job: JobObservation, timed_out: bool) -> str:
    """Why an attempt failed: exit code plus the tail of what the container said."""
    if timed_out:
        return job.message or "the Job exceeded its activeDeadlineSeconds"
    if job.reason == PODS_REFUSED_REASON:
        # The head says who refused and why (`violates PodSecurity "restricted:latest"`).
        return f"the Job's pod could not be created: {job.message or 'refused'}"[:REFUSAL_CHARS]
    parts = []
    if job.exit_code is not None:
        # The kubelet's reason says what a bare exit code does not (137: OOMKilled).
        noted = job.pod_reason not in (None, "Error", "Completed")
        parts.append(f"exit code {job.exit_code}" + (f" ({job.pod_reason})" if noted else ""))
    detail = (job.termination_message or job.message or "").strip()
    if detail:
        parts.append(detail[-300:])
    return ": ".join(parts) or (job.reason or "the Job failed")
