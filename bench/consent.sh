#!/usr/bin/env bash
# The cost of consent through the gateway, side by side in one go, and how many Redis commands a
# request costs. Three scenarios against the same kind of local federation (`isnad up`: the
# gateway and the sample providers in one process), interleaved in ROUNDS rounds:
#   statute         labour.employment fields under a statute rule: no token, no shared state;
#   consent-memory  one statute field and one consent field, a consent token per subject,
#                   verified (and cached) by the gateway, admitted by the in-process state;
#   consent-redis   the same, admitted by a real redis-server on loopback;
#   consent-redis-rate  the same with an agency rate (AGENCY_RATE, high enough never to refuse),
#                   which rides in the consent admission's round trip;
#   statute-redis-rate  the statute requests with that agency rate: one round trip of their own.
# The three Redis scenarios run on gateway nodes of their own (`isnad serve`, one without and
# one with the agency rate) beside the `isnad up` federation that uses Redis, whose providers
# they share; their CPU is both processes'.
# Before and after every Redis run it reads Redis's INFO commandstats, and reports the Redis
# round trips per request the load generator made (the target is at most one: one EVALSHA per
# admission), and apart from them the commands the admission script ran inside Redis.
#
# The sample rule's frequency limit (10 a day) is removed from a copy of the policy, so the load
# measures the checks rather than the refusals.
#
# Environment: ROUNDS (3), DURATION (s, 10), WARMUP (s, 2), CONNECTIONS (4), CONCURRENCY (16),
# AGENCY_RATE (1000000), OUT (also write the report to this file).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
CONNECTIONS=${CONNECTIONS:-4}
CONCURRENCY=${CONCURRENCY:-16}
AGENCY_RATE=${AGENCY_RATE:-1000000}

if ! command -v redis-server >/dev/null; then
  echo "installing redis-server from Debian" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
fi
cargo build --release --locked -q -p isnad-gateway -p isnad-bench
ISNAD=$ROOT/target/release/isnad
BENCH=$ROOT/target/release/isnad-bench

W=$(mktemp -d /tmp/isnad-consent-bench.XXXXXX)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

# free_port, wait_port
source "$ROOT/bench/lib.sh"

# The sample federation without the frequency limit.
mkdir -p "$W/federation"
cp -r "$ROOT/deploy/local/catalogue.yaml" "$ROOT/deploy/local/rules" "$ROOT/deploy/local/records" \
  "$W/federation/"
sed -i '/limit: { requests: 10, per: day }/d' "$W/federation/rules/housing.yaml"

P_REDIS=$(free_port)
redis-server --port "$P_REDIS" --bind 127.0.0.1 --save "" --appendonly no \
  >"$W/redis.log" 2>&1 & PIDS+=($!)
P_MEMORY=$(free_port); P_REDIS_GW=$(free_port)
ISNAD_LOG=warn "$ISNAD" up --dir "$W/memory" --listen "127.0.0.1:$P_MEMORY" \
  --federation "$W/federation" 2>"$W/memory.log" & PIDS+=($!); MEMORY_PID=$!
ISNAD_LOG=warn "$ISNAD" up --dir "$W/redis" --listen "127.0.0.1:$P_REDIS_GW" \
  --federation "$W/federation" --shared-state "redis://127.0.0.1:$P_REDIS" \
  2>"$W/redis-gateway.log" & PIDS+=($!); REDIS_GW_PID=$!
wait_port "$P_REDIS"; wait_port "$P_MEMORY"; wait_port "$P_REDIS_GW"
node() { # NAME AGENCY_RATE: another node of the Redis federation; sets PORT and PID
  PORT=$(free_port)
  sed -e "s/^listen: .*/listen: 127.0.0.1:$PORT/" \
      -e "s#^  dir: .*/audit\$#  dir: $W/redis/audit-$1#" \
      -e "s/^  agency_rate: 0\$/  agency_rate: $2/" \
      "$W/redis/gateway.yaml" > "$W/redis/gateway-$1.yaml"
  grep -q "agency_rate: $2" "$W/redis/gateway-$1.yaml"
  ISNAD_LOG=warn "$ISNAD" serve --config "$W/redis/gateway-$1.yaml" \
    2>"$W/gateway-$1.log" & PIDS+=($!); PID=$!
  wait_port "$PORT"
}
node no-rate 0; P_NODE=$PORT; NODE_PID=$PID
node rate "$AGENCY_RATE"; P_RATE_GW=$PORT; RATE_GW_PID=$PID
# People with a job: every requested field has a value, so every answer is complete.
RECORDS=$W/employed.jsonl
grep '"employed":true' "$ROOT/deploy/local/records/labour.employment.jsonl" > "$RECORDS"
REDIS_PID=$(pgrep -f "redis-server 127.0.0.1:$P_REDIS" | head -1)

redis_calls() { # "round trips in-script": commands Redis has run since its start
  # The gateway's client sends EVALSHA (one per admission), SCRIPT LOAD after a restart and
  # PING; everything else in the stats ran inside the admission script.
  redis-cli -p "$P_REDIS" INFO commandstats | tr -d '\r' \
    | sed -n 's/^cmdstat_\([a-z|]*\):calls=\([0-9]*\),.*/\1 \2/p' \
    | awk '$1 == "info" { next }
           $1 == "evalsha" || $1 == "eval" || $1 ~ /^script/ || $1 == "ping" { trips += $2; next }
           { inside += $2 }
           END { print trips + 0, inside + 0 }'
}

load() { # NAME PORT DIR FIELDS CONSENT(yes|no) PROCESSES...
  local name=$1 port=$2 dir=$3 fields=$4 consent=$5; shift 5
  local args=(--name "$name" --target "https://127.0.0.1:$port" --api exchange
              --pki "$dir/pki" --as housing-programme --subjects "$RECORDS"
              --dataset labour.employment --fields "$fields"
              --connections "$CONNECTIONS" --concurrency "$CONCURRENCY"
              --duration "$DURATION" --warmup "$WARMUP")
  [ "$consent" = yes ] && args+=(--consent-key "$dir/consent/authority.pk8")
  for p in "$@"; do args+=(--process "$p"); done
  echo "round $round: $name..." >&2
  "$BENCH" load "${args[@]}" > "$W/$round-$name.json"
  RESULTS+=("$W/$round-$name.json")
}

load_redis() { # NAME PORT FIELDS CONSENT PROCESSES...: load, and count Redis's commands
  local name=$1
  read -r trips_before inside_before <<<"$(redis_calls)"
  load "$1" "$2" "$W/redis" "$3" "$4" "${@:5}"
  read -r trips_after inside_after <<<"$(redis_calls)"
  # Every call the load generator made (warm-up included), as Redis saw them all.
  calls=$(sed -n 's/.*"calls":\([0-9]*\).*/\1/p' "$W/$round-$name.json")
  TRIPS[$name]+="$(awk -v n="$((trips_after - trips_before))" -v t="$calls" 'BEGIN { printf "%.3f", n / t }') "
  INSIDE[$name]+="$(awk -v n="$((inside_after - inside_before))" -v t="$calls" 'BEGIN { printf "%.2f", n / t }') "
}

RESULTS=()
declare -A TRIPS INSIDE
for round in $(seq 1 "$ROUNDS"); do
  load statute "$P_MEMORY" "$W/memory" employed,employer_name no "isnad=$MEMORY_PID"
  load consent-memory "$P_MEMORY" "$W/memory" employed,occupation yes "isnad=$MEMORY_PID"
  load_redis consent-redis "$P_NODE" employed,occupation yes \
    "isnad=$NODE_PID,$REDIS_GW_PID" "redis=$REDIS_PID"
  load_redis consent-redis-rate "$P_RATE_GW" employed,occupation yes \
    "isnad=$RATE_GW_PID,$REDIS_GW_PID" "redis=$REDIS_PID"
  load_redis statute-redis-rate "$P_RATE_GW" employed,employer_name no \
    "isnad=$RATE_GW_PID,$REDIS_GW_PID" "redis=$REDIS_PID"
done

{
  echo "Consent benchmark of $(git -C "$ROOT" rev-parse --short HEAD), $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs))"
  echo
  echo "\`bench/consent.sh\` with ROUNDS=$ROUNDS DURATION=$DURATION WARMUP=$WARMUP CONNECTIONS=$CONNECTIONS CONCURRENCY=$CONCURRENCY"
  echo
  "$BENCH" report "${RESULTS[@]}" --ratio consent-memory/statute --ratio consent-redis/statute \
    --ratio consent-redis/consent-memory --ratio consent-redis-rate/consent-redis \
    --ratio statute-redis-rate/statute
  echo
  for name in consent-redis consent-redis-rate statute-redis-rate; do
    echo "$name: Redis round trips per request (per round; target <= 1): ${TRIPS[$name]}"
    echo "$name: Redis commands run inside the admission script per request (per round): ${INSIDE[$name]}"
  done
} | tee "${OUT:-/dev/null}"
