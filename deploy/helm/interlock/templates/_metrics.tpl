{{/*
Pod annotations: Prometheus scrape annotations (metrics.scrapeAnnotations) merged under the component's own
podAnnotations (which win). Call with (dict "ctx" $ "port" <container port> "extra" <podAnnotations>).
*/}}
{{- define "interlock.podAnnotations" -}}
{{- $ann := dict -}}
{{- if .ctx.Values.metrics.scrapeAnnotations -}}
{{- $_ := set $ann "prometheus.io/scrape" "true" -}}
{{- $_ := set $ann "prometheus.io/port" (toString .port) -}}
{{- $_ := set $ann "prometheus.io/path" "/metrics" -}}
{{- end -}}
{{- $ann = merge (deepCopy (.extra | default dict)) $ann -}}
{{- if $ann }}
annotations:
  {{- toYaml $ann | nindent 2 }}
{{- end }}
{{- end -}}
