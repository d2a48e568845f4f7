#!/usr/bin/env bash
# Builds webhookd as it was at the previous release, for the upgrade test
# (tests/it/upgrade.rs), and prints the binary's path. Built once, then kept under target/.
# Needs the git history (a clone, not an export).
set -euo pipefail
cd "$(dirname "$0")/.."
# The last release before the no-silent-loss and isolation work changed the key layout
# (sealed secrets with their endpoint as AAD, token indexes, parked backlogs).
rev=26a731198e5396738cd969debdf5b56c813e51a1
dir=target/previous-release/$rev
bin=$dir/target/debug/webhookd
if [ ! -x "$bin" ]; then
  rm -rf "$dir/src"
  mkdir -p "$dir/src"
  git archive "$rev" | tar -x -C "$dir/src"
  echo "building webhookd at ${rev:0:7} for the upgrade test" >&2
  # No debug info: it only runs in a test, and links faster without.
  CARGO_PROFILE_DEV_DEBUG=0 cargo build --locked --quiet --bin webhookd \
    --manifest-path "$dir/src/Cargo.toml" --target-dir "$dir/target" >&2
fi
echo "$PWD/$bin"
