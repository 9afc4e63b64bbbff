#!/usr/bin/env bash
# The SPIFFE Workload API on one host (make bench-workload, and bench/run.sh): a release vouchd,
# a real vouch-attester on its own software TPM with --workload-socket and one registration
# entry, and 1,000 workloads as gRPC streams from one Python process (grpcio and py-spiffe's
# generated messages, bench/workload_clients.py). Arguments: BIN OUT SECONDS. Writes
# OUT/workload/results.json and the bench-workload section of docs/performance.md.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$1; out=$2/workload; seconds=$3
rm -rf "$out" && mkdir -p "$out"
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
pids=()
trap 'kill ${pids[@]:-} 2>/dev/null || true' EXIT

scripts/swtpm-manufacture.sh "$out/tpm" >/dev/null
mkdir -p "$out/ek-roots" && cp "$out/tpm/ca/swtpm-localca-rootca-cert.pem" "$out/tpm/ca/issuercert.pem" "$out/ek-roots/"
. bench/swtpm.sh
swtpm_start "$out/tpm/state" "$out/swtpm.log"
pids+=($swtpm_pid)

# Certificates for one minute: the attester renews them at 30 s, which the streams must all see.
sed -e 's/  ttl: 15m/  ttl: 1m/' policies/development.yaml > "$out/policy.yaml"
broker_port=$(free_port)
"$bin/vouchd" --data-dir "$out/broker" --policy "$out/policy.yaml" --ek-roots "$out/ek-roots" --port "$broker_port" \
  --publish-listen off >"$out/vouchd.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 200); do [ -f "$out/broker/broker-ca/ca.pem" ] && curl -sf --cacert "$out/broker/broker-ca/ca.pem" "https://127.0.0.1:$broker_port/healthz" >/dev/null && break; sleep 0.05; done

printf 'entries:\n  - agent: bench\n    selectors: [unix:uid:%s]\n' "$(id -u)" > "$out/entries.yaml"
"$bin/vouch-attester" --broker "https://127.0.0.1:$broker_port" --ca "$out/broker/broker-ca/ca.pem" --tcti "swtpm:host=127.0.0.1,port=$tpm_port" \
  --socket "$out/agent.sock" --state-dir "$out/attester-state" --hostname bench-host \
  --workload-socket "$out/workload.sock" --workload-entries "$out/entries.yaml" --workload-connections-per-user 1024 >"$out/attester.log" 2>&1 &
attester_pid=$!
pids+=($attester_pid)
for _ in $(seq 1 400); do [ -S "$out/workload.sock" ] && break; sleep 0.05; done

# py-spiffe's generated messages and grpcio, in a throwaway virtualenv.
venv="$out/venv"
python3 -m venv "$venv" && "$venv/bin/pip" install -q spiffe==0.3.2 >/dev/null
"$venv/bin/python" bench/workload_clients.py "$out/workload.sock" "$out/attester.log" "$attester_pid" "$seconds" 1000 > "$out/workload.jsonl"
python3 - "$out" <<'PY'
import json, os, sys
sys.path.insert(0, "bench")
import section
out = sys.argv[1]
results = [json.loads(l) for l in open(os.path.join(out, "workload.jsonl"))]
section.write(out, results, ["SPIRE (the peer) is not packaged in Debian and cannot be fetched here: no side-by-side figure"], "bench-workload",
              header="Release vouchd and vouch-attester (swtpm), clients in one Python process (grpcio 1.85, py-spiffe 0.3.2's messages) on the same 2 cores; wall-clock rates.")
PY
