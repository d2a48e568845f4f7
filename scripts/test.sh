#!/usr/bin/env bash
# Runs every test: unit tests and integration tests against a real Redis and real HTTP
# receivers on 127.0.0.1. Starts a throwaway Redis when none answers.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/redis-for-tests.sh
echo "tests use Redis at $WEBHOOKD_TEST_REDIS_URL"
# The upgrade test runs the previous release; built here once (kept under target/) so the
# test itself does not spend minutes compiling.
scripts/previous-release.sh >/dev/null
cargo test --all-targets "$@"
