#!/usr/bin/env bash
# Runs three scenarios against the same provider, one after the other, in one go:
#   direct  the load generator calls the reference provider (Provider/Fetch) itself;
#   nginx   through nginx grpc_pass, mutual TLS on both legs (nginx presents the gateway's
#           certificate to the provider), the same call;
#   isnad   through the isnad gateway (Exchange/GetAttributes): authenticate, admit, authorize,
#           consent, minimize, fetch over mTLS, filter, a durable audit record (group commit,
#           fdatasync before each answer) and an Ed25519 provenance signature.
# Every process is separate so its CPU time is its own. Prints a Markdown report with ratios.
#
# The scenarios are interleaved in ROUNDS rounds (direct, nginx, isnad, direct, ...), so that the
# machine's drift (it is shared and noisy) hits all three alike; each ratio is computed per
# round and reported as the median and range over rounds.
#
# Environment: ROUNDS (default 3), DURATION (s per scenario per round, 10), WARMUP (s, 2),
# CONNECTIONS (4), CONCURRENCY (16 per connection), RATE (requests/s: open loop instead of
# closed loop), OUT (also write the report to this file), PROFILE (a folder: record the gateway
# with `perf record` during its first round and write perf's report of it there).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
CONNECTIONS=${CONNECTIONS:-4}
CONCURRENCY=${CONCURRENCY:-16}
OUT=${OUT:-}

# start_side_by_side: a PKI, one provider, one isnad gateway and one nginx in $W (lib.sh)
source "$ROOT/bench/lib.sh"
start_side_by_side

load() { # NAME TARGET API AS EXPECT PROCESSES...
  local name=$1 target=$2 api=$3 as=$4 expect=$5; shift 5
  local args=(--name "$name" --target "$target" --api "$api" --pki "$W/pki" --as "$as"
              --subjects "$RECORDS" --connections "$CONNECTIONS" --concurrency "$CONCURRENCY"
              --duration "$DURATION" --warmup "$WARMUP")
  [ -n "$expect" ] && args+=(--expect "$expect")
  [ -n "${RATE:-}" ] && args+=(--rate "$RATE")
  for p in "$@"; do args+=(--process "$p"); done
  echo "round $round: $name..." >&2
  local perf=
  if [ -n "${PROFILE:-}" ] && [ "$name" = isnad ] && [ "$round" = 1 ]; then
    mkdir -p "$PROFILE"
    perf record -q -F 1999 -g -p "$GATEWAY_PID" -o "$PROFILE/perf.data" -- sleep $((WARMUP + DURATION)) \
      2>/dev/null & perf=$!
  fi
  "$BENCH" load "${args[@]}" > "$W/$round-$name.json"
  if [ -n "$perf" ]; then
    wait "$perf" || true
    perf report -i "$PROFILE/perf.data" --no-children --percent-limit 0.5 --stdio -g none \
      > "$PROFILE/self.txt" 2>/dev/null || true
    perf report -i "$PROFILE/perf.data" --children --percent-limit 2 --stdio -g none \
      > "$PROFILE/children.txt" 2>/dev/null || true
    echo "profile of the gateway: $PROFILE/self.txt, $PROFILE/children.txt" >&2
  fi
  RESULTS+=("$W/$round-$name.json")
}

RESULTS=()
for round in $(seq 1 "$ROUNDS"); do
  load direct "https://127.0.0.1:$P_PROVIDER" provider gateway \
    spiffe://isnad.example/agency/identity-authority "provider=$PROVIDER_PID"
  load nginx "https://127.0.0.1:$P_NGINX" provider gateway "" \
    "nginx=$NGINX_PIDS" "provider=$PROVIDER_PID"
  load isnad "https://127.0.0.1:$P_GATEWAY" exchange housing-programme "" \
    "isnad=$GATEWAY_PID" "provider=$PROVIDER_PID"
done

{
  echo "Benchmark of $(git -C "$ROOT" rev-parse --short HEAD), $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs))"
  echo
  echo "\`bench/run.sh\` with ROUNDS=$ROUNDS DURATION=$DURATION WARMUP=$WARMUP CONNECTIONS=$CONNECTIONS CONCURRENCY=$CONCURRENCY${RATE:+ RATE=$RATE}"
  echo
  "$BENCH" report "${RESULTS[@]}" --ratio isnad/nginx --ratio isnad/direct --ratio nginx/direct
} | tee "${OUT:-/dev/null}"
