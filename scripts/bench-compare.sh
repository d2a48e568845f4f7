#!/usr/bin/env bash
# Compares webhookd builds on issue 16's four webhookd-bench scenarios (BENCHMARKS.md), each
# build in turn for every scenario, ROUNDS rounds, so a noisy hour hurts every build alike;
# then prints each figure's median (min-max) per scenario and build.
#
#   scripts/bench-compare.sh OUTDIR ROUNDS [SCENARIO...] -- NAME=BINARY [NAME=BINARY...]
#   scripts/bench-compare.sh /tmp/cmp 3 steady full -- before=/tmp/webhookd-old after=target/release/webhookd
#
# Scenarios: steady (1,000 events/s), full (one endpoint, full speed, with the wrk ceiling),
# fan10k (1 event to 10,000 endpoints), fan100k (500 tenants x 200 endpoints); default all.
# Every run gets a fresh redis-server of its own on a free port, so its command counts are the
# run's alone and no run inherits another's keys. Needs redis-server, wrk (for full) and
# python3, and the release build of webhookd-bench (cargo build --release). Each run's JSON
# line is kept as OUTDIR/<scenario>.<name>.<round>.json.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bench=${BENCH:-$here/../target/release/webhookd-bench}
[ $# -ge 4 ] || { sed -n 5,7p "$0" >&2; exit 2; }
out=$1 rounds=$2
shift 2
scenarios=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do scenarios+=("$1"); shift; done
[ $# -gt 1 ] || { echo "no builds after --" >&2; exit 2; }
shift
[ ${#scenarios[@]} -gt 0 ] || scenarios=(steady full fan10k fan100k)
mkdir -p "$out"

args_of() {
  case $1 in
    steady) echo --scenario steady-1000 --events 10000 --rate 1000 --endpoints 1 ;;
    full) echo --scenario full-speed --events 100000 --endpoints 1 --wrk-ceiling 64 ;;
    fan10k) echo --scenario fanout-10k --events 1 --endpoints 10000 --timeout 60s ;;
    fan100k) echo --scenario fanout-100k --events 500 --tenants 500 --endpoints 100000 --timeout 120s ;;
    *) echo "unknown scenario $1" >&2; return 1 ;;
  esac
}
for s in "${scenarios[@]}"; do args_of "$s" > /dev/null; done

redis_pid=
stop_redis() {
  if [ -n "$redis_pid" ]; then kill "$redis_pid" 2>/dev/null || true; wait "$redis_pid" 2>/dev/null || true; fi
  redis_pid=
}
trap stop_redis EXIT

for round in $(seq 1 "$rounds"); do
  for s in "${scenarios[@]}"; do
    for build in "$@"; do
      name=${build%%=*} bin=${build#*=}
      port=$("$here/free-port")
      redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no > /dev/null &
      redis_pid=$!
      for _ in $(seq 1 100); do redis-cli -p "$port" ping > /dev/null 2>&1 && break; sleep 0.1; done
      file=$out/$s.$name.$round.json
      # shellcheck disable=SC2046 # the scenario's arguments are words
      if "$bench" --spawn "$bin" --redis-url "redis://127.0.0.1:$port" --redis-pid "$redis_pid" \
          $(args_of "$s") > "$file" 2> "${file%.json}.log"; then
        echo "round $round: $s $name done" >&2
      else
        echo "round $round: $s $name FAILED (see ${file%.json}.log)" >&2
      fi
      stop_redis
    done
  done
done

python3 "$here/bench-summary.py" "$out"
