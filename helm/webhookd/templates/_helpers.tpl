{{/* ---------- names and labels ---------- */}}

{{- define "webhookd.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* <release>-<chart>, or just <release> when it already contains the chart name. */}}
{{- define "webhookd.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "webhookd.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "webhookd.selectorLabels" -}}
app.kubernetes.io/name: {{ include "webhookd.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "webhookd.labels" -}}
helm.sh/chart: {{ include "webhookd.chart" . }}
{{ include "webhookd.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: dispatcher
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "webhookd.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "webhookd.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* repository@digest when a digest is pinned, else repository:tag (tag defaults to appVersion). */}}
{{- define "webhookd.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* ---------- secrets ---------- */}}

{{/* The Secret holding credentials: the user's existingSecret, or the one this chart creates. */}}
{{- define "webhookd.secretName" -}}
{{- default (include "webhookd.fullname" .) .Values.existingSecret }}
{{- end }}

{{/* Key names inside that Secret: configurable for existingSecret, fixed for the chart's own. */}}
{{- define "webhookd.secretKeys" -}}
{{- if .Values.existingSecret }}
{{- toJson .Values.existingSecretKeys }}
{{- else }}
{{- $keys := dict "redisUrl" "redis-url" "adminTokens" "admin-tokens" "encryptionKey" "encryption-key" "previousEncryptionKeys" "previous-encryption-keys" "redisUsername" "" "redisPassword" "" }}
{{- $url := include "webhookd.redisUrlParts" . | fromJson }}
{{- if and .Values.keda.enabled $url.username }}{{ $_ := set $keys "redisUsername" "redis-username" }}{{ end }}
{{- if and .Values.keda.enabled $url.password }}{{ $_ := set $keys "redisPassword" "redis-password" }}{{ end }}
{{- toJson $keys }}
{{- end }}
{{- end }}

{{/*
Pieces of secrets.redisUrl that KEDA needs (it takes host:port and credentials, not a URL).
Credentials are taken as written in the URL (still percent-encoded if they were).
*/}}
{{- define "webhookd.redisUrlParts" -}}
{{- $u := urlParse .Values.secrets.redisUrl }}
{{- $address := $u.host }}
{{- if and $address (eq $u.host $u.hostname) }}{{ $address = printf "%s:6379" $u.host }}{{ end }}
{{- $user := "" }}{{ $pass := "" }}
{{- if $u.userinfo }}
{{- if contains ":" $u.userinfo }}
{{- $parts := splitn ":" 2 $u.userinfo }}{{ $user = $parts._0 }}{{ $pass = $parts._1 }}
{{- else }}
{{- $user = $u.userinfo }}
{{- end }}
{{- end }}
{{- $db := trimPrefix "/" $u.path | default "0" }}
{{- toJson (dict "address" $address "username" $user "password" $pass "db" $db "tls" (eq $u.scheme "rediss")) }}
{{- end }}

{{/*
Hash of the credential inputs, for the pod's checksum/secret annotation. It hashes values, not
the rendered Secret: generated keys are random on every render but stable in the cluster (lookup),
so hashing the Secret would roll the pods on every upgrade for nothing.
*/}}
{{- define "webhookd.secretChecksum" -}}
{{- toJson (dict "secrets" .Values.secrets "existingSecret" .Values.existingSecret "keys" .Values.existingSecretKeys) | sha256sum }}
{{- end }}

{{/* ---------- config ---------- */}}

{{/* The config file: values.config plus the keys the chart owns (listen addresses). */}}
{{- define "webhookd.configYaml" -}}
{{- $cfg := deepCopy .Values.config }}
{{- $http := get $cfg "http" | default dict }}
{{- $_ := set $http "listen" (printf "%s:%d" .Values.http.host (int .Values.http.port)) }}
{{- $metrics := "" }}
{{- if include "webhookd.metricsSeparate" . }}
{{- $metrics = printf "%s:%d" .Values.http.host (int .Values.metrics.port) }}
{{- end }}
{{- $_ := set $http "metrics_listen" $metrics }}
{{- $_ := set $cfg "http" $http }}
{{- toYaml $cfg }}
{{- end }}

{{/* Static endpoints carry signing secrets: then config.yaml lives in a Secret, not a ConfigMap. */}}
{{- define "webhookd.configInSecret" -}}
{{- if .Values.config.endpoints }}true{{ end }}
{{- end }}

{{- define "webhookd.configName" -}}
{{- printf "%s-config" (include "webhookd.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "webhookd.metricsSeparate" -}}
{{- if gt (int .Values.metrics.port) 0 }}true{{ end }}
{{- end }}

{{/* "20s" -> 20, "500ms" -> 1 (rounded up), "2m" -> 120. Single-unit durations, as webhookd takes them. */}}
{{- define "webhookd.durationSeconds" -}}
{{- $d := toString . }}
{{- if not (regexMatch "^[0-9]+(ms|s|m|h|d)$" $d) }}
{{- fail (printf "webhookd: cannot parse duration %q (use e.g. 500ms, 20s, 2m, 1h, 5d)" $d) }}
{{- end }}
{{- $n := regexFind "^[0-9]+" $d | int64 }}
{{- $unit := trimPrefix (regexFind "^[0-9]+" $d) $d }}
{{- $ms := mul $n (get (dict "ms" 1 "s" 1000 "m" 60000 "h" 3600000 "d" 86400000) $unit) }}
{{- div (add $ms 999) 1000 }}
{{- end }}

{{/* ---------- scaling ---------- */}}

{{/* The replica floor, whichever scaler owns the Deployment: decides whether a PDB makes sense. */}}
{{- define "webhookd.minReplicas" -}}
{{- if .Values.keda.enabled }}{{ .Values.keda.minReplicaCount }}
{{- else if .Values.autoscaling.enabled }}{{ .Values.autoscaling.minReplicas }}
{{- else }}{{ .Values.replicaCount }}
{{- end }}
{{- end }}

{{/* ---------- validation (included once, from the Deployment) ---------- */}}

{{- define "webhookd.validate" -}}
{{- $grace := include "webhookd.durationSeconds" .Values.config.shutdown_grace | int }}
{{- $needed := add $grace (int .Values.preStopSleepSeconds) }}
{{- if le (int .Values.terminationGracePeriodSeconds) $needed }}
{{- fail (printf "webhookd: terminationGracePeriodSeconds (%d) must be greater than config.shutdown_grace (%s = %d seconds) + preStopSleepSeconds (%d), or Kubernetes kills pods before webhookd has finished or re-queued in-flight deliveries; raise terminationGracePeriodSeconds to at least %d" (int .Values.terminationGracePeriodSeconds) .Values.config.shutdown_grace $grace (int .Values.preStopSleepSeconds) (add $needed 1)) }}
{{- end }}
{{- if eq (int .Values.metrics.port) (int .Values.http.port) }}
{{- fail (printf "webhookd: metrics.port (%d) must differ from http.port; use 0 to serve /metrics on the API port" (int .Values.metrics.port)) }}
{{- end }}
{{- if and (eq .Values.config.redis.mode "sentinel") (not .Values.config.redis.sentinel_master) }}
{{- fail "webhookd: config.redis.sentinel_master (the name the sentinels know the master by) is required with config.redis.mode=sentinel" }}
{{- end }}
{{- if and .Values.keda.enabled (ne .Values.keda.trigger "prometheus") .Values.existingSecret (not .Values.keda.redis.address) }}
{{- fail "webhookd: keda.redis.address (host:port) is required with existingSecret: the chart cannot read the Redis URL from a Secret it does not manage" }}
{{- end }}
{{- end }}

{{/*
The TCP ports webhookd reaches Redis on: networkPolicy.egress.redisPort, extraRedisPorts, and
every port secrets.redisUrl names (the sentinels' 26379, a cluster's or a TLS server's own
ports), one per line. A URL without a port means Redis's default, which redisPort covers.
*/}}
{{- define "webhookd.redisPorts" -}}
{{- $ports := list (int .Values.networkPolicy.egress.redisPort) }}
{{- range .Values.networkPolicy.egress.extraRedisPorts }}{{ $ports = append $ports (int .) }}{{ end }}
{{- range splitList "," (.Values.secrets.redisUrl | default "") }}
{{- $hostport := splitList "/" (splitList "://" (trim .) | last) | first }}
{{- $port := splitList "@" $hostport | last | splitList ":" | last }}
{{- if regexMatch "^[0-9]+$" $port }}{{ $ports = append $ports (int $port) }}{{ end }}
{{- end }}
{{- range uniq $ports }}
{{ . }}
{{- end }}
{{- end }}
