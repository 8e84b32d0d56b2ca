{{/*
Chart name, truncated to 63 chars (DNS label limit).
*/}}
{{- define "interlock.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name. Component suffixes ("-controlplane" is the longest, 13 chars)
are appended to it, so it is truncated to 50 chars to keep every name within 63.
*/}}
{{- define "interlock.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "interlock.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels. Call with (dict "ctx" $ "component" "dataplane").
*/}}
{{- define "interlock.labels" -}}
helm.sh/chart: {{ include "interlock.chart" .ctx }}
{{ include "interlock.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: interlock
{{- with .ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Selector labels. Call with (dict "ctx" $ "component" "dataplane").
*/}}
{{- define "interlock.selectorLabels" -}}
app.kubernetes.io/name: {{ include "interlock.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
{{- if .component }}
app.kubernetes.io/component: {{ .component }}
{{- end }}
{{- end }}

{{/* Per-component resource names. */}}
{{- define "interlock.controlPlane.fullname" -}}
{{- printf "%s-controlplane" (include "interlock.fullname" .) }}
{{- end }}
{{- define "interlock.dataPlane.fullname" -}}
{{- printf "%s-dataplane" (include "interlock.fullname" .) }}
{{- end }}
{{- define "interlock.ingest.fullname" -}}
{{- printf "%s-ingest" (include "interlock.fullname" .) }}
{{- end }}
{{- define "interlock.etcd.fullname" -}}
{{- /* <= 52 chars: a StatefulSet's name plus an 11-char revision hash must fit a 63-char label. */}}
{{- printf "%s-etcd" (include "interlock.fullname" . | trunc 47 | trimSuffix "-") }}
{{- end }}

{{- define "interlock.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "interlock.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create=false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Secret holding the admin token and key pepper.
*/}}
{{- define "interlock.secretName" -}}
{{- if .Values.secrets.existingSecret }}
{{- .Values.secrets.existingSecret }}
{{- else }}
{{- printf "%s-secrets" (include "interlock.fullname" .) }}
{{- end }}
{{- end }}

{{/*
Container image reference: repository@digest, else repository:tag (tag defaults to appVersion).
*/}}
{{- define "interlock.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
INTERLOCK_STORE: etcd://host:port[,host:port] — the embedded etcd when enabled, else etcd.endpoints.
*/}}
{{- define "interlock.store" -}}
{{- if .Values.etcd.embedded.enabled }}
{{- printf "etcd://%s.%s.svc:2379" (include "interlock.etcd.fullname" .) .Release.Namespace }}
{{- else }}
{{- $eps := list }}
{{- range .Values.etcd.endpoints }}
{{- $ep := . | toString | trim | trimPrefix "http://" | trimPrefix "https://" | trimPrefix "etcd://" | trimSuffix "/" }}
{{- if $ep }}{{- $eps = append $eps $ep }}{{- end }}
{{- end }}
{{- if not $eps }}
{{- fail "etcd.endpoints is empty: list your etcd cluster's client endpoints (host:port), or set etcd.embedded.enabled=true for an evaluation-only single-node etcd" }}
{{- end }}
{{- printf "etcd://%s" (join "," $eps) }}
{{- end }}
{{- end }}

{{/*
INTERLOCK_CONTROL_PLANE: the control plane's gRPC Service, host:port.
*/}}
{{- define "interlock.controlPlane.grpcTarget" -}}
{{- printf "%s.%s.svc:%v" (include "interlock.controlPlane.fullname" .) .Release.Namespace .Values.controlPlane.service.grpcPort }}
{{- end }}

{{/*
Pod anti-affinity from a "soft" / "hard" / "" preset, unless an explicit affinity is given.
Call with (dict "ctx" $ "component" "dataplane" "preset" "soft" "affinity" dict).
*/}}
{{- define "interlock.affinity" -}}
{{- if .affinity }}
{{- toYaml .affinity }}
{{- else if eq .preset "hard" }}
podAntiAffinity:
  requiredDuringSchedulingIgnoredDuringExecution:
    - topologyKey: kubernetes.io/hostname
      labelSelector:
        matchLabels:
          {{- include "interlock.selectorLabels" (dict "ctx" .ctx "component" .component) | nindent 10 }}
{{- else if eq .preset "soft" }}
podAntiAffinity:
  preferredDuringSchedulingIgnoredDuringExecution:
    - weight: 100
      podAffinityTerm:
        topologyKey: kubernetes.io/hostname
        labelSelector:
          matchLabels:
            {{- include "interlock.selectorLabels" (dict "ctx" .ctx "component" .component) | nindent 12 }}
{{- else if .preset }}
{{- fail (printf "podAntiAffinity must be \"soft\", \"hard\" or \"\", not %q" .preset) }}
{{- end }}
{{- end }}

{{/*
PodDisruptionBudget spec fields (exactly one of minAvailable / maxUnavailable).
*/}}
{{- define "interlock.pdbSpec" -}}
{{- $min := toString .minAvailable }}
{{- $max := toString .maxUnavailable }}
{{- if and (ne $min "") (ne $min "<nil>") (ne $max "") (ne $max "<nil>") }}
{{- fail "podDisruptionBudget: set only one of minAvailable / maxUnavailable" }}
{{- else if and (ne $min "") (ne $min "<nil>") }}
minAvailable: {{ if regexMatch "^[0-9]+$" $min }}{{ $min }}{{ else }}{{ $min | quote }}{{ end }}
{{- else if and (ne $max "") (ne $max "<nil>") }}
maxUnavailable: {{ if regexMatch "^[0-9]+$" $max }}{{ $max }}{{ else }}{{ $max | quote }}{{ end }}
{{- else }}
{{- fail "podDisruptionBudget: set minAvailable or maxUnavailable" }}
{{- end }}
{{- end }}

{{/*
Volumes every Interlock pod gets: a writable /tmp (the root filesystem is read-only).
*/}}
{{- define "interlock.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: 256Mi
{{- end }}

{{/*
Environment shared by every Interlock container.
*/}}
{{- define "interlock.commonEnv" -}}
- name: PYTHONUNBUFFERED
  value: "1"
- name: PYTHONDONTWRITEBYTECODE
  value: "1"
- name: TMPDIR
  value: /tmp
{{- end }}

{{/*
INTERLOCK_CLICKHOUSE_DSN env entry from a (dsn, secretName, secretKey, what) dict.
*/}}
{{- define "interlock.clickhouseDsnEnv" -}}
{{- if .secretName }}
- name: INTERLOCK_CLICKHOUSE_DSN
  valueFrom:
    secretKeyRef:
      name: {{ .secretName }}
      key: {{ required (printf "%s: the ClickHouse DSN Secret key is required" .what) .secretKey }}
{{- else }}
{{- $dsn := required (printf "%s: a ClickHouse DSN (http(s)://user:password@host:8123) is required" .what) .dsn }}
{{- if not (regexMatch "^https?://" $dsn) }}
{{- fail (printf "%s: the ClickHouse DSN must start with http:// or https:// (the embedded chdb:// engine is for local development only)" .what) }}
{{- end }}
- name: INTERLOCK_CLICKHOUSE_DSN
  value: {{ $dsn | quote }}
{{- end }}
{{- end }}

{{/*
Kafka env entries (INTERLOCK_KAFKA_BOOTSTRAP / INTERLOCK_KAFKA_TOPIC). Call with (dict "ctx" $ "what" "...").
*/}}
{{- define "interlock.kafkaEnv" -}}
- name: INTERLOCK_KAFKA_BOOTSTRAP
  value: {{ required (printf "%s: kafka.bootstrapServers is required (host:port[,host:port])" .what) .ctx.Values.kafka.bootstrapServers | quote }}
- name: INTERLOCK_KAFKA_TOPIC
  value: {{ required "kafka.topic is required" .ctx.Values.kafka.topic | quote }}
{{- end }}
