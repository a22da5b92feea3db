# Shell helpers shared by the benchmark scripts (sourced, not run).

free_port() { # a port nothing listens on
  while :; do
    local p=$((20000 + RANDOM % 30000))
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
  done
}

wait_port() { # PORT: wait up to 30 s until something listens on it; $W names the logs
  for _ in $(seq 1 600); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "nothing listens on port $1; logs in $W" >&2; exit 1
}

cleanup() { # stops what start_side_by_side started
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  [ -f "$W/nginx.pid" ] && kill "$(cat "$W/nginx.pid" 2>/dev/null)" 2>/dev/null || true
  wait 2>/dev/null || true
}

# Builds isnad and isnad-bench, installs nginx-light when missing, and starts in a new folder $W:
# a PKI, one reference provider (identity.person of the sample federation), one isnad gateway
# with its audit log and provenance key, and one nginx grpc_pass with mTLS on both legs in front
# of the same provider, and the same gateway twice more in the benchmark build's modes: without
# the audit record and signature (steps 1 to 7: `bench_mode: unaudited`) and with every check off
# (`bench_mode: pass-through`), each its own process. Sets ISNAD, BENCH, W, RECORDS, P_PROVIDER,
# P_GATEWAY, P_NGINX, P_PASS, P_UNAUDITED, PROVIDER_PID, GATEWAY_PID, PASS_PID, UNAUDITED_PID,
# NGINX_PIDS; the caller's EXIT trap stops them.
# Needs ROOT (the repository). (The body is not indented: it holds here-documents.)
start_side_by_side() {
if ! command -v nginx >/dev/null; then
  echo "installing nginx-light from Debian" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null
fi
# With the benchmark-only feature `bench-modes`, so that one binary serves the unaudited and
# pass-through scenarios too; the full-pipeline gateway's configuration does not use it.
cargo build --release --locked -q -p isnad-gateway -p isnad-bench --features isnad-gateway/bench-modes
# ISNAD_BIN=PATH benchmarks that gateway binary instead (built with the same feature), so that
# two builds can be compared by the same script on the same machine.
ISNAD=${ISNAD_BIN:-$ROOT/target/release/isnad}
BENCH=$ROOT/target/release/isnad-bench

# The work directory (PKI, configurations, logs, the audit logs): BENCH_DIR, /tmp by default.
W=$(mktemp -d "${BENCH_DIR:-/tmp}/isnad-bench.XXXXXX")
PIDS=()
trap cleanup EXIT

P_PROVIDER=$(free_port); P_GATEWAY=$(free_port); P_NGINX=$(free_port); P_PASS=$(free_port); P_UNAUDITED=$(free_port)
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
audit: { dir: audit, key: audit.pk8, commit_delay_us: ${COMMIT_DELAY_US:-200} }
provenance_key: provenance.pk8
tls: { ca: pki/ca.pem, cert: pki/gateway.pem, key: pki/gateway.key }
upstreams: { identity-authority: "https://127.0.0.1:$P_PROVIDER" }
# One agency sends all the load: its requests in flight may exceed the default of 256 in the
# open loop's bursts, which would be refused (agency_busy) rather than measured.
limits: { agency_in_flight: 4096 }
YAML
# The same gateway with every check off (a benchmark build only): the proxy's own cost.
sed -e "s/^listen: .*/listen: 127.0.0.1:$P_PASS/" -e "s/dir: audit,/dir: audit-pass,/" \
  "$W/gateway.yaml" > "$W/pass-through.yaml"
echo "bench_mode: pass-through" >> "$W/pass-through.yaml"
# And with steps 1 to 7 but no audit record or signature: what those two cost.
sed -e "s/^listen: .*/listen: 127.0.0.1:$P_UNAUDITED/" -e "s/dir: audit,/dir: audit-unaudited,/" \
  "$W/gateway.yaml" > "$W/unaudited.yaml"
echo "bench_mode: unaudited" >> "$W/unaudited.yaml"
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
  # grpc_pass does not multiplex upstream: each request in flight holds its own connection to
  # the provider, and connections beyond this cache are closed when idle (and opened again, a
  # full handshake, on the next burst). Large enough for every request in flight of the open
  # loop's bursts, so that nginx never pays a handshake per request.
  upstream provider {
    server 127.0.0.1:$P_PROVIDER;
    keepalive 1024;
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
ISNAD_LOG=error "$ISNAD" serve --config "$W/pass-through.yaml" 2>"$W/pass-through.log" & PIDS+=($!); PASS_PID=$!
ISNAD_LOG=error "$ISNAD" serve --config "$W/unaudited.yaml" 2>"$W/unaudited.log" & PIDS+=($!); UNAUDITED_PID=$!
nginx -p "$W" -c "$W/nginx.conf" -g 'daemon off;' 2>"$W/nginx.log" & PIDS+=($!)
wait_port "$P_PROVIDER"; wait_port "$P_GATEWAY"; wait_port "$P_NGINX"; wait_port "$P_PASS"; wait_port "$P_UNAUDITED"
NGINX_PIDS=$(pgrep -d, -f "nginx.*$W/nginx.conf" || true)
NGINX_PIDS=${NGINX_PIDS},$(pgrep -d, -P "$(cat "$W/nginx.pid")" || true)
NGINX_PIDS=$(echo "$NGINX_PIDS" | tr ',' '\n' | grep -v '^$' | sort -u | paste -sd,)
}
