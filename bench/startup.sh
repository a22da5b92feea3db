#!/usr/bin/env bash
# Start-up time of a gateway node (issue 7): from exec to accepting connections, with the
# synthetic store of 10,000 rules and an audit log of RECORDS (default 1,000,000) realistic
# records, against a baseline measured in the same run: the same node with the sample policy
# (deploy/local, 12 rules) and an empty audit log; and each large part alone. Target: at most
# 200 ms.
#
#   bench/startup.sh                    # RUNS=5 starts of each; RECORDS=1000000; KEEP=1 keeps $W
#
# Filling the log takes about a minute (group commit, durable); the log is kept between runs
# when FIXTURE=DIR names a folder (it is made on the first run and reused afterwards).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
source "$ROOT/bench/lib.sh"
RECORDS=${RECORDS:-1000000}
RUNS=${RUNS:-5}

cargo build --release --locked -q -p isnad-gateway -p isnad-bench
ISNAD=$ROOT/target/release/isnad
BENCH=$ROOT/target/release/isnad-bench
W=$(mktemp -d /tmp/isnad-startup.XXXXXX)
[ "${KEEP:-0}" = 1 ] || trap 'rm -rf "$W"' EXIT
FIXTURE=${FIXTURE:-$W/large}
mkdir -p "$FIXTURE"

"$ISNAD" certs init --dir "$W/pki" >/dev/null
od -An -tx1 -N32 /dev/urandom | tr -d ' \n' > "$W/hash.key"
od -An -tx1 -N32 /dev/urandom | tr -d ' \n' > "$W/pseudonym.key"
"$ISNAD" consent keygen --dir "$W" >/dev/null
"$ISNAD" audit keygen --out "$W/provenance.pk8" >/dev/null
# The fixture's log is signed with its own key, kept beside it.
[ -f "$FIXTURE/audit.pk8" ] || "$ISNAD" audit keygen --out "$FIXTURE/audit.pk8" >/dev/null
"$ISNAD" audit keygen --out "$W/baseline-audit.pk8" >/dev/null

echo "fixture: 10,000 rules and $RECORDS audit records in $FIXTURE" >&2
"$BENCH" fixture --dir "$FIXTURE" --records "$RECORDS" --key "$FIXTURE/audit.pk8" \
  --origin bench.example/audit/gateway > "$W/fixture.json"
cat "$W/fixture.json" >&2

config() { # NAME POLICY AUDIT_DIR AUDIT_KEY PORT
  cat > "$W/$1.yaml" <<YAML
node: gateway
listen: 127.0.0.1:$5
policy: $2
hash_key: $W/hash.key
pseudonym_key: $W/pseudonym.key
consent: { jwks: $W/consent/jwks.json, issuers: ["https://consent.isnad.example"] }
audit: { dir: $3, key: $4 }
provenance_key: $W/provenance.pk8
tls: { ca: $W/pki/ca.pem, cert: $W/pki/gateway.pem, key: $W/pki/gateway.key }
upstreams: {}
YAML
}
# The baseline, each large part alone, and both. The rules-only node's empty log is signed as
# the synthetic federation's; the log-only node's origin is set to the fixture's.
"$ISNAD" audit keygen --out "$W/rules-audit.pk8" >/dev/null
config baseline "$ROOT/deploy/local" "$W/baseline-audit" "$W/baseline-audit.pk8" "$(free_port)"
config rules "$FIXTURE/policy" "$W/rules-audit" "$W/rules-audit.pk8" "$(free_port)"
config log "$ROOT/deploy/local" "$FIXTURE/audit" "$FIXTURE/audit.pk8" "$(free_port)"
sed -i "s|^audit: { dir: $FIXTURE/audit, key: $FIXTURE/audit.pk8 }|audit: { dir: $FIXTURE/audit, key: $FIXTURE/audit.pk8, origin: bench.example/audit/gateway }|" "$W/log.yaml"
config large "$FIXTURE/policy" "$FIXTURE/audit" "$FIXTURE/audit.pk8" "$(free_port)"

# Interleaved, so that the machine's drift hits all alike.
for round in $(seq 1 "$RUNS"); do
  for node in baseline rules log large; do
    listen=$(sed -n 's/^listen: //p' "$W/$node.yaml")
    ISNAD_LOG=warn "$BENCH" startup --isnad "$ISNAD" --config "$W/$node.yaml" \
      --listen "$listen" --runs 1 > "$W/$node-$round.json"
  done
done

python3 - "$W" "$RUNS" "$RECORDS" <<'PY'
import json, statistics, sys
w, runs, records = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
ms = lambda name: [json.load(open(f"{w}/{name}-{r}.json"))["runs_ms"][0] for r in range(1, runs + 1)]
base, large = ms("baseline"), ms("large")
ratios = [l / b for l, b in zip(large, base)]
print("| node | starts | median ms | min ms | max ms |")
print("|---|---:|---:|---:|---:|")
for name, what in [("baseline", "sample policy (12 rules), empty audit log"),
                   ("rules", "10,000 rules, empty audit log"),
                   ("log", f"sample policy, {records:,} audit records"),
                   ("large", f"10,000 rules, {records:,} audit records")]:
    m = ms(name)
    print(f"| {what} | {runs} | {statistics.median(m):.1f} | {min(m):.1f} | {max(m):.1f} |")
print()
print(f"- large / baseline: **{statistics.median(ratios):.1f}x** median (range {min(ratios):.1f} to {max(ratios):.1f})")
m = statistics.median(large)
print(f"- start-up with 10,000 rules and {records:,} records: {m:.0f} ms / target 200 ms: **{'met' if m <= 200 else 'not met'}**")
PY
