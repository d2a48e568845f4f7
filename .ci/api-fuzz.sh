#!/usr/bin/env bash
# Fuzzes the management API with schemathesis against its own OpenAPI document: any 5xx or
# any response that does not match the document fails the run.
#
#   WEBHOOKD_BIN             binary to run (default: target/debug/webhookd, built if missing)
#   WEBHOOKD_TEST_REDIS_URL  Redis to use (default redis://127.0.0.1:6379); keys go under a
#                            unique prefix that is deleted afterwards
#   FUZZ_MAX_EXAMPLES        test cases per operation and phase (default 30)
#   FUZZ_CHECKS, FUZZ_SEED   schemathesis checks (default: 5xx, status codes, content types
#                            and response schemas) and seed (default: random)
#
# Nothing leaves this machine: the run that may register endpoints publishes no events and
# sends no test deliveries; the run that publishes events starts from an empty registry (a
# fresh key prefix), so no delivery has anywhere to go.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target_dir="${CARGO_TARGET_DIR:-$root/target}"
bin="${WEBHOOKD_BIN:-$target_dir/debug/webhookd}"
redis_url="${WEBHOOKD_TEST_REDIS_URL:-redis://127.0.0.1:6379}"
max_examples="${FUZZ_MAX_EXAMPLES:-30}"
venv="${HOME}/.cache/webhookd-schemathesis"

if [[ ! -x "$bin" ]]; then
  echo "api-fuzz: building $bin"
  (cd "$root" && cargo build --bin webhookd)
fi

if [[ ! -x "$venv/bin/schemathesis" ]]; then
  echo "api-fuzz: installing schemathesis into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis>=4,<5"
fi
st="$venv/bin/schemathesis"

# The session runs in a network namespace of its own with only loopback: endpoint hostnames
# the fuzzer invents are resolved at registration, and no DNS query or request may leave this
# machine. Inside, a Redis of its own (the outer one is out of reach there).
if [[ -z "${FUZZ_IN_NETNS:-}" ]]; then
  if ! unshare -n true 2>/dev/null; then
    echo "api-fuzz: cannot create a network namespace (unshare -n needs root); not fuzzing with network access" >&2
    exit 1
  fi
  exec unshare -n env FUZZ_IN_NETNS=1 WEBHOOKD_BIN="$bin" bash "${BASH_SOURCE[0]}" "$@"
fi
ip link set lo up
redis_port="$("$root/scripts/free-port")"
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --daemonize yes \
  --pidfile "/tmp/webhookd-fuzz-redis-$redis_port.pid" >/dev/null
redis_url="redis://127.0.0.1:$redis_port"
for _ in $(seq 1 100); do redis-cli -u "$redis_url" ping 2>/dev/null | grep -q PONG && break; sleep 0.1; done

work="$(mktemp -d)"
pid=""
prefixes=()
port=""
cleanup() {
  if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  if command -v redis-cli >/dev/null; then
    for p in "${prefixes[@]}"; do
      redis-cli -u "$redis_url" --scan --pattern "${p}*" | xargs -r -d '\n' -n 500 redis-cli -u "$redis_url" DEL >/dev/null || true
    done
  fi
  rm -rf "$work"
  redis-cli -u "$redis_url" shutdown nosave >/dev/null 2>&1 || true
}
trap cleanup EXIT


token="fuzz-admin-$(head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')"
key="$(head -c 32 /dev/urandom | base64)"

# Starts webhookd on a fresh prefix and port; sets $pid and $port.
start_webhookd() {
  local name="$1"
  local prefix="fuzz:${name}:$(date +%s):$$:"
  prefixes+=("$prefix")
  port="$("$root/scripts/free-port")"
  cat >"$work/$name.yaml" <<EOF
redis:
  url: "$redis_url"
  key_prefix: "$prefix"
http:
  listen: "127.0.0.1:$port"
  admin_tokens: ["$token"]
signing:
  encryption_key: "$key"
delivery:
  allow_http: false
stream:
  block: 200ms
EOF
  "$bin" serve --config "$work/$name.yaml" >"$work/$name.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 100); do
    if curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; then
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "api-fuzz: webhookd exited:"; cat "$work/$name.log"; exit 1
    fi
    sleep 0.1
  done
  echo "api-fuzz: webhookd did not become ready:"; cat "$work/$name.log"; exit 1
}

stop_webhookd() {
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  pid=""
}

# Operations that make webhookd send HTTP requests (directly, or by publishing events).
sending='^/v1/(events|ingest/\{provider\}|tenants/\{tenant\}/endpoints/\{id\}/test)$'

run_schemathesis() {
  local name="$1"; shift
  echo "api-fuzz: schemathesis ($name) against 127.0.0.1:$port"
  local status=0
  # From the scratch directory: schemathesis keeps a cache in the working directory.
  (cd "$work" && "$st" run "http://127.0.0.1:$port/v1/openapi.json" \
    --header "Authorization: Bearer $token" \
    --checks "${FUZZ_CHECKS:-not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance}" \
    --max-examples "$max_examples" \
    --seed "${FUZZ_SEED:-$RANDOM}" \
    --request-timeout 10 \
    --generation-database none \
    --no-color \
    --warnings off \
    "$@") || status=$?
  if grep -q '"level":"ERROR"\|panicked' "$work/$name.log"; then
    echo "api-fuzz: webhookd logged errors during the $name run:"
    grep '"level":"ERROR"\|panicked' "$work/$name.log" | head -20
    status=1
  fi
  return "$status"
}

overall=0
start_webhookd registry
run_schemathesis registry --exclude-path-regex "$sending" || overall=1
stop_webhookd

start_webhookd publish
run_schemathesis publish --include-path-regex "$sending" --phases examples,coverage,fuzzing || overall=1
stop_webhookd

if [[ "$overall" -ne 0 ]]; then
  echo "api-fuzz: FAILED"
  exit 1
fi
echo "api-fuzz: passed"
