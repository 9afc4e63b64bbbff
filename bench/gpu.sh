#!/usr/bin/env bash
# GPU and enclave evidence verification rates, for `make bench` (which runs this into out/bench/gpu,
# reusing the same run's `openssl speed` output from bench/tee.sh) and on their own with
# `make bench-gpu` (out/bench-gpu): Vouch's NVIDIA GPU, NVIDIA RIM and AWS Nitro verifiers on real
# samples, `openssl speed` for P-384, and NVIDIA's own local GPU verifier (nv-attestation-sdk from
# PyPI, in a throwaway virtualenv) on the same evidence, all in this run. Writes OUT/results.json
# and the generated GPU section of docs/performance.md. Reports only; nothing fails on speed.
# Usage: bench/gpu.sh [OUT] [OPENSSL_SPEED_OUTPUT]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${BENCH_SECONDS:-3}
out=${1:-out/bench-gpu}
speed_from=${2:-}
nv_sdk_version=${NV_ATTESTATION_SDK_VERSION:-2.7.3}   # the version this bench was checked with
ppcie=Tests/Fixtures/nvidia-gpu/h100-ppcie-8gpu-nvtrust/gpu_evidence.json
ppcie_nonce=$(python3 -c 'import json;print(next(s["nonce"] for s in json.load(open("Tests/Fixtures/nvidia-gpu/manifest.json"))["samples"] if s["dir"]=="h100-ppcie-8gpu-nvtrust"))')
rm -rf "$out" && mkdir -p "$out"
swift build -c release --product vouch-bench
bin=$(swift build -c release --show-bin-path)

# 1. Vouch in process, one thread: GPU evidence per GPU (chain cached, cold), RIM comparison with
#    the RIM kept, a RIM verified afresh, a Nitro document.
"$bin/vouch-bench" gpu --fixtures Tests/Fixtures --seconds "$seconds" --out "$out/inprocess.json"

# 2. The raw limit, same run: P-384 verify (every signature here is ECDSA P-384). Under make bench,
#    bench/tee.sh has just measured it; reuse that output rather than measure it twice.
if [ -n "$speed_from" ] && [ -f "$speed_from" ]; then
  cp "$speed_from" "$out/openssl-speed.txt"
  speed_note="measured by bench/tee.sh earlier in this make bench run (openssl speed -seconds $seconds ecdsap384 ecdsap256)"
else
  openssl speed -seconds "$seconds" ecdsap384 > "$out/openssl-speed.txt" 2>/dev/null
  speed_note="openssl speed -seconds $seconds ecdsap384, this run"
fi

# 3. NVIDIA's local GPU verifier (nv-local-gpu-verifier, which nv-attestation-sdk installs) on the
#    same PPCIe evidence (bench/peer_nv_verifier.py), run in $out: it writes log files where it runs.
venv="$out/nv-venv"
row() { python3 -c 'import json,sys;print(json.dumps({"name":"NVIDIA local verifier","unit":"GPUs per CPU-second","rate":None,"detail":sys.argv[1]}))' "$1"; }
if /usr/bin/python3 -m venv "$venv" >"$out/nv-pip.log" 2>&1 \
   && "$venv/bin/pip" install -q --disable-pip-version-check "nv-attestation-sdk==$nv_sdk_version" >>"$out/nv-pip.log" 2>&1; then
  (cd "$out" && nv-venv/bin/python "$OLDPWD/bench/peer_nv_verifier.py" "$OLDPWD/$ppcie" "$ppcie_nonce" "$seconds") >> "$out/peers.jsonl" 2>"$out/nv-verifier.log" \
    || row "FAILED: nv-attestation-sdk $nv_sdk_version ran but gave no figure: $(tail -1 "$out/nv-verifier.log")" >> "$out/peers.jsonl"
else
  row "FAILED: nv-attestation-sdk $nv_sdk_version could not be installed from PyPI: $(tail -1 "$out/nv-pip.log")" >> "$out/peers.jsonl"
fi

python3 - "$out" "$speed_note" <<'PY'
import json, os, re, sys
out, speed_note = sys.argv[1], sys.argv[2]
results = json.load(open(os.path.join(out, "inprocess.json")))
peers = [json.loads(l) for l in open(os.path.join(out, "peers.jsonl"))]
results += peers
speed = open(os.path.join(out, "openssl-speed.txt")).read()
m = re.search(r"384 bits ecdsa \(nistp384\)\s+\S+\s+\S+\s+\S+\s+(\S+)", speed)
p384 = float(m.group(1)) if m else None
results.append({"name": "openssl speed ecdsap384 verify", "unit": "verifies per CPU-second", "rate": p384,
                "detail": f"the raw crypto limit, one process; {speed_note}; openssl speed divides by its user CPU time" if m
                          else "FAILED: openssl speed printed no P-384 figure"})
def find(prefix): return next((r["rate"] for r in results if r["name"].startswith(prefix)), None)
warm, cold = find("NVIDIA GPU evidence verify, chain cached"), find("NVIDIA GPU evidence verify, cold")
rim_cmp, rim_verify = find("NVIDIA GPU evidence verify + RIM"), find("NVIDIA RIM verify, nothing kept")
nitro, nv = find("AWS Nitro document verify"), find("NVIDIA local verifier, offline steps")
ratios = []
if p384:
    if warm:
        ratios.append(f"NVIDIA GPU evidence verify, chain cached ÷ (openssl speed P-384 verify/s ÷ 2): {100 * warm / (p384 / 2):.0f} % "
                      "(a cached call checks two P-384 signatures: the leaf certificate's, by the GSP BROM certificate, and the SPDM response's)")
        ratios.append(f"NVIDIA GPU evidence verify, chain cached ÷ openssl speed P-384 verify/s: {100 * warm / p384:.0f} % "
                      "(against one signature: what a GPU costs beside one P-384 verify)")
    if cold:
        ratios.append(f"NVIDIA GPU evidence verify, cold ÷ (openssl speed P-384 verify/s ÷ 6): {100 * cold / (p384 / 6):.0f} % "
                      "(a cold call checks six P-384 signatures: four certificate signatures up to the root, the leaf's again as the "
                      "issuer step every call makes, and the SPDM response's)")
    nitro_sigs = next((r.get("signatures") for r in results if r["name"].startswith("AWS Nitro document verify")), None)
    if nitro and nitro_sigs:
        ratios.append(f"AWS Nitro document verify ÷ (openssl speed P-384 verify/s ÷ {nitro_sigs}): {100 * nitro / (p384 / nitro_sigs):.0f} % "
                      f"({nitro_sigs} P-384 verifications per document, as NitroVerifier makes them: each certificate below the pinned root "
                      "checked link by link and again by OpenSSL's path validation, then the COSE signature)")
        ratios.append(f"AWS Nitro document verify ÷ openssl speed P-384 verify/s: {100 * nitro / p384:.0f} % (against one signature)")
if warm and cold:
    ratios.append(f"NVIDIA GPU evidence verify, chain cached ÷ cold: {warm / cold:.1f}× (what keeping the verified chain buys per GPU)")
if rim_cmp and rim_verify:
    ratios.append(f"NVIDIA GPU evidence verify + RIM comparison, RIM cached ÷ NVIDIA RIM verify, nothing kept: {rim_cmp / rim_verify:.1f}× "
                  "(a comparison against a kept RIM against verifying one RIM's XML signature and chain alone)")
if nv:
    if warm:
        ratios.append(f"NVIDIA GPU evidence verify, chain cached ÷ NVIDIA local verifier offline steps: {warm / nv:.1f}× "
                      "(Vouch's kept chain against NVIDIA's Python verifier, which keeps nothing; neither checks OCSP or RIMs here)")
    if cold:
        ratios.append(f"NVIDIA GPU evidence verify, cold ÷ NVIDIA local verifier offline steps: {cold / nv:.1f}× "
                      "(like for like: both check the whole device chain, FWID, nonce, versions and SPDM signature per GPU; neither OCSP nor RIMs)")
else:
    ratios.append("GPU evidence against NVIDIA's local verifier: no ratio, its offline steps gave no figure (see its row)")
sys.path.insert(0, "bench")
import section
section.write(out, results, ratios, "bench-gpu")
PY
