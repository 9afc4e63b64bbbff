#!/usr/bin/env bash
# Drift to revocation, push and pull-hint modes (bench/run.sh section 6b; runs alone too):
#   bench/drift.sh BIN OUT POLICY [HOSTS]
# For each mode: a release vouchd on POLICY (a long interval), a simulated fleet of HOSTS hosts
# with an agent each that all drift 10 s after enrolling (--drift-record: each host's instant),
# and vouch-bench drift-watch timing drift -> CRL, OCSP, SSE per host. The baseline, "unwatched":
# pull hosts without a drift watcher (--watch-interval 0) on POLICY with a 10 s interval, where
# the next scheduled round finds the change, as before the watcher. The simulated hosts share one
# address (127.0.0.1), so vouchd's per-address connection cap is raised, as for hosts behind one
# NAT address (docs/operations.md). Each simulated host reports over a connection of its own,
# kept from its previous report as an attester process keeps its one (vouchd's default
# --host-connection-timeout, 20 min, keeps it open on the broker's side); a pull host's first
# mTLS request is its hint, so each hint pays a TLS handshake. Each row also gives the CPU of the
# broker, the fleet and the watchers from the drift until the last view showed it (2 cores shared
# by all three). Rows go to OUT/broker.jsonl
# in the format of the other broker rows. Reports only; nothing here passes or fails on speed.
set -euo pipefail
bin=$1 out=$2 policy=$3 hosts=${4:-200}
mkdir -p "$out/drift"
[ -d "$out/ek-roots" ] || { echo "bench/drift.sh: $out/ek-roots must hold an EK root (bench/run.sh copies swtpm's)" >&2; exit 1; }
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
pids=()
trap 'kill ${pids[@]:-} 2>/dev/null || true' EXIT
sed -E 's/^  interval: .*/  interval: 10s/' "$policy" > "$out/drift/policy-10s.yaml"
for mode in push pull unwatched; do
  dir="$out/drift/$mode"; rm -rf "$dir"; mkdir -p "$dir"
  port=$(free_port)
  "$bin/vouchd" --data-dir "$dir/broker" --policy "$([ "$mode" = unwatched ] && echo "$out/drift/policy-10s.yaml" || echo "$policy")" --ek-roots "$out/ek-roots" --port "$port" \
    --allow-simulated-hosts --reattest-concurrency 32 --max-connections-per-address 1024 --publish-listen off >"$dir/vouchd.log" 2>&1 &
  broker=$!; pids+=("$broker")
  for _ in $(seq 1 200); do [ -f "$dir/broker/broker-ca/ca.pem" ] && curl -sf --cacert "$dir/broker/broker-ca/ca.pem" "https://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.05; done
  [ -f "$dir/broker/admin.token" ] || { echo "vouchd did not start (see $dir/vouchd.log)" >&2; exit 1; }
  case $mode in
    push) how=(--push); label='push mode (a fresh quote pushed at once)' ;;
    pull) how=(--listen "127.0.0.1:$(free_port)"); label='pull mode (a hint, then a pull)' ;;
    unwatched) how=(--listen "127.0.0.1:$(free_port)" --watch-interval 0); label='no drift watcher (the next round of a 10 s interval finds it; as before the watcher)' ;;
  esac
  "$bin/vouch-attester" --simulate "$hosts" --broker "https://127.0.0.1:$port" --ca "$dir/broker/broker-ca/ca.pem" "${how[@]}" \
    --enroll-agents --drift-after 10s --drift-record "$dir/record.json" >"$dir/sim.log" 2>&1 &
  sim=$!; pids+=("$sim")
  "$bin/vouch-bench" drift-watch --broker "https://127.0.0.1:$port" --ca "$dir/broker/broker-ca/ca.pem" --token "$dir/broker/admin.token" \
    --record "$dir/record.json" --label "$label, $hosts hosts" --broker-pid "$broker" --fleet-pid "$sim" \
    --timeout 180s --ocsp-threads "${BENCH_DRIFT_OCSP_THREADS:-1}" --out "$dir/rows.jsonl" || echo "{\"name\":\"drift to revocation visible, $mode mode\",\"unit\":\"ms (p99)\",\"rate\":0,\"detail\":\"failed (see $dir)\"}" > "$dir/rows.jsonl"
  cat "$dir/rows.jsonl" >> "$out/broker.jsonl"
  kill "$sim" "$broker" 2>/dev/null || true; wait "$sim" "$broker" 2>/dev/null || true
done
