#!/usr/bin/env bash
# Checks the Helm chart offline with the shared helm-check tool (helm lint --strict, helm template,
# yamllint, strict Kubernetes schema validation), once per interesting combination of values, plus
# renders that must fail, and that README.md documents every value.
# Usage (from anywhere): bash .ci/helm.sh
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
shared=$(cd "$(dirname "$0")/../../shared" && pwd)   # shared/ sits beside the repo
check="$shared/tools/helm-check/helm-check"
chart=helm/webhookd
cd "$repo"

# KEDA's TriggerAuthentication is a CRD kind too: no schema here, yamllint only.
export HELM_CHECK_CRD_KINDS="ServiceMonitor PodMonitor PrometheusRule ScaledObject TriggerAuthentication"

pass=0
fail=0
last_count=""

# run NAME [--set k=v ...]: the render must pass every check.
run() {
  local name=$1 out
  shift
  echo "== helm-check: $name"
  if out=$("$check" "$chart" "$@" 2>&1); then
    echo "$out" | sed 's/^/   /'
    last_count=$(grep -o '[0-9]* objects rendered' <<<"$out" | cut -d' ' -f1 || true)
    pass=$((pass + 1))
  else
    echo "$out" | sed 's/^/   /'
    echo "   FAILED: $name"
    fail=$((fail + 1))
  fi
}

# run_fails NAME PATTERN [--set k=v ...]: the render must fail, with output matching PATTERN.
run_fails() {
  local name=$1 pattern=$2 out
  shift 2
  echo "== helm-check (must fail): $name"
  if out=$("$check" "$chart" "$@" 2>&1); then
    echo "   FAILED: rendered although it should not have"
    fail=$((fail + 1))
  elif grep -qE "$pattern" <<<"$out"; then
    echo "   refused as expected: $(grep -oE "$pattern.{0,80}" <<<"$out" | head -1)"
    pass=$((pass + 1))
  else
    echo "$out" | sed 's/^/   /'
    echo "   FAILED: refused, but without the expected message /$pattern/"
    fail=$((fail + 1))
  fi
}

# --set replaces whole lists, so each list element is one --set with comma-separated fields.
# A static endpoint (puts config.yaml in a Secret, since it holds a signing secret).
static_endpoint='config.endpoints[0].id=ops,config.endpoints[0].tenant=acct_ops,config.endpoints[0].url=https://hooks.example.com/webhookd,config.endpoints[0].filters[0]=outbound.*,config.endpoints[0].secret=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw'

# Options shared by the "everything on" runs.
all_on=(
  --set metrics.port=9090
  --set metrics.serviceMonitor.enabled=true
  --set metrics.serviceMonitor.labels.release=kube-prometheus-stack
  --set 'metrics.serviceMonitor.metricRelabelings[0].action=labeldrop,metrics.serviceMonitor.metricRelabelings[0].regex=pod_template_hash'
  --set metrics.prometheusRule.enabled=true
  --set metrics.prometheusRule.labels.release=kube-prometheus-stack
  --set 'metrics.prometheusRule.additionalRules[0].alert=WebhookdRetryQueueHigh,metrics.prometheusRule.additionalRules[0].expr=max(webhookd_retry_queue_depth) > 10000'
  --set networkPolicy.enabled=true
  --set 'networkPolicy.ingress.from[0].namespaceSelector.matchLabels.kubernetes\.io/metadata\.name=ingress-nginx'
  --set 'networkPolicy.ingress.metricsFrom[0].namespaceSelector.matchLabels.kubernetes\.io/metadata\.name=monitoring'
  --set 'networkPolicy.egress.dnsTo[0].namespaceSelector.matchLabels.kubernetes\.io/metadata\.name=kube-system'
  --set 'networkPolicy.egress.redisTo[0].podSelector.matchLabels.app\.kubernetes\.io/name=redis'
  --set 'networkPolicy.egress.extraRules[0].to[0].ipBlock.cidr=10.20.0.0/16,networkPolicy.egress.extraRules[0].ports[0].port=8443'
  --set preStopSleepSeconds=5
  --set terminationGracePeriodSeconds=40
  --set config.shutdown_grace=30s
  --set config.telemetry.otlp_endpoint=http://otel-collector.observability:4318
  --set config.delivery.allow_http=true
  --set 'config.delivery.allowed_cidrs[0]=10.20.0.0/16'
  --set 'config.event_types[0].type=outbound.custom,config.event_types[0].description=A custom event'
  --set image.digest=sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
  --set 'imagePullSecrets[0].name=regcred'
  --set logLevel=debug
  --set 'extraEnv[0].name=TZ,extraEnv[0].value=UTC'
  --set 'extraVolumes[0].name=ca,extraVolumes[0].configMap.name=corp-ca'
  --set 'extraVolumeMounts[0].name=ca,extraVolumeMounts[0].mountPath=/etc/ssl/corp'
  --set podAnnotations.team=mail --set podLabels.tier=backend
  --set service.annotations.owner=mail
  --set serviceAccount.annotations.owner=mail
  --set priorityClassName=high
  --set nodeSelector.pool=general
  --set 'tolerations[0].key=dedicated,tolerations[0].operator=Exists'
  --set 'affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].weight=1,affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].preference.matchExpressions[0].key=spot,affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].preference.matchExpressions[0].operator=DoesNotExist'
)

run "default values"

# KEDA on (HPA off), credentials from an existing Secret, static endpoints (config in a Secret).
run "everything on, KEDA scaling, existingSecret" "${all_on[@]}" \
  --set keda.enabled=true \
  --set keda.redis.address=redis-master.data.svc:6379 \
  --set keda.redis.databaseIndex=1 \
  --set existingSecret=webhookd-credentials \
  --set existingSecretKeys.redisPassword=redis-password \
  --set "$static_endpoint"
keda_count=$last_count

# HPA on, chart-managed Secret from explicit values, TLS Redis with credentials.
run "everything on, HPA scaling, chart-managed Secret" "${all_on[@]}" \
  --set autoscaling.enabled=true \
  --set autoscaling.minReplicas=3 \
  --set autoscaling.behavior.scaleDown.stabilizationWindowSeconds=600 \
  --set secrets.redisUrl=rediss://webhookd:s3cret@redis.data.svc:6380/2 \
  --set 'secrets.adminTokens={admin-token-0123456789,admin-token-abcdefghij}' \
  --set secrets.encryptionKey=MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY= \
  --set 'secrets.previousEncryptionKeys={ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=}' \
  --set secrets.keepOnUninstall=false \
  --set topologySpread.whenUnsatisfiable=DoNotSchedule \
  --set podDisruptionBudget.minAvailable=50%

# KEDA must replace the HPA, not join it: same objects as with KEDA alone.
run "KEDA and HPA both enabled (HPA must be skipped)" "${all_on[@]}" \
  --set keda.enabled=true --set autoscaling.enabled=true \
  --set keda.redis.address=redis-master.data.svc:6379 \
  --set keda.redis.databaseIndex=1 \
  --set existingSecret=webhookd-credentials \
  --set existingSecretKeys.redisPassword=redis-password \
  --set "$static_endpoint"
if [ -n "$keda_count" ] && [ "$last_count" != "$keda_count" ]; then
  echo "   FAILED: $last_count objects with KEDA+HPA, $keda_count with KEDA alone (HPA rendered?)"
  fail=$((fail + 1))
fi

# KEDA on webhookd_stream_lag from Prometheus (Sentinel mode: KEDA cannot follow the master).
run "KEDA on the lag gauge through Prometheus, Sentinel mode" \
  --set keda.enabled=true --set keda.trigger=prometheus \
  --set keda.prometheus.serverAddress=http://prometheus.monitoring.svc:9090 \
  --set existingSecret=webhookd-credentials \
  --set config.redis.mode=sentinel --set config.redis.sentinel_master=mymaster

# Redis Cluster with sixteen input stream shards: KEDA scales on the lag of all of them, through
# Prometheus.
run "Redis Cluster, 16 shards, KEDA on the lag gauge" \
  --set config.redis.mode=cluster \
  --set 'secrets.redisUrl=redis://n1.redis.svc:6379\,redis://n2.redis.svc:6379' \
  --set config.stream.shards=16 --set config.stream.dedup_window=6h \
  --set keda.enabled=true --set keda.trigger=prometheus \
  --set keda.prometheus.serverAddress=http://prometheus.monitoring.svc:9090

# One replica: no PDB (minAvailable 1 would block node drains), everything else minimal.
run "single replica, no topology spread" \
  --set replicaCount=1 --set topologySpread.enabled=false --set serviceAccount.create=false

run_fails "terminationGracePeriodSeconds <= shutdown_grace" "must be greater than config.shutdown_grace" \
  --set terminationGracePeriodSeconds=20
run_fails "shutdown_grace 2m with the default 30 s grace period" "must be greater than config.shutdown_grace" \
  --set config.shutdown_grace=2m
run_fails "misspelled value (schema)" "additional properties 'replicaCont' not allowed" \
  --set replicaCont=3
run_fails "secret placed in config (must not reach the ConfigMap)" "additional properties 'url' not allowed" \
  --set config.redis.url=redis://user:pw@redis:6379
run_fails "malformed encryption key" "encryptionKey" \
  --set secrets.encryptionKey=too-short
run_fails "malformed previous encryption key" "previousEncryptionKeys" \
  --set 'secrets.previousEncryptionKeys={too-short}'
run_fails "KEDA with existingSecret but no address" "keda.redis.address .host:port. is required" \
  --set keda.enabled=true --set existingSecret=creds
run_fails "KEDA on Prometheus without its address" "keda.prometheus.serverAddress is required" \
  --set keda.enabled=true --set keda.trigger=prometheus
run_fails "16 shards with a redis-streams trigger (it would read one shard)" "set keda.trigger=prometheus" \
  --set config.stream.shards=16 --set keda.enabled=true
run_fails "Sentinel mode with a redis-streams trigger and no master address" "needs keda.redis.address" \
  --set config.redis.mode=sentinel --set config.redis.sentinel_master=mymaster --set keda.enabled=true
run_fails "Sentinel mode without the master's name" "sentinel_master .* is required with config.redis.mode=sentinel" \
  --set config.redis.mode=sentinel
# With a NetworkPolicy, the sentinels' ports in secrets.redisUrl are let through beside redisPort.
run "Sentinel mode with a NetworkPolicy" \
  --set networkPolicy.enabled=true --set config.redis.mode=sentinel \
  --set config.redis.sentinel_master=mymaster \
  --set 'secrets.redisUrl=redis://s1.redis.svc:26379\,redis://s2.redis.svc:26380' \
  --set 'networkPolicy.egress.extraRedisPorts={7000}'
run_fails "Redis Cluster with a redis-streams trigger" "in cluster mode set keda.trigger=prometheus" \
  --set config.redis.mode=cluster --set config.stream.shards=16 --set keda.enabled=true \
  --set keda.redis.address=n1.redis.svc:6379
run_fails "more shards than webhookd accepts (schema)" "shards" \
  --set config.stream.shards=300
run_fails "an OTLP endpoint that is not an http(s) URL (schema)" "otlp_endpoint" \
  --set config.telemetry.otlp_endpoint=otel-collector:4317

# Chart files themselves, with the rules helm-check applies to Chart.yaml/values.yaml.
venv=${HELM_CHECK_VENV:-$HOME/.cache/helm-check-venv}
echo "== yamllint: Chart.yaml, values.yaml"
if "$venv/bin/yamllint" -d '{extends: default, rules: {document-start: disable, line-length: {max: 120}}}' \
  "$chart/Chart.yaml" "$chart/values.yaml"; then
  echo "   ok"
  pass=$((pass + 1))
else
  echo "   FAILED: yamllint"
  fail=$((fail + 1))
fi

# Every value in values.yaml has a row in README.md's table (a documented parent covers its children).
echo "== README.md documents every value"
if "$venv/bin/python" - "$chart" <<'EOF'
import re, sys, yaml
chart = sys.argv[1]
values = yaml.safe_load(open(f"{chart}/values.yaml"))
documented = set(re.findall(r"^\| `([^`]+)` \|", open(f"{chart}/README.md").read(), re.M))
def leaves(d, prefix=""):
    for k, v in d.items():
        key = prefix + k
        if isinstance(v, dict) and v and key not in documented:
            yield from leaves(v, key + ".")
        else:
            yield key
missing = [k for k in leaves(values) if k not in documented]
for k in missing:
    print(f"   undocumented value: {k}")
print(f"   {len(documented)} documented keys, {len(missing)} missing")
sys.exit(1 if missing else 0)
EOF
then
  pass=$((pass + 1))
else
  echo "   FAILED: README.md is missing values"
  fail=$((fail + 1))
fi

echo "helm: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
