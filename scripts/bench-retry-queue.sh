#!/usr/bin/env bash
# Retry-queue benchmark (BENCHMARKS.md): N deliveries wait in the retry queue; webhookd's RSS
# is sampled while they wait, then all are made due and the drain rate is timed.
# The jobs name an endpoint that does not exist, so this measures the queue's take-and-complete
# path (lease, dispatcher, complete), not HTTP delivery.
#   scripts/bench-retry-queue.sh [N]   (default 1000000; needs a release build and a local Redis)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-1000000}
redis=${WEBHOOKD_TEST_REDIS_URL:-redis://127.0.0.1:6379}
prefix="rqbench$(date +%s):"
due_later=$(( ($(date +%s) + 3600) * 1000 ))
python3 - "$prefix" "$n" "$due_later" <<'PY' | redis-cli -u "$redis" --pipe | tail -1
import json, sys
prefix, n, due = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
out = sys.stdout.buffer
def cmd(*args):
    out.write(b"*%d\r\n" % len(args))
    for a in args:
        a = str(a).encode()
        out.write(b"$%d\r\n%s\r\n" % (len(a), a))
body = json.dumps({"id": "evt_x", "service": "outbound", "type": "outbound.sent", "created_at": 1, "data": {}})
for i in range(n):
    jid = "bench:%d:ep_gone" % i
    job = json.dumps({"id": jid, "tenant": "t", "endpoint_id": "ep_gone", "event_id": "evt_%d" % i,
                      "event_type": "outbound.sent", "body": body, "attempts": 1,
                      "first_attempt_at": 1, "published_at": 1})
    cmd("HSET", prefix + "{retry}:jobs", jid, job)
    cmd("ZADD", prefix + "{retry}:due", due, jid)
PY
port=$(scripts/free-port)
cfg=$(mktemp)
printf 'redis: {url: "%s", key_prefix: "%s"}\nhttp: {listen: "127.0.0.1:%s"}\n' "$redis" "$prefix" "$port" > "$cfg"
target/release/webhookd serve --config "$cfg" > /dev/null 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; redis-cli -u "$redis" --scan --pattern "${prefix}*" | xargs -r redis-cli -u "$redis" del >/dev/null; rm -f "$cfg"' EXIT
sleep 2
for _ in 1 2 3 4 5; do echo "waiting: $(grep VmRSS /proc/$pid/status)"; sleep 2; done
redis-cli -u "$redis" zunionstore "${prefix}{retry}:due" 1 "${prefix}{retry}:due" WEIGHTS 0 >/dev/null
t0=$(date +%s.%N); peak=0
while :; do
  left=$(redis-cli -u "$redis" zcard "${prefix}{retry}:due")
  rss=$(awk '/VmRSS/{print $2}' /proc/$pid/status); [ "$rss" -gt "$peak" ] && peak=$rss
  [ "$left" -eq 0 ] && break
  sleep 0.2
done
t1=$(date +%s.%N)
python3 -c "print('drained %d in %.2f s = %.0f/s; peak RSS while draining %.1f MiB' % ($n, $t1-$t0, $n/($t1-$t0), $peak/1024))"
