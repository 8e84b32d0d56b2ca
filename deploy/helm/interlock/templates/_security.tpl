{{/*
Channel security between the planes (grpcSecurity.*) and towards etcd (etcd.tls / etcd.auth):
env entries, volumes and mounts for each component. Files land under /etc/interlock/{grpc-tls,grpc-client,
etcd-tls,etcd-auth}; the node token rides in the chart's main Secret (/etc/interlock/secrets/node-token).
*/}}

{{- define "interlock.grpcTlsMode" -}}
{{- $m := .Values.grpcSecurity.tls.mode | default "generate" }}
{{- if not (has $m (list "generate" "existingSecret" "off")) }}
{{- fail (printf "grpcSecurity.tls.mode must be generate, existingSecret or off, not %q" $m) }}
{{- end }}
{{- if and (eq $m "off") .Values.grpcSecurity.tls.mutual }}
{{- fail "grpcSecurity.tls.mutual needs TLS: set grpcSecurity.tls.mode to generate or existingSecret" }}
{{- end }}
{{- $m }}
{{- end }}

{{- define "interlock.grpcTlsSecretName" -}}
{{- if eq (include "interlock.grpcTlsMode" .) "existingSecret" }}
{{- required "grpcSecurity.tls.existingSecret is required when grpcSecurity.tls.mode=existingSecret" .Values.grpcSecurity.tls.existingSecret }}
{{- else }}
{{- printf "%s-grpc-tls" (include "interlock.fullname" .) }}
{{- end }}
{{- end }}

{{/* "true" when data planes send the node token: only over TLS (in plaintext it would be readable on the wire). */}}
{{- define "interlock.nodeTokenOn" -}}
{{- if and .Values.grpcSecurity.nodeToken.enabled (ne (include "interlock.grpcTlsMode" .) "off") }}true{{ end }}
{{- end }}

{{- define "interlock.etcdTlsOn" -}}
{{- if .Values.etcd.tls.existingSecret }}
{{- if .Values.etcd.embedded.enabled }}
{{- fail "etcd.tls is for an external etcd: the embedded evaluation etcd runs without TLS" }}
{{- end }}true
{{- end }}
{{- end }}

{{- define "interlock.etcdClientCertOn" -}}
{{- if and (include "interlock.etcdTlsOn" .) .Values.etcd.tls.certKey .Values.etcd.tls.keyKey }}true{{ end }}
{{- end }}

{{/* ---- control plane ---- */}}

{{- define "interlock.controlPlane.securityEnv" -}}
{{- if eq (include "interlock.grpcTlsMode" .) "off" }}
- name: INTERLOCK_GRPC_ALLOW_INSECURE
  value: "true"
{{- else }}
- name: INTERLOCK_GRPC_TLS_CERT
  value: /etc/interlock/grpc-tls/tls.crt
- name: INTERLOCK_GRPC_TLS_KEY
  value: /etc/interlock/grpc-tls/tls.key
{{- if .Values.grpcSecurity.tls.mutual }}
- name: INTERLOCK_GRPC_CLIENT_CA
  value: /etc/interlock/grpc-tls/ca.crt
{{- end }}
{{- end }}
{{- if include "interlock.nodeTokenOn" . }}
- name: INTERLOCK_NODE_TOKEN_FILE
  value: /etc/interlock/secrets/node-token
{{- end }}
{{- if include "interlock.etcdTlsOn" . }}
- name: INTERLOCK_ETCD_CA_CERT
  value: /etc/interlock/etcd-tls/ca.crt
{{- if include "interlock.etcdClientCertOn" . }}
- name: INTERLOCK_ETCD_CERT
  value: /etc/interlock/etcd-tls/tls.crt
- name: INTERLOCK_ETCD_KEY
  value: /etc/interlock/etcd-tls/tls.key
{{- end }}
{{- end }}
{{- with .Values.etcd.auth.username }}
- name: INTERLOCK_ETCD_USERNAME
  value: {{ . | quote }}
- name: INTERLOCK_ETCD_PASSWORD_FILE
  value: /etc/interlock/etcd-auth/password
{{- end }}
{{- end }}

{{- define "interlock.controlPlane.securityMounts" -}}
{{- if ne (include "interlock.grpcTlsMode" .) "off" }}
- name: grpc-tls
  mountPath: /etc/interlock/grpc-tls
  readOnly: true
{{- end }}
{{- if include "interlock.etcdTlsOn" . }}
- name: etcd-tls
  mountPath: /etc/interlock/etcd-tls
  readOnly: true
{{- end }}
{{- if .Values.etcd.auth.username }}
- name: etcd-auth
  mountPath: /etc/interlock/etcd-auth
  readOnly: true
{{- end }}
{{- end }}

{{- define "interlock.controlPlane.securityVolumes" -}}
{{- if ne (include "interlock.grpcTlsMode" .) "off" }}
- name: grpc-tls
  secret:
    secretName: {{ include "interlock.grpcTlsSecretName" . }}
    defaultMode: 0440
    items:
      - key: tls.crt
        path: tls.crt
      - key: tls.key
        path: tls.key
      {{- if .Values.grpcSecurity.tls.mutual }}
      - key: ca.crt
        path: ca.crt
      {{- end }}
{{- end }}
{{- if include "interlock.etcdTlsOn" . }}
{{- $t := .Values.etcd.tls }}
- name: etcd-tls
  secret:
    secretName: {{ $t.existingSecret }}
    defaultMode: 0440
    items:
      - key: {{ required "etcd.tls.caKey is required" $t.caKey }}
        path: ca.crt
      {{- if include "interlock.etcdClientCertOn" . }}
      - key: {{ $t.certKey }}
        path: tls.crt
      - key: {{ $t.keyKey }}
        path: tls.key
      {{- end }}
{{- end }}
{{- with .Values.etcd.auth }}
{{- if .username }}
- name: etcd-auth
  secret:
    secretName: {{ required "etcd.auth.existingSecret (the etcd user's password) is required when etcd.auth.username is set" .existingSecret }}
    defaultMode: 0440
    items:
      - key: {{ required "etcd.auth.passwordKey is required" .passwordKey }}
        path: password
{{- end }}
{{- end }}
{{- end }}

{{/* ---- data plane ---- */}}

{{- define "interlock.dataPlane.securityEnv" -}}
{{- if ne (include "interlock.grpcTlsMode" .) "off" }}
- name: INTERLOCK_CONTROL_PLANE_CA
  value: /etc/interlock/grpc-tls/ca.crt
{{- if .Values.grpcSecurity.tls.mutual }}
- name: INTERLOCK_CONTROL_PLANE_CERT
  value: /etc/interlock/grpc-client/tls.crt
- name: INTERLOCK_CONTROL_PLANE_KEY
  value: /etc/interlock/grpc-client/tls.key
{{- end }}
{{- end }}
{{- if include "interlock.nodeTokenOn" . }}
- name: INTERLOCK_NODE_TOKEN_FILE
  value: /etc/interlock/secrets/node-token
{{- end }}
{{- end }}

{{- define "interlock.dataPlane.securityMounts" -}}
{{- if ne (include "interlock.grpcTlsMode" .) "off" }}
- name: grpc-tls
  mountPath: /etc/interlock/grpc-tls
  readOnly: true
{{- if .Values.grpcSecurity.tls.mutual }}
- name: grpc-client
  mountPath: /etc/interlock/grpc-client
  readOnly: true
{{- end }}
{{- end }}
{{- end }}

{{- define "interlock.dataPlane.securityVolumes" -}}
{{- $mode := include "interlock.grpcTlsMode" . }}
{{- if ne $mode "off" }}
# Only the CA from the control plane's TLS Secret: data planes never get its private key.
- name: grpc-tls
  secret:
    secretName: {{ include "interlock.grpcTlsSecretName" . }}
    defaultMode: 0440
    items:
      - key: ca.crt
        path: ca.crt
{{- if .Values.grpcSecurity.tls.mutual }}
- name: grpc-client
  secret:
    {{- if eq $mode "generate" }}
    secretName: {{ include "interlock.grpcTlsSecretName" . }}
    defaultMode: 0440
    items:
      - key: client.crt
        path: tls.crt
      - key: client.key
        path: tls.key
    {{- else }}
    secretName: {{ required "grpcSecurity.tls.clientSecret (tls.crt/tls.key for data planes) is required for mutual TLS with mode=existingSecret" .Values.grpcSecurity.tls.clientSecret }}
    defaultMode: 0440
    items:
      - key: tls.crt
        path: tls.crt
      - key: tls.key
        path: tls.key
    {{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/* Item for the node token in the main secrets volume (both components). */}}
{{- define "interlock.nodeTokenItem" -}}
{{- if include "interlock.nodeTokenOn" . }}
- key: {{ .Values.grpcSecurity.nodeToken.key }}
  path: node-token
{{- end }}
{{- end }}
