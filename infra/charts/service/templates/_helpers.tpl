{{/* One release is one service: its name is the release's. */}}
{{- define "service.labels" -}}
{{ include "service.selector" . }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Values.image.tag | trunc 63 | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
adplatform/language: {{ .Values.language }}
{{- end }}

{{- define "service.selector" -}}
app.kubernetes.io/name: {{ .Release.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* What values.schema.json cannot say: one key compared with another. */}}
{{- define "service.check" -}}
{{- with .Values.autoscaling }}
{{- if lt (int .maxReplicas) (int .minReplicas) }}
{{- fail (printf "autoscaling.maxReplicas (%v) is below autoscaling.minReplicas (%v): raise maxReplicas or lower minReplicas" .maxReplicas .minReplicas) }}
{{- end }}
{{- end }}
{{- end }}
