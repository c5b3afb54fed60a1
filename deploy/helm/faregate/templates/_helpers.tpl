{{/* Names: the release's fullname, trimmed to the 63 characters a label value allows. */}}
{{- define "faregate.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "faregate.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: faregate
{{- end -}}

{{/* Selector labels of one component ("ingress", "billing", "worker-openai"). Call with (list $ "ingress"). */}}
{{- define "faregate.selector" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ $root.Chart.Name }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "faregate.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{- define "faregate.configMapName" -}}
{{- printf "%s-routing" (include "faregate.fullname" .) -}}
{{- end -}}

{{/* The routing file's JSON: values.routing when set, else the file shipped with the chart. */}}
{{- define "faregate.routing" -}}
{{- if .Values.routing -}}
{{- toPrettyJson .Values.routing -}}
{{- else -}}
{{- .Files.Get "files/faregate.config.json" -}}
{{- end -}}
{{- end -}}

{{/* Environment every Faregate container gets: Redis from the Secret, prefix, routing file, plain settings. */}}
{{- define "faregate.commonEnv" -}}
- name: REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.secrets.core.name }}
      key: {{ .Values.secrets.core.redisUrlKey }}
- name: REDIS_PREFIX
  value: {{ .Values.redisPrefix | quote }}
{{- with .Values.redisClusterNodes }}
- name: REDIS_CLUSTER_NODES
  value: {{ . | quote }}
{{- end }}
- name: FAREGATE_CONFIG
  value: /etc/faregate/faregate.config.json
{{- range $k, $v := .Values.env }}
- name: {{ $k }}
  value: {{ $v | toString | quote }}
{{- end }}
{{- end -}}

{{- define "faregate.databaseEnv" -}}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.secrets.core.name }}
      key: {{ .Values.secrets.core.databaseUrlKey }}
{{- end -}}

{{/* Plain settings of one component (a map): refuses names that look like secrets. Call with (list $ map). */}}
{{- define "faregate.extraEnv" -}}
{{- range $k, $v := index . 1 }}
{{- if regexMatch "(?i)(_API_KEY|TOKEN|PASSWORD|SECRET|DATABASE_URL|REDIS_URL)$" $k }}
{{- fail (printf "%s is a secret: put it in a Secret (secrets.* in values), not in env" $k) }}
{{- end }}
- name: {{ $k }}
  value: {{ $v | toString | quote }}
{{- end }}
{{- end -}}

{{- define "faregate.volumes" -}}
- name: routing
  configMap:
    name: {{ include "faregate.configMapName" . }}
- name: tmp
  emptyDir: {}
{{- end -}}

{{- define "faregate.volumeMounts" -}}
- name: routing
  mountPath: /etc/faregate
  readOnly: true
- name: tmp
  mountPath: /tmp
{{- end -}}

{{/* preStop: sleep until the endpoint is gone everywhere, then SIGTERM starts the drain. */}}
{{- define "faregate.lifecycle" -}}
preStop:
  exec:
    command: ["sleep", {{ .Values.preStopSleepSeconds | toString | quote }}]
{{- end -}}

{{/* Fails unless grace >= preStop sleep + drain. Call with (list $ name grace drainSeconds). */}}
{{- define "faregate.checkGrace" -}}
{{- $root := index . 0 -}}
{{- $need := add $root.Values.preStopSleepSeconds (index . 3) -}}
{{- if lt (int (index . 2)) (int $need) -}}
{{- fail (printf "%s: terminationGracePeriodSeconds %v is shorter than preStop (%vs) + drain (%vs)" (index . 1) (index . 2) $root.Values.preStopSleepSeconds (index . 3)) -}}
{{- end -}}
{{- end -}}

{{/* Comma-separated pool ids (EXPECTED_POOLS); fails on a bad or repeated id. */}}
{{- define "faregate.poolIds" -}}
{{- $ids := list -}}
{{- range .Values.pools -}}
{{- if not (regexMatch "^[a-z0-9-]+$" (toString .id)) -}}
{{- fail (printf "pools: id %q must be a pool name like \"openai\" (a-z, 0-9, -)" (toString .id)) -}}
{{- end -}}
{{- if has .id $ids -}}
{{- fail (printf "pools: id %q appears twice" .id) -}}
{{- end -}}
{{- $ids = append $ids .id -}}
{{- end -}}
{{- join "," $ids -}}
{{- end -}}
{{/*
The pools the ingress hosts (ingress.hostPools: `all` or a list of pool ids), as JSON:
[{"id": …, "secret": …}]. Refuses an id that is not a pool, and a hosted pool with `env` of its own
(the ingress runs every pool it hosts with the chart-wide env: a pool's own WORKER_RPM would hold
for its workers and not for the ingress).
*/}}
{{- define "faregate.hostedPools" -}}
{{- $want := .Values.ingress.hostPools | default list -}}
{{- $all := eq (toString $want) "all" -}}
{{- if and (not $all) (not (kindIs "slice" $want)) -}}
{{- fail (printf "ingress.hostPools must be \"all\" or a list of pool ids, got %v" $want) -}}
{{- end -}}
{{- $ids := splitList "," (include "faregate.poolIds" .) -}}
{{- if not $all -}}
{{- range $want -}}
{{- if not (has (toString .) $ids) -}}
{{- fail (printf "ingress.hostPools: %q is not a pool (pools: %s)" (toString .) (join ", " $ids)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $out := list -}}
{{- range .Values.pools -}}
{{- if or $all (has .id $want) -}}
{{- if .env -}}
{{- fail (printf "ingress.hostPools: pool %q sets env of its own, which the ingress hosting it would not apply: put it in the chart-wide env (under the provider's name, e.g. OPENAI_RPM), or do not host the pool" .id) -}}
{{- end -}}
{{- $out = append $out (dict "id" .id "secret" (.secretName | default $.Values.secrets.providerKeys)) -}}
{{- end -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}

