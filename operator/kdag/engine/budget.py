"""How big a run's object gets: what keeps a run under the API server's size limit.

etcd refuses a write of more than 1.5 MiB, so a run whose status outgrows that can never be
written again (SPEC §8: a run's object stays under 1 MiB at any output sizes it admits).
What a run stores grows with its nodes (a status entry each) and with its nodes' outputs
(up to 4 KiB of termination message each). The first is known from the workflow (and, for
forEachFrom, when it expands); the second is capped by the run's output budget.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from kdag.api import WorkflowSpec

# The most a run object may take (SPEC §8), leaving room under etcd's 1.5 MiB.
MAX_RUN_OBJECT_BYTES = 1024 * 1024
# The kubelet cuts a termination message to 4 KiB.
TERMINATION_MESSAGE_BYTES = 4096
# A status entry of a finished node, measured: a fan-out instance keeps no Job name or item
# (`"t[4999]":{"phase":"Succeeded","attempt":1,"startedAt":...,"finishedAt":...,"index":4999}`
# is 129 bytes); a named node keeps its Job name and exit code too.
INSTANCE_BYTES = 140
NODE_BYTES = 260
# metadata (with managedFields), conditions, params, the run's own status fields.
ENVELOPE_BYTES = 8 * 1024


def output_bytes(outputs: Mapping[str, str] | None) -> int:
    """What a node's outputs take in the stored status (compact JSON, UTF-8)."""
    if not outputs:
        return 0
    return len(json.dumps(outputs, separators=(",", ":"), ensure_ascii=False).encode())


def static_counts(workflow: WorkflowSpec) -> tuple[int, int]:
    """(named nodes, fan-out instances) known before the run starts; a forEachFrom node
    counts as one named node until it expands."""
    named = sum(1 for n in workflow.all_nodes if n.for_each is None)
    fanned = sum(len(n.for_each) for n in workflow.all_nodes if n.for_each is not None)
    return named, fanned


def fixed_bytes(workflow: WorkflowSpec, named: int, instances: int) -> int:
    """A run's object without outputs: the workflow twice (spec and status snapshot), the
    envelope, and a status entry per node."""
    snapshot = len(workflow.model_dump_json(by_alias=True, exclude_none=True))
    return ENVELOPE_BYTES + 2 * snapshot + named * NODE_BYTES + instances * INSTANCE_BYTES


def worst_case_bytes(workflow: WorkflowSpec, output_budget: int) -> int:
    """The largest object a run of `workflow` can reach with its static nodes: outputs are
    cut off at the budget, or at 4 KiB per node if that is less."""
    named, fanned = static_counts(workflow)
    outputs = min(output_budget, (named + fanned) * TERMINATION_MESSAGE_BYTES)
    return fixed_bytes(workflow, named, fanned) + outputs
