"""The SPEC §2 examples of a Workflow and a WorkflowRun, and small edits of them."""

from __future__ import annotations

from typing import Any

import yaml

GOOD_WORKFLOW = yaml.safe_load(
    """
apiVersion: kdag.dev/v1alpha1
kind: Workflow
metadata: {name: etl}
spec:
  description: Nightly ETL
  params:
    - {name: date, default: "2026-11-21", description: Day to process}
  defaults:
    image: busybox:1.36
    resources: {requests: {cpu: 100m, memory: 64Mi}}
    timeoutSeconds: 600
    retry: {limit: 2, backoffSeconds: 10, factor: 2, maxBackoffSeconds: 300}
  parallelism: 4
  timeoutSeconds: 3600
  onFailure: stop
  nodes:
    - name: extract
      image: python:3.12-slim
      command: ["python", "-c", "print('hi')"]
      env: [{name: DAY, value: "{{ params.date }}"}]
    - name: transform
      dependsOn: [extract]
      when: "int(nodes.extract.outputs.rows) > 0"
      forEach: ["eu", "us", "ap"]
      args: ["--region", "{{ item }}"]
    - name: publish
      dependsOn: [transform]
      approval:
        message: Publish tonight's data?
        timeoutSeconds: 86400
        approvers: ["alice", "group:data-leads"]
    - name: load
      dependsOn: [publish]
      resources: {requests: {cpu: "1", memory: 1Gi}, limits: {memory: 2Gi}}
      podTemplate: {serviceAccountName: loader, nodeSelector: {pool: batch}}
  finally:
    - name: notify
      command: ["sh", "-c", "echo run {{ run.name }} ended {{ run.phase }}"]
  schedule:
    cron: "0 2 * * *"
    timezone: Europe/Berlin
    concurrencyPolicy: Forbid
    historyLimit: {succeeded: 3, failed: 1}
  ttlSecondsAfterFinished: 604800
"""
)

GOOD_RUN = yaml.safe_load(
    """
apiVersion: kdag.dev/v1alpha1
kind: WorkflowRun
metadata: {generateName: etl-}
spec:
  workflowRef: {name: etl}
  params: {date: "2026-11-22"}
  suspend: false
  cancel: false
status:
  phase: Running
  progress: 3/7
  startedAt: "2026-11-22T02:00:00Z"
  message: running
  observedGeneration: 1
  conditions:
    - {type: Succeeded, status: "Unknown", reason: Running, message: running,
       lastTransitionTime: "2026-11-22T02:00:00Z"}
  nodes:
    extract: {phase: Succeeded, attempt: 1, job: etl-x7k2-extract-1, exitCode: 0,
              outputs: {rows: "120"}}
    publish: {phase: WaitingForApproval, message: "Publish tonight's data?"}
"""
)


def with_change(doc: dict[str, Any], change: Any) -> dict[str, Any]:
    copy: dict[str, Any] = yaml.safe_load(yaml.safe_dump(doc))
    change(copy)
    return copy


def node(doc: dict[str, Any], index: int) -> dict[str, Any]:
    nodes: list[dict[str, Any]] = doc["spec"]["nodes"]
    return nodes[index]
