#!/usr/bin/env bash
# Builds webhookd's release binary with profile-guided optimization (PGO) and copies it to
# OUT (default: target/pgo/webhookd). The container image is built this way (Dockerfile).
#
#   scripts/build-pgo.sh [OUT]
#
# Three steps: an instrumented build; a training run of the instrumented binary through
# webhookd-bench's scenarios (a steady stream, one endpoint at full speed, fan-outs, and a
# tenant whose endpoints answer 500, for retries, parking and the breaker) against a Redis
# (below); and the final build with the profile it wrote. The profile tells LLVM which code is
# hot, so it lays that code out together: steady-rate CPU per event about a sixth lower than
# the plain release build (59 -> 49 us, and 44 -> 38 us on another machine: BENCHMARKS.md,
# issue 16's eighteenth and nineteenth slices). The Redis is the tests'
# (scripts/redis-for-tests.sh: one answering on 127.0.0.1:6379, or a throwaway one, installed
# from Debian's packages when missing); the training's keys have a prefix of their own and are
# deleted after each run. rustup's llvm-tools component is added when missing. Both builds keep their own target dirs under
# target/, so a plain `cargo build --release` is not rebuilt by this one.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-target/pgo/webhookd}
target=${CARGO_TARGET_DIR:-target}
. scripts/redis-for-tests.sh
work=$(mktemp -d)
trap 'rm -rf "$work"; kill ${WEBHOOKD_OWN_REDIS_PID:-} 2>/dev/null || true' EXIT

sysroot=$(rustc --print sysroot)
host=$(rustc -vV | sed -n 's/^host: //p')
profdata=$sysroot/lib/rustlib/$host/bin/llvm-profdata
if [ ! -x "$profdata" ]; then
  rustup component add llvm-tools
fi

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
bench=$target/release/webhookd-bench
instrumented=$target/pgo-generate/release/webhookd
train() {
  echo "build-pgo:   $*" >&2
  "$bench" --spawn "$instrumented" --redis-url "$WEBHOOKD_TEST_REDIS_URL" "$@" \
    > "$work/run.json" 2> "$work/run.log" || {
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
