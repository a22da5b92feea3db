#!/usr/bin/env bash
# Instructions per request of one gateway scenario, counted by valgrind's callgrind: nearly the
# same count for the same binary and load whatever else the machine is doing, so an A/B of two
# commits shows a difference of a few percent that bench/run.sh's throughput, on a shared
# machine, cannot.
#
# The gateway of SCENARIO (unaudited: steps 1 to 7; gateway: every check; pass-through: the
# proxy alone) runs under callgrind twice, serving an open loop of RATE requests/s for SHORT and
# then LONG seconds (after the same 1-second warm-up); the difference between the two runs'
# totals over the difference in requests is what one request costs, start-up and shutdown
# cancelled out. User-space instructions of every thread; the kernel's work is not counted.
# How requests fall into reads and writes varies with timing, so counts move by about 2% from
# one run to the next. The full gateway's count also depends on how many records share a group
# commit, a signature and a checkpoint, which at this rate vary so much (290,000 and 457,000 per
# request in two runs of one build) that it is no measure for an A/B; the other two are.
#
#   bench/instructions.sh                      # the gateway this tree builds
#   ISNAD_BIN=/tmp/isnad-old bench/instructions.sh   # another build (with `bench-modes`)
#
# Environment: SCENARIO (unaudited), RATE (200), SHORT (4), LONG (14), ISNAD_BIN.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SCENARIO=${SCENARIO:-unaudited}
RATE=${RATE:-200}
SHORT=${SHORT:-4}
LONG=${LONG:-14}
case $SCENARIO in
  unaudited | gateway | pass-through) ;;
  *) echo "SCENARIO is unaudited, gateway or pass-through, not $SCENARIO" >&2; exit 2 ;;
esac
command -v valgrind >/dev/null || {
  echo "installing valgrind from Debian" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >/dev/null
}

# The PKI, keys, provider and configurations of bench/run.sh (lib.sh); its own gateways idle.
source "$ROOT/bench/lib.sh"
start_side_by_side

count() { # SECONDS: prints "requests instructions" of one run under callgrind
  local port; port=$(free_port)
  sed -e "s/^listen: .*/listen: 127.0.0.1:$port/" -e "s/dir: [^,]*,/dir: audit-cg-$port,/" \
    "$W/$SCENARIO.yaml" > "$W/cg-$port.yaml"
  (cd "$W" && ISNAD_LOG=error exec valgrind --tool=callgrind --callgrind-out-file="$W/cg-$port.out" \
    "$ISNAD" serve --config "$W/cg-$port.yaml" 2>"$W/cg-$port.log") & local pid=$!
  PIDS+=("$pid")
  wait_port "$port"
  "$BENCH" load --name "$SCENARIO" --target "https://127.0.0.1:$port" --api exchange \
    --pki "$W/pki" --as housing-programme --subjects "$RECORDS" --connections 2 --concurrency 8 \
    --duration "$1" --warmup 1 --rate "$RATE" > "$W/cg-$port.json"
  kill -INT "$pid"; wait "$pid" || true
  local requests errors instructions outcome
  outcome=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["requests"], d["errors"])' "$W/cg-$port.json")
  read -r requests errors <<< "$outcome"
  [ "$errors" = 0 ] || { echo "$errors requests failed under callgrind; logs in $W" >&2; exit 1; }
  instructions=$(awk '/^summary:/ { print $2 }' "$W/cg-$port.out")
  [ -n "$instructions" ] || { echo "callgrind wrote no summary; logs in $W" >&2; exit 1; }
  echo "$requests $instructions"
}

short=$(count "$SHORT")
long=$(count "$LONG")
read -r short_requests short_total <<< "$short"
read -r long_requests long_total <<< "$long"
python3 - "$SCENARIO" "$short_requests" "$short_total" "$long_requests" "$long_total" <<'PY'
import sys
name, r1, i1, r2, i2 = sys.argv[1], *map(int, sys.argv[2:])
print(f"{name}: {(i2 - i1) / (r2 - r1):,.0f} instructions per request "
      f"({r1} requests: {i1:,}; {r2} requests: {i2:,})")
PY
