#!/usr/bin/env python3
"""Medians (min-max) of the webhookd-bench runs scripts/bench-compare.sh kept in a directory
(<scenario>.<build>.<round>.json, one JSON line each), per scenario and build."""

import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

# (label, path in the bench's JSON line)
FIGURES = [
    ("webhookd CPU us per delivery", "webhookd.cpu_us_per_delivery"),
    ("settled: webhookd CPU us per delivery", "settled.webhookd_cpu_us_per_delivery"),
    ("deliveries per s", "deliveries_per_s"),
    ("share of the wrk ceiling", "ceiling.share"),
    ("wrk ceiling req/s", "ceiling.wrk_rps"),
    ("elapsed s", "elapsed_s"),
    ("latency p50 ms", "latency_ms.p50"),
    ("latency p99 ms", "latency_ms.p99"),
    ("voluntary switches per delivery", "webhookd.context_switches_per_delivery.voluntary"),
    ("peak RSS MiB", "webhookd.rss_peak_mib"),
    ("Redis CPU s", "redis_cpu_s"),
    ("bench CPU s", "bench_cpu_s"),
    ("settled: Redis commands per delivery", "settled.redis_calls_per_delivery"),
    ("missing", "missing"),
    ("duplicates", "duplicates"),
]


def get(line, path):
    for key in path.split("."):
        if not isinstance(line, dict):
            return None
        line = line.get(key)
    return line if isinstance(line, (int, float)) else None


def main(directory):
    runs = defaultdict(list)
    for f in sorted(Path(directory).glob("*.json")):
        scenario, build, _round = f.name[: -len(".json")].rsplit(".", 2)
        text = f.read_text().strip()
        if not text:
            print(f"{f.name}: no result (see its .log)")
            continue
        runs[(scenario, build)].append(json.loads(text.splitlines()[-1]))
    for (scenario, build), lines in sorted(runs.items()):
        print(f"== {scenario} {build} ({len(lines)} runs)")
        for label, path in FIGURES:
            values = [v for v in (get(line, path) for line in lines) if v is not None]
            if values:
                med = statistics.median(values)
                print(f"  {label:40} {med:>12.4g}  ({min(values):.4g}-{max(values):.4g})")
        calls = lines[0].get("redis_calls_per_event") or {}
        if calls:
            shown = ", ".join(f"{k} {v}" for k, v in sorted(calls.items()))
            print(f"  Redis commands per event (first run)     {shown}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
