#!/usr/bin/env bash
# One 500 x 200 fan-out (issue 16's fanout-100k) on a redis-server of its own, watching what
# Redis and webhookd spend outside the scenario's own figures (BENCHMARKS.md, issue 16's
# twenty-sixth slice): Redis's slowlog (commands over 1 ms, read every 0.5 s, by command), and
# webhookd's CPU and RSS each second, which show the registry's full reload once a minute when
# LINGER keeps the run going. Redis 7 logs the commands a script runs too (client ?:0), so a
# slow script's ZINCRBYs also appear on their own. On shared cores a slowlog duration includes
# time Redis was not scheduled.
#
#   scripts/probe-redis-stalls.sh WEBHOOKD_BINARY OUTDIR [LINGER]    (LINGER default 3s; 140s
#                                                                     spans two reloads)
# Needs redis-server, redis-cli, python3 and the release build of webhookd-bench.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bench=${BENCH:-$here/../target/release/webhookd-bench}
[ $# -ge 2 ] || { sed -n 7,8p "$0" >&2; exit 2; }
bin=$1 out=$2 linger=${3:-3s}
mkdir -p "$out"
port=$("$here/free-port")
redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no > /dev/null &
redis_pid=$!
trap 'kill $redis_pid 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do redis-cli -p "$port" ping > /dev/null 2>&1 && break; sleep 0.1; done
redis-cli -p "$port" config set slowlog-log-slower-than 1000 > /dev/null
redis-cli -p "$port" config set slowlog-max-len 100000 > /dev/null
"$bench" --spawn "$bin" --redis-url "redis://127.0.0.1:$port" --redis-pid "$redis_pid" \
  --scenario fanout-100k --events 500 --tenants 500 --endpoints 100000 --timeout 120s \
  --linger "$linger" > "$out/run.json" 2> "$out/run.log" &
bench_pid=$!
wh=
: > "$out/webhookd.cpu"
while kill -0 "$bench_pid" 2>/dev/null; do
  [ -n "$wh" ] || wh=$(pgrep -P "$bench_pid" | head -1 || true)
  if [ -n "$wh" ] && [ -r "/proc/$wh/stat" ]; then
    read -r -a f < "/proc/$wh/stat" || true
    echo "$(date +%s.%N) $(( f[13] + f[14] )) $(awk '/VmRSS/{print $2}' "/proc/$wh/status" 2>/dev/null)" >> "$out/webhookd.cpu"
  fi
  redis-cli -p "$port" slowlog get 100000 > "$out/slowlog.tmp" 2>/dev/null && mv "$out/slowlog.tmp" "$out/slowlog"
  sleep 0.5
done
wait "$bench_pid"
python3 - "$out" <<'PY'
import collections, json, sys
out = sys.argv[1]
# redis-cli prints each slowlog entry as: id, unix time, duration (µs), then its arguments,
# the client's address and name; entries are told apart by their three numbers in a row.
lines = open(f"{out}/slowlog").read().split("\n")
by = collections.defaultdict(list)
i = 0
while i < len(lines) - 4:
    if all(lines[i + k].isdigit() for k in range(3)) and not lines[i + 3].isdigit():
        name = lines[i + 3]
        if name == "EVAL" and "ZINCRBY" in lines[i + 4]:
            name = "EVAL (latency script)"
        by[name].append(int(lines[i + 2]))
        i += 4
    else:
        i += 1
run = json.load(open(f"{out}/run.json"))
print(f"elapsed {run['elapsed_s']} s, missing {run['missing']}, duplicates {run['duplicates']}")
for name, ds in sorted(by.items(), key=lambda kv: -max(kv[1])):
    ds.sort(reverse=True)
    print(f"  {name}: {len(ds)} over 1 ms, longest {[round(d / 1000, 1) for d in ds[:3]]} ms")
rows = [l.split() for l in open(f"{out}/webhookd.cpu") if len(l.split()) == 3]
for (t0, c0, _), (t1, c1, rss) in zip(rows, rows[1:]):
    if int(c1) - int(c0) >= 10:  # clock ticks (10 ms each): a second that spent 0.1 s or more
        print(f"  webhookd t={float(t1) - float(rows[0][0]):6.1f} s: +{(int(c1) - int(c0)) * 10} ms CPU, RSS {int(rss) // 1024} MiB")
PY
