{{/* Labels of every object of Enclave's own. */}}
{{- define "enclave.labels" -}}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: enclave
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
{{ include "enclave.selectorLabels" . }}
{{- end }}

{{/* What selects one component's pods: {"root": $, "component": "audit"}. */}}
{{- define "enclave.selectorLabels" -}}
app.kubernetes.io/name: enclave
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Pods of Enclave run as no root, in the runtime's default seccomp profile. */}}
{{- define "enclave.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.services.uid }}
runAsGroup: {{ .Values.services.uid }}
fsGroup: {{ .Values.services.uid }}
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Containers gain nothing and cannot write their image. */}}
{{- define "enclave.containerSecurityContext" -}}
runAsNonRoot: true
allowPrivilegeEscalation: false
privileged: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
{{- end }}

{{/* The Dask gateway's name, as its chart names it (gateway.dask.org/instance). */}}
{{- define "enclave.daskGateway" -}}
{{ printf "%s-dask-gateway" .Release.Name }}
{{- end }}

{{/* The database URL of the registry (the password comes from PGPASSWORD). */}}
{{- define "enclave.databaseURL" -}}
{{- $db := .Values.database -}}
{{ printf "postgresql+psycopg://%s@%s:%d/%s" $db.user (required "database.host: the PostgreSQL server's host name" $db.host) (int $db.port) $db.name }}
{{- end }}

{{/*
A CIDR that may be allowed as a destination: never the whole internet, nor a range so wide
that it nearly is (an allow-list names hosts and narrow ranges).
*/}}
{{- define "enclave.checkCIDR" -}}
{{- $parts := splitList "/" .cidr -}}
{{- if ne (len $parts) 2 -}}
{{- fail (printf "%s: '%s' is not a CIDR (address/prefix)" .key .cidr) -}}
{{- end -}}
{{- $prefix := atoi (last $parts) -}}
{{- $limit := ternary 16 48 (not (contains ":" .cidr)) -}}
{{- if lt $prefix $limit -}}
{{- fail (printf "%s: '%s' is wider than /%d; an allow-list names hosts and narrow ranges, never the internet" .key .cidr $limit) -}}
{{- end -}}
{{- end }}

{{/*
NetworkPolicy peers for a list of CIDRs, each checked: {"cidrs": [...], "key": "network.x"}.
An empty list is refused: a rule with no peers would allow every destination.
*/}}
{{- define "enclave.cidrPeers" -}}
{{- if not .cidrs -}}
{{- fail (printf "%s: name at least one address (CIDR); none would mean anywhere" .key) -}}
{{- end -}}
{{- range .cidrs }}
{{- include "enclave.checkCIDR" (dict "cidr" . "key" $.key) }}
- ipBlock:
    cidr: {{ . }}
{{- end }}
{{- end }}

{{/* The allow-listed DNS resolver, as a NetworkPolicy egress rule. */}}
{{- define "enclave.dnsEgress" -}}
- to:
    - namespaceSelector:
        matchLabels:
          kubernetes.io/metadata.name: {{ .Values.network.dns.namespace }}
      podSelector:
        matchLabels:
          {{- toYaml (.Values.network.dns.podLabels | default (dict "k8s-app" "kube-dns")) | nindent 10 }}
  ports:
    - {port: 53, protocol: UDP}
    - {port: 53, protocol: TCP}
{{- end }}
