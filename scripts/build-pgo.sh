#!/usr/bin/env bash
# Builds webhookd's release binary with profile-guided optimization (PGO) and copies it to
# OUT (default: target/pgo/webhookd). The container image is built this way (Dockerfile).
#
#   scripts/build-pgo.sh [OUT]
#
# Three steps: an instrumented build; a training run of the instrumented binary through
# webhookd-bench's scenarios (a steady stream, one endpoint at full speed, fan-outs, and a
# tenant whose endpoints answer 500, for retries, parking and the breaker) against a
# throwaway redis-server of its own; and the final build with the profile it wrote. The
# profile tells LLVM which code is hot, so it lays that code out together: steady-rate CPU
# per event about a fifth lower than the plain release build (BENCHMARKS.md, issue 16's
# eighteenth slice). Needs redis-server and redis-cli, and rustup's llvm-tools component
# (added here when missing). Both builds keep their own target dirs under target/, so a
# plain `cargo build --release` is not rebuilt by this one.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-target/pgo/webhookd}
target=${CARGO_TARGET_DIR:-target}
work=$(mktemp -d)
redis_pid=
cleanup() {
  [ -z "$redis_pid" ] || kill "$redis_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

sysroot=$(rustc --print sysroot)
host=$(rustc -vV | sed -n 's/^host: //p')
profdata=$sysroot/lib/rustlib/$host/bin/llvm-profdata
if [ ! -x "$profdata" ]; then
  rustup component add llvm-tools
fi
command -v redis-server >/dev/null && command -v redis-cli >/dev/null || {
  echo "build-pgo: needs redis-server and redis-cli (apt-get install -y redis-server)" >&2
  exit 1
}

echo "build-pgo: 1/3 instrumented build" >&2
cargo build --release --locked --bin webhookd-bench
# The build scripts of this build write their profiles under its target dir (an absolute
# path: they run in their crates' directories); the training's go where LLVM_PROFILE_FILE
# says (below). A fixed path keeps this build incremental.
mkdir -p "$target/pgo-generate"
profiles=$(cd "$target/pgo-generate" && pwd)/profiles
RUSTFLAGS="${RUSTFLAGS:-} -Cprofile-generate=$profiles" \
  cargo build --release --locked --bin webhookd --target-dir "$target/pgo-generate"
export LLVM_PROFILE_FILE="$work/raw/webhookd-%p-%m.profraw"

echo "build-pgo: 2/3 training" >&2
for _ in $(seq 1 20); do
  port=$((20000 + RANDOM % 30000))
  redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no > "$work/redis.log" 2>&1 &
  redis_pid=$!
  for _ in $(seq 1 50); do
    redis-cli -p "$port" ping 2>/dev/null | grep -q PONG && break 2
    kill -0 "$redis_pid" 2>/dev/null || break
    sleep 0.1
  done
  kill "$redis_pid" 2>/dev/null || true
  redis_pid=
done
[ -n "$redis_pid" ] || { echo "build-pgo: could not start redis-server" >&2; exit 1; }
bench=$target/release/webhookd-bench
instrumented=$target/pgo-generate/release/webhookd
train() {
  echo "build-pgo:   $*" >&2
  "$bench" --spawn "$instrumented" --redis-url "redis://127.0.0.1:$port" --redis-pid "$redis_pid" \
    "$@" > "$work/run.json" 2> "$work/run.log" || {
    cat "$work/run.log" >&2
    exit 1
  }
  grep -q '"missing":0,' "$work/run.json" || {
    echo "build-pgo: a training run lost deliveries: $(cat "$work/run.json")" >&2
    exit 1
  }
}
train --scenario steady --events 5000 --rate 1000 --endpoints 1
train --scenario full-speed --events 50000 --endpoints 1
train --scenario fanout --events 1 --endpoints 10000 --timeout 60s
train --scenario fanout-tenants --events 100 --tenants 100 --endpoints 10000 --timeout 60s
train --scenario failing --events 2000 --endpoints 2 --noisy-endpoints 16 --noisy-kind error \
  --noisy-events 200 --timeout 60s
ls "$work/raw"/*.profraw > /dev/null

echo "build-pgo: 3/3 optimized build" >&2
"$profdata" merge -o "$work/webhookd.profdata" "$work/raw"
# A new path for every profile, so the build below never reuses code built with another.
RUSTFLAGS="${RUSTFLAGS:-} -Cprofile-use=$work/webhookd.profdata" \
  cargo build --release --locked --bin webhookd --target-dir "$target/pgo-use"
mkdir -p "$(dirname "$out")"
install -m 0755 "$target/pgo-use/release/webhookd" "$out"
echo "build-pgo: $out" >&2
