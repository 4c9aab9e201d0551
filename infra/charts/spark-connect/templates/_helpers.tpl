{{/* What the server's and the executors' containers share: the S3 keys, the scratch space. */}}
{{- define "spark-connect.container" -}}
securityContext:
  {{- toYaml .Values.securityContext | nindent 2 }}
envFrom:
- secretRef:
    name: {{ .Values.s3CredentialsSecret }}
env:
# Spark's scripts write their logs beside Spark by default: on the read-only root filesystem.
- name: SPARK_LOG_DIR
  value: /tmp/spark-logs
volumeMounts:
- name: scratch
  mountPath: /tmp
  subPath: tmp
- name: scratch
  mountPath: /opt/spark/work-dir
  subPath: work-dir
{{- end }}

{{- define "spark-connect.volumes" -}}
volumes:
- name: scratch
  emptyDir:
    sizeLimit: {{ .Values.scratchSizeLimit }}
{{- end }}
