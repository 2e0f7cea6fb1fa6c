{{/* The chart's name. */}}
{{- define "csv-analyst-chat.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name: release "csv-analyst" gives "csv-analyst-csv-analyst-chat" (the runbook
relies on it); a release already containing the chart's name is used as it is.
*/}}
{{- define "csv-analyst-chat.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "csv-analyst-chat.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "csv-analyst-chat.labels" -}}
helm.sh/chart: {{ include "csv-analyst-chat.chart" . }}
{{ include "csv-analyst-chat.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "csv-analyst-chat.selectorLabels" -}}
app.kubernetes.io/name: {{ include "csv-analyst-chat.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "csv-analyst-chat.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "csv-analyst-chat.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "csv-analyst-chat.runnerServiceAccountName" -}}
{{- default (printf "%s-runner" (include "csv-analyst-chat.fullname" .) | trunc 63 | trimSuffix "-") .Values.runnerServiceAccount.name }}
{{- end }}

{{/* The namespace runner Jobs are created in: env.K8S_NAMESPACE, else the release's. */}}
{{- define "csv-analyst-chat.jobsNamespace" -}}
{{- default .Release.Namespace (get .Values.env "K8S_NAMESPACE") }}
{{- end }}

{{- define "csv-analyst-chat.secretName" -}}
{{- default (include "csv-analyst-chat.fullname" .) .Values.existingSecretName }}
{{- end }}

{{/* The label runner pods carry; the runner NetworkPolicy selects on it. */}}
{{- define "csv-analyst-chat.runnerSelector" -}}
app.kubernetes.io/name: csv-analyst-runner
{{- end }}
