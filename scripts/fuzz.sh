#!/usr/bin/env bash
# Fuzzes every parser that sees outside bytes with libFuzzer + AddressSanitizer, each for
# FUZZ_SECONDS (default 30), from seed corpora built from ../shared/testdata and fixtures made here;
# FUZZ_TARGETS="a b" runs only those targets (each must be one of the list below).
# Writes out/fuzz/report.md; crashes go to out/fuzz/crashes/ and make this script fail.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${FUZZ_SECONDS:-30}
shared=${VOUCH_SHARED_TESTDATA:-../shared/testdata}
out=out/fuzz
# Seeds are made afresh each run (a stale directory must not name a target that no longer exists).
rm -rf "$out/seeds"
mkdir -p "$out/crashes" "$out/seeds"
all_targets="tpm2b-public tpms-attest tpmt-signature tools-pcr-file event-log model-log policy csr certificate attestation-extension crl ocsp-request api-bodies jws snp-report snp-vcek-extensions azure-hcl-report tdx-quote tdx-collateral sgx-pck-extension tdx-event-log rim-xml nitro-document spdm-measurements signed-note receipt-bundle workload-api model-signature"
targets=${FUZZ_TARGETS:-$all_targets}
for t in $targets; do
  case " $all_targets " in *" $t "*) ;; *) echo "fuzz.sh: unknown target $t (targets: $all_targets)" >&2; exit 2 ;; esac
done

# swiftc keeps only the last -sanitize= flag it is given, and SwiftPM writes `--sanitize fuzzer
# --sanitize address` as two flags in an order that changes from build to build: one order built
# Swift code with coverage but no AddressSanitizer, the other with AddressSanitizer but no
# coverage (libFuzzer then saw 27 counters, all its own, and fuzzed blind). The combined flag,
# after SwiftPM's own, gives both; the --sanitize options still link the runtimes and build C.
swift build --product vouch-fuzz --scratch-path .build/fuzz --sanitize fuzzer --sanitize address -Xswiftc -sanitize=fuzzer,address -Xswiftc -DVOUCH_FUZZ
bin=.build/fuzz/debug/vouch-fuzz

seed() { mkdir -p "$out/seeds/$1"; }
for t in $all_targets; do seed "$t"; done

# TPM structures from the real GCE and Azure quotes.
python3 - "$shared" "$out/seeds" <<'PY'
import base64, json, os, struct, sys
shared, seeds = sys.argv[1], sys.argv[2]
def put(target, name, data):
    open(os.path.join(seeds, target, name), "wb").write(data)
gcp = os.path.join(shared, "tpm-eventlog/quote-gcp-windows-shielded-vm/windows_gcp_shielded_vm.json")
if os.path.exists(gcp):
    d = json.load(open(gcp))
    ak = base64.b64decode(d["AK"]["Public"])
    put("tpm2b-public", "gcp-ak", struct.pack(">H", len(ak)) + ak)
    put("tpms-attest", "gcp-quote", base64.b64decode(d["Quote"]["Quote"]))
    put("tpmt-signature", "gcp-sig", base64.b64decode(d["Quote"]["Signature"]))
    put("event-log", "gcp-log", base64.b64decode(d["Log"]["Raw"]))
az = os.path.join(shared, "tpm-eventlog/quote-azure-snp-vtpm/evidence-genoa.json")
if os.path.exists(az):
    q = json.load(open(az))["quote"]
    put("tpms-attest", "azure-quote", bytes(q["message"]))
    put("tpmt-signature", "azure-sig", struct.pack(">HHH", 0x14, 0x0b, len(q["signature"])) + bytes(q["signature"]))
# A tpm2-tools PCR file: sha256 bank, PCRs 0-7, one digest list.
sel = struct.pack("<I", 1) + struct.pack("<HB4sB", 0x0b, 3, b"\xff\x00\x00\x00", 0) + b"\x00" * 8 * 15
digests = struct.pack("<I", 1) + struct.pack("<I", 8) + (struct.pack("<H", 32) + b"\x00" * 64) * 8
put("tools-pcr-file", "sha256-0-7", sel + digests)
put("model-log", "two", json.dumps([{"recnum": i, "pcr": 23, "digests": [{"hashAlg": "sha256", "digest": h}], "content_type": "vouch-model",
    "content": {"name": n, "sha256": h, "size": 3}} for i, (n, h) in enumerate([("a", "ab" * 32), ("b", "cd" * 32)])]).encode())
put("api-bodies", "min", json.dumps({"hostId": "0" * 32, "nonce": "0" * 64, "agentName": "a", "csr": "x",
    "quote": {"attest": "AAAA", "signature": "AAAA", "pcrs": {"sha256": {"0": "00" * 32}}}}).encode())
PY
cp "$shared"/tpm-eventlog/eventlogs/*.bin "$out/seeds/event-log/" 2>/dev/null || true
cp policies/*.yaml "$out/seeds/policy/"
# Model signatures: the real Sigstore-keyless bundle from model-transparency's tests.
mkdir -p "$out/seeds/model-signature"
cp Tests/Fixtures/model-signing/v1.1.0-sigstore/model.sig "$out/seeds/model-signature/sigstore-keyless.json" 2>/dev/null || true
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=seed -keyout "$out/seeds/key.pem" -out "$out/seeds/csr/pem" 2>/dev/null
openssl req -in "$out/seeds/csr/pem" -outform der -out "$out/seeds/csr/der"
i=0
for pem in "$shared"/tpm-eventlog/gce-ek-ak-certs/*.pem "$shared"/sev-snp/*/vcek.pem; do
  [ -f "$pem" ] && openssl x509 -in "$pem" -outform der -out "$out/seeds/certificate/$i.der" 2>/dev/null && i=$((i + 1)) || true
done
openssl req -x509 -key "$out/seeds/key.pem" -subj /CN=seed -days 1 -out "$out/seeds/issuer.pem" 2>/dev/null
openssl ocsp -issuer "$out/seeds/issuer.pem" -serial 0x1234 -reqout "$out/seeds/ocsp-request/one" >/dev/null
# A compact JWS shaped like an EAR, with an x5c certificate (its signature does not verify).
python3 - "$out/seeds/jws/ear" "$(openssl x509 -in "$out/seeds/issuer.pem" -outform der | base64 -w0)" <<'PY'
import base64, json, sys
b64u = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
header = json.dumps({"alg": "ES256", "typ": "JWT", "x5c": [sys.argv[2]]}).encode()
payload = json.dumps({"eat_profile": "tag:github.com,2023:veraison/ear", "iat": 1, "submods": {"tpm": {"ear.status": "affirming"}}}).encode()
open(sys.argv[1], "w").write(b64u(header) + "." + b64u(payload) + "." + b64u(bytes(64)))
PY
rm -f "$out/seeds/key.pem" "$out/seeds/issuer.pem"
# SEV-SNP: the fixtures' reports and VCEK/VLEK certificates (DER).
for f in Tests/Fixtures/sev-snp/*/report.bin; do cp "$f" "$out/seeds/snp-report/$(basename "$(dirname "$f")")"; done
for f in Tests/Fixtures/sev-snp/*/*.der Tests/Fixtures/sev-snp/negative/*.der; do cp "$f" "$out/seeds/snp-vcek-extensions/$(basename "$(dirname "$f")")-$(basename "$f")"; done
cp Tests/Fixtures/sev-snp/genoa-azure-cvm/hcl_report.bin "$out/seeds/azure-hcl-report/genoa"
# TDX: the corpus's quotes, collateral (dcap-qvl JSON and PCS bodies), CCEL log, PCK SGX extensions.
for d in Tests/Fixtures/tdx/*/; do
  n=$(basename "$d")
  [ -f "$d/quote.bin" ] && cp "$d/quote.bin" "$out/seeds/tdx-quote/$n"
  [ -f "$d/collateral.json" ] && cp "$d/collateral.json" "$out/seeds/tdx-collateral/$n"
  for b in "$d"/*_response.json; do [ -f "$b" ] && cp "$b" "$out/seeds/tdx-collateral/$n-$(basename "$b")"; done
  if [ -f "$d/quote.bin" ]; then
    # The PCK certificate is the first PEM block of the quote's certification data.
    python3 -c 'import re,sys; m=re.search(rb"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", open(sys.argv[1],"rb").read(), re.S); sys.stdout.buffer.write(m.group(0)+b"\n")' "$d/quote.bin" > "$out/seeds/pck.pem"
    at=$(openssl asn1parse -in "$out/seeds/pck.pem" | awk '/:1.2.840.113741.1.13.1$/ { getline; split($1, a, ":"); print a[1]; exit }')
    [ -n "$at" ] && openssl asn1parse -in "$out/seeds/pck.pem" -strparse "$at" -noout -out "$out/seeds/sgx-pck-extension/$n" >/dev/null 2>&1 || true
    rm -f "$out/seeds/pck.pem"
  fi
done
python3 -c 'import sys; sys.stdout.buffer.write(open(sys.argv[1],"rb").read().rstrip(b"\xff"))' Tests/Fixtures/tdx/ccel-cos113/ccel_data.bin > "$out/seeds/tdx-event-log/ccel-cos113"
# NVIDIA RIMs: the fixtures' signed SWID tags.
for f in Tests/Fixtures/nvidia-rim/rims/*.swidtag; do cp "$f" "$out/seeds/rim-xml/$(basename "$f")"; done
# Nitro: the corpus's attestation documents (untagged COSE_Sign1).
for f in Tests/Fixtures/nitro/*/attestation_doc.cbor; do cp "$f" "$out/seeds/nitro-document/$(basename "$(dirname "$f")")"; done
# Signed notes: Go sumdb/note's test vector (a note and its vkey).
printf 'If you think cryptography is the answer to your problem,\nthen you don'"'"'t know what your problem is.\n\n\xe2\x80\x94 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n' > "$out/seeds/signed-note/peter"
printf 'PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW' > "$out/seeds/signed-note/vkey"
# Receipt bundles: the shape of one (mediaType, envelope, chain, EAR, issuance proof).
printf '%s' '{"mediaType":"application/vnd.vouch.receipt.v1+json","envelope":{"payload":"e30=","payloadType":"application/vnd.in-toto+json","signatures":[{"keyid":"","sig":"AQ=="}]},"chain":"-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n","ear":"a.b.c","issuance":{"entry":"Cg==","proof":"c2sp.org/tlog-proof@v1\nindex 0\n\nfuzz/vouch-log\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n\u2014 fuzz/vouch-log AAAAAQ==\n"}}' > "$out/seeds/receipt-bundle/shape"
# SPIFFE Workload API: an X509SVIDResponse (one SVID, a CRL, a federated bundle), a
# ValidateJWTSVIDResponse with claims of every JSON kind (py-spiffe's protobuf wrote these), JSON claims.
printf '0a320a1d7370696666653a2f2f6578616d706c652e6f72672f776f726b6c6f6164120530030201011a02300022033001002a0168120230001a180a127370696666653a2f2f6f746865722e6f726712023000' | xxd -r -p > "$out/seeds/workload-api/x509-svid-response"
printf '123d0a070a016112021a000a070a0166120220000a070a016c120232000a070a016e120208000a070a016f12022a000a0e0a017a1209110000000000000000' | xxd -r -p > "$out/seeds/workload-api/claims"
printf '%s' '{"aud":["a"],"exp":1700000000,"nested":{"ok":true,"n":null,"x":[1.5,"s"]},"sub":"spiffe://example.org/w"}' > "$out/seeds/workload-api/json"
# NVIDIA GPUs: the corpus's SPDM transcripts (hex decoded to binary).
for d in Tests/Fixtures/nvidia-gpu/*/; do
  [ -f "$d/attestation_report.hex" ] && xxd -r -p "$d/attestation_report.hex" > "$out/seeds/spdm-measurements/$(basename "$d")"
done
python3 -c 'import base64,json,sys; [open("%s/ppcie-%d" % (sys.argv[2], i), "wb").write(base64.b64decode(g["evidence"])) for i, g in enumerate(json.load(open(sys.argv[1])))]' \
  Tests/Fixtures/nvidia-gpu/h100-ppcie-8gpu-nvtrust/gpu_evidence.json "$out/seeds/spdm-measurements"

report="$out/report.md"
printf '| target | seconds | executions | coverage counters | corpus | crashes |\n|---|---|---|---|---|---|\n' > "$report"
failed=0
for target in $targets; do
  corpus="$out/corpus/$target"
  mkdir -p "$corpus"
  log="$out/$target.log"
  set +e
  FUZZ_TARGET=$target "$bin" -max_total_time="$seconds" -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
    -artifact_prefix="$out/crashes/$target-" "$corpus" "$out/seeds/$target" >"$log" 2>&1
  rc=$?
  set -e
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)
  # An uninstrumented build still runs, blind: libFuzzer's own few counters are all it sees.
  counters=$(grep -o 'Loaded 1 modules *([0-9]* inline 8-bit counters' "$log" | grep -o '([0-9]*' | tr -d '(' | head -1)
  if [ "${counters:-0}" -lt 1000 ]; then
    echo "$target: libFuzzer saw ${counters:-0} coverage counters: vouch-fuzz was built without coverage instrumentation" >&2
    rc=1
  fi
  crashes=$(ls "$out/crashes" | grep -c "^$target-" || true)
  printf '| %s | %s | %s | %s | %s | %s |\n' "$target" "$seconds" "$execs" "${counters:-0}" "$(ls "$corpus" | wc -l)" "$crashes" >> "$report"
  echo "$target: $execs executions, $crashes crashes (exit $rc)"
  [ "$rc" -ne 0 ] || [ "$crashes" -ne 0 ] && failed=1
done
cat "$report"
exit $failed
