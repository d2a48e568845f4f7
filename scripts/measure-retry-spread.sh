#!/usr/bin/env bash
# Where the retry load lands on a Redis Cluster (BENCHMARKS.md, "Retries on a cluster"): 64
# endpoints of 32 tenants that answer 500 to everything, 16 shards, the circuit breaker off and
# a retry every 2 s; for a window while every delivery is retrying, the Redis commands each
# primary ran and the retry jobs waiting on each. Uses the cluster in
# WEBHOOKD_TEST_CLUSTER_URLS, or starts one (scripts/redis-topologies.sh). With 0 events it
# measures what an idle replica costs Redis.
# Usage: scripts/measure-retry-spread.sh [webhookd binary] [events] [window seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/release/webhookd}
events=${2:-200}
window=${3:-20}
if [ -z "${WEBHOOKD_TEST_CLUSTER_URLS:-}" ]; then
  . scripts/redis-topologies.sh
fi
dir=$(mktemp -d)
http=$(scripts/free-port)
sink=$(scripts/free-port)
prefix="spread$RANDOM:"
python3 - "$sink" >/dev/null 2>&1 <<'PY' &
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class Fail(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(500)
        self.send_header("content-length", "0")
        self.end_headers()
    def log_message(self, *a):
        pass
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Fail).serve_forever()
PY
spid=$!
wpid=""
trap 'kill $wpid $spid 2>/dev/null; rm -rf "$dir"' EXIT
first=${WEBHOOKD_TEST_CLUSTER_URLS%%,*}
mapfile -t primaries < <(redis-cli -u "$first" cluster nodes | awk '$3 ~ /master/ {split($2, a, "@"); print a[1]}' | sort)
{
  printf 'redis:\n  mode: cluster\n  url: "%s"\n  key_prefix: "%s"\n' "$WEBHOOKD_TEST_CLUSTER_URLS" "$prefix"
  printf 'http:\n  listen: 127.0.0.1:%s\n' "$http"
  printf 'stream:\n  shards: 16\n'
  printf 'delivery:\n  allow_http: true\n  allowed_cidrs: [127.0.0.0/8]\n  breaker_failures: 0\n'
  printf 'retry:\n  schedule: [2s, 2s, 2s, 2s, 2s, 2s, 2s, 2s, 2s, 2s, 2s, 2s, 2s, 2s, 2s, 2s, 2s, 2s, 2s, 2s]\n  jitter: 0\n'
  printf 'signing:\n  encryption_key: "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="\n'
  printf 'endpoints:\n'
  for n in $(seq 0 63); do
    printf '  - {id: ep_%s, tenant: t%s, url: "http://127.0.0.1:%s/%s", filters: ["*"], secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}\n' \
      "$n" "$((n % 32))" "$sink" "$n"
  done
} >"$dir/config.yaml"
"$bin" serve --config "$dir/config.yaml" >"$dir/webhookd.log" 2>&1 &
wpid=$!
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$http/readyz" >/dev/null && break; sleep 0.1; done
# Events of tenant t<i % 32> on the shard SPEC 1 names: CRC-32 of the tenant mod 16.
python3 - "$events" "$prefix" >"$dir/xadd.txt" <<'PY'
import json, sys, zlib
n, prefix = int(sys.argv[1]), sys.argv[2]
for i in range(n):
    tenant = f"t{i % 32}"
    env = json.dumps({"id": f"evt_{i:06d}", "type": "outbound.delivered", "tenant": tenant,
                      "created_at": 1704825600, "data": {"uid": f"msg-{i}"}},
                     separators=(",", ":"))
    print(f"XADD {prefix}events:{{{zlib.crc32(tenant.encode()) % 16}}} * event " + json.dumps(env))
PY
redis-cli -c -u "$first" <"$dir/xadd.txt" >/dev/null
sleep 5
calls() { redis-cli -u "redis://$1" info commandstats | awk -F'[=,]' '/^cmdstat_/ {s += $2} END {print s + 0}'; }
jobs_on() {
  local total=0 key
  while read -r key; do
    [ -n "$key" ] && total=$((total + $(redis-cli -u "redis://$1" hlen "$key")))
  done < <(redis-cli -u "redis://$1" --scan --pattern "${prefix}*retry*:jobs")
  echo "$total"
}
declare -A before
for p in "${primaries[@]}"; do before[$p]=$(calls "$p"); done
sleep "$window"
all=0
declare -A ran
for p in "${primaries[@]}"; do ran[$p]=$(($(calls "$p") - before[$p])); all=$((all + ran[$p])); done
echo "events $events, deliveries $((events * 2)), window ${window}s, binary $bin: $all commands on the primaries, $((all / window)) per second"
for p in "${primaries[@]}"; do
  echo "primary $p: ${ran[$p]} commands ($((100 * ran[$p] / (all > 0 ? all : 1))) %), retry jobs waiting $(jobs_on "$p")"
done
grep -c '"attempt failed"' "$dir/webhookd.log" | sed 's/^/failed attempts logged: /'
