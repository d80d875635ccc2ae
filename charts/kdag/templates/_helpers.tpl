{{/* Chart name, overridable. */}}
{{- define "kdag.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Full name of the release's objects. Cluster-scoped objects (ClusterRoles, the admission
policy) use it too, so two releases need two release names.
*/}}
{{- define "kdag.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "kdag.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "kdag.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kdag.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "kdag.labels" -}}
helm.sh/chart: {{ include "kdag.chart" . }}
{{ include "kdag.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: kdag
{{- end -}}

{{- define "kdag.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "kdag.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The username the API server gives the operator (exempt from the approval policy). */}}
{{- define "kdag.operatorUsername" -}}
{{- printf "system:serviceaccount:%s:%s" .Release.Namespace (include "kdag.serviceAccountName" .) -}}
{{- end -}}

{{- define "kdag.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* kopf peering is needed only when several replicas must agree on one active operator
(and not with shards, where every replica drives its share). */}}
{{- define "kdag.peering" -}}
{{- if and (gt (int .Values.replicas) 1) (not .Values.sharding.enabled) -}}true{{- end -}}
{{- end -}}

{{/* Active-active shards: every replica drives a share of the runs (docs/install.md). */}}
{{- define "kdag.sharding" -}}
{{- if .Values.sharding.enabled -}}true{{- end -}}
{{- end -}}

{{/* Several replicas, peered or sharded: a disruption budget and anti-affinity apply. */}}
{{- define "kdag.replicated" -}}
{{- if gt (int .Values.replicas) 1 -}}true{{- end -}}
{{- end -}}

{{- define "kdag.peeringName" -}}
{{- include "kdag.fullname" . -}}
{{- end -}}

{{- define "kdag.metricsServiceName" -}}
{{- printf "%s-metrics" (include "kdag.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
What the operator does in each namespace it serves, and nothing more: the table in
docs/operator.md ("RBAC"), whose rows docs/install.md repeats with the reasons.
Never Secrets, ConfigMaps or any kind kdag does not manage.
*/}}
{{- define "kdag.namespacedRules" -}}
# Runs: kopf watches them; the periodic resync re-reads an active run (get) to catch what a
# watch missed while it was down; the operator removes consumed reject annotations on a rerun
# (patch), deletes finished runs after their TTL, and creates runs on a Workflow's schedule.
- apiGroups: ["kdag.dev"]
  resources: ["workflowruns"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# Each Job's owner reference to its run sets blockOwnerDeletion; where the
# OwnerReferencesPermissionEnforcement admission plugin is on (OpenShift), only a creator that
# may update the run's finalizers may set it, or the Job create is refused.
- apiGroups: ["kdag.dev"]
  resources: ["workflowruns/finalizers"]
  verbs: ["update"]
# The run's status is the operator's checkpoint; a Workflow's status shows its schedule.
- apiGroups: ["kdag.dev"]
  resources: ["workflowruns/status", "workflows/status"]
  verbs: ["patch"]
# A run's workflowRef is read when it starts; Workflows are watched for their schedules,
# and kopf puts a finalizer on a scheduled Workflow (patch) so its schedule daemon is
# stopped before the Workflow goes.
- apiGroups: ["kdag.dev"]
  resources: ["workflows"]
  verbs: ["get", "list", "watch", "patch"]
# One Job per node attempt; get adopts a Job that already exists (after a restart).
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create", "delete"]
# A node's exit code and outputs are in its pod's status.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch"]
# Events on runs: phase changes, gates, failures; patch bumps the count of a repeated one.
# list reads the Job controller's FailedCreate Events on a Job whose pods are refused.
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch", "list"]
{{- end -}}
