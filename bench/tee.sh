#!/usr/bin/env bash
# Confidential-VM evidence verification rates, for `make bench` (which runs this into
# out/bench/tee) and on their own with `make bench-tee` (out/bench-tee): Vouch's SEV-SNP and TDX
# verifiers on real samples (warm and cold), `openssl speed` for the curves they verify with, and
# dcap-qvl's Python bindings on the same TDX quote, all in this run. Writes OUT/results.json and the
# generated TEE section of docs/performance.md. Reports only; nothing here fails on speed.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${BENCH_SECONDS:-3}
out=${1:-out/bench-tee}
dcap_qvl_version=${DCAP_QVL_VERSION:-0.7.0}   # the version this bench was checked with
tdx_sample=dcapqvl-v4-uptodate
rm -rf "$out" && mkdir -p "$out"
swift build -c release --product vouch-bench
bin=$(swift build -c release --show-bin-path)

# Every rate is per CPU-second of the process or thread that measured it (openssl speed divides by
# its user CPU time), so the ratios hold on a machine shared with other work; the wall-clock rates
# are in the details.
# 1. Vouch in process, one thread (as openssl speed): SNP and TDX, warm and cold verifiers.
"$bin/vouch-bench" tee --fixtures Tests/Fixtures --seconds "$seconds" --out "$out/inprocess.json"

# 2. The raw limits, same run: one SNP verification is one P-384 verify (the report) plus small
#    work; a TDX quote carries two P-256 signatures (QE report, quote), of which a warm verifier
#    checks the quote's per call (the QE report's verdict is kept by its exact bytes).
openssl speed -seconds "$seconds" ecdsap384 ecdsap256 > "$out/openssl-speed.txt" 2>/dev/null

# 3. dcap-qvl (PyPI, Rust with Python bindings) in a throwaway virtualenv, on the same quote and
#    collateral at the same instant (bench/peer_dcap_qvl.py). A failure is reported in its row.
venv="$out/dcap-qvl-venv"
row() { python3 -c 'import json,sys;print(json.dumps({"name":"dcap-qvl verify (Python bindings)","unit":"quotes per CPU-second","rate":None,"detail":sys.argv[1]}))' "$1"; }
if /usr/bin/python3 -m venv "$venv" >"$out/dcap-qvl-pip.log" 2>&1 \
   && "$venv/bin/pip" install -q --disable-pip-version-check "dcap-qvl==$dcap_qvl_version" >>"$out/dcap-qvl-pip.log" 2>&1; then
  "$venv/bin/python" bench/peer_dcap_qvl.py Tests/Fixtures/tdx "$tdx_sample" "$seconds" >> "$out/peers.jsonl" 2>"$out/dcap-qvl.log" \
    || row "FAILED: dcap-qvl $dcap_qvl_version ran but gave no figure: $(tail -1 "$out/dcap-qvl.log")" >> "$out/peers.jsonl"
else
  row "FAILED: dcap-qvl $dcap_qvl_version could not be installed from PyPI: $(tail -1 "$out/dcap-qvl-pip.log")" >> "$out/peers.jsonl"
fi

python3 - "$out" <<'PY'
import json, os, re, sys
out = sys.argv[1]
results = json.load(open(os.path.join(out, "inprocess.json")))
results += [json.loads(l) for l in open(os.path.join(out, "peers.jsonl"))]
speed = open(os.path.join(out, "openssl-speed.txt")).read()
limits = {}
for bits, curve in [("384", "p384"), ("256", "p256")]:
    m = re.search(rf"{bits} bits ecdsa \(nist{curve}\)\s+\S+\s+\S+\s+\S+\s+(\S+)", speed)
    limits[curve] = float(m.group(1)) if m else None
    results.append({"name": f"openssl speed ecdsa{curve} verify", "unit": "verifies per CPU-second", "rate": limits[curve],
                    "detail": "the raw crypto limit, same run, one process; openssl speed divides by its user CPU time" if m
                              else "FAILED: openssl speed printed no figure"})
def find(name): return next((r["rate"] for r in results if r["name"] == name), None)
snp_warm, tdx_warm = find("SEV-SNP report verify, warm verifier"), find("TDX quote verify, warm verifier")
tdx_cold, dcap = find("TDX quote verify, cold verifier"), find("dcap-qvl verify (Python bindings)")
ratios = []
if snp_warm and limits["p384"]:
    ratios.append(f"SEV-SNP report verify, warm ÷ openssl speed P-384 verify/s: {100 * snp_warm / limits['p384']:.0f} % "
                  "(one report signature per call; target ≥ 90 %)")
if tdx_warm and limits["p256"]:
    ratios.append(f"TDX quote verify, warm ÷ (openssl speed P-256 verify/s ÷ 2): {100 * tdx_warm / (limits['p256'] / 2):.0f} % "
                  "(the limit for a quote's two signatures, QE report and quote; target ≥ 90 %; a warm verifier checks the quote's "
                  "per call and keeps the QE report's verdict by its exact bytes, so this may pass 100 %)")
    ratios.append(f"TDX quote verify, warm ÷ openssl speed P-256 verify/s: {100 * tdx_warm / limits['p256']:.0f} % "
                  "(against the one signature a warm call checks, the quote's: what the rest of a warm call costs)")
if dcap:
    if tdx_warm:
        ratios.append(f"TDX quote verify, warm ÷ dcap-qvl verify: {tdx_warm / dcap:.1f}× (Vouch's cached collateral, PCK chain and QE report signature "
                      "against dcap-qvl, which keeps nothing between calls)")
    if tdx_cold:
        ratios.append(f"TDX quote verify, cold ÷ dcap-qvl verify: {tdx_cold / dcap:.2f}× (like for like: both check every chain, CRL and "
                      "collateral signature on every call)")
else:
    ratios.append("TDX against dcap-qvl: no ratio, dcap-qvl gave no figure (see its row)")
sys.path.insert(0, "bench")
import section
section.write(out, results, ratios, "bench-tee")
PY
