#!/usr/bin/env bash
# Runs five scenarios against the same provider, one after the other, in one go:
#   direct       the load generator calls the reference provider (Provider/Fetch) itself;
#   nginx        through nginx grpc_pass, mutual TLS on both legs (nginx presents the gateway's
#                certificate to the provider), the same call;
#   isnad        through the isnad gateway (Exchange/GetAttributes): authenticate, admit,
#                authorize, consent, minimize, fetch over mTLS, filter, a durable audit record
#                (group commit, fdatasync before each answer) and an Ed25519 provenance signature;
#   unaudited    the same gateway binary with steps 1 to 7 and no audit record or signature
#                (`bench_mode: unaudited`, a benchmark build only): the checks of issue 2's
#                speed target, and consent;
#   passthrough  the same gateway binary with every check off (`bench_mode: pass-through`, a
#                benchmark build only): mTLS on both legs and the forwarding, nothing else.
# Every process is separate so its CPU time is its own. Then, at half of nginx's measured
# throughput (open loop), nginx and isnad again, for the p99 target, with the disk's fdatasync
# time measured beside them. Prints a Markdown report with ratios.
#
# The scenarios are interleaved in ROUNDS rounds (direct, nginx, isnad, unaudited, passthrough,
# direct, ...), so that the machine's drift (it is shared and noisy) hits all alike; each ratio is
# computed per round and reported as the median and range over rounds.
#
# Environment: ROUNDS (default 3), DURATION (s per scenario per round, 10), WARMUP (s, 2),
# CONNECTIONS (4), CONCURRENCY (16 per connection), RATE (requests/s: open loop instead of
# closed loop), HALF (0 skips the half-load phase), HALF_WARMUP (s, 5), OUT (also write the report to this file),
# BENCH_DIR (where the work directory goes, with the audit log: /tmp by default; a tmpfs such
# as /dev/shm shows what the audit log's fdatasync costs),
# PLOT (write a latency plot, PNG, there; installs gnuplot-nox from Debian when missing),
# PROFILE (a folder: record the gateway with `perf record` during its first round and write
# perf's report of it there; PROFILE_CALLGRAPH=dwarf records call graphs a release build's
# missing frame pointers hide, PROFILE_FREQ sets the sampling rate, 1999 Hz by default,
# PROFILE_SCENARIO records the gateway of another scenario: unaudited or passthrough).
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
  if [ -n "${PROFILE:-}" ] && [ "$name" = "${PROFILE_SCENARIO:-isnad}" ] && [ "$round" = 1 ]; then
    mkdir -p "$PROFILE"
    local gateway=
    for p in "$@"; do case $p in isnad=*) gateway=${p#isnad=} ;; esac; done
    local graph=(-g)
    [ -n "${PROFILE_CALLGRAPH:-}" ] && graph=(--call-graph "$PROFILE_CALLGRAPH")
    perf record -q -F "${PROFILE_FREQ:-1999}" "${graph[@]}" -p "$gateway" -o "$PROFILE/perf.data" -- sleep $((WARMUP + DURATION)) \
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
  load unaudited "https://127.0.0.1:$P_UNAUDITED" exchange housing-programme "" \
    "isnad=$UNAUDITED_PID" "provider=$PROVIDER_PID"
  load passthrough "https://127.0.0.1:$P_PASS" exchange housing-programme "" \
    "isnad=$PASS_PID" "provider=$PROVIDER_PID"
done

# Half of nginx's maximum (the median of its closed-loop rounds), open loop: the p99 target.
HALF_RESULTS=()
if [ "${HALF:-1}" != 0 ] && [ -z "${RATE:-}" ]; then
  HALF_RATE=$(python3 -c 'import json,statistics,sys; print(int(statistics.median(json.load(open(f))["throughput"] for f in sys.argv[1:]) / 2))' "$W"/*-nginx.json)
  # A longer warm-up: nginx opens an upstream connection (a handshake) for every request in
  # flight beyond those it holds, and the open loop's bursts need more than the closed loop's.
  for round in $(seq 1 "$ROUNDS"); do
    WARMUP=${HALF_WARMUP:-5} RATE=$HALF_RATE load nginx-half "https://127.0.0.1:$P_NGINX" provider gateway "" \
      "nginx=$NGINX_PIDS" "provider=$PROVIDER_PID"
    HALF_RESULTS+=("${RESULTS[-1]}"); unset 'RESULTS[-1]'
    WARMUP=${HALF_WARMUP:-5} RATE=$HALF_RATE load isnad-half "https://127.0.0.1:$P_GATEWAY" exchange housing-programme "" \
      "isnad=$GATEWAY_PID" "provider=$PROVIDER_PID"
    HALF_RESULTS+=("${RESULTS[-1]}"); unset 'RESULTS[-1]'
  done
  # The audit log's batches at this rate are a few records (about 550 bytes each).
  "$BENCH" fsync --dir "$W" --bytes 4096 --count 3000 > "$W/fsync.json"
fi

{
  echo "Benchmark of $(git -C "$ROOT" rev-parse --short HEAD), $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs))${ISNAD_BIN:+, gateway binary $ISNAD_BIN}"
  echo
  echo "\`bench/run.sh\` with ROUNDS=$ROUNDS DURATION=$DURATION WARMUP=$WARMUP CONNECTIONS=$CONNECTIONS CONCURRENCY=$CONCURRENCY${RATE:+ RATE=$RATE}"
  echo
  "$BENCH" report "${RESULTS[@]}" --ratio isnad/nginx --ratio isnad/direct \
    --ratio unaudited/nginx --ratio unaudited/direct --ratio passthrough/nginx \
    --ratio passthrough/direct --ratio nginx/direct
  if [ ${#HALF_RESULTS[@]} -gt 0 ]; then
    echo
    echo "At half of nginx's maximum: $HALF_RATE requests/s, open loop."
    echo
    "$BENCH" report "${HALF_RESULTS[@]}" --latency-ratio isnad-half/nginx-half
    python3 - "$W/fsync.json" "${HALF_RESULTS[@]}" <<'PY'
import json, statistics, sys
fsync = json.load(open(sys.argv[1]))
runs = [json.load(open(f)) for f in sys.argv[2:]]
p99 = lambda name: statistics.median(r["p99_us"] for r in runs if r["name"] == name) / 1000
nginx, isnad, sync = p99("nginx-half"), p99("isnad-half"), fsync["p99_us"] / 1000
print()
print(f"- fdatasync of {fsync['bytes']} bytes on the audit log's file system: p50 {fsync['p50_us'] / 1000:.2f} ms, p99 {sync:.2f} ms")
print(f"- p99 at half load: isnad {isnad:.2f} ms / target nginx's {nginx:.2f} + fsync p99 {sync:.2f} = {nginx + sync:.2f} ms: **{'met' if isnad <= nginx + sync else 'not met'}**")
PY
  fi
} | tee "${OUT:-/dev/null}"

if [ -n "${PLOT:-}" ]; then
  if ! command -v gnuplot >/dev/null; then
    echo "installing gnuplot-nox from Debian" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gnuplot-nox >/dev/null
  fi
  # Each scenario's latency by percentile, the median over rounds of each percentile.
  python3 - "$W" "${RESULTS[@]}" "${HALF_RESULTS[@]}" <<'PY'
import json, statistics, sys
w, files = sys.argv[1], sys.argv[2:]
runs = [json.load(open(f)) for f in files]
for name in dict.fromkeys(r["name"] for r in runs):
    curves = [r["latency_curve"] for r in runs if r["name"] == name]
    with open(f"{w}/curve-{name}.dat", "w") as out:
        for i, (p, _) in enumerate(curves[0]):
            if p >= 100:
                continue
            ms = statistics.median(c[i][1] for c in curves) / 1000
            out.write(f"{1 / (1 - p / 100):.6g} {ms:.4f} {p}\n")
PY
  # The right-hand panel only when the half-load phase ran.
  HALF_PLOT="set title \"open loop at half of nginx's maximum (${HALF_RATE:-} requests/s)\"
plot \"$W/curve-nginx-half.dat\" using 1:2 with linespoints title \"nginx grpc_pass\", \"$W/curve-isnad-half.dat\" using 1:2 with linespoints title \"isnad, every check\""
  [ ${#HALF_RESULTS[@]} -gt 0 ] || HALF_PLOT=""
  gnuplot <<GNUPLOT
set terminal pngcairo size 1200,520 font "sans,10" noenhanced
set output "$PLOT"
set multiplot layout 1,$([ -n "$HALF_PLOT" ] && echo 2 || echo 1) title "isnad bench/run.sh, $(git -C "$ROOT" rev-parse --short HEAD), $(date -u +%Y-%m-%d)"
set logscale x
set xtics ("p0" 1, "p50" 2, "p90" 10, "p99" 100, "p99.9" 1000, "p99.99" 10000)
set xlabel "percentile"
set ylabel "latency, ms"
set grid
set key left top
set title "closed loop, ${CONNECTIONS} x ${CONCURRENCY} in flight"
plot "$W/curve-direct.dat" using 1:2 with linespoints title "direct", \
     "$W/curve-nginx.dat" using 1:2 with linespoints title "nginx grpc_pass", \
     "$W/curve-isnad.dat" using 1:2 with linespoints title "isnad, every check", \
     "$W/curve-unaudited.dat" using 1:2 with linespoints title "isnad, no audit record", \
     "$W/curve-passthrough.dat" using 1:2 with linespoints title "isnad pass-through"
$HALF_PLOT
unset multiplot
GNUPLOT
  echo "latency plot: $PLOT" >&2
fi
