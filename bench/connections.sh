#!/usr/bin/env bash
# New connections and idle ones, isnad against nginx, side by side (the same set-up as run.sh):
#   handshakes  new mTLS connections as fast as CONCURRENCY clients can make them, up to the
#               server's first HTTP/2 frame (a full TLS 1.3 handshake with client certificate,
#               no resumption): handshakes per second and server CPU per handshake, so
#               handshakes per second per core of server CPU;
#   idle        IDLE connections opened and held: the resident memory of each server before and
#               with them (the target: isnad at most 50 MB with 1,000 idle connections).
# Interleaved in ROUNDS rounds; ratios per round, median and range. Prints a Markdown report.
#
# Environment: ROUNDS (3), DURATION (s, 10), CONCURRENCY (8), IDLE (1000), OUT (also write the
# report to this file).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
CONCURRENCY=${CONCURRENCY:-8}
IDLE=${IDLE:-1000}
OUT=${OUT:-}

source "$ROOT/bench/lib.sh"
start_side_by_side
# Many connections from one process.
ulimit -n 65536 2>/dev/null || true

declare -a HS_ISNAD HS_NGINX
for round in $(seq 1 "$ROUNDS"); do
  for name in isnad nginx; do
    if [ "$name" = isnad ]; then target=127.0.0.1:$P_GATEWAY; as=housing-programme; proc="isnad=$GATEWAY_PID"
    else target=127.0.0.1:$P_NGINX; as=gateway; proc="nginx=$NGINX_PIDS"; fi
    echo "round $round: $name handshakes..." >&2
    "$BENCH" handshakes --name "$name" --target "$target" --pki "$W/pki" --as "$as" \
      --concurrency "$CONCURRENCY" --duration "$DURATION" --process "$proc" > "$W/hs-$round-$name.json"
  done
done
echo "idle connections..." >&2
"$BENCH" idle --name isnad --target "127.0.0.1:$P_GATEWAY" --pki "$W/pki" --as housing-programme \
  --connections "$IDLE" --process "isnad=$GATEWAY_PID" > "$W/idle-isnad.json"
"$BENCH" idle --name nginx --target "127.0.0.1:$P_NGINX" --pki "$W/pki" --as gateway \
  --connections "$IDLE" --process "nginx=$NGINX_PIDS" > "$W/idle-nginx.json"

python3 - "$W" "$ROUNDS" <<'PY' | tee "${OUT:-/dev/null}"
import json, statistics, sys, subprocess, os
w, rounds = sys.argv[1], int(sys.argv[2])
def load(p): return json.load(open(os.path.join(w, p)))
rows = {n: [load(f"hs-{r}-{n}.json") for r in range(1, rounds + 1)] for n in ("isnad", "nginx")}
def cpu(res, proc): return dict(res["cpu_us_per_handshake"])[proc]
print(f"Connections benchmark, {os.environ.get('COMMIT','')}")
print()
print("| server | handshakes/s | errors | server CPU us/handshake | handshakes/s per core | client CPU us/handshake |")
print("|---|---:|---:|---:|---:|---:|")
for n in ("isnad", "nginx"):
    rs = rows[n]
    print(f"| {n} | {statistics.median(r['per_second'] for r in rs):.0f} | {sum(r['errors'] for r in rs)} | "
          f"{statistics.median(cpu(r, n) for r in rs):.0f} | {statistics.median(1e6 / cpu(r, n) for r in rs):.0f} | "
          f"{statistics.median(cpu(r, 'load-generator') for r in rs):.0f} |")
ratios = [ (1e6 / cpu(i, 'isnad')) / (1e6 / cpu(g, 'nginx')) for i, g in zip(rows["isnad"], rows["nginx"]) ]
rates = [ i["per_second"] / g["per_second"] for i, g in zip(rows["isnad"], rows["nginx"]) ]
print()
print(f"- handshakes per core, isnad/nginx: **{statistics.median(ratios):.2f}x** (rounds {', '.join(f'{x:.2f}' for x in ratios)})")
print(f"- handshakes per second, isnad/nginx: {statistics.median(rates):.2f}x (rounds {', '.join(f'{x:.2f}' for x in rates)})")
for n in ("isnad", "nginx"):
    idle = load(f"idle-{n}.json")
    for proc, before, with_ in idle["rss_kib"]:
        print(f"- {n}: resident memory {before/1024:.1f} MiB before, {with_/1024:.1f} MiB with {idle['connections']} idle connections "
              f"({(with_-before)/idle['connections']:.1f} KiB each)")
PY
