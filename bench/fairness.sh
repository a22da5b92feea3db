#!/usr/bin/env bash
# Fairness between agencies: does one agency flooding the gateway starve another?
#
# A well-behaved agency (housing-programme) asks at a modest fixed rate (open loop: latency
# counts from when each request was due, so queueing cannot hide) while a second agency
# (health-authority) floods the same gateway (closed loop, many connections, far over its
# limits). Four scenarios, interleaved in ROUNDS rounds, the same provider behind each gateway:
#   alone             the well-behaved agency alone, on the gateway with agency limits;
#   flooded           the same while the other floods, agency limits on (AGENCY_IN_FLIGHT
#                     requests in flight and AGENCY_RATE per second for every agency);
#   flooded-defaults  the same against a gateway with the default limits (256 in flight per
#                     agency, no rate);
#   flooded-off       the same against a gateway with no agency limits at all.
# The flooder's own runs are reported as flood, flood-defaults, flood-off: what it got served
# and why the rest was refused. Every process is separate; all share the machine's cores.
#
# Environment: ROUNDS (3), DURATION (s, 10), WARMUP (s, 2), RATE (the well-behaved agency's
# requests/s, 200), CONNECTIONS (its connections, 2), FLOOD_CONNECTIONS (16),
# FLOOD_CONCURRENCY (32 per connection), AGENCY_IN_FLIGHT (256), AGENCY_RATE (500),
# OUT (also write the report to this file), PROFILE (a folder: record the gateway with `perf
# record` during the first flooded run and write perf's report there).
# CPU: the alone rows give the gateway's CPU per request; the flood rows give the gateway's
# CPU over the whole flood (cores), per request it served to the flooder.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
RATE=${RATE:-200}
CONNECTIONS=${CONNECTIONS:-2}
FLOOD_CONNECTIONS=${FLOOD_CONNECTIONS:-16}
FLOOD_CONCURRENCY=${FLOOD_CONCURRENCY:-32}
AGENCY_IN_FLIGHT=${AGENCY_IN_FLIGHT:-256}
AGENCY_RATE=${AGENCY_RATE:-500}
OUT=${OUT:-}

cargo build --release --locked -q -p isnad-gateway -p isnad-bench
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
ISNAD=$TARGET/release/isnad
BENCH=$TARGET/release/isnad-bench

W=$(mktemp -d /tmp/isnad-fairness.XXXXXX)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

# free_port, wait_port
source "$ROOT/bench/lib.sh"

P_PROVIDER=$(free_port)
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
"$ISNAD" consent keygen --dir "$W" >/dev/null
"$ISNAD" audit keygen --out "$W/audit.pk8" >/dev/null
"$ISNAD" audit keygen --out "$W/provenance.pk8" >/dev/null
ISNAD_LOG=warn "$ISNAD" provider --config "$W/provider.yaml" 2>"$W/provider.log" & PIDS+=($!)
PROVIDER_PID=$!

gateway() { # NAME LIMITS(YAML flow mapping): starts a gateway; sets PORT and PID
  local name=$1 limits=$2
  PORT=$(free_port)
  cat > "$W/$name.yaml" <<YAML
node: gateway
listen: 127.0.0.1:$PORT
policy: $ROOT/deploy/local
hash_key: hash.key
pseudonym_key: pseudonym.key
consent: { jwks: consent/jwks.json, issuers: ["https://consent.isnad.example"] }
audit: { dir: audit-$name, key: audit.pk8 }
provenance_key: provenance.pk8
tls: { ca: pki/ca.pem, cert: pki/gateway.pem, key: pki/gateway.key }
upstreams: { identity-authority: "https://127.0.0.1:$P_PROVIDER" }
limits: $limits
YAML
  ISNAD_LOG=warn "$ISNAD" serve --config "$W/$name.yaml" 2>"$W/$name.log" & PIDS+=($!)
  PID=$!
  wait_port "$PORT"
}
gateway limited "{ agency_in_flight: $AGENCY_IN_FLIGHT, agency_rate: $AGENCY_RATE }"
P_LIMITED=$PORT; LIMITED_PID=$PID
gateway defaults "{}"
P_DEFAULTS=$PORT; DEFAULTS_PID=$PID
gateway off "{ agency_in_flight: 0, agency_rate: 0 }"
P_OFF=$PORT; OFF_PID=$PID
wait_port "$P_PROVIDER"

well_behaved() { # NAME PORT [ARGS]: the housing programme at RATE requests/s
  "$BENCH" load --name "$1" --target "https://127.0.0.1:$2" --api exchange --pki "$W/pki" \
    --as housing-programme --subjects "$RECORDS" --rate "$RATE" --connections "$CONNECTIONS" \
    --duration "$DURATION" --warmup "$WARMUP" "${@:3}" > "$W/$round-$1.json"
  RESULTS+=("$W/$round-$1.json")
}

flooded() { # SUFFIX PORT GATEWAY_PID: the health authority floods while the other asks
  local suffix=$1 port=$2 pid=$3
  echo "round $round: flooded$suffix..." >&2
  # The flood starts a second before the measured agency and ends a second after it.
  "$BENCH" load --name "flood$suffix" --target "https://127.0.0.1:$port" --api exchange \
    --pki "$W/pki" --as health-authority --purpose newborn-registration \
    --fields full_name_en,nationality --subjects "$RECORDS" --refusals-expected \
    --connections "$FLOOD_CONNECTIONS" --concurrency "$FLOOD_CONCURRENCY" \
    --duration $((WARMUP + DURATION + 1)) --warmup 1 --process "isnad=$pid" \
    > "$W/$round-flood$suffix.json" &
  local flood=$!
  local perf=
  if [ -n "${PROFILE:-}" ] && [ -z "$suffix" ] && [ "$round" = 1 ]; then
    mkdir -p "$PROFILE"
    perf record -q -F 1999 -g -p "$pid" -o "$PROFILE/perf.data" -- sleep $((WARMUP + DURATION)) \
      2>/dev/null & perf=$!
  fi
  sleep 1
  # Under the flood even its first request may be refused; that counts among its errors.
  well_behaved "flooded$suffix" "$port" --refusals-expected
  wait "$flood"
  if [ -n "$perf" ]; then
    wait "$perf" || true
    perf report -i "$PROFILE/perf.data" --no-children --percent-limit 0.5 --stdio -g none \
      > "$PROFILE/self.txt" 2>/dev/null || true
    perf report -i "$PROFILE/perf.data" --children --percent-limit 2 --stdio -g none \
      > "$PROFILE/children.txt" 2>/dev/null || true
    echo "profile of the gateway under the flood: $PROFILE/self.txt, $PROFILE/children.txt" >&2
  fi
  RESULTS+=("$W/$round-flood$suffix.json")
}

RESULTS=()
for round in $(seq 1 "$ROUNDS"); do
  echo "round $round: alone..." >&2
  well_behaved alone "$P_LIMITED" --process "isnad=$LIMITED_PID"
  flooded "" "$P_LIMITED" "$LIMITED_PID"
  flooded -defaults "$P_DEFAULTS" "$DEFAULTS_PID"
  flooded -off "$P_OFF" "$OFF_PID"
done

{
  echo "Fairness benchmark of $(git -C "$ROOT" rev-parse --short HEAD), $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs))"
  echo
  echo "\`bench/fairness.sh\` with ROUNDS=$ROUNDS DURATION=$DURATION WARMUP=$WARMUP RATE=$RATE CONNECTIONS=$CONNECTIONS FLOOD_CONNECTIONS=$FLOOD_CONNECTIONS FLOOD_CONCURRENCY=$FLOOD_CONCURRENCY AGENCY_IN_FLIGHT=$AGENCY_IN_FLIGHT AGENCY_RATE=$AGENCY_RATE"
  echo
  "$BENCH" report "${RESULTS[@]}" \
    --ratio flooded/alone --ratio flooded-defaults/alone --ratio flooded-off/alone \
    --latency-ratio flooded/alone --latency-ratio flooded-defaults/alone \
    --latency-ratio flooded-off/alone
} | tee "${OUT:-/dev/null}"
