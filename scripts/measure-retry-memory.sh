#!/usr/bin/env bash
# Redis memory of deliveries waiting for a retry (BENCHMARKS.md, "Redis memory per waiting
# retry"): N events for one endpoint that refuses connections, each scheduled for one retry an
# hour later, then MEMORY USAGE of the retry queue's keys. Uses a redis-server of its own.
# Usage: scripts/measure-retry-memory.sh [webhookd binary] [events]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/release/webhookd}
events=${2:-1000}
dir=$(mktemp -d)
port=$(scripts/free-port)
http=$(scripts/free-port)
redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$dir" >/dev/null &
rpid=$!
trap 'kill $wpid $rpid 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 1 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
cat >"$dir/config.yaml" <<YAML
redis:
  url: redis://127.0.0.1:$port
http:
  listen: 127.0.0.1:$http
delivery:
  allow_http: true
  allowed_cidrs: [127.0.0.0/8]
  breaker_failures: 0
retry:
  schedule: [1h]
signing:
  encryption_key: "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
endpoints:
  - {id: ep1, tenant: t, url: "http://127.0.0.1:9/", filters: ["*"], secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}
YAML
"$bin" serve --config "$dir/config.yaml" >"$dir/webhookd.log" 2>&1 &
wpid=$!
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$http/readyz" >/dev/null && break; sleep 0.1; done
python3 - "$events" >"$dir/xadd.txt" <<'PY'
import json, sys
for i in range(int(sys.argv[1])):
    env = json.dumps({"id": f"evt_{i:06d}_01J9ZQ4S8KABCDEFG", "type": "outbound.delivered",
                      "tenant": "t", "created_at": 1704825600,
                      "data": {"uid": f"msg-{i}", "to": "someone@example.com", "smtp": "250 2.0.0 OK"}},
                     separators=(",", ":"))
    print("XADD webhookd:events * event " + json.dumps(env))
PY
redis-cli -p "$port" <"$dir/xadd.txt" >/dev/null
for _ in $(seq 1 300); do
  [ "$(redis-cli -p "$port" zcard 'webhookd:{retry}:due')" = "$events" ] && break
  sleep 0.1
done
total=0
for key in jobs due bodies bodyrefs; do
  bytes=$(redis-cli -p "$port" memory usage "webhookd:{retry}:$key" samples 0)
  total=$((total + bytes))
  echo "{retry}:$key $bytes bytes"
done
echo "waiting deliveries: $(redis-cli -p "$port" zcard 'webhookd:{retry}:due') of $events; in all $total bytes, $((total / events)) per waiting delivery (one per event here)"
