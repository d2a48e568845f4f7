#!/usr/bin/env bash
# Sourced by scripts/test.sh after scripts/redis-for-tests.sh: the Redis set-ups the tests run
# webhookd against besides a single server, and where they are:
#   WEBHOOKD_TEST_CLUSTER_URLS    a 6-node Redis Cluster (3 primaries, 3 replicas), every node
#   WEBHOOKD_TEST_SENTINEL_URLS   3 sentinels watching WEBHOOKD_TEST_SENTINEL_MASTER, a primary
#                                 with one replica
#   WEBHOOKD_TEST_TLS_URL         a TLS-only server, its CA in WEBHOOKD_TEST_TLS_CA, with the ACL
#                                 user webhookd (password test-secret) beside the default user
# The *_URLS are comma-separated redis://127.0.0.1:PORT. A set-up whose variables are already set and
# answer is reused; the others start on free loopback ports in one temporary directory, without
# persistence, and are stopped on exit.

topo_master=webhookd-test
# What this shell started, kept when sourced again so the exit trap still stops all of it. A
# subshell that sources this starts afresh: its parent stops the parent's servers.
if [ "${topo_owner:-}" != "$BASHPID" ]; then
  topo_owner=$BASHPID topo_pids="" topo_dir="" topo_trap_set=""
fi
# Every port handed out here: none twice, and none that is another's cluster bus port (+10000).
topo_ports_taken=${topo_ports_taken:-}

# topo_pick_ports N: N free ports into the array topo_picked. Each has port+10000 free too (the
# cluster bus). Taken below the ephemeral range, so the tests' own bind-to-port-0 picks and
# outgoing connections cannot land on one between the pick and redis-server's bind.
topo_pick_ports() {
  local out
  out=$(python3 - "$1" "$topo_ports_taken" <<'EOF'
import random, socket, sys
want, taken = int(sys.argv[1]), {int(p) for p in sys.argv[2].split()}
try:
    ephemeral_low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
except (OSError, ValueError, IndexError):
    ephemeral_low = 0
lo, hi = 10000, min(ephemeral_low, 65536) - 10000
if hi - lo < 1000:
    lo, hi = 20000, 55535
def free(p):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p))
        return True
    except OSError:
        return False
    finally:
        s.close()
picked = []
for _ in range(5000):
    if len(picked) == want:
        break
    p = random.randrange(lo, hi)
    used = taken | set(picked)
    if {p, p + 10000} & (used | {u + 10000 for u in used}):
        continue
    if free(p) and free(p + 10000):
        picked.append(p)
if len(picked) < want:
    sys.exit(f"found only {len(picked)} of {want} free ports in {lo}..{hi}")
print(" ".join(map(str, picked)))
EOF
  ) || { echo "redis-topologies: no free ports" >&2; exit 1; }
  read -r -a topo_picked <<<"$out"
  topo_ports_taken="$topo_ports_taken $out"
}

# topo_start NAME ARGS...: redis-server ARGS in the background, its output in $topo_dir/NAME.log.
topo_start() {
  local name=$1
  shift
  redis-server "$@" >"$topo_dir/$name.log" 2>&1 &
  topo_pids="$topo_pids $!"
}

# What every data server here shares: loopback only, nothing written to disk (a replica's own
# copy named after it, in the temporary directory), and a full sync that starts at once rather
# than after the default 5 s wait for more replicas.
topo_server() {
  local name=$1
  shift
  topo_start "$name" --bind 127.0.0.1 --save "" --appendonly no --daemonize no \
    --dir "$topo_dir" --dbfilename "$name.rdb" --repl-diskless-sync-delay 0 "$@"
}

# topo_fail MESSAGE LOGS: says what went wrong, shows the end of each log (names in $topo_dir)
# and exits.
topo_fail() {
  local log
  echo "redis-topologies: $1" >&2
  for log in $2; do
    echo "--- end of $topo_dir/$log" >&2
    tail -n 15 "$topo_dir/$log" >&2
  done
  exit 1
}

# topo_wait SECONDS WHAT LOGS CHECK...: polls CHECK until it succeeds, failing after SECONDS.
topo_wait() {
  local secs=$1 what=$2 logs=$3
  shift 3
  local deadline=$((SECONDS + secs))
  until "$@"; do
    [ "$SECONDS" -lt "$deadline" ] || topo_fail "gave up after ${secs}s waiting for $what" "$logs"
    sleep 0.1
  done
}

# Stops what was started here, then runs the EXIT trap that was there before (redis-for-tests.sh
# stops its own Redis with one). Keeps going past a server that is already gone.
topo_cleanup() {
  set +e
  local pid alive
  for pid in $topo_pids; do kill "$pid" 2>/dev/null; done
  # Redis stops in milliseconds; a primary may wait about a second for its replicas' acks.
  for _ in $(seq 1 50); do
    alive=""
    for pid in $topo_pids; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ -z "$alive" ] && break
    sleep 0.1
  done
  for pid in $topo_pids; do kill -9 "$pid" 2>/dev/null; done
  [ -n "$topo_dir" ] && rm -rf "$topo_dir"
  eval "$topo_prev_exit_trap"
}

# Adds topo_cleanup to the EXIT trap (once) without dropping the one already set.
topo_trap_exit() {
  [ -z "$topo_trap_set" ] || return 0
  topo_trap_set=1 topo_prev_exit_trap=""
  # In a subshell, trap -p shows the parent's trap, which does not run there: leave it out.
  if [ "$BASHPID" = "$$" ]; then
    local words
    eval "words=($(trap -p EXIT))" # trap -- 'COMMAND' EXIT
    topo_prev_exit_trap=${words[2]:-}
  fi
  trap topo_cleanup EXIT
}

# Output of a command, or nothing when the server does not answer: the checks below compare it
# whole, so no pipe into grep -q (whose early exit fails the pipe under pipefail).
topo_ask() { "$@" 2>/dev/null || true; }

topo_pongs() {
  local p
  for p in "$@"; do [ "$(topo_ask redis-cli -p "$p" ping)" = PONG ] || return 1; done
}

# Every URL in a comma-separated list (caller's WEBHOOKD_TEST_*_URLS) answers CHECK URL.
topo_all_answer() {
  local check=$1 url urls
  IFS=, read -r -a urls <<<"$2"
  [ "${#urls[@]}" -gt 0 ] || return 1
  for url in "${urls[@]}"; do "$check" "$url" || return 1; done
}
topo_cluster_node_answers() { [[ $(topo_ask redis-cli -u "$1" cluster info) == *cluster_state:ok* ]]; }
topo_sentinel_answers() {
  [ -n "$(topo_ask redis-cli -u "$1" sentinel get-master-addr-by-name "$WEBHOOKD_TEST_SENTINEL_MASTER")" ]
}
topo_tls_answers() {
  [ -f "$WEBHOOKD_TEST_TLS_CA" ] &&
    [ "$(topo_ask redis-cli --tls --cacert "$WEBHOOKD_TEST_TLS_CA" -u "$1" ping)" = PONG ]
}

# The cluster is ready when every node says cluster_state:ok, sees 3 primaries holding slots
# and 3 replicas of them, all connected and none failing, and has its replication link up: a
# client that asks any node gets the whole, settled map.
topo_cluster_ready() {
  local p repl
  for p in "${topo_cluster_ports[@]}"; do
    [[ $(topo_ask redis-cli -p "$p" cluster info) == *cluster_state:ok* ]] || return 1
    awk '$3 ~ /fail|handshake|noaddr/ { bad++ }
         $3 ~ /master/ && $8 == "connected" && NF >= 9 { primaries++ }
         $3 ~ /slave/ && $4 != "-" && $8 == "connected" { replicas++ }
         END { exit !(primaries == 3 && replicas == 3 && !bad) }' \
      <<<"$(topo_ask redis-cli -p "$p" cluster nodes)" || return 1
    repl=$(topo_ask redis-cli -p "$p" info replication)
    case $repl in
      *role:master*connected_slaves:1*state=online*) ;;
      *role:slave*master_link_status:up*) ;;
      *) return 1 ;;
    esac
  done
}

topo_sentinel_replica_synced() {
  [[ $(topo_ask redis-cli -p "$topo_primary" info replication) == *connected_slaves:1*state=online* ]]
}

# Every sentinel names the primary, sees the replica and both other sentinels, all healthy
# (flags exactly "slave" / "sentinel": not down, not disconnected); only then can they agree on
# a failover.
topo_sentinels_ready() {
  local p
  for p in "${topo_sentinel_ports[@]}"; do
    [ "$(topo_ask redis-cli -p "$p" sentinel get-master-addr-by-name "$topo_master")" = \
      "$(printf '127.0.0.1\n%s' "$topo_primary")" ] || return 1
    awk 'prev == "flags" && $0 == "slave" { n++ } { prev = $0 } END { exit n != 1 }' \
      <<<"$(topo_ask redis-cli -p "$p" sentinel replicas "$topo_master")" || return 1
    awk 'prev == "flags" && $0 == "sentinel" { n++ } { prev = $0 } END { exit n != 2 }' \
      <<<"$(topo_ask redis-cli -p "$p" sentinel sentinels "$topo_master")" || return 1
  done
}

topo_tls_pong() {
  [ "$(topo_ask redis-cli --tls --cacert "$topo_dir/ca.pem" -p "$topo_tls_port" ping)" = PONG ]
}

# Reuse what the caller set up, when it answers.
export WEBHOOKD_TEST_SENTINEL_MASTER="${WEBHOOKD_TEST_SENTINEL_MASTER:-$topo_master}"
topo_need_cluster=1 topo_need_sentinel=1 topo_need_tls=1
if [ -n "${WEBHOOKD_TEST_CLUSTER_URLS:-}" ] &&
  topo_all_answer topo_cluster_node_answers "$WEBHOOKD_TEST_CLUSTER_URLS"; then
  topo_need_cluster=""
  echo "reusing the Redis Cluster at $WEBHOOKD_TEST_CLUSTER_URLS"
fi
if [ -n "${WEBHOOKD_TEST_SENTINEL_URLS:-}" ] &&
  topo_all_answer topo_sentinel_answers "$WEBHOOKD_TEST_SENTINEL_URLS"; then
  topo_need_sentinel=""
  echo "reusing the sentinels at $WEBHOOKD_TEST_SENTINEL_URLS (master $WEBHOOKD_TEST_SENTINEL_MASTER)"
fi
if [ -n "${WEBHOOKD_TEST_TLS_URL:-}" ] && [ -n "${WEBHOOKD_TEST_TLS_CA:-}" ] &&
  topo_all_answer topo_tls_answers "$WEBHOOKD_TEST_TLS_URL"; then
  topo_need_tls=""
  echo "reusing the TLS Redis at $WEBHOOKD_TEST_TLS_URL (CA $WEBHOOKD_TEST_TLS_CA)"
fi

if [ -n "$topo_need_cluster$topo_need_sentinel$topo_need_tls" ]; then
  if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
    echo "redis-server and redis-cli are needed: apt-get install -y redis-server redis-tools" >&2
    exit 1
  fi
  [ -n "$topo_dir" ] || topo_dir=$(mktemp -d "${TMPDIR:-/tmp}/webhookd-redis.XXXXXX")
  topo_trap_exit

  # Everything starts first and is waited for after, so the slow parts (the cluster joining,
  # sentinels finding each other) overlap.
  if [ -n "$topo_need_cluster" ]; then
    topo_pick_ports 6
    topo_cluster_ports=("${topo_picked[@]}")
    for topo_p in "${topo_cluster_ports[@]}"; do
      topo_server "cluster-$topo_p" --port "$topo_p" --cluster-enabled yes \
        --cluster-config-file "$topo_dir/nodes-$topo_p.conf" --cluster-node-timeout 2000
    done
  fi
  if [ -n "$topo_need_sentinel" ]; then
    topo_pick_ports 5
    topo_primary=${topo_picked[0]} topo_replica=${topo_picked[1]}
    topo_sentinel_ports=("${topo_picked[@]:2}")
    topo_server "primary-$topo_primary" --port "$topo_primary"
    topo_server "replica-$topo_replica" --port "$topo_replica" --replicaof 127.0.0.1 "$topo_primary"
  fi
  if [ -n "$topo_need_tls" ]; then
    # A CA and a certificate for 127.0.0.1 (and localhost) that only this run trusts; P-256
    # keys are made in milliseconds.
    topo_key=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
    (
      cd "$topo_dir"
      openssl req -x509 "${topo_key[@]}" -keyout ca.key -out ca.pem -days 2 \
        -subj "/CN=webhookd test CA"
      openssl req "${topo_key[@]}" -keyout server.key -out server.csr -subj "/CN=127.0.0.1"
      printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >san.ext
      openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
        -out server.pem -days 2 -extfile san.ext
    ) >"$topo_dir/openssl.log" 2>&1 ||
      topo_fail "openssl could not make the test CA and certificate" openssl.log
    topo_pick_ports 1
    topo_tls_port=${topo_picked[0]}
    # The webhookd user may do everything for now; the default user stays on (nopass) so
    # plain redis-cli works for checks.
    topo_server "tls-$topo_tls_port" --port 0 --tls-port "$topo_tls_port" \
      --tls-cert-file "$topo_dir/server.pem" --tls-key-file "$topo_dir/server.key" \
      --tls-ca-cert-file "$topo_dir/ca.pem" --tls-auth-clients no \
      --user webhookd on '>test-secret' '~*' '+@all'
  fi

  if [ -n "$topo_need_sentinel" ]; then
    # Sentinels read the primary's INFO as soon as they connect and again only every 10 s:
    # started after the replica is in sync, they see it at once.
    topo_wait 10 "the Sentinel primary's replica to sync" \
      "primary-$topo_primary.log replica-$topo_replica.log" topo_sentinel_replica_synced
    for topo_p in "${topo_sentinel_ports[@]}"; do
      # A file of its own: a sentinel rewrites its config as it learns.
      cat >"$topo_dir/sentinel-$topo_p.conf" <<EOF
port $topo_p
bind 127.0.0.1
dir $topo_dir
sentinel resolve-hostnames no
sentinel monitor $topo_master 127.0.0.1 $topo_primary 2
sentinel down-after-milliseconds $topo_master 1000
sentinel failover-timeout $topo_master 3000
EOF
      topo_start "sentinel-$topo_p" "$topo_dir/sentinel-$topo_p.conf" --sentinel
    done
  fi

  if [ -n "$topo_need_cluster" ]; then
    topo_logs=$(printf 'cluster-%s.log ' "${topo_cluster_ports[@]}")
    topo_wait 10 "the cluster nodes to start" "$topo_logs" topo_pongs "${topo_cluster_ports[@]}"
    # Slots and replicas assigned by redis-cli; bounded, as it waits for the join unasked.
    timeout 30 redis-cli --cluster create "${topo_cluster_ports[@]/#/127.0.0.1:}" \
      --cluster-replicas 1 --cluster-yes >"$topo_dir/cluster-create.log" 2>&1 ||
      topo_fail "redis-cli --cluster create failed or took over 30s" "cluster-create.log $topo_logs"
    topo_wait 30 "the cluster to settle (cluster_state:ok, 3 primaries with a replica each)" \
      "$topo_logs" topo_cluster_ready
    WEBHOOKD_TEST_CLUSTER_URLS=$(printf 'redis://127.0.0.1:%s,' "${topo_cluster_ports[@]}")
    export WEBHOOKD_TEST_CLUSTER_URLS=${WEBHOOKD_TEST_CLUSTER_URLS%,}
    echo "started a Redis Cluster (3 primaries, 3 replicas) on 127.0.0.1 ports ${topo_cluster_ports[*]}"
  fi

  if [ -n "$topo_need_sentinel" ]; then
    topo_wait 30 "the sentinels to agree on $topo_master, its replica and each other" \
      "$(printf 'sentinel-%s.log ' "${topo_sentinel_ports[@]}")" topo_sentinels_ready
    WEBHOOKD_TEST_SENTINEL_URLS=$(printf 'redis://127.0.0.1:%s,' "${topo_sentinel_ports[@]}")
    export WEBHOOKD_TEST_SENTINEL_URLS=${WEBHOOKD_TEST_SENTINEL_URLS%,}
    export WEBHOOKD_TEST_SENTINEL_MASTER=$topo_master
    echo "started $topo_master (primary 127.0.0.1:$topo_primary, replica :$topo_replica)" \
      "watched by sentinels on ports ${topo_sentinel_ports[*]}"
  fi

  if [ -n "$topo_need_tls" ]; then
    topo_wait 10 "the TLS Redis to answer" "tls-$topo_tls_port.log" topo_tls_pong
    export WEBHOOKD_TEST_TLS_URL="rediss://127.0.0.1:$topo_tls_port"
    export WEBHOOKD_TEST_TLS_CA="$topo_dir/ca.pem"
    echo "started a TLS-only Redis at $WEBHOOKD_TEST_TLS_URL (CA $WEBHOOKD_TEST_TLS_CA, ACL user webhookd)"
  fi
fi
