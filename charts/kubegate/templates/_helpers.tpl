{{- define "kubegate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- /* fullnameOverride; else "<release>-<name>", or just the release name when it already says it (no kubegate-kubegate-...). */ -}}
{{- define "kubegate.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "kubegate.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "kubegate.operatorName" -}}
{{- printf "%s-operator" (include "kubegate.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "kubegate.serviceAccountName" -}}
{{- default (include "kubegate.operatorName" .) .Values.serviceAccount.name -}}
{{- end -}}

{{- define "kubegate.labels" -}}
app.kubernetes.io/name: {{ include "kubegate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "kubegate.operatorSelector" -}}
app.kubernetes.io/name: {{ include "kubegate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}


{{- /* Top-level imagePullSecrets (shared) followed by the operator's own, without duplicates. */ -}}
{{- define "kubegate.imagePullSecrets" -}}
{{- $all := concat (.Values.imagePullSecrets | default list) (.Values.operator.imagePullSecrets | default list) | uniq -}}
{{- if $all -}}
imagePullSecrets:
{{ toYaml $all | indent 2 }}
{{- end -}}
{{- end -}}
