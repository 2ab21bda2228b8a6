{{- /* "<release>-kubegate", or just the release name when it already says kubegate (no kubegate-kubegate-...). */ -}}
{{- define "kubegate.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "kubegate.operatorName" -}}
{{- printf "%s-operator" (include "kubegate.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "kubegate.serviceAccountName" -}}
{{- default (include "kubegate.operatorName" .) .Values.serviceAccount.name -}}
{{- end -}}

{{- define "kubegate.labels" -}}
app.kubernetes.io/name: kubegate
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "kubegate.operatorSelector" -}}
app.kubernetes.io/name: kubegate
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}
