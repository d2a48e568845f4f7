#!/usr/bin/env bash
# Counts the instructions Redis spends on the duplicate check (BENCHMARKS.md, issue 16's
# nineteenth slice): redis-server under callgrind, driven by scripts/dedup-load.py with EVENTS
# new ids, 48 per check, as webhookd's consumer checks a backlog: with plain commands
# (MODE=plain, the default) or every batch by the script (MODE=script, as builds before issue
# 16's twenty-third slice did). Prints the run's total and the script calls' share
# (evalShaCommand, inclusive); keeps the counts in OUT.
#
#   scripts/callgrind-dedup.sh fresh  EVENTS [PER]        a Redis of its own, nothing in it:
#                                                         the segments grow as in a new deployment
#   scripts/callgrind-dedup.sh steady EVENTS [PER [N]]    first four full older segments (N
#                                                         hashes of PER ids each, default 4096),
#                                                         started 24 h, 18 h, 12 h and 6 h ago:
#                                                         every new id is checked against four,
#                                                         as in a deployment at a steady rate
# PER: fields per hash (webhookd's PER_HASH, 64). OUT (default /tmp/callgrind-dedup.out).
# Needs redis-server, python3 and valgrind.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
mode=${1:?fresh or steady} events=${2:?events}
per=${3:-64} n=${4:-4096}
out=${OUT:-/tmp/callgrind-dedup.out}
dir=$(mktemp -d)
pid=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT
port=$("$here/free-port")
redis=(redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$dir" --dbfilename dump.rdb)
up() {
  for _ in $(seq 1 600); do
    [ "$(redis-cli -p "$port" ping 2>/dev/null)" = PONG ] && return 0
    sleep 0.1
  done
  echo "redis-server did not start" >&2
  exit 1
}

if [ "$mode" = steady ]; then
  # Made on a plain redis-server and loaded from its RDB file under callgrind: making them
  # there would count a million writes.
  "${redis[@]}" > /dev/null & pid=$!
  up
  now=$(( $(date +%s) * 1000 )) hour=3600000
  for start in $(( now - 24 * hour + 600000 )) $(( now - 18 * hour )) $(( now - 12 * hour )) $(( now - 6 * hour - 60000 )); do
    redis-cli -p "$port" eval "
      local base, n, per, start = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
      for b = 0, n - 1 do
        local args = {}
        for k = 1, per do
          local h = redis.sha1hex(start .. ':' .. b .. ':' .. k)
          local fp = string.char(math.floor(b / 16777216) % 256, math.floor(b / 65536) % 256,
            math.floor(b / 256) % 256, b % 256)
          for j = 1, 12 do fp = fp .. string.char(tonumber(string.sub(h, 2 * j - 1, 2 * j), 16)) end
          args[#args + 1] = fp
          args[#args + 1] = tostring(tonumber(string.sub(h, 30, 35), 16))
        end
        local key = base .. start .. ':' .. b
        redis.call('HSET', key, unpack(args))
        redis.call('PEXPIREAT', key, tonumber(start) + 30 * 3600000)
      end
      redis.call('HSET', KEYS[1], start, start .. ' ' .. (n * per) .. ' ' .. n)
    " 1 'd:{dedup}:v3:segments' 'd:{dedup}:v3:' "$n" "$per" "$start" > /dev/null
  done
  redis-cli -p "$port" save > /dev/null
  redis-cli -p "$port" shutdown nosave > /dev/null 2>&1 || true
  wait "$pid" || true
  pid=
elif [ "$mode" != fresh ]; then
  echo "mode: fresh or steady" >&2
  exit 2
fi

valgrind --tool=callgrind --quiet --callgrind-out-file="$out" "${redis[@]}" > /dev/null 2>&1 & pid=$!
up
python3 "$here/dedup-load.py" "$port" "$events" "$per" 48 "${MODE:-plain}"
wait "$pid" || true
pid=
counts=$(callgrind_annotate --inclusive=yes "$out" 2>/dev/null)
grep -m1 "PROGRAM TOTALS" <<< "$counts"
grep -m1 "evalShaCommand" <<< "$counts" || true
