#!/usr/bin/env bash
# Isolation benchmark (SPEC section 5, issue 10 "A broken customer never slows anyone else"):
# each scenario is one `webhookd-bench` isolation run, which measures a healthy tenant's
# throughput alone and then beside a noisy tenant, and reports `ratio` = beside / alone.
#
#   scripts/bench-isolation.sh [ROUNDS]     (default 3; needs a local Redis)
#
# Healthy load: 2 endpoints × 2,000 events (4,000 deliveries) per phase. Noisy load: 2,000
# events for 128 endpoints (256,000 noisy deliveries), 200 events for 1,000 endpoints (200,000),
# so that whatever webhookd keeps in Redis for them stays in the low hundreds of MB at most.
#   control     1 noisy endpoint answering 500, 1 event: the ratio's spread with no noise at all
#   a-slow128   128 noisy endpoints, 200 after 14 s
#   b-hang128   128 that read the request and never answer
#   c-refuse128 128 on a port nothing listens on
#   d-error128  128 that answer 500 at once
#   e-slow1000  1,000 noisy endpoints, 200 after 14 s (200 events)
#   f-same128   128 slow (14 s) endpoints of the healthy tenant itself
# Rounds are interleaved (every scenario once, then again), and the table gives the median of
# the rounds with min–max. Each run's JSON line is kept under target/bench-isolation/<UTC time>/.
#
# Environment: BENCH_LOCK=/path wraps the build and every run in `flock` (a shared machine);
# HEALTHY_EVENTS (2000), TIMEOUT (180s: bounds each wait of a run, not the run), SCENARIOS (a
# space-separated subset of the names above).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
healthy_events=${HEALTHY_EVENTS:-2000}
timeout=${TIMEOUT:-180s}
scenarios=(${SCENARIOS:-control a-slow128 b-hang128 c-refuse128 d-error128 e-slow1000 f-same128})
lock=()
if [ -n "${BENCH_LOCK:-}" ]; then lock=(flock "$BENCH_LOCK"); fi

"${lock[@]}" cargo build --release --bins
B=target/release/webhookd-bench
W=target/release/webhookd
out=target/bench-isolation/$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$out"

noisy_args() {
  case $1 in
    control) echo --noisy-endpoints 1 --noisy-kind error --noisy-events 1 ;;
    a-slow128) echo --noisy-endpoints 128 --noisy-kind slow --noisy-delay 14s --noisy-events 2000 ;;
    b-hang128) echo --noisy-endpoints 128 --noisy-kind hang --noisy-events 2000 ;;
    c-refuse128) echo --noisy-endpoints 128 --noisy-kind refuse --noisy-events 2000 ;;
    d-error128) echo --noisy-endpoints 128 --noisy-kind error --noisy-events 2000 ;;
    e-slow1000) echo --noisy-endpoints 1000 --noisy-kind slow --noisy-delay 14s --noisy-events 200 ;;
    # In the same tenant the two loads are kept apart by type: the healthy endpoints take
    # `outbound.*` only, the noisy ones `bench.noisy` only.
    f-same128) echo --noisy-endpoints 128 --noisy-kind slow --noisy-delay 14s --noisy-events 2000 \
      --noisy-same-tenant --filters 'outbound.*' ;;
    *) echo "unknown scenario $1" >&2; return 1 ;;
  esac
}

for s in "${scenarios[@]}"; do noisy_args "$s" >/dev/null; done
for r in $(seq 1 "$rounds"); do
  for s in "${scenarios[@]}"; do
    echo "bench-isolation: round $r/$rounds, $s" >&2
    read -r -a extra <<<"$(noisy_args "$s")"
    if "${lock[@]}" "$B" --spawn "$W" --scenario "isolation-$s" \
        --events "$healthy_events" --endpoints 2 --timeout "$timeout" "${extra[@]}" \
        >"$out/line.tmp" 2>"$out/$s.stderr"; then
      cat "$out/line.tmp" >>"$out/$s.jsonl"
    else
      echo "bench-isolation: $s failed in round $r; see $out/$s.stderr" >&2
    fi
  done
done
rm -f "$out/line.tmp"

python3 - "$out" "${scenarios[@]}" <<'PY' | tee "$out/table.txt"
import json, os, statistics, sys
out, names = sys.argv[1], sys.argv[2:]

def med(xs, fmt="{:.0f}"):
    xs = [x for x in xs if x is not None]
    if not xs:
        return "n/a"
    m = statistics.median(xs)
    if len(xs) == 1:
        return fmt.format(m)
    return f"{fmt.format(m)} ({fmt.format(min(xs))}–{fmt.format(max(xs))})"

def get(d, *path):
    for p in path:
        if not isinstance(d, dict):
            return None
        d = d.get(p)
    return d

cols = [
    ("ratio", lambda d: d.get("ratio"), "{:.3f}"),
    ("alone/s", lambda d: get(d, "alone", "deliveries_per_s"), "{:.0f}"),
    ("beside/s", lambda d: get(d, "beside", "deliveries_per_s"), "{:.0f}"),
    ("beside p99 ms", lambda d: get(d, "beside", "latency_ms", "p99"), "{:.0f}"),
    ("missing", lambda d: get(d, "alone", "missing") + get(d, "beside", "missing"), "{:.0f}"),
    ("dup", lambda d: get(d, "alone", "duplicates") + get(d, "beside", "duplicates"), "{:.0f}"),
    ("noisy recv", lambda d: get(d, "beside", "noisy_received_at_end", "requests"), "{:.0f}"),
    ("noisy repeats", lambda d: get(d, "beside", "noisy_received_at_end", "repeats"), "{:.0f}"),
    ("noisy read s", lambda d: get(d, "noisy_phase", "read_s"), "{:.1f}"),
    ("deferred", lambda d: get(d, "webhookd_metrics", "after_beside", "deferred"), "{:.0f}"),
    ("redis/deliv beside", lambda d: get(d, "redis_calls_per_healthy_delivery", "beside"), "{:.2f}"),
    ("cpu s", lambda d: get(d, "webhookd", "cpu_s"), "{:.1f}"),
    ("rss MiB", lambda d: get(d, "webhookd", "rss_peak_mib"), "{:.1f}"),
]
rows = []
for n in names:
    path = os.path.join(out, n + ".jsonl")
    lines = [json.loads(l) for l in open(path)] if os.path.exists(path) else []
    cells = [n, str(len(lines)), str(sum(bool(l.get("timed_out")) for l in lines))]
    for _, f, fmt in cols:
        vals = []
        for l in lines:
            try:
                vals.append(f(l))
            except TypeError:
                vals.append(None)
        cells.append(med(vals, fmt))
    rows.append(cells)
head = ["scenario", "runs", "timed out"] + [c[0] for c in cols]
print("| " + " | ".join(head) + " |")
print("|" + "---|" * len(head))
for r in rows:
    print("| " + " | ".join(r) + " |")
print(f"\nJSON lines: {out}/<scenario>.jsonl")
PY
