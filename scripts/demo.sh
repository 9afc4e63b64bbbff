#!/usr/bin/env bash
# The Vouch quick start: a real software TPM, the broker and the attester on free loopback ports;
# enroll an agent, show status, revoke its certificate, show OCSP and the CRL (fetched over http
# from the URLs in the certificate) saying so; then a simulated confidential VM (the software TEE)
# on a second broker: enroll, check, drift, revoked; a simulated confidential VM with eight
# software GPUs under one nonce: enroll, a GPU drifts, revoked; a model server behind the receipt
# proxy: one answer, its receipt verified offline, a changed byte refused; stop everything.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
bin=$(swift build --show-bin-path)
out="$root/out/demo"
rm -rf "$out"
mkdir -p "$out"
pids=()
cleanup() {
  local rc=$?
  for p in "${pids[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]:-}"; do [ -n "$p" ] && wait "$p" 2>/dev/null || true; done
  if [ $rc -ne 0 ]; then
    echo "demo failed (exit $rc); logs:" >&2
    for f in "$out"/*.log; do [ -f "$f" ] && { echo "--- $f" >&2; tail -n 20 "$f" >&2; }; done
  fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {  # a port P with P and P+1 free on 127.0.0.1
  python3 - <<'PY'
import random, socket
for _ in range(500):
    p = random.randint(20000, 60000)
    try:
        socks = []
        for q in (p, p + 1):
            s = socket.socket(); s.bind(("127.0.0.1", q)); socks.append(s)
        for s in socks: s.close()
        print(p); break
    except OSError:
        for s in socks: s.close()
PY
}
wait_port() { for _ in $(seq 1 200); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done; return 1; }
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "1. Manufacture a software TPM (swtpm) with an EK certificate from its own local CA"
scripts/swtpm-manufacture.sh "$out/tpm"
mkdir -p "$out/ek-roots"
cp "$out/tpm/ca/swtpm-localca-rootca-cert.pem" "$out/tpm/ca/issuercert.pem" "$out/ek-roots/"
tpm_port=$(free_port)
swtpm socket --tpm2 --tpmstate dir="$out/tpm/state" --flags not-need-init,startup-clear \
  --server type=tcp,port="$tpm_port",bindaddr=127.0.0.1 --ctrl type=tcp,port=$((tpm_port + 1)),bindaddr=127.0.0.1 \
  >"$out/swtpm.log" 2>&1 &
pids+=($!)
wait_port "$tpm_port"
echo "swtpm on 127.0.0.1:$tpm_port; EK trust anchors in out/demo/ek-roots/"

step "2. Start vouchd (HTTPS; CRLs and OCSP also over plain HTTP; SQLite in WAL mode, policy policies/development.yaml)"
broker_port=$(free_port)
"$bin/vouchd" --data-dir "$out/broker" --policy policies/development.yaml --ek-roots "$out/ek-roots" \
  --port "$broker_port" --publish-listen "127.0.0.1:$((broker_port + 1))" --trust-domain demo.vouch.local >"$out/vouchd.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 200); do [ -f "$out/broker/broker-ca/ca.pem" ] && curl -sf --cacert "$out/broker/broker-ca/ca.pem" "https://127.0.0.1:$broker_port/v1/health" >/dev/null && break; sleep 0.05; done
# Two trust anchors: broker-ca.pem certifies only the broker (clients trust it to reach vouchd and
# to check its signed results); ca.pem is the issuing CA relying parties trust for agents.
cp "$out/broker/broker-ca/ca.pem" "$out/broker-ca.pem"
cp "$out/broker/ca/ca.pem" "$out/ca.pem"
export VOUCH_BROKER="https://127.0.0.1:$broker_port" VOUCH_CA="$out/broker-ca.pem" VOUCH_TOKEN_FILE="$out/broker/admin.token"
cat "$out/vouchd.log"

step "3. Start vouch-attester: EK certificate -> credential activation -> AK trusted; vouchd re-attests it over mTLS (pull)"
export VOUCH_ATTESTER_SOCKET="$out/attester.sock"
attester_port=$(free_port)
"$bin/vouch-attester" --broker "$VOUCH_BROKER" --ca "$VOUCH_CA" --tcti "swtpm:host=127.0.0.1,port=$tpm_port" \
  --socket "$VOUCH_ATTESTER_SOCKET" --hostname demo-host --state-dir "$out/attester-state" \
  --listen "127.0.0.1:$attester_port" >"$out/attester.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 200); do [ -S "$VOUCH_ATTESTER_SOCKET" ] && break; sleep 0.05; done
[ -S "$VOUCH_ATTESTER_SOCKET" ] || { echo "attester did not start" >&2; exit 1; }
cat "$out/attester.log"

step "4. Enroll an agent: key + CSR, TPM quote bound to nonce and key, policy check, certificate"
"$bin/vouch" enroll --name demo-agent --out "$out/agent"
cp "$out/agent/demo-agent.pem" "$out/agent.pem"
openssl x509 -in "$out/agent.pem" -noout -subject -ext subjectAltName,crlDistributionPoints,authorityInfoAccess -dates
openssl verify -CAfile "$out/ca.pem" "$out/agent.pem"

step "5. vouch status (trust state; vouchd re-attests the host over mTLS at the policy's interval) and the audit trail"
"$bin/vouch" status
"$bin/vouch" history --limit 5

step "6. Revoke the agent's certificate"
serial=$(openssl x509 -in "$out/agent.pem" -noout -serial | cut -d= -f2)
"$bin/vouch" revoke --serial "$serial" --reason keyCompromise

step "7. The CRL and OCSP, fetched over http from the URLs in the certificate, now say revoked"
ocsp_url=$(openssl x509 -in "$out/agent.pem" -noout -ocsp_uri)
openssl ocsp -issuer "$out/ca.pem" -cert "$out/agent.pem" -url "$ocsp_url" -CAfile "$out/ca.pem" 2>&1 | grep -F "$out/agent.pem: revoked"
verdict=$(openssl verify -crl_check -crl_download -CAfile "$out/ca.pem" "$out/agent.pem" 2>&1 || true)
echo "$verdict"
grep -q "error 23 at 0 depth lookup" <<<"$verdict" || { echo "expected the CRL downloaded from the certificate to revoke it" >&2; exit 1; }
echo "openssl verify -crl_download fetched the CRL from the distribution point: certificate revoked (error 23)"
echo "The CRL, as vouch crl fetches it:"
"$bin/vouch" crl --out "$out/crl.der"
openssl crl -inform der -in "$out/crl.der" -out "$out/crl.pem"
if openssl verify -crl_check -CAfile "$out/ca.pem" -CRLfile "$out/crl.pem" "$out/agent.pem" 2>&1; then
  echo "expected the revoked certificate to fail verification" >&2; exit 1
fi
echo "openssl verify -crl_check rejects the revoked certificate, as it should"

step "8. A confidential VM (SIMULATED: the software TEE, INSECURE, demos only) on a second broker that allows it"
# One simulated machine (test AMD and Intel chains, keys in files); its roots and TDX collateral
# are handed to a broker started with --allow-simulated-hosts. The policy allows one launch
# measurement: the one a simulated guest starts with.
"$bin/vouch-attester" simulated-tee-platform "$out/cvm-platform" --gpus 8 | tee "$out/cvm-platform.txt"
measurement=$(awk '$1 == "measurement" { print $2 }' "$out/cvm-platform.txt")
cat >"$out/cvm-policy.yaml" <<EOF
apiVersion: vouch/v1
name: confidential-vm
version: 1
description: simulated SEV-SNP and TDX guests launched with the software TEE's default measurement
attestationKey: {algorithms: [ecc-p256]}
pcrs: {bank: sha256, values: {7: ["$(printf '0%.0s' $(seq 64))"]}}
certificate: {ttl: 15m}
reattestation: {interval: 15m, onFailure: {action: revoke, afterFailures: 1, grace: 0s}}
snp: {measurements: [{name: guest-v1, value: "$measurement"}]}
tdx: {mrtd: [{name: td-v1, value: "$measurement"}]}
EOF
# Guests labelled gpus=8 also present eight GPUs (the software GPU board), each of whose
# measurements must equal the board's signed driver and VBIOS RIMs.
sed -e 's/^name: confidential-vm/name: confidential-gpu-host/' -e 's/^description: .*/description: simulated SEV-SNP guests with eight RIM-verified GPUs/' \
  "$out/cvm-policy.yaml" >"$out/gpu-policy.yaml"
cat >>"$out/gpu-policy.yaml" <<EOF
priority: 10
match: {labels: {gpus: "8"}}
devices: {gpus: {count: 8, referenceValues: required}}
EOF
cvm_port=$(free_port)
"$bin/vouchd" --data-dir "$out/cvm-broker" --policy "$out/cvm-policy.yaml,$out/gpu-policy.yaml" --ek-roots "$out/ek-roots" --port "$cvm_port" \
  --trust-domain cvm.demo.vouch.local --allow-simulated-hosts --simulated-tee-roots "$out/cvm-platform/roots" --nvidia-rims "$out/cvm-platform/rims" \
  --tdx-collateral "$out/cvm-platform/tdx-collateral" >"$out/cvm-vouchd.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 200); do [ -f "$out/cvm-broker/broker-ca/ca.pem" ] && curl -sf --cacert "$out/cvm-broker/broker-ca/ca.pem" "https://127.0.0.1:$cvm_port/v1/health" >/dev/null && break; sleep 0.05; done
cvm() { VOUCH_BROKER="https://127.0.0.1:$cvm_port" VOUCH_CA="$out/cvm-broker/broker-ca/ca.pem" VOUCH_TOKEN_FILE="$out/cvm-broker/admin.token" "$bin/vouch" "$@"; }
"$bin/vouch-attester" --broker "https://127.0.0.1:$cvm_port" --ca "$out/cvm-broker/broker-ca/ca.pem" --simulate-tee sev-snp \
  --simulate-tee-platform "$out/cvm-platform" --simulate-tee-options "$out/cvm.options" --socket "$out/cvm.sock" \
  --hostname demo-cvm --state-dir "$out/cvm-state" --push-interval 1s >"$out/cvm-attester.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 200); do [ -S "$out/cvm.sock" ] && break; sleep 0.05; done
[ -S "$out/cvm.sock" ] || { echo "the simulated confidential VM's attester did not start" >&2; exit 1; }
cat "$out/cvm-attester.log"
cvm enroll --name cvm-agent --out "$out/cvm-agent" --socket "$out/cvm.sock"
cvm cert inspect "$out/cvm-agent/cvm-agent.pem" --ca "$out/cvm-broker/broker-ca/ca.pem" --issuer "$out/cvm-broker/ca/ca.pem"
cvm check --cert "$out/cvm-agent/cvm-agent.pem" --allow-simulated
echo "The guest's measurement drifts; its next push report is refused and the agent's certificate revoked:"
echo "measurement=$(printf '22%.0s' $(seq 48))" >"$out/cvm.options"
for _ in $(seq 1 100); do cvm check --cert "$out/cvm-agent/cvm-agent.pem" --allow-simulated >/dev/null 2>&1 || break; sleep 0.1; done
if cvm check --cert "$out/cvm-agent/cvm-agent.pem" --allow-simulated; then
  echo "expected the drifted guest's certificate to be revoked" >&2; exit 1
fi
grep "snp_measurement_not_allowed" "$out/cvm-vouchd.log" | head -2

step "9. A confidential VM with eight GPUs (SIMULATED: the software GPU board): one nonce binds the report and every GPU"
: >"$out/gpu.options"
"$bin/vouch-attester" --broker "https://127.0.0.1:$cvm_port" --ca "$out/cvm-broker/broker-ca/ca.pem" --simulate-tee sev-snp \
  --simulate-tee-platform "$out/cvm-platform" --simulate-tee-options "$out/gpu.options" --simulate-gpus 8 --labels gpus=8 \
  --socket "$out/gpu.sock" --hostname demo-gpu-host --state-dir "$out/gpu-state" --push-interval 1s >"$out/gpu-attester.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 200); do [ -S "$out/gpu.sock" ] && break; sleep 0.05; done
[ -S "$out/gpu.sock" ] || { echo "the simulated GPU host's attester did not start" >&2; exit 1; }
cvm enroll --name gpu-agent --out "$out/gpu-agent" --socket "$out/gpu.sock"
cvm cert inspect "$out/gpu-agent/gpu-agent.pem" --ca "$out/cvm-broker/broker-ca/ca.pem" --issuer "$out/cvm-broker/ca/ca.pem"
echo "GPU 3 now reports a wrong VBIOS measurement (SPDM block 2); the next re-attestation is refused and the certificate revoked:"
echo "gpu3.block2=$(printf '33%.0s' $(seq 48))" >"$out/gpu.options"
for _ in $(seq 1 100); do cvm check --cert "$out/gpu-agent/gpu-agent.pem" --allow-simulated >/dev/null 2>&1 || break; sleep 0.1; done
if cvm check --cert "$out/gpu-agent/gpu-agent.pem" --allow-simulated; then
  echo "expected the drifted GPU host's certificate to be revoked" >&2; exit 1
fi
grep "nvidia_gpu_measurement_mismatch" "$out/cvm-vouchd.log" | head -2

step "10. Signed inference receipts: a model server behind vouch-attester proxy; the receipt verified offline"
# A fresh agent on the TPM host (demo-agent was revoked in step 6), its issuance proof from the
# broker's transparency log, and the trust document a verifier needs (no broker afterwards).
"$bin/vouch" enroll --name receipt-agent --out "$out/receipt-agent"
cat "$out/receipt-agent/receipt-agent.pem" "$out/receipt-agent/ca.pem" >"$out/receipt-agent/chain.pem"
"$bin/vouch" log proof --certificate "$out/receipt-agent/chain.pem" --output "$out/receipt-agent/issuance.json" --wait 30s
"$bin/vouch" trust get --output "$out/trust.json"
model_port=$(free_port)
python3 scripts/model-server.py --listen "127.0.0.1:$model_port" >"$out/model-server.log" 2>&1 &
pids+=($!)
wait_port "$model_port"
proxy_port=$(free_port)
"$bin/vouch-attester" proxy --upstream "http://127.0.0.1:$model_port" --listen "127.0.0.1:$proxy_port" \
  --cert "$out/receipt-agent/chain.pem" --key "$out/receipt-agent/receipt-agent.key" \
  --issuance-proof "$out/receipt-agent/issuance.json" >"$out/proxy.log" 2>&1 &
pids+=($!)
wait_port "$proxy_port"
echo "One chat completion through the proxy (the answer is the model server's, byte for byte):"
printf '%s' '{"model":"vouch-echo","messages":[{"role":"user","content":"which model answered me"}]}' >"$out/request.json"
curl -sf -D "$out/answer.headers" -o "$out/answer.json" -H 'Content-Type: application/json' \
  --data-binary @"$out/request.json" "http://127.0.0.1:$proxy_port/v1/chat/completions"
cat "$out/answer.json"; echo
header() { grep -i "^$1:" "$out/answer.headers" | head -1 | cut -d' ' -f2- | tr -d '\r\n'; }
header vouch-receipt | base64 -d >"$out/answer.receipt.json"
salt=$(header vouch-receipt-salt)
echo "Verified offline with the trust document only: which model, which environment and who verified it, which output:"
"$bin/vouch" receipt verify "$out/answer.receipt.json" --trust "$out/trust.json" --output "$out/answer.json" \
  --request "$out/request.json" --salt "$salt"
echo "One byte of the answer changed: the receipt refuses it"
python3 -c 'import sys; b = bytearray(open(sys.argv[1], "rb").read()); b[len(b) // 2] ^= 1; open(sys.argv[2], "wb").write(b)' \
  "$out/answer.json" "$out/answer.tampered.json"
if "$bin/vouch" receipt verify "$out/answer.receipt.json" --trust "$out/trust.json" --output "$out/answer.tampered.json" >"$out/tampered.out" 2>&1; then
  cat "$out/tampered.out"; echo "expected the tampered answer to be refused" >&2; exit 1
fi
cat "$out/tampered.out"
grep -q "^FAILED receipt_output_mismatch" "$out/tampered.out" || { echo "expected receipt_output_mismatch" >&2; exit 1; }

step "Done"
echo "Left for inspection: out/demo/ca.pem (issuing CA), out/demo/broker-ca.pem (the broker's own CA), out/demo/agent.pem, out/demo/crl.der"
echo "  openssl verify -crl_check -CAfile out/demo/ca.pem -CRLfile <(openssl crl -inform der -in out/demo/crl.der) out/demo/agent.pem"
echo "The simulated confidential VM's: out/demo/cvm-agent/cvm-agent.pem, out/demo/cvm-vouchd.log, out/demo/cvm-platform/"
echo "The simulated GPU host's: out/demo/gpu-agent/gpu-agent.pem (its EAR lists gpu0-gpu7), out/demo/gpu-policy.yaml"
echo "The receipt: out/demo/answer.json, out/demo/answer.receipt.json, out/demo/trust.json"
echo "  vouch receipt verify out/demo/answer.receipt.json --trust out/demo/trust.json --output out/demo/answer.json"
