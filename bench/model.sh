#!/usr/bin/env bash
# Model signature verification (make bench-model, and bench/run.sh): a model directory of
# BENCH_MODEL_MB MiB of random weights (4 shards, a config, a tokenizer), signed with the
# unmodified model-signing CLI from PyPI; then, on the same files in the page cache, in one run:
# `vouch model verify` (the signature, then every file hashed on every core and compared),
# sha256sum (one process, and one per core), and model-signing's own `verify key`.
# Arguments: BIN OUT. Writes OUT/model/results.json and the bench-model section of docs/performance.md.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$1; out=$2/model
mb=${BENCH_MODEL_MB:-1024}
rm -rf "$out" && mkdir -p "$out/acme-llm/tokenizer"
model="$out/acme-llm"
shard=$((mb / 4))
for i in 1 2 3 4; do head -c $((shard * 1048576)) /dev/urandom > "$model/model-0000$i-of-00004.safetensors"; done
echo '{"architectures": ["LlamaForCausalLM"]}' > "$model/config.json"
echo '{"version": "1.0"}' > "$model/tokenizer/tokenizer.json"
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$out/publisher.key" 2>/dev/null
openssl pkey -in "$out/publisher.key" -pubout -out "$out/publisher.pub"

venv="$out/venv"
python3 -m venv "$venv" && "$venv/bin/pip" install -q model-signing==1.1.1 pyopenssl==26.4.0 >/dev/null
"$venv/bin/python" -m model_signing sign key "$model" --private_key "$out/publisher.key" --signature "$model/model.sig" >/dev/null
version=$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("model-signing"))')
files=("$model"/*.safetensors "$model/config.json" "$model/tokenizer/tokenizer.json")
cat "${files[@]}" > /dev/null   # into the page cache: every run below reads from memory

# Best of three wall-clock runs of a command; prints seconds and the CPU-seconds of that run.
best() {
  local best_s="" best_cpu=""
  for _ in 1 2 3; do
    local t0 c0 t1 c1 me=$BASHPID   # this shell: its children's CPU time once waited for
    t0=$(date +%s.%N); c0=$(awk '{print $14+$15+$16+$17}' "/proc/$me/stat")
    "$@" > /dev/null
    t1=$(date +%s.%N); c1=$(awk '{print $14+$15+$16+$17}' "/proc/$me/stat")
    local s cpu
    s=$(python3 -c "print($t1-$t0)"); cpu=$(python3 -c "import os;print(($c1-$c0)/os.sysconf('SC_CLK_TCK'))")
    if [ -z "$best_s" ] || python3 -c "import sys;sys.exit(0 if $s < $best_s else 1)"; then best_s=$s; best_cpu=$cpu; fi
  done
  echo "$best_s $best_cpu"
}
cores=$(nproc)
read -r vouch_s vouch_cpu < <(best "$bin/vouch" model verify "$model" --publisher "$out/publisher.pub" --model acme-llm)
read -r sum1_s sum1_cpu < <(best sha256sum "${files[@]}")
read -r sumn_s sumn_cpu < <(best sh -c "printf '%s\n' \"\$@\" | xargs -P $cores -n 1 sha256sum" _ "${files[@]}")
read -r ms_s ms_cpu < <(best "$venv/bin/python" -m model_signing verify key "$model" --signature "$model/model.sig" --public_key "$out/publisher.pub")
bytes=$(cat "${files[@]}" | wc -c)

python3 - "$out" "$bytes" "$cores" "$version" "$vouch_s" "$vouch_cpu" "$sum1_s" "$sum1_cpu" "$sumn_s" "$sumn_cpu" "$ms_s" "$ms_cpu" <<'PY'
import json, sys
sys.path.insert(0, "bench")
import section
out, total, cores, version = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
runs = [float(x) for x in sys.argv[5:]]
mib = total / 1048576
sha = " (SHA-NI on this CPU)" if "sha_ni" in open("/proc/cpuinfo").read() else ""
coreutils = ""
try:
    import subprocess
    coreutils = " " + subprocess.run(["sha256sum", "--version"], capture_output=True, text=True).stdout.split("\n")[0].split()[-1]
except Exception:
    pass
names = [(f"vouch model verify (signature, then {cores} hashing threads)", "vouch"),
         ("sha256sum, one process", "sum1"),
         (f"sha256sum, {cores} processes (xargs -P {cores})", "sumn"),
         (f"model-signing {version} verify key (PyPI)", "ms")]
results, by = [], {}
for i, (name, key) in enumerate(names):
    wall, cpu = runs[2 * i], runs[2 * i + 1]
    by[key] = mib / wall
    results.append({"name": name, "unit": "MiB/s", "rate": mib / wall,
                    "detail": f"{mib:,.0f} MiB of weights in {wall:.2f} s wall, {cpu:.2f} CPU-s (best of 3, page cache warm)"})
ratios = [
    f"vouch model verify vs sha256sum in one process, same files: {by['vouch'] / by['sum1']:.2f}× (vouch hashes on {cores} threads, sha256sum on one)",
    f"vouch model verify vs sha256sum on {cores} processes, same files: {by['vouch'] / by['sumn']:.2f}× (both on every core; vouch hashes with OpenSSL's SHA-256{sha}, coreutils' sha256sum{coreutils} with its own)",
    f"vouch model verify vs model-signing {version}'s own verify key, same model and signature: {by['vouch'] / by['ms']:.2f}×",
]
section.write(out, results, ratios, "bench-model",
              header="Release `vouch`; wall-clock rates over the same files in the page cache (best of 3); CPU-seconds of each run beside.")
PY
