#!/usr/bin/env bash
# Replicas on PostgreSQL (make bench-replicas, and bench/run.sh): enrollments/s and the largest
# fleet kept re-attested, for SQLite (one vouchd) and for 1, 2 and 3 vouchd replicas on one
# PostgreSQL database, in one run on the same machine with the same release binaries.
#
# A throwaway PostgreSQL cluster (initdb, pg_ctl from /usr/lib/postgresql/*/bin, run as the
# postgres user under root) in a temporary directory on a free port, stopped and deleted at the
# end, also on failure. For each configuration, on fresh state (a new database; data directories
# copied from a first replica after it stopped, as docs/operations.md has it):
#   - enrollment over HTTPS with 8 and 32 clients spread over the replicas (vouch-bench enroll
#     --broker URL,URL,...: client k uses replica k mod N), p50 and p99;
#   - a fleet ramp: simulated hosts (vouch-attester --simulate, pull mode, 10 s interval) added in
#     steps (BENCH_REPLICA_FLEET, cumulative totals) while the replicas keep every host trusted and
#     none last attested more than 1.5 intervals ago at the end of a window of BENCH_REPLICA_WINDOW
#     s (after one interval in steady state; rounds/s over the window reported beside). It stops
#     at the first step that does not hold.
# Broker CPU (summed over the replicas), PostgreSQL CPU (postmaster and its children) and the load
# generator's CPU come from /proc/PID/stat over each measurement, the whole machine's from /proc/stat.
# Arguments: BIN OUT. Writes OUT/replicas.jsonl (the rows), OUT/replicas/ (logs, raw samples,
# results.json) and the bench-replicas section of docs/performance.md.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(cd "$1" && pwd); top=$(mkdir -p "$2" && cd "$2" && pwd); out=$top/replicas   # absolute: some steps run elsewhere
enroll_seconds=${BENCH_REPLICA_SECONDS:-8}
ramp=${BENCH_REPLICA_FLEET:-500 1000 2000 3000}
window=${BENCH_REPLICA_WINDOW:-20}
replica_counts=${BENCH_REPLICAS:-1 2 3}
rm -rf "$out" "$top/replicas.jsonl" && mkdir -p "$out"
raw="$out/raw.jsonl"
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }

# Everything this script starts, stopped on any exit; then the cluster is stopped and deleted.
bpids=(); spids=(); pgdir=""; pgbin=""; as_pg=()
cleanup() {
  kill ${bpids[@]:-} ${spids[@]:-} 2>/dev/null || true
  wait ${bpids[@]:-} ${spids[@]:-} 2>/dev/null || true
  if [ -n "$pgdir" ]; then
    if [ -f "$pgdir/data/postmaster.pid" ]; then
      (cd "$pgdir" && "${as_pg[@]}" "$pgbin/pg_ctl" stop -D "$pgdir/data" -m immediate -w >/dev/null 2>&1) || true
    fi
    cp "$pgdir/server.log" "$out/postgres.log" 2>/dev/null || true
    rm -rf "$pgdir"
  fi
}
trap cleanup EXIT
trap 'exit 143' INT TERM   # an interrupted run cleans up too

# ---------------------------------------------------------------------------------------------
# The PostgreSQL cluster: trust authentication for the superuser vouch on 127.0.0.1 only.
pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -x "$pgbin/initdb" ] || { echo "replicas: PostgreSQL's server programs are not in /usr/lib/postgresql/*/bin (make deps)" >&2; exit 1; }
pgdir=$(mktemp -d "${TMPDIR:-/tmp}/vouch-bench-pg-XXXXXX")
if [ "$(id -u)" = 0 ]; then   # initdb and postgres refuse root
  as_pg=(setpriv --reuid=postgres --regid=postgres --init-groups --)
  chown postgres:postgres "$pgdir"
fi
mkdir -p "$pgdir/socket" && { [ ${#as_pg[@]} = 0 ] || chown postgres:postgres "$pgdir/socket"; }
(cd "$pgdir" && "${as_pg[@]}" "$pgbin/initdb" -D "$pgdir/data" -A trust -U vouch -E UTF8 --locale=C >"$out/initdb.log" 2>&1)
pgport=$(free_port)
cat >> "$pgdir/data/postgresql.conf" <<EOF
# bench/replicas.sh: PostgreSQL's defaults otherwise (fsync and synchronous_commit on).
listen_addresses = '127.0.0.1'
port = $pgport
unix_socket_directories = '$pgdir/socket'
max_connections = 100
EOF
(cd "$pgdir" && "${as_pg[@]}" "$pgbin/pg_ctl" start -D "$pgdir/data" -l "$pgdir/server.log" -w -t 60 >/dev/null)
psql() { "$pgbin/psql" -X -q -At -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$pgport" -U vouch -d postgres -c "$1"; }
pg_version=$("$pgbin/postgres" --version | awk '{print $3}')

# ---------------------------------------------------------------------------------------------
# Brokers: the development policy with a 10 s interval, as bench/run.sh's fleet uses; simulated
# hosts only (their EK roots are never consulted, but vouchd wants one).
mkdir -p "$out/ek-roots"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=bench unused EK root" -days 2 \
  -keyout "$out/ek-root.key" -out "$out/ek-roots/root.pem" >/dev/null 2>&1
sed -e 's/  interval: 15m/  interval: 10s/' -e 's/    grace: 0s/    grace: 30s/' -e 's/  ttl: 15m/  ttl: 5m/' policies/development.yaml > "$out/policy.yaml"

# start_vouchd NAME DIR PORT [DATABASE-URL]: one vouchd in the background (its pid appended to bpids).
start_vouchd() {
  "$bin/vouchd" --data-dir "$2" --policy "$out/policy.yaml" --ek-roots "$out/ek-roots" --port "$3" ${4:+--database "$4"} \
    --allow-simulated-hosts --reattest-concurrency 32 --publish-listen off >>"$out/vouchd-$1.log" 2>&1 &
  bpids+=($!)
}
wait_healthy() {  # DIR PORT
  for _ in $(seq 1 400); do
    [ -f "$1/broker-ca/ca.pem" ] && curl -sf --cacert "$1/broker-ca/ca.pem" "https://127.0.0.1:$2/healthz" >/dev/null && return 0
    sleep 0.05
  done
  echo "replicas: vouchd on port $2 did not start (see $out/vouchd-*.log)" >&2; return 1
}
stop_all() {  # the brokers first (their rounds in flight finish against live simulators), then the simulators
  kill ${bpids[@]:-} 2>/dev/null || true; wait ${bpids[@]:-} 2>/dev/null || true; bpids=()
  kill ${spids[@]:-} 2>/dev/null || true; wait ${spids[@]:-} 2>/dev/null || true; spids=()
}

# start_set NAME REPLICAS DATABASE: fresh brokers. SQLite (DATABASE "sqlite"): one. PostgreSQL: a
# new database; the first replica creates the keys and the schema, stops, its data directory is
# copied to the others (replica.key among the files), and all start. Sets ports, dirs, urls, ca.
start_set() {
  local name=$1 n=$2 db=$3 url=""
  ports=(); dirs=()
  if [ "$db" != sqlite ]; then
    psql "CREATE DATABASE $db"
    url="postgres://vouch@127.0.0.1:$pgport/$db"
  fi
  for i in $(seq 1 "$n"); do ports+=("$(free_port)"); dirs+=("$out/$name/replica-$i"); done
  start_vouchd "$name-1" "${dirs[0]}" "${ports[0]}" "$url"
  wait_healthy "${dirs[0]}" "${ports[0]}"
  if [ "$n" -gt 1 ]; then
    stop_all
    for i in $(seq 1 $((n - 1))); do cp -a "${dirs[0]}" "${dirs[$i]}"; done
    for i in $(seq 0 $((n - 1))); do start_vouchd "$name-$((i + 1))" "${dirs[$i]}" "${ports[$i]}" "$url"; done
    for i in $(seq 0 $((n - 1))); do wait_healthy "${dirs[$i]}" "${ports[$i]}"; done
  fi
  ca="${dirs[0]}/broker-ca/ca.pem"
  urls=$(for p in "${ports[@]}"; do printf 'https://127.0.0.1:%s,' "$p"; done); urls=${urls%,}
}

# CPU ticks (user + system, with reaped children's) of a set of processes; PostgreSQL: the
# postmaster (whose reaped children's time is in its own) and every process it runs now.
ticks() { local t=0 p; for p in "$@"; do [ -r "/proc/$p/stat" ] && t=$((t + $(awk '{print $14 + $15 + $16 + $17}' "/proc/$p/stat" 2>/dev/null || echo 0))); done; echo $t; }
# The whole machine's busy ticks (user, nice, system, irq, softirq, steal: /proc/stat), so that the
# rows say how much CPU went to anything else (other work on a shared machine included).
machine_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }
pg_ticks() {
  local pm; pm=$(head -1 "$pgdir/data/postmaster.pid")
  ticks "$pm" $(ps --ppid "$pm" -o pid= 2>/dev/null)
}
metrics() {  # PORT: the broker's /metrics (nothing when it does not answer)
  curl -s --max-time 10 --cacert "$ca" -H "Authorization: Bearer $(cat "${dirs[0]}/admin.token")" "https://127.0.0.1:$1/metrics" || true
}
# Trusted re-attestations so far, summed over the replicas (each counts the rounds it ran).
trusted_rounds() { local p s=0 v; for p in "${ports[@]}"; do v=$(metrics "$p" | awk '$1 == "vouch_attestations_total{result=\"trusted\"}" {print $2}'); s=$((s + ${v:-0})); done; echo $s; }
other_rounds() { local p; for p in "${ports[@]}"; do metrics "$p" | grep '^vouch_attestations_total{' | grep -v 'result="trusted"' || true; done | awk '{s += $2} END {print s + 0}'; }
trusted_hosts() { metrics "${ports[0]}" | awk '$1 == "vouch_hosts_by_trust{state=\"trusted\"}" {print $2}'; }

# measure_enroll CONFIG REPLICAS CLIENTS: vouch-bench's own CPU from /usr/bin/time.
measure_enroll() {
  local config=$1 n=$2 c=$3 b0 p0 m0 t0 b1 p1 m1 t1 json="$out/enroll-$1-$3.json" cpu="$out/enroll-$1-$3.time"
  b0=$(ticks "${bpids[@]}"); p0=$([ "$config" = sqlite ] && echo 0 || pg_ticks); m0=$(machine_ticks); t0=$(date +%s.%N)
  /usr/bin/time -f '%U %S' -o "$cpu" "$bin/vouch-bench" enroll --broker "$urls" --ca "$ca" --hosts 64 --clients "$c" \
    --seconds "$enroll_seconds" --out "$json" >/dev/null 2>"$out/enroll-$config-$c.err" || true
  b1=$(ticks "${bpids[@]}"); p1=$([ "$config" = sqlite ] && echo 0 || pg_ticks); m1=$(machine_ticks); t1=$(date +%s.%N)
  [ -f "$json" ] || echo '{"rate":0,"p50ms":0,"p99ms":0,"errors":-1,"enrollments":0,"firstError":"vouch-bench wrote no result"}' > "$json"
  printf '{"kind":"enroll","config":"%s","replicas":%s,"clients":%s,"wall":%s,"broker_ticks":%s,"pg_ticks":%s,"machine_ticks":%s,"bench_cpu_s":%s,"result":%s}\n' \
    "$config" "$n" "$c" "$(python3 -c "print($t1-$t0)")" $((b1 - b0)) "$([ "$config" = sqlite ] && echo null || echo $((p1 - p0)))" $((m1 - m0)) \
    "$(tail -1 "$cpu" | awk '{print $1 + $2}')" "$(cat "$json")" >> "$raw"
}

# last_attestation_ages FILE: every host's last attestation age at the end of a window (GET
# /v1/hosts saved to FILE; ages against the time the answer was complete, so never too small):
# {"hosts", "max", "p99", "stale" (older than 15 s: 1.5 intervals)}.
last_attestation_ages() {
  curl -s --max-time 120 --cacert "$ca" -H "Authorization: Bearer $(cat "${dirs[0]}/admin.token")" "https://127.0.0.1:${ports[0]}/v1/hosts" > "$1" || true
  python3 - "$1" <<'PY'
import datetime, json, sys
now = datetime.datetime.now(datetime.timezone.utc)
try:
    hosts = json.load(open(sys.argv[1]))
except Exception:
    print(json.dumps({"hosts": 0, "max": None, "p99": None, "stale": None}))
    sys.exit()
def age(h):
    last = h.get("lastAttestation")
    return (now - datetime.datetime.fromisoformat(last["at"].replace("Z", "+00:00"))).total_seconds() if last else float("inf")
ages = sorted(age(h) for h in hosts) or [float("inf")]
finite = lambda x: x if x != float("inf") else None
print(json.dumps({"hosts": len(hosts), "max": finite(ages[-1]), "p99": finite(ages[int(0.99 * (len(ages) - 1))]), "stale": sum(1 for a in ages if a > 15)}))
PY
}

# measure_fleet CONFIG REPLICAS: the ramp on the running set; one raw line per step.
measure_fleet() {
  local config=$1 n=$2 have=0 total
  for total in $ramp; do
    local add=$((total - have)) sim_port; sim_port=$(free_port)
    "$bin/vouch-attester" --simulate "$add" --hostname "f$total" --broker "https://127.0.0.1:${ports[0]}" --ca "$ca" \
      --listen "127.0.0.1:$sim_port" >"$out/sim-$config-$total.log" 2>&1 &
    spids+=($!)
    have=$total
    local reached=0 start; start=$(date +%s)
    while [ $(( $(date +%s) - start )) -lt 240 ]; do
      [ "$(trusted_hosts)" = "$total" ] && { reached=1; break; }
      sleep 0.5
    done
    local ramp_s=$(( $(date +%s) - start ))
    if [ $reached = 1 ]; then sleep 10; fi   # one interval in steady state before measuring
    local b0 p0 g0 m0 a0 o0 b1 p1 g1 m1 a1 o1 t0 t1 now
    b0=$(ticks "${bpids[@]}"); p0=$([ "$config" = sqlite ] && echo 0 || pg_ticks); g0=$(ticks "${spids[@]}"); m0=$(machine_ticks)
    a0=$(trusted_rounds); o0=$(other_rounds); t0=$(date +%s.%N)
    sleep "$window"
    b1=$(ticks "${bpids[@]}"); p1=$([ "$config" = sqlite ] && echo 0 || pg_ticks); g1=$(ticks "${spids[@]}"); m1=$(machine_ticks)
    a1=$(trusted_rounds); o1=$(other_rounds); t1=$(date +%s.%N); now=$(trusted_hosts)
    local rss=0 p; for p in "${bpids[@]}"; do rss=$((rss + $(awk '/VmRSS/ {print $2}' "/proc/$p/status"))); done
    local ages; ages=$(last_attestation_ages "$out/hosts-$config-$total.json")
    printf '{"kind":"fleet","config":"%s","replicas":%s,"hosts":%s,"reached":%s,"ramp_s":%s,"wall":%s,"trusted_rounds":%s,"other_rounds":%s,"trusted_hosts":%s,"broker_ticks":%s,"pg_ticks":%s,"sim_ticks":%s,"machine_ticks":%s,"rss_kb":%s,"ages":%s}\n' \
      "$config" "$n" "$total" "$reached" "$ramp_s" "$(python3 -c "print($t1-$t0)")" $((a1 - a0)) $((o1 - o0)) "${now:-0}" \
      $((b1 - b0)) "$([ "$config" = sqlite ] && echo null || echo $((p1 - p0)))" $((g1 - g0)) $((m1 - m0)) "$rss" "$ages" >> "$raw"
    # Holds: every host trusted and none last attested longer ago than 1.5 intervals (a round
    # lands 0.9-1.0 interval after the last; a broker that falls behind lets ages grow). The
    # rounds/s over the window are reported beside, not judged: a fleet registered at once
    # re-attests in bursts, which a window's edges can cut.
    python3 -c "import json, sys; a = json.loads(sys.argv[1]); sys.exit(0 if $reached and ${now:-0} == $total and a['hosts'] == $total and a['stale'] == 0 else 1)" "$ages" || break
  done
}

# ---------------------------------------------------------------------------------------------
# Enrollment for every configuration first, then the fleets: the rows compared with each other are
# measured minutes apart at most, whatever else the machine runs meanwhile.
configs=("sqlite:1")
for n in $replica_counts; do configs+=("pg$n:$n"); done
for phase in enroll fleet; do
  for entry in "${configs[@]}"; do
    config=${entry%%:*}; n=${entry#*:}
    db=$([ "$config" = sqlite ] && echo sqlite || echo "bench_${config}_$phase")
    echo "replicas: $config ($n broker(s)): $phase" >&2
    start_set "$config-$phase" "$n" "$db"
    if [ $phase = enroll ]; then
      for c in 8 32; do measure_enroll "$config" "$n" "$c"; done
    else
      measure_fleet "$config" "$n"
    fi
    stop_all
    [ "$db" = sqlite ] || psql "DROP DATABASE $db"
  done
done

python3 bench/replicas_rows.py "$raw" "$top/replicas.jsonl" "$out" "$pg_version" "$window" "$enroll_seconds"
