"""kdag's API: pydantic models of the Workflow and WorkflowRun custom resources."""

from kdag.api.base import API_VERSION, GROUP, VERSION
from kdag.api.common import Condition, ObjectMeta
from kdag.api.run import (
    NodePhase,
    NodeStatus,
    RunPhase,
    SkipReason,
    WorkflowRef,
    WorkflowRun,
    WorkflowRunSpec,
    WorkflowRunStatus,
)
from kdag.api.workflow import (
    ApprovalSpec,
    EnvVar,
    HistoryLimit,
    NodeDefaults,
    NodeSpec,
    ParamSpec,
    PodMetadata,
    ResourceRequirements,
    RetryPolicy,
    ScheduleSpec,
    Workflow,
    WorkflowSpec,
    WorkflowStatus,
)

__all__ = [
    "API_VERSION",
    "GROUP",
    "VERSION",
    "ApprovalSpec",
    "Condition",
    "EnvVar",
    "HistoryLimit",
    "NodeDefaults",
    "NodePhase",
    "NodeSpec",
    "NodeStatus",
    "ObjectMeta",
    "ParamSpec",
    "PodMetadata",
    "ResourceRequirements",
    "RetryPolicy",
    "RunPhase",
    "ScheduleSpec",
    "SkipReason",
    "Workflow",
    "WorkflowRef",
    "WorkflowRun",
    "WorkflowRunSpec",
    "WorkflowRunStatus",
    "WorkflowSpec",
    "WorkflowStatus",
]
