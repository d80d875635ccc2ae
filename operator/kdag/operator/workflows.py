"""The Workflow side under its old name, for code that still imports it from here.

Its parts: `kdag.engine.workflow_status` (the status, pure), `kdag.operator.workflow_objects`
(reading objects), `kdag.operator.workflow_controller` (the imperative part) and
`kdag.operator.workflow_handlers` (the kopf wiring, registered on import).
"""

from __future__ import annotations

from kdag.engine.workflow_status import CONDITION_SCHEDULED, CONDITION_VALID
from kdag.operator import workflow_handlers  # registers the kopf handlers
from kdag.operator.workflow_controller import WorkflowController
from kdag.operator.workflow_objects import WorkflowObject, observe_run

__all__ = [
    "CONDITION_SCHEDULED",
    "CONDITION_VALID",
    "WorkflowController",
    "WorkflowObject",
    "observe_run",
    "workflow_handlers",
]
