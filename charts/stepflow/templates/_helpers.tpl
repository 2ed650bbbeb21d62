{{- define "stepflow.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "stepflow.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else if contains (include "stepflow.name" .) .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "stepflow.name" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "stepflow.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "stepflow.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: stepflow
{{- end }}

{{- define "stepflow.selectorLabels" -}}
app.kubernetes.io/name: {{ include "stepflow.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "stepflow.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "stepflow.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The rules the operator needs on its own resources, wherever it watches them. */}}
{{- define "stepflow.resourceRules" -}}
- apiGroups: [stepflow.dev]
  resources: [pipelines]
  verbs: [get, list, watch, patch]
- apiGroups: [stepflow.dev]
  resources: [pipelineexecutions]
  verbs: [get, list, watch, patch, create, delete]
- apiGroups: [stepflow.dev]
  resources: [pipelines/status, pipelineexecutions/status]
  verbs: [get, patch]
- apiGroups: [""]
  resources: [events]
  verbs: [create, patch]
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create, patch]
# The kubernetes backend: a Job per step attempt, its pods observed, their logs kept.
- apiGroups: [batch]
  resources: [jobs]
  verbs: [create, get, list, watch, delete]
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, watch]
- apiGroups: [""]
  resources: [pods/log]
  verbs: [get]
# Only for spec.source.secretRef: no list or watch, so it cannot enumerate Secrets.
- apiGroups: [""]
  resources: [secrets]
  verbs: [get]
- apiGroups: [stepflow.dev]
  resources: [receivers]
  verbs: [get, list, watch, patch]
- apiGroups: [stepflow.dev]
  resources: [receivers/status]
  verbs: [get, patch]
{{- end }}

{{/* "true" when watchNamespaces holds a kopf pattern (glob or negation), which RBAC cannot scope. */}}
{{- define "stepflow.namespacePatterns" -}}
{{- $found := false -}}
{{- range .Values.watchNamespaces }}{{ if regexMatch "[*?\\[!]" . }}{{ $found = true }}{{ end }}{{ end -}}
{{- if $found }}true{{ end -}}
{{- end }}
