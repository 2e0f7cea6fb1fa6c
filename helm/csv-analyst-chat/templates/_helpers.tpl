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

{{/* Where the admin token's Secret is mounted, and the file ADMIN_TOKEN_FILE names. */}}
{{- define "csv-analyst-chat.adminTokenDir" -}}
/var/run/secrets/csv-analyst
{{- end }}
{{- define "csv-analyst-chat.adminTokenFile" -}}
{{ include "csv-analyst-chat.adminTokenDir" . }}/admin-token
{{- end }}

{{/*
"true" when the service authenticates anyone (the service's own rule: ADMIN_TOKEN_FILE,
OIDC_ISSUER or TRUSTED_PROXY_HEADER set), else empty.
*/}}
{{- define "csv-analyst-chat.authConfigured" -}}
{{- with .Values.auth }}
{{- if or .adminToken.existingSecret .oidc.issuer .trustedProxyHeader }}true{{ end }}
{{- end }}
{{- end }}

{{/* Auth values that cannot work together: refused at render, not at the pod's start. */}}
{{- define "csv-analyst-chat.validateAuth" -}}
{{- with .Values.auth }}
{{- if and .oidc.issuer (not .oidc.audience) }}
{{- fail "auth.oidc.issuer is set without auth.oidc.audience: set the audience (the `aud` the issuer's tokens carry for this service)" }}
{{- end }}
{{- if and (not .oidc.issuer) (or .oidc.audience .oidc.datasetsClaim .oidc.adminClaim .oidc.adminValue) }}
{{- fail "auth.oidc.audience, datasetsClaim, adminClaim and adminValue need auth.oidc.issuer: set the issuer, or leave them empty" }}
{{- end }}
{{- if ne (empty .oidc.adminClaim) (empty .oidc.adminValue) }}
{{- fail "auth.oidc.adminClaim and auth.oidc.adminValue go together: set both (a caller whose adminClaim holds adminValue is an admin) or neither" }}
{{- end }}
{{- if and .trustedProxyHeader (not .trustedProxies) }}
{{- fail "auth.trustedProxyHeader is set without auth.trustedProxies: the header is believed only from those peers, so list the proxy's CIDRs (e.g. the ingress controller's pod range)" }}
{{- end }}
{{- if and .trustedProxyDatasets (not .trustedProxyHeader) }}
{{- fail "auth.trustedProxyDatasets needs auth.trustedProxyHeader (and auth.trustedProxies)" }}
{{- end }}
{{- if and (not .adminToken.key) .adminToken.existingSecret }}
{{- fail "auth.adminToken.key is empty: name the Secret's key holding the admin token (default admin-token)" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
An ingress publishes the service: refused while nobody is authenticated, unless
auth.allowUnauthenticatedIngress says that is meant.
*/}}
{{- define "csv-analyst-chat.ingressAuthGuard" -}}
{{- if and .Values.ingress.enabled (not (include "csv-analyst-chat.authConfigured" .)) (not .Values.auth.allowUnauthenticatedIngress) }}
{{- fail "ingress.enabled=true would publish the service with no authentication: anyone reaching the ingress could run queries. Set auth.adminToken.existingSecret (a Secret whose auth.adminToken.key, default admin-token, holds an admin token of 20+ characters), auth.oidc.issuer with auth.oidc.audience, or auth.trustedProxyHeader with auth.trustedProxies; or set auth.allowUnauthenticatedIngress=true to publish it open on purpose" }}
{{- end }}
{{- if and .Values.ingress.enabled (eq .Values.auth.anonymous "run") (not .Values.auth.allowUnauthenticatedIngress) }}
{{- fail "ingress.enabled=true with auth.anonymous=run lets anyone reaching the ingress run queries without a token. Set auth.anonymous=deny, or auth.allowUnauthenticatedIngress=true to publish anonymous querying on purpose (with auth.anonymousDatasets to narrow it)" }}
{{- end }}
{{- end }}

{{/* Where the uploads claim is mounted in the orchestrator: UPLOADS_DIR. */}}
{{- define "csv-analyst-chat.uploadsDir" -}}
/var/lib/csv-analyst/uploads
{{- end }}

{{/* The uploads claim: uploads.persistence.existingClaim, else the one the chart creates. */}}
{{- define "csv-analyst-chat.uploadsClaimName" -}}
{{- default (printf "%s-uploads" (include "csv-analyst-chat.fullname" .)) .Values.uploads.persistence.existingClaim }}
{{- end }}

{{/* "true" when runs are Kubernetes Jobs (env.SANDBOX_PROVIDER=k8s), else empty. */}}
{{- define "csv-analyst-chat.k8sProvider" -}}
{{- if eq (toString (get .Values.env "SANDBOX_PROVIDER")) "k8s" }}true{{ end }}
{{- end }}

{{/* Upload values that cannot work: refused at render, not found out when data is lost. */}}
{{- define "csv-analyst-chat.validateUploads" -}}
{{- if .Values.uploads.enabled }}
{{- if not (or .Values.persistence.enabled (include "csv-analyst-chat.postgres" .)) }}
{{- fail "uploads.enabled=true needs persistence.enabled=true (or store.postgres): the uploads' records are in the run store, and at every start the service sets aside the uploaded folders it has no record of, so with a run store that lives as long as the pod every restart would unlist every upload" }}
{{- end }}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.uploads.persistence.existingClaim) (not (has "ReadWriteMany" .Values.uploads.persistence.accessModes)) }}
{{- fail "uploads.enabled=true with replicaCount > 1: every replica mounts the uploads claim, on whatever node it runs, so it must be ReadWriteMany (uploads.persistence.accessModes, or an existingClaim that is)" }}
{{- end }}
{{- if include "csv-analyst-chat.k8sProvider" . }}
{{- if ne (include "csv-analyst-chat.jobsNamespace" .) .Release.Namespace }}
{{- fail (printf "uploads.enabled=true with env.K8S_NAMESPACE=%s: runner Jobs mount the uploads claim, and a pod can only mount a claim of its own namespace, but the orchestrator's is %s. Run the Jobs in the release's namespace (unset env.K8S_NAMESPACE or set it to %s)" (include "csv-analyst-chat.jobsNamespace" .) .Release.Namespace .Release.Namespace) }}
{{- end }}
{{- if and (not .Values.uploads.persistence.existingClaim) (has "ReadWriteOncePod" .Values.uploads.persistence.accessModes) }}
{{- fail "uploads.persistence.accessModes has ReadWriteOncePod: runner Jobs mount the uploads claim while the orchestrator holds it; use ReadWriteMany (or ReadWriteOnce with every pod on one node)" }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/* "true" when the run store is PostgreSQL (store.postgres.url or .existingSecret), else empty. */}}
{{- define "csv-analyst-chat.postgres" -}}
{{- with .Values.store.postgres }}
{{- if or .url .existingSecret }}true{{ end }}
{{- end }}
{{- end }}

{{/* "true" when the run store is SQLite on the chart's claim (templates/pvc.yaml), else empty. */}}
{{- define "csv-analyst-chat.sqliteClaim" -}}
{{- if and .Values.persistence.enabled (not (include "csv-analyst-chat.postgres" .)) }}true{{ end }}
{{- end }}

{{/* The Secret holding the PostgreSQL URL: store.postgres.existingSecret, else the chart's. */}}
{{- define "csv-analyst-chat.storeSecretName" -}}
{{- default (printf "%s-store" (include "csv-analyst-chat.fullname" .) | trunc 63 | trimSuffix "-") .Values.store.postgres.existingSecret }}
{{- end }}

{{/* The key of that Secret holding the URL: existingSecretKey in an existing Secret, url in the chart's. */}}
{{- define "csv-analyst-chat.storeSecretKey" -}}
{{- if .Values.store.postgres.existingSecret }}{{ .Values.store.postgres.existingSecretKey }}{{ else }}url{{ end }}
{{- end }}

{{/* Where the URL's Secret is mounted, and the file RUN_STORE_URL_FILE names. */}}
{{- define "csv-analyst-chat.storeUrlDir" -}}
/var/run/secrets/csv-analyst-store
{{- end }}
{{- define "csv-analyst-chat.storeUrlFile" -}}
{{ include "csv-analyst-chat.storeUrlDir" . }}/url
{{- end }}

{{/*
Run store values that cannot work: refused at render. More than one replica needs a
store they share; SQLite is one file on one pod's ReadWriteOnce volume.
*/}}
{{- define "csv-analyst-chat.validateStore" -}}
{{- with .Values.store.postgres }}
{{- if and .url .existingSecret }}
{{- fail "store.postgres.url and store.postgres.existingSecret are both set: set one (existingSecret keeps the URL, and its password, out of the release's values)" }}
{{- end }}
{{- if and .existingSecret (not .existingSecretKey) }}
{{- fail "store.postgres.existingSecretKey is empty: name the Secret's key holding the PostgreSQL URL (default url)" }}
{{- end }}
{{- end }}
{{- if and (gt (int .Values.replicaCount) 1) (not (include "csv-analyst-chat.postgres" .)) }}
{{- fail "replicaCount > 1 needs a shared store: set store.postgres.url or store.postgres.existingSecret (SQLite is one file on one pod's volume)" }}
{{- end }}
{{- end }}
