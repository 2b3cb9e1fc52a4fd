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

{{/*
The Dask gateway's full name, as its chart computes it (dask-gateway.fullname): its
gateway.dask.org/instance label and the suffix of its objects' names. A release whose name
holds "dask-gateway" is that name alone.
*/}}
{{- define "enclave.daskGateway" -}}
{{- $values := index .Values "dask-gateway" -}}
{{- if $values.fullnameOverride -}}
{{- $values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := $values.nameOverride | default "dask-gateway" -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end }}

{{/* One of the dask-gateway chart's object names: {"root": $, "prefix": "traefik"}. */}}
{{- define "enclave.daskGatewayObject" -}}
{{- printf "%s-%s" .prefix (include "enclave.daskGateway" .root) | trunc 63 | trimSuffix "-" -}}
{{- end }}

{{/* An image of Enclave's, by digest where one is given: images.hub, images.notebook... */}}
{{- define "enclave.image" -}}
{{- if .digest -}}
{{ printf "%s:%s@%s" .name .tag .digest }}
{{- else -}}
{{ printf "%s:%s" .name .tag }}
{{- end -}}
{{- end }}

{{/* Where the audit service sees the witness's claim (storage.auditWitness). */}}
{{- define "enclave.witnessDir" -}}
/var/lib/enclave-witness
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

{{/* Whether sessions and Dask pods ask a resolver of the site's own ("true" or ""). */}}
{{- define "enclave.ownResolver" -}}
{{- if .Values.network.dns.podLabels -}}
{{- if not .Values.network.dns.nameservers -}}
{{- fail "network.dns.nameservers: name the resolver's Service address(es); sessions and Dask pods are told to ask them" -}}
{{- end -}}
true
{{- end -}}
{{- end }}

{{/* A NetworkPolicy egress rule to DNS servers: {"namespace": "kube-system", "labels": {...}}. */}}
{{- define "enclave.dnsEgress" -}}
- to:
    - namespaceSelector:
        matchLabels:
          kubernetes.io/metadata.name: {{ .namespace }}
      podSelector:
        matchLabels:
          {{- toYaml .labels | nindent 10 }}
  ports:
    - {port: 53, protocol: UDP}
    - {port: 53, protocol: TCP}
{{- end }}

{{/* A NetworkPolicy egress rule to the Kubernetes API server. */}}
{{- define "enclave.kubernetesApiEgress" -}}
{{- $api := .Values.network.kubernetesApi -}}
- to:
    {{- include "enclave.cidrPeers" (dict "cidrs" $api.cidrs "key" "network.kubernetesApi.cidrs") | nindent 4 }}
  ports:
    {{- range required "network.kubernetesApi.ports: the API server's ports" $api.ports }}
    - {port: {{ . }}, protocol: TCP}
    {{- end }}
{{- end }}

{{/* The namespace of every object of Enclave's own. */}}
{{- define "enclave.namespace" -}}
namespace: {{ .Release.Namespace }}
{{- end }}
