{{- /* The service's Grafana dashboard: the same for every service, filled in with its name,
namespace and HPA bounds. kube-prometheus-stack's kube-state-metrics and the kubelets' cAdvisor
provide every series, so it needs nothing from the service but its /metrics (for "up"). */}}
{{- define "service.dashboard" -}}
{{- $ns := .Release.Namespace -}}
{{- $name := .Release.Name -}}
{{- $pods := printf "namespace=\\\"%s\\\", pod=~\\\"%s-[a-z0-9]+-[a-z0-9]+\\\", container=\\\"%s\\\"" $ns $name $name -}}
{{- $ds := dict "type" "prometheus" "uid" .Values.dashboard.datasourceUid | toJson -}}
{
  "uid": "svc-{{ printf "%s/%s" $ns $name | sha256sum | trunc 16 }}",
  "title": "{{ $ns }} / {{ $name }}",
  "tags": ["service", "{{ .Values.language }}"],
  "timezone": "utc",
  "schemaVersion": 39,
  "editable": false,
  "refresh": "30s",
  "time": {"from": "now-6h", "to": "now"},
  "panels": [
    {
      "id": 1, "type": "stat", "title": "Pods scraped (up)",
      "gridPos": {"h": 6, "w": 6, "x": 0, "y": 0},
      "datasource": {{ $ds }},
      "targets": [{"refId": "A", "expr": "sum(up{namespace=\"{{ $ns }}\", service=\"{{ $name }}\"})"}]
    },
    {
      "id": 2, "type": "timeseries", "title": "Replicas (autoscaler: {{ .Values.autoscaling.minReplicas }} to {{ .Values.autoscaling.maxReplicas }})",
      "gridPos": {"h": 6, "w": 18, "x": 6, "y": 0},
      "datasource": {{ $ds }},
      "targets": [
        {"refId": "A", "legendFormat": "current", "expr": "kube_horizontalpodautoscaler_status_current_replicas{namespace=\"{{ $ns }}\", horizontalpodautoscaler=\"{{ $name }}\"}"},
        {"refId": "B", "legendFormat": "desired", "expr": "kube_horizontalpodautoscaler_status_desired_replicas{namespace=\"{{ $ns }}\", horizontalpodautoscaler=\"{{ $name }}\"}"},
        {"refId": "C", "legendFormat": "max", "expr": "kube_horizontalpodautoscaler_spec_max_replicas{namespace=\"{{ $ns }}\", horizontalpodautoscaler=\"{{ $name }}\"}"}
      ]
    },
    {
      "id": 3, "type": "timeseries", "title": "CPU, share of the request (the autoscaler's target: {{ .Values.autoscaling.targetCPUUtilizationPercentage }}%)",
      "gridPos": {"h": 8, "w": 12, "x": 0, "y": 6},
      "datasource": {{ $ds }},
      "fieldConfig": {"defaults": {"unit": "percentunit", "thresholds": {"mode": "absolute", "steps": [{"color": "green", "value": null}, {"color": "orange", "value": {{ divf .Values.autoscaling.targetCPUUtilizationPercentage 100 }}}]}, "custom": {"thresholdsStyle": {"mode": "line"}}}},
      "targets": [{"refId": "A", "legendFormat": "{{ "{{pod}}" }}", "expr": "sum by (pod) (rate(container_cpu_usage_seconds_total{ {{- $pods -}} }[5m])) / sum by (pod) (kube_pod_container_resource_requests{ {{- $pods -}}, resource=\"cpu\"})"}]
    },
    {
      "id": 4, "type": "timeseries", "title": "Memory (working set)",
      "gridPos": {"h": 8, "w": 12, "x": 12, "y": 6},
      "datasource": {{ $ds }},
      "fieldConfig": {"defaults": {"unit": "bytes"}},
      "targets": [
        {"refId": "A", "legendFormat": "{{ "{{pod}}" }}", "expr": "sum by (pod) (container_memory_working_set_bytes{ {{- $pods -}} })"},
        {"refId": "B", "legendFormat": "limit", "expr": "max(kube_pod_container_resource_limits{ {{- $pods -}}, resource=\"memory\"})"}
      ]
    },
    {
      "id": 5, "type": "timeseries", "title": "Container restarts (per hour)",
      "gridPos": {"h": 6, "w": 24, "x": 0, "y": 14},
      "datasource": {{ $ds }},
      "targets": [{"refId": "A", "legendFormat": "{{ "{{pod}}" }}", "expr": "sum by (pod) (increase(kube_pod_container_status_restarts_total{ {{- $pods -}} }[1h]))"}]
    }
  ]
}
{{- end }}
