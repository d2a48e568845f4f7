#!/usr/bin/env bash
# One command, a working demo: a local Redis, a demo receiver that verifies every signature,
# webhookd with the sample config.yaml, and sample events from the provider seeds.
#   scripts/demo.sh          run until Ctrl-C
#   scripts/demo.sh --check  exit 0 once the sample deliveries arrived verified (used by CI)
set -euo pipefail
cd "$(dirname "$0")/.."
check=${1:-}
. scripts/redis-for-tests.sh
export WEBHOOKD_REDIS__URL="$WEBHOOKD_TEST_REDIS_URL"
# A key prefix of its own, so the demo never mixes with anything else in that Redis.
export WEBHOOKD_REDIS__KEY_PREFIX="demo-$(date +%s)-$$:"
cargo build --quiet --bin webhookd --example demo_receiver
bin=target/debug
log=$(mktemp -d)
cleanup() {
  kill ${TAIL_PID:-} ${RECV_PID:-} ${WH_PID:-} 2>/dev/null || true
  wait ${TAIL_PID:-} ${RECV_PID:-} ${WH_PID:-} 2>/dev/null || true
}
trap 'cleanup; kill ${WEBHOOKD_OWN_REDIS_PID:-} 2>/dev/null || true' EXIT

# Ports the demo needs must be free, or a stray process would answer in its place.
for port in 8080 9000; do
  if (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; then
    echo "demo: port $port on 127.0.0.1 is already in use; stop what listens there and retry" >&2
    exit 1
  fi
done
"$bin/examples/demo_receiver" 127.0.0.1:9000 whsec_ZGVtby1zZWNyZXQtMjQtYnl0ZXMtbG9uZyEhIQ== > "$log/received.txt" &
RECV_PID=$!
tail -n +1 -f "$log/received.txt" &
TAIL_PID=$!
"$bin/webhookd" serve --config config.yaml > "$log/webhookd.log" 2>&1 &
WH_PID=$!
# Ready once /readyz answers 200; bash's /dev/tcp, so the demo needs no curl.
ready() {
  local status
  exec 3<>/dev/tcp/127.0.0.1/8080 || return 1
  printf 'GET /readyz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
  read -r _ status _ <&3 || true
  exec 3<&-
  [ "$status" = 200 ]
}
for _ in $(seq 1 100); do ready 2>/dev/null && break; sleep 0.1; done
if ! kill -0 "$WH_PID" 2>/dev/null || ! ready 2>/dev/null; then
  echo "demo: webhookd did not start:" >&2; cat "$log/webhookd.log" >&2; exit 1
fi
echo "webhookd is ready (logs: $log/webhookd.log); publishing sample events for tenant 'demo'…"

"$bin/webhookd" publish --config config.yaml --tenant demo --type outbound.delivered \
  --data '{"uid":"msg-1","to":"jane@example.com","response":"250 2.0.0 OK"}' >/dev/null
"$bin/webhookd" ingest --config config.yaml --provider cloudmailin --tenant demo tests/fixtures/providers/cloudmailin_batch.json
"$bin/webhookd" ingest --config config.yaml --provider sendpost --tenant demo tests/fixtures/providers/sendpost_events.json
expected=$((1 + 1 + 11))

if [ "$check" = "--check" ]; then
  for _ in $(seq 1 300); do
    [ "$(grep -c '^verified' "$log/received.txt" || true)" -ge "$expected" ] && break
    sleep 0.1
  done
  got=$(grep -c '^verified' "$log/received.txt" || true)
  bad=$(grep -c '^INVALID' "$log/received.txt" || true)
  echo "demo: $got verified deliveries (expected $expected), $bad with a bad signature"
  [ "$got" -ge "$expected" ] && [ "$bad" -eq 0 ]
  exit
fi
echo "Deliveries print above as they arrive. Publish more through the API:"
echo "  curl -XPOST http://127.0.0.1:8080/v1/events -H 'authorization: Bearer dev-admin-token-change-me' \\"
echo "    -d '{\"id\":\"evt_'\$(date +%s%N)'\",\"tenant\":\"demo\",\"type\":\"outbound.bounced\",\"created_at\":'\$(date +%s)',\"data\":{\"bounce_type\":\"hard\"}}'"
echo "or with the CLI, given this demo's Redis and key prefix:"
echo "  WEBHOOKD_REDIS__URL=$WEBHOOKD_REDIS__URL WEBHOOKD_REDIS__KEY_PREFIX=$WEBHOOKD_REDIS__KEY_PREFIX \\"
echo "    $bin/webhookd publish --config config.yaml --tenant demo --type outbound.bounced --data '{\"bounce_type\":\"hard\"}'"
echo "Ctrl-C stops everything."
wait $WH_PID
