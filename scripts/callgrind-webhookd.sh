#!/bin/sh
# Runs webhookd under callgrind, for `webhookd-bench --spawn scripts/callgrind-webhookd.sh`
# (BENCHMARKS.md, "Instruction counts"). WEBHOOKD_BIN picks the binary (default: this
# checkout's release build); the counts go to $CALLGRIND_OUT (default /tmp/callgrind.<pid>.out).
here=$(dirname "$0")
exec valgrind --tool=callgrind --quiet \
  --callgrind-out-file="${CALLGRIND_OUT:-/tmp/callgrind.%p.out}" \
  "${WEBHOOKD_BIN:-$here/../target/release/webhookd}" "$@"
