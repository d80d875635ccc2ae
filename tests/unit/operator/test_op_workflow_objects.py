"""Reading Workflow and run objects for the Workflow controller."""

from __future__ import annotations

from workflow_harness import NS

from kdag.operator.workflow_objects import observe_run


def test_runs_of_inline_workflows_belong_to_no_workflow() -> None:
    body = {"metadata": {"name": "r", "namespace": NS}, "spec": {"workflow": {"nodes": []}}}
    assert observe_run(body) is None
