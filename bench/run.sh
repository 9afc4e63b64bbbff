#!/usr/bin/env bash
# make bench: measurements side by side in one run, written to out/bench/results.json and into the
# generated section of docs/performance.md. Reports only; nothing here passes or fails on speed.
set -euo pipefail
cd "$(dirname "$0")/.."
shared=${VOUCH_SHARED_TESTDATA:-../shared/testdata}
seconds=${BENCH_SECONDS:-3}
out=out/bench
rm -rf "$out" && mkdir -p "$out"
swift build -c release
bin=$(swift build -c release --show-bin-path)

# A software TPM for quotes (tpm2-tools and vouch-bench take turns on it).
scripts/swtpm-manufacture.sh "$out/tpm"
. bench/swtpm.sh
swtpm_start "$out/tpm/state" "$out/swtpm.log"
port=$tpm_port
trap 'kill $swtpm_pid ${broker_pid:-} ${sim_pid:-} 2>/dev/null || true' EXIT
export TPM2TOOLS_TCTI="swtpm:host=127.0.0.1,port=$port"

# In process first: vouch-bench extends PCRs 0-9 and 14 with the rhel8-uefi log, so the peers'
# quotes below cover the same measured boot.
"$bin/vouch-bench" --tcti "$TPM2TOOLS_TCTI" --logs "$shared/tpm-eventlog/eventlogs" --seconds "$seconds" --out "$out/inprocess.json"
openssl speed -seconds "$seconds" ecdsap256 rsa2048 > "$out/openssl-speed.txt" 2>/dev/null
# Receipts signed and verified per second (in process, the tests' in-memory world).
"$bin/vouch-bench" receipts --seconds "$seconds" --out "$out/receipts.json"

# Confidential-VM evidence (SEV-SNP, TDX) beside openssl speed and dcap-qvl: bench/tee.sh, which
# writes its own table (out/bench/tee/results.json, the TEE section of docs/performance.md).
bench/tee.sh "$out/tee"
# NVIDIA GPU evidence, RIMs and Nitro beside the same openssl speed run and NVIDIA's own verifier:
# bench/gpu.sh (out/bench/gpu/results.json, the GPU section of docs/performance.md).
bench/gpu.sh "$out/gpu" "$out/tee/openssl-speed.txt"

# The peers' quotes, one per AK type for both peers: PCR 16 carries Keylime's data binding
# (reset, then extended with SHA-256 of the agent's transport key PEM, as the Keylime agent does
# before every quote), and the nonce is 20 ASCII characters, as Keylime's verifier sends them.
nonce_hex=$(printf vouchbench0123456789 | od -An -tx1 | tr -d ' \n')
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 2>/dev/null | openssl pkey -pubout -out "$out/transport.pem"
tpm2_pcrreset 16 && tpm2_pcrextend 16:sha256="$(sha256sum "$out/transport.pem" | cut -d' ' -f1)"
for alg in ecc rsa; do
  tpm2_flushcontext -t   # no resource manager: free the transient slots (vouch-bench's, the last AK's)
  tpm2_createak -C 0x81010001 -c "$out/ak-$alg.ctx" -G $alg -g sha256 -s $([ $alg = ecc ] && echo ecdsa || echo rsassa) -u "$out/ak-$alg.pub" >/dev/null
  tpm2_flushcontext -t
  tpm2_readpublic -c "$out/ak-$alg.ctx" -f pem -o "$out/ak-$alg.pem" >/dev/null
  tpm2_quote -c "$out/ak-$alg.ctx" -l sha256:0,1,2,3,4,5,6,7,8,9,14,16,23 -q "$nonce_hex" \
    -m "$out/q-$alg.msg" -s "$out/q-$alg.sig" -o "$out/q-$alg.pcrs" -g sha256 >/dev/null
  tpm2_flushcontext -t
done

# tpm2_checkquote, one process per quote, as operators and Keylime's measured-boot path run it.
for alg in ecc rsa; do
  n=100; start=$(date +%s.%N)
  for _ in $(seq 1 $n); do tpm2_checkquote -u "$out/ak-$alg.pem" -m "$out/q-$alg.msg" -s "$out/q-$alg.sig" -f "$out/q-$alg.pcrs" -g sha256 -q "$nonce_hex" >/dev/null; done
  end=$(date +%s.%N)
  python3 -c "import json;print(json.dumps({'name':'tpm2_checkquote $alg (process per quote)','unit':'quotes/s','rate':$n/($end-$start),'detail':'tpm2-tools $(tpm2_checkquote -v | grep -o "version=\"[^\"]*\"" | head -1 | tr -d \\\")'}))" >> "$out/peers.jsonl"
done

# Keylime (PyPI) in a throwaway virtualenv on Debian's Python (it needs Debian's python3-gpg):
# checkquote, the verifier's process_quote_response, and the same with the event log and a
# measured-boot policy, on the same quotes (bench/peer_keylime.py).
kl="$out/keylime-venv"
dpkg -s python3-gpg libefivar1 >/dev/null 2>&1 || DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-gpg libefivar1 >/dev/null 2>&1 || true
if /usr/bin/python3 -m venv --system-site-packages "$kl" >/dev/null 2>&1 \
   && "$kl/bin/pip" install -q keylime packaging cryptography pyyaml sqlalchemy alembic tornado pyasn1 pyasn1-modules jinja2 lark requests psutil \
        jsonschema typing-extensions >"$out/keylime-pip.log" 2>&1 \
   && "$kl/bin/python" -c "import keylime.tpm.tpm_util" >/dev/null 2>&1; then
  for alg in ecc rsa; do
    "$kl/bin/python" bench/peer_keylime.py "$out" "$alg" "$seconds" "$shared/tpm-eventlog/eventlogs/rhel8-uefi.bin" >> "$out/peers.jsonl" 2>>"$out/keylime.log" \
      || echo "{\"name\":\"Keylime $alg\",\"unit\":\"quotes/s\",\"rate\":0,\"detail\":\"failed to run (see out/bench/keylime.log)\"}" >> "$out/peers.jsonl"
  done
else
  echo '{"name":"Keylime","unit":"quotes/s","rate":0,"detail":"skipped: keylime could not be installed from PyPI (see out/bench/keylime-pip.log)"}' >> "$out/peers.jsonl"
fi


# ---------------------------------------------------------------------------------------------
# Broker-level benchmarks on a release vouchd with simulated hosts (software AKs, no TPM in the
# way): end-to-end enrollment, CRL/OCSP serving, fleet re-attestation, revocation latency.
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
mkdir -p "$out/ek-roots" && cp "$out/tpm/ca/swtpm-localca-rootca-cert.pem" "$out/ek-roots/"
sed -e 's/  interval: 15m/  interval: 10s/' -e 's/    grace: 0s/    grace: 30s/' -e 's/  ttl: 15m/  ttl: 5m/' policies/development.yaml > "$out/sim-policy.yaml"
broker_pid=""
start_broker() {  # $1: name, $2: policy (default the 10 s one), then more vouchd options
  local name=$1 policy=${2:-$out/sim-policy.yaml}; shift $(( $# < 2 ? $# : 2 ))
  broker_port=$(free_port); broker_dir="$out/broker-$name"
  "$bin/vouchd" --data-dir "$broker_dir" --policy "$policy" --ek-roots "$out/ek-roots" --port "$broker_port" \
    --allow-simulated-hosts --reattest-concurrency 32 --publish-listen off "$@" >"$out/vouchd-$name.log" 2>&1 &
  broker_pid=$!
  for _ in $(seq 1 200); do [ -f "$broker_dir/broker-ca/ca.pem" ] && curl -sf --cacert "$broker_dir/broker-ca/ca.pem" "https://127.0.0.1:$broker_port/healthz" >/dev/null && return 0; sleep 0.05; done
  echo "vouchd did not start" >&2; return 1
}
stop_broker() { kill "$broker_pid" 2>/dev/null || true; wait "$broker_pid" 2>/dev/null || true; }
metric() { curl -s --cacert "$broker_dir/broker-ca/ca.pem" -H "Authorization: Bearer $(cat "$broker_dir/admin.token")" "https://127.0.0.1:$broker_port/metrics" | awk -v m="$1" '$1 == m {print $2}'; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }

# The transparency log in process (vouch-bench log): appends with signed checkpoints, inclusion proofs.
"$bin/vouch-bench" log --seconds "$seconds" --out "$out/log.json" >/dev/null
python3 -c "import json;[print(json.dumps(r)) for r in json.load(open('$out/log.json'))]" >> "$out/broker.jsonl"

# 3. End-to-end enrollment over HTTPS, concurrent clients (a thread each). vouch-bench reports its
# own CPU (getrusage) and the broker's (/proc/PID/stat) over the measured window, per enrollment:
# client and broker share the cores here, so the row says which of them bounds the rate.
start_broker enroll
for c in ${BENCH_CLIENTS:-1 8 32}; do
  "$bin/vouch-bench" enroll --broker "https://127.0.0.1:$broker_port" --ca "$broker_dir/broker-ca/ca.pem" --hosts 50 --clients "$c" \
    --seconds $((seconds * 3)) --broker-pid "$broker_pid" --out "$out/enroll-$c.json" >/dev/null || true
  python3 - "$out/enroll-$c.json" "$c" "$(nproc)" >> "$out/broker.jsonl" <<'ENROLL'
import json, sys
r, c, cores = json.load(open(sys.argv[1])), int(sys.argv[2]), int(sys.argv[3])
broker, client = r.get("brokerCPUms"), r.get("clientCPUms")
detail = f"p50 {r['p50ms']:.1f} ms, p99 {r['p99ms']:.1f} ms, {r['errors']} errors; two HTTPS requests each (challenge, enroll), connections kept alive as the attester keeps them"
if broker is not None and client is not None:
    busy = r["rate"] * (broker + client) / 1000   # cores kept busy by the two processes together
    bound = ("CPU-bound: client and broker together kept the cores busy" if busy >= 0.9 * cores
             else "not CPU-bound: the rate is bound by waiting (disk syncs, locks), not by the cores")
    detail += (f"; CPU per enrollment (measured over the run): broker {broker:.2f} ms, client {client:.2f} ms (the client runs on the same {cores} cores); "
               f"{busy:.2f} of {cores} cores busy — {bound}")
print(json.dumps({"name": f"e2e enrollment over HTTPS, simulated hosts (software keys, no TPM), {c} client(s)", "unit": "enrollments/s", "rate": r["rate"],
                  "p50ms": r["p50ms"], "p99ms": r["p99ms"], "broker_cpu_ms": broker, "client_cpu_ms": client, "cores": cores, "detail": detail}))
ENROLL
done
# Where the broker's CPU goes while enrolling: perf samples of vouchd during one more 32-client
# run (not a row above: perf takes CPU from the two it shares), grouped by library
# (bench/cpu_profile.py, shown in docs/performance.md). Without perf (Debian's linux-perf) the
# report says "perf not available".
profile_seconds=$(( seconds * 2 > 4 ? seconds * 2 : 4 ))
if command -v perf >/dev/null && perf record -q -o "$out/perf-probe.data" -- true >/dev/null 2>&1; then
  "$bin/vouch-bench" enroll --broker "https://127.0.0.1:$broker_port" --ca "$broker_dir/broker-ca/ca.pem" --hosts 50 --clients 32 \
    --seconds $((profile_seconds + 3)) --out "$out/enroll-profile-run.json" >/dev/null 2>&1 &
  profile_client=$!
  sleep 2
  perf record -q -F 999 -o "$out/enroll-perf.data" -p "$broker_pid" -- sleep "$profile_seconds" >/dev/null 2>&1 || true
  wait "$profile_client" || true
  python3 bench/cpu_profile.py "$out/enroll-perf.data" "$profile_seconds" "enrollment, 32 clients" > "$out/enroll-profile.json" \
    || echo '{"available": false, "reason": "perf report failed"}' > "$out/enroll-profile.json"
  rm -f "$out/perf-probe.data"
else
  echo '{"available": false, "reason": "perf not available"}' > "$out/enroll-profile.json"
fi

# 4. CRL and OCSP serving under wrk (installed if missing; skipped if it cannot be).
command -v wrk >/dev/null || { apt-get install -y -q wrk >/dev/null 2>&1 || true; }
# After the enrollments the broker still sequences their log entries for a few seconds: wait (30 s
# at most) until it uses under 5 % of a core over half a second, so wrk measures serving alone.
for _ in $(seq 1 60); do
  t0=$(cpu_ticks "$broker_pid"); sleep 0.5; t1=$(cpu_ticks "$broker_pid")
  [ $(( (t1 - t0) * 100 * 2 )) -lt $(( 5 * $(getconf CLK_TCK) )) ] && break
done
if command -v wrk >/dev/null; then
  openssl ocsp -issuer "$broker_dir/ca/ca.pem" -serial 0x1234 -reqout "$out/ocsp.der" -no_nonce >/dev/null 2>&1
  ocsp_path="/v1/ocsp/$(base64 -w0 "$out/ocsp.der" | python3 -c 'import sys,urllib.parse;print(urllib.parse.quote(sys.stdin.read().strip(),safe=""))')"
  for target in "CRL:/v1/crl" "OCSP GET:$ocsp_path"; do
    label=${target%%:*}; path=${target#*:}
    wrk -t2 -c32 -d"${seconds}s" --latency "https://127.0.0.1:$broker_port$path" > "$out/wrk-${label// /_}.txt" 2>&1 || true
    python3 - "$out/wrk-${label// /_}.txt" "$label" >> "$out/broker.jsonl" <<'WRK'
import json, re, sys
t = open(sys.argv[1]).read()
rate = re.search(r"Requests/sec:\s+([\d.]+)", t)
p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", t)
unit = {"us": 0.001, "ms": 1, "s": 1000}
p99ms = float(p99.group(1)) * unit[p99.group(2)] if p99 else None
print(json.dumps({"name": f"{sys.argv[2]} under wrk (2 threads, 32 connections, TLS)", "unit": "requests/s", "rate": float(rate.group(1)) if rate else 0,
                  "detail": f"p99 {p99ms:.1f} ms" if p99ms is not None else "wrk output unreadable"}))
WRK
  done
else
  echo '{"name":"CRL/OCSP under wrk","unit":"requests/s","rate":0,"detail":"skipped: wrk could not be installed"}' >> "$out/broker.jsonl"
fi
stop_broker

# 5. Re-attestation at scale: simulated fleets pulled every 10 s; broker CPU and RSS in steady state.
# The first run is the before of kept-alive pull connections: the same 2,500-host fleet with a
# fresh TLS connection per round (--pull-connections 0); then the fleets with the default pool.
for run in ${BENCH_FLEET_BEFORE-2500:fresh} ${BENCH_FLEET:-2500 5000 10000}; do
  n=${run%%:*}; fresh=$([ "$run" != "$n" ] && echo 1 || true)
  if [ -n "$fresh" ]; then start_broker "fleet-$n-fresh" "" --pull-connections 0; else start_broker "fleet-$n"; fi
  sim_port=$(free_port)
  "$bin/vouch-attester" --simulate "$n" --broker "https://127.0.0.1:$broker_port" --ca "$broker_dir/broker-ca/ca.pem" --listen "127.0.0.1:$sim_port" >"$out/sim-$n.log" 2>&1 &
  sim_pid=$!
  for _ in $(seq 1 1200); do [ "$(metric 'vouch_hosts_by_trust{state="trusted"}')" = "$n" ] && break; sleep 0.5; done
  sleep 12   # one full interval in steady state before measuring
  window=${BENCH_FLEET_WINDOW:-30}
  t0=$(cpu_ticks "$broker_pid"); a0=$(metric 'vouch_attestations_total{result="trusted"}'); f0=$(curl -s --cacert "$broker_dir/broker-ca/ca.pem" -H "Authorization: Bearer $(cat "$broker_dir/admin.token")" "https://127.0.0.1:$broker_port/metrics" | grep -c '^vouch_attestations_total{' || true)
  sleep "$window"
  t1=$(cpu_ticks "$broker_pid"); a1=$(metric 'vouch_attestations_total{result="trusted"}'); rss=$(rss_kb "$broker_pid")
  outcomes=$(curl -s --cacert "$broker_dir/broker-ca/ca.pem" -H "Authorization: Bearer $(cat "$broker_dir/admin.token")" "https://127.0.0.1:$broker_port/metrics" | grep '^vouch_attestations_total{' | tr '\n' ' ')
  # The largest fleet's profile (the ceiling's): perf samples of vouchd after the measured window,
  # so perf's own cost is in no row (bench/cpu_profile.py, shown in docs/performance.md).
  if [ -z "$fresh" ] && [ "$n" = "${BENCH_FLEET_PROFILE:-10000}" ]; then
    if command -v perf >/dev/null && perf record -q -o "$out/perf-probe.data" -- true >/dev/null 2>&1; then
      perf record -q -F 999 -o "$out/fleet-perf.data" -p "$broker_pid" -- sleep 8 >/dev/null 2>&1 || true
      python3 bench/cpu_profile.py "$out/fleet-perf.data" 8 "fleet of $n simulated hosts, 10 s interval" > "$out/fleet-profile.json" \
        || echo '{"available": false, "reason": "perf report failed"}' > "$out/fleet-profile.json"
      rm -f "$out/perf-probe.data"
    else
      echo '{"available": false, "reason": "perf not available"}' > "$out/fleet-profile.json"
    fi
  fi
  trusted_now=$(metric 'vouch_hosts_by_trust{state="trusted"}')
  python3 -c "
import json, os
n=$n; w=$window; ticks=$t1-$t0; hz=os.sysconf('SC_CLK_TCK'); rounds=${a1:-0}-${a0:-0}
cpu=100*ticks/hz/w
print(json.dumps({'name':'fleet of %d simulated hosts, 10 s interval%s' % (n, ', a fresh TLS connection per round (--pull-connections 0, before)' if '$fresh' else ''),'unit':'re-attestations/s','rate':rounds/w,'cpu_percent':cpu,'rss_mb':$rss/1024,
 'detail':'broker %.0f %% of one core, RSS %.0f MiB; %d/%d hosts trusted; expected %.0f/s; outcomes: %s' % (cpu, $rss/1024, int('${trusted_now:-0}' or 0), n, n/10, '$outcomes'.strip())}))" >> "$out/broker.jsonl"
  kill "$sim_pid" 2>/dev/null || true; wait "$sim_pid" 2>/dev/null || true
  stop_broker
done

# 5b. Idle kept-alive connections: vouchd's threads and memory with 5,000 idle TLS connections and
# 100 event streams open, in the thread pool (the default) and with a thread per connection (the
# former model), one after the other (bench/keepalive.py).
for mode in pool per-connection; do
  broker_port=$(free_port); broker_dir="$out/broker-keepalive-$mode"
  "$bin/vouchd" --data-dir "$broker_dir" --policy "$out/sim-policy.yaml" --ek-roots "$out/ek-roots" --port "$broker_port" \
    --http-threading "$mode" --request-deadline 600s --connection-timeout 600s --publish-listen off >"$out/vouchd-keepalive-$mode.log" 2>&1 &
  broker_pid=$!
  for _ in $(seq 1 200); do [ -f "$broker_dir/broker-ca/ca.pem" ] && curl -sf --cacert "$broker_dir/broker-ca/ca.pem" "https://127.0.0.1:$broker_port/healthz" >/dev/null && break; sleep 0.05; done
  label=$([ "$mode" = pool ] && echo "thread pool polling with poll(2), a thread per stream (the default)" || echo "a thread per connection (the former model)")
  python3 bench/keepalive.py "$broker_port" "$broker_dir/broker-ca/ca.pem" "$broker_pid" "${BENCH_KEEPALIVE:-5000}" 100 "$label" >> "$out/broker.jsonl" \
    || echo "{\"name\":\"kept-alive idle TLS connections, $label\",\"unit\":\"threads\",\"rate\":0,\"detail\":\"failed (see $out/vouchd-keepalive-$mode.log)\"}" >> "$out/broker.jsonl"
  stop_broker
done

# 6. Revocation latency: 200 simulated hosts with an agent each drift at once; each failed verdict
# revokes, re-signs the CRL and appends the event. Distribution from vouch_revocation_seconds.
# The hosts share 127.0.0.1 and each keeps the connection its hint authenticated, as hosts behind
# one NAT address would: the per-address cap is raised for them (operations.md), as in drift.sh.
start_broker revocation "" --max-connections-per-address 1024
sim_port=$(free_port)
"$bin/vouch-attester" --simulate 200 --broker "https://127.0.0.1:$broker_port" --ca "$broker_dir/broker-ca/ca.pem" --listen "127.0.0.1:$sim_port" \
  --enroll-agents --drift-after 15s >"$out/sim-revocation.log" 2>&1 &
sim_pid=$!
for _ in $(seq 1 240); do [ "$(metric 'vouch_hosts_by_trust{state="untrusted"}')" = "200" ] && break; sleep 0.5; done
curl -s --cacert "$broker_dir/broker-ca/ca.pem" -H "Authorization: Bearer $(cat "$broker_dir/admin.token")" "https://127.0.0.1:$broker_port/metrics" > "$out/revocation-metrics.txt"
kill "$sim_pid" 2>/dev/null || true; wait "$sim_pid" 2>/dev/null || true
stop_broker
python3 - "$out/revocation-metrics.txt" >> "$out/broker.jsonl" <<'REV'
import json, re, sys
t = open(sys.argv[1]).read()
buckets = [(float(m.group(1)) if m.group(1) != "+Inf" else float("inf"), int(m.group(2)))
           for m in re.finditer(r'vouch_revocation_seconds_bucket\{le="([^"]+)"\} (\d+)', t)]
count = int(re.search(r"vouch_revocation_seconds_count (\d+)", t).group(1))
total = float(re.search(r"vouch_revocation_seconds_sum ([\d.e+-]+)", t).group(1))
revoked = re.search(r"vouch_revocations_total (\d+)", t)
def q(p):
    for le, c in buckets:
        if count and c >= p * count: return le
    return float("nan")
print(json.dumps({"name": "revocation latency (failed verdict -> revocations, CRL, event committed)", "unit": "ms (mean)",
                  "rate": 1000 * total / count if count else 0,
                  "detail": f"{count} verdicts, {revoked.group(1) if revoked else '?'} certificates revoked; p50 <= {1000*q(0.5):g} ms, p99 <= {1000*q(0.99):g} ms (histogram bucket bounds)"}))
REV

# 6b. Drift to revocation as relying parties see it: 200 simulated hosts with an agent each, a
# 5-minute interval (no scheduled round catches the drift), all drifting at one recorded instant;
# each host reports it at once as its drift watcher would (push mode: a fresh quote; pull mode: a
# hint, then the broker's pull). vouch-bench drift-watch times, per host, PCR change -> the CRL
# lists the agent's serial, OCSP answers revoked, the certificate.revoked event arrives on SSE.
sed -e 's/  interval: 15m/  interval: 5m/' -e 's/    grace: 0s/    grace: 30s/' -e 's/  ttl: 15m/  ttl: 5m/' policies/development.yaml > "$out/drift-policy.yaml"
bench/drift.sh "$bin" "$out" "$out/drift-policy.yaml" "${BENCH_DRIFT_HOSTS:-200}" || echo "the drift benchmark failed: $out/drift-*" >&2

# 7. The SPIFFE Workload API on one host: SVIDs served, 1,000 workloads, rotation (bench/workload.sh,
# which writes its own section of docs/performance.md).
bench/workload.sh "$bin" "$out" "$seconds" || echo "the Workload API benchmark failed: $out/workload/" >&2

# 8. Model signature verification (OpenSSF model signing) beside sha256sum and model-signing's own
# verifier on the same files (bench/model.sh, which writes its own section of docs/performance.md).
bench/model.sh "$bin" "$out" || echo "the model verification benchmark failed: $out/model/" >&2

# 9. Replicas on PostgreSQL: enrollments/s and the largest fleet held by SQLite with one broker
# and 1, 2 and 3 vouchd replicas on a throwaway PostgreSQL cluster (bench/replicas.sh, which
# writes out/bench/replicas.jsonl and its own section of docs/performance.md).
bench/replicas.sh "$bin" "$out" || echo "the replica benchmark failed: $out/replicas/" >&2

# The report: results.json and the generated section of docs/performance.md (bench/report.py).
python3 bench/report.py "$out"
