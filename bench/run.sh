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

if ! command -v nginx >/dev/null; then
  echo "installing nginx-light from Debian" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null
fi
cargo build --release --locked -q -p isnad-gateway -p isnad-bench
ISNAD=$ROOT/target/release/isnad
BENCH=$ROOT/target/release/isnad-bench

W=$(mktemp -d /tmp/isnad-bench.XXXXXX)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  [ -f "$W/nginx.pid" ] && kill "$(cat "$W/nginx.pid")" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap cleanup EXIT

# free_port, wait_port
source "$ROOT/bench/lib.sh"

P_PROVIDER=$(free_port); P_GATEWAY=$(free_port); P_NGINX=$(free_port)
"$ISNAD" certs init --dir "$W/pki" >/dev/null
RECORDS=$ROOT/deploy/local/records/identity.person.jsonl

cat > "$W/provider.yaml" <<YAML
agency: identity-authority
listen: 127.0.0.1:$P_PROVIDER
tls: { ca: pki/ca.pem, cert: pki/identity-authority.pem, key: pki/identity-authority.key }
allowed_callers: [spiffe://isnad.example/gateway/gateway]
datasets:
  identity.person:
    records: $RECORDS
    fields: { full_name_en: string, full_name_ar: string, date_of_birth: date, sex: string,
              nationality: string, emirate: string, id_card_expiry: date, mobile: string,
              email: string }
YAML
od -An -tx1 -N32 /dev/urandom | tr -d ' \n' > "$W/hash.key"
od -An -tx1 -N32 /dev/urandom | tr -d ' \n' > "$W/pseudonym.key"
# The sample policy has a consent rule; these scenarios send no tokens (bench/consent.sh does).
"$ISNAD" consent keygen --dir "$W" >/dev/null
# Every request is audited (durable, group commit) and every response signed, as in production.
"$ISNAD" audit keygen --out "$W/audit.pk8" >/dev/null
"$ISNAD" audit keygen --out "$W/provenance.pk8" >/dev/null
cat > "$W/gateway.yaml" <<YAML
node: gateway
listen: 127.0.0.1:$P_GATEWAY
policy: $ROOT/deploy/local
hash_key: hash.key
pseudonym_key: pseudonym.key
consent: { jwks: consent/jwks.json, issuers: ["https://consent.isnad.example"] }
audit: { dir: audit, key: audit.pk8 }
provenance_key: provenance.pk8
tls: { ca: pki/ca.pem, cert: pki/gateway.pem, key: pki/gateway.key }
upstreams: { identity-authority: "https://127.0.0.1:$P_PROVIDER" }
YAML
mkdir -p "$W/nginx-tmp"
cat > "$W/nginx.conf" <<NGINX
user root;
worker_processes auto;
pid $W/nginx.pid;
error_log $W/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $W/nginx-tmp;
  # nginx closes a connection after 1,000 requests by default (GOAWAY), failing requests in
  # flight; the benchmark keeps connections up, as isnad and the provider do.
  keepalive_requests 10000000;
  keepalive_timeout 300s;
  upstream provider {
    server 127.0.0.1:$P_PROVIDER;
    keepalive 64;
    keepalive_requests 10000000;
    keepalive_timeout 300s;
  }
  server {
    listen 127.0.0.1:$P_NGINX ssl http2;
    ssl_protocols TLSv1.3;
    ssl_certificate $W/pki/gateway.pem;
    ssl_certificate_key $W/pki/gateway.key;
    ssl_client_certificate $W/pki/ca.pem;
    ssl_verify_client on;
    location / {
      grpc_pass grpcs://provider;
      grpc_ssl_protocols TLSv1.3;
      grpc_ssl_certificate $W/pki/gateway.pem;
      grpc_ssl_certificate_key $W/pki/gateway.key;
      grpc_ssl_trusted_certificate $W/pki/ca.pem;
      grpc_ssl_verify on;
      grpc_ssl_name localhost;
      grpc_ssl_session_reuse on;
    }
  }
}
NGINX

ISNAD_LOG=warn "$ISNAD" provider --config "$W/provider.yaml" 2>"$W/provider.log" & PIDS+=($!); PROVIDER_PID=$!
ISNAD_LOG=warn "$ISNAD" serve --config "$W/gateway.yaml" 2>"$W/gateway.log" & PIDS+=($!); GATEWAY_PID=$!
nginx -p "$W" -c "$W/nginx.conf" -g 'daemon off;' 2>"$W/nginx.log" & PIDS+=($!)
wait_port "$P_PROVIDER"; wait_port "$P_GATEWAY"; wait_port "$P_NGINX"
NGINX_PIDS=$(pgrep -d, -f "nginx.*$W/nginx.conf" || true)
NGINX_PIDS=${NGINX_PIDS},$(pgrep -d, -P "$(cat "$W/nginx.pid")" || true)
NGINX_PIDS=$(echo "$NGINX_PIDS" | tr ',' '\n' | grep -v '^$' | sort -u | paste -sd,)

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
