"""Reading Workflow and run objects for the Workflow controller."""

from __future__ import annotations

from workflow_harness import NS

from kdag.operator.workflow_objects import observe_run


def test_runs_of_inline_workflows_belong_to_no_workflow() -> None:
    body = {"metadata": {"name": "r", "namespace": NS}, "spec": {"workflow": {"nodes": []}}}
    assert observe_run(body) is None


def test_the_old_module_name_still_offers_the_workflow_names() -> None:
    from kdag.operator import workflows  # noqa: PLC0415

    assert workflows.observe_run is observe_run
    assert {"CONDITION_VALID", "WorkflowController", "WorkflowObject"} <= set(workflows.__all__)
