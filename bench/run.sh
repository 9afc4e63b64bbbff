#!/usr/bin/env bash
# make bench: measurements side by side in one run, written to out/bench/results.json and into the
# generated section of docs/performance.md. Reports only; nothing here passes or fails on speed.
set -euo pipefail
cd "$(dirname "$0")/.."
shared=${VOUCH_SHARED_TESTDATA:-../shared/testdata}
seconds=${BENCH_SECONDS:-3}
out=out/bench
rm -rf "$out" && mkdir -p "$out"
swift build -c release --product vouch-bench
bin=$(swift build -c release --show-bin-path)

# A software TPM for quotes (tpm2-tools and vouch-bench take turns on it).
scripts/swtpm-manufacture.sh "$out/tpm"
port=$(python3 -c 'import socket,random
while True:
    p=random.randint(20000,60000)
    try:
        a=socket.socket(); a.bind(("127.0.0.1",p)); b=socket.socket(); b.bind(("127.0.0.1",p+1)); a.close(); b.close(); print(p); break
    except OSError: pass')
swtpm socket --tpm2 --tpmstate dir="$(realpath "$out/tpm/state")" --flags not-need-init,startup-clear \
  --server type=tcp,port="$port",bindaddr=127.0.0.1 --ctrl type=tcp,port=$((port + 1)),bindaddr=127.0.0.1 >"$out/swtpm.log" 2>&1 &
swtpm_pid=$!
trap 'kill $swtpm_pid 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break; sleep 0.05; done
export TPM2TOOLS_TCTI="swtpm:host=127.0.0.1,port=$port"

# tpm2_checkquote, one process per quote, as operators and Keylime's measured-boot path run it.
for alg in ecc rsa; do
  tpm2_createak -C 0x81010001 -c "$out/ak-$alg.ctx" -G $alg -g sha256 -s $([ $alg = ecc ] && echo ecdsa || echo rsassa) -u "$out/ak-$alg.pem" -f pem >/dev/null
  tpm2_quote -c "$out/ak-$alg.ctx" -l sha256:0,1,2,3,4,5,6,7,8,9,14,23 -q 0a0b0c0d -m "$out/q-$alg.msg" -s "$out/q-$alg.sig" -o "$out/q-$alg.pcrs" -g sha256 >/dev/null
  tpm2_flushcontext -t
  n=100; start=$(date +%s.%N)
  for _ in $(seq 1 $n); do tpm2_checkquote -u "$out/ak-$alg.pem" -m "$out/q-$alg.msg" -s "$out/q-$alg.sig" -f "$out/q-$alg.pcrs" -g sha256 -q 0a0b0c0d >/dev/null; done
  end=$(date +%s.%N)
  python3 -c "import json;print(json.dumps({'name':'tpm2_checkquote $alg (process per quote)','unit':'quotes/s','rate':$n/($end-$start),'detail':'tpm2-tools $(tpm2_checkquote -v | grep -o "version=\"[^\"]*\"" | head -1 | tr -d \\\")'}))" >> "$out/peers.jsonl"
done

"$bin/vouch-bench" --tcti "$TPM2TOOLS_TCTI" --logs "$shared/tpm-eventlog/eventlogs" --seconds "$seconds" --out "$out/inprocess.json"
openssl speed -seconds "$seconds" ecdsap256 rsa2048 > "$out/openssl-speed.txt" 2>/dev/null

python3 - "$out" <<'PY'
import json, os, re, sys, platform, subprocess
out = sys.argv[1]
results = json.load(open(os.path.join(out, "inprocess.json")))
results += [json.loads(l) for l in open(os.path.join(out, "peers.jsonl"))]
speed = open(os.path.join(out, "openssl-speed.txt")).read()
rsa = re.search(r"rsa\s+2048 bits\s+\S+\s+\S+\s+(\S+)\s+(\S+)", speed)
ecd = re.search(r"256 bits ecdsa \(nistp256\)\s+\S+\s+\S+\s+(\S+)\s+(\S+)", speed)
limits = {"rsa-2048": float(rsa.group(2)) if rsa else None, "ecc-p256": float(ecd.group(2)) if ecd else None}
for k, v in limits.items():
    if v: results.append({"name": f"openssl speed verify {k}", "unit": "verifies/s", "rate": v, "detail": "the raw crypto limit, same run"})
def find(name): return next((r["rate"] for r in results if r["name"] == name), None)
ratios = []
for kind in ["ecc-p256", "rsa-2048"]:
    v, lim = find(f"quote verify {kind}"), limits[kind]
    if v and lim: ratios.append(f"quote verification {kind}: {100*v/lim:.0f} % of OpenSSL's raw verify rate")
    full = find(f"quote verify + event-log replay + policy {kind}")
    peer = find(f"tpm2_checkquote {'ecc' if kind == 'ecc-p256' else 'rsa'} (process per quote)")
    if full and peer: ratios.append(f"verify + event-log replay + policy {kind}: {full/peer:.0f}× tpm2_checkquote's signature-only check")
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.machine())
machine = f"{os.cpu_count()} vCPU ({cpu}), {platform.system()} {platform.release()}"
json.dump({"machine": machine, "results": results, "ratios": ratios}, open(os.path.join(out, "results.json"), "w"), indent=2)
table = ["| measurement | rate | unit | detail |", "|---|---|---|---|"]
table += [f"| {r['name']} | {r['rate']:,.0f} | {r['unit']} | {r['detail']} |" for r in results]
section = "\n".join([f"Machine: {machine}. Release build; `BENCH_SECONDS` per measurement.", "", *table, "", *[f"- {r}" for r in ratios]])
doc = open("docs/performance.md").read()
start, end = "<!-- bench:start -->", "<!-- bench:end -->"
doc = doc[:doc.index(start) + len(start)] + "\n" + section + "\n" + doc[doc.index(end):]
open("docs/performance.md", "w").write(doc)
print(section)
PY
