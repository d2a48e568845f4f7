#!/usr/bin/env bash
# Sourced by scripts/test.sh and scripts/demo.sh: makes sure a Redis answers and exports
# WEBHOOKD_TEST_REDIS_URL. Uses $WEBHOOKD_TEST_REDIS_URL or 127.0.0.1:6379 when one answers;
# otherwise starts a throwaway redis-server on a free loopback port (stopped on exit).
redis_answers() { redis-cli -u "$1" ping 2>/dev/null | grep -q PONG; }

# The tests also start Redis servers of their own (a replica pair, a TLS server whose CA and
# certificate openssl makes): install what is missing from Debian's packages when we can.
missing=""
command -v redis-server >/dev/null 2>&1 || missing="$missing redis-server"
command -v redis-cli >/dev/null 2>&1 || missing="$missing redis-tools"
command -v openssl >/dev/null 2>&1 || missing="$missing openssl"
if [ -n "$missing" ] && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "installing:$missing"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
fi

if [ -n "${WEBHOOKD_TEST_REDIS_URL:-}" ] && redis_answers "$WEBHOOKD_TEST_REDIS_URL"; then
  :
elif redis_answers "redis://127.0.0.1:6379"; then
  export WEBHOOKD_TEST_REDIS_URL="redis://127.0.0.1:6379"
else
  if ! command -v redis-server >/dev/null 2>&1; then
    echo "redis-server is not installed: apt-get install -y redis-server (or set WEBHOOKD_TEST_REDIS_URL)" >&2
    exit 1
  fi
  port=$("${BASH_SOURCE[0]%/*}/free-port")
  redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --daemonize no >/dev/null &
  WEBHOOKD_OWN_REDIS_PID=$!
  trap 'kill $WEBHOOKD_OWN_REDIS_PID 2>/dev/null' EXIT
  export WEBHOOKD_TEST_REDIS_URL="redis://127.0.0.1:$port"
  for _ in $(seq 1 100); do redis_answers "$WEBHOOKD_TEST_REDIS_URL" && break; sleep 0.1; done
  redis_answers "$WEBHOOKD_TEST_REDIS_URL" || { echo "the throwaway Redis did not start" >&2; exit 1; }
  echo "started a throwaway Redis at $WEBHOOKD_TEST_REDIS_URL"
fi
