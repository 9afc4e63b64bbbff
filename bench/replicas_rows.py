"""bench/replicas.sh's rows: reads the raw samples of one run (RAW, one JSON object per
measurement), writes the table's rows to ROWS (JSON lines) and, through bench/section.py,
OUT/results.json and the bench-replicas section of docs/performance.md.

Arguments: RAW ROWS OUT POSTGRES-VERSION WINDOW-SECONDS ENROLL-SECONDS.
Every figure comes from RAW; ratios compare rows of this run only and say what they compare."""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import section  # noqa: E402

raw_path, rows_path, out, pg_version, window, enroll_seconds = sys.argv[1:7]
hz = os.sysconf("SC_CLK_TCK")
cores = os.cpu_count()
samples = [json.loads(line) for line in open(raw_path)]


def label(config, replicas):
    if config == "sqlite":
        return "SQLite, 1 broker"
    return f"PostgreSQL, {replicas} replica" + ("s" if replicas > 1 else "")


def percent(ticks, seconds):
    """CPU time over wall time, in % of one core; None when not measured."""
    return None if ticks is None else 100 * ticks / hz / seconds


def others(machine, broker, postgres, generator):
    """CPU that went to none of the measured processes (other processes, interrupt handling, the
    hypervisor's steal), % of one core."""
    return max(0.0, machine - broker - (postgres or 0) - generator)


def cpu_text(broker, postgres, generator, generator_name, replicas, machine):
    """The CPU figures of one measurement, each in % of one core; `machine`: every process's."""
    parts = [f"broker {broker:.0f} %" + (f" (sum of {replicas} replicas)" if replicas > 1 else "")]
    if postgres is not None:
        parts.append(f"PostgreSQL {postgres:.0f} %")
    parts.append(f"{generator_name} {generator:.0f} %")
    other = others(machine, broker, postgres, generator)
    parts.append(f"everything else {other:.0f} % (other processes, interrupts, steal; the machine busy {machine:.0f} % of {100 * cores} %)")
    return "CPU in % of one core: " + ", ".join(parts)


rows = []
order = []
for s in samples:
    key = (s["config"], s["replicas"])
    if key not in order:
        order.append(key)

for config, replicas in order:
    name = label(config, replicas)
    for s in [s for s in samples if s["kind"] == "enroll" and s["config"] == config]:
        r, wall = s["result"], s["wall"]
        broker = percent(s["broker_ticks"], wall)
        postgres = percent(s["pg_ticks"], wall)
        bench = 100 * s["bench_cpu_s"] / wall
        machine = percent(s["machine_ticks"], wall)
        done = r.get("enrollments", 0)
        per = ""
        if done:
            per = f"; CPU per enrollment: broker {1000 * s['broker_ticks'] / hz / done:.1f} ms"
            if s["pg_ticks"] is not None:
                per += f", PostgreSQL {1000 * s['pg_ticks'] / hz / done:.1f} ms"
        errors = f"{r['errors']} errors" + (f" (first: {r['firstError'][:120]})" if r.get("errors") else "")
        rows.append({
            "name": f"{name}: enrollment over HTTPS, {s['clients']} clients", "config": config, "replicas": replicas,
            "kind": "enroll", "clients": s["clients"], "unit": "enrollments/s", "rate": r["rate"],
            "p50ms": r["p50ms"], "p99ms": r["p99ms"], "errors": r["errors"],
            "broker_cpu_percent": broker, "postgres_cpu_percent": postgres, "bench_cpu_percent": bench,
            "machine_cpu_percent": machine, "other_cpu_percent": others(machine, broker, postgres, bench),
            "detail": f"p50 {r['p50ms']:.1f} ms, p99 {r['p99ms']:.1f} ms, {errors}; "
                      + (f"clients spread over the {replicas} replicas; " if replicas > 1 else "")
                      + f"{cpu_text(broker, postgres, bench, 'vouch-bench', replicas, machine)} over the "
                      f"{wall:.1f} s run (its 64 host registrations included){per}; simulated hosts with software keys",
        })
    steps = [s for s in samples if s["kind"] == "fleet" and s["config"] == config]
    for s in steps:
        s["rounds_per_s"] = s["trusted_rounds"] / s["wall"]
        a = s["ages"]
        s["held"] = bool(s["reached"]) and s["trusted_hosts"] == s["hosts"] and a["hosts"] == s["hosts"] and a["stale"] == 0
    held = [s for s in steps if s["held"]]
    failed = next((s for s in steps if not s["held"]), None)
    best = held[-1] if held else None
    parts = []
    if best:
        broker = percent(best["broker_ticks"], best["wall"])
        postgres = percent(best["pg_ticks"], best["wall"])
        sim = percent(best["sim_ticks"], best["wall"])
        machine = percent(best["machine_ticks"], best["wall"])
        parts.append(f"at {best['hosts']} hosts: {best['trusted_hosts']}/{best['hosts']} trusted, the oldest last attestation "
                     f"{best['ages']['max']:.0f} s old (p99 {best['ages']['p99']:.0f} s); {best['rounds_per_s']:.0f} re-attestations/s over "
                     f"{best['wall']:.0f} s (one per host per interval: {best['hosts'] / 10:.0f}/s), {best['other_rounds']} other outcomes; "
                     f"{cpu_text(broker, postgres, sim, 'vouch-attester --simulate', replicas, machine)}; broker RSS {best['rss_kb'] / 1024:.0f} MiB")
    else:
        broker = postgres = sim = machine = None
    if failed:
        a = failed["ages"]
        if not failed["reached"]:
            why = f"only {failed['trusted_hosts']}/{failed['hosts']} hosts trusted after {failed['ramp_s']} s"
        elif a["stale"] is None:
            why = "the host list could not be read"
        else:
            oldest = "never" if a["max"] is None else f"the oldest {a['max']:.0f} s ago"
            why = (f"{a['stale']} hosts last attested more than 15 s ago, {oldest}; {failed['rounds_per_s']:.0f} re-attestations/s "
                   f"(one per host per interval: {failed['hosts'] / 10:.0f}/s), {failed['trusted_hosts']}/{failed['hosts']} trusted")
        fb = percent(failed["broker_ticks"], failed["wall"])
        fp = percent(failed["pg_ticks"], failed["wall"])
        fm = percent(failed["machine_ticks"], failed["wall"])
        fs = percent(failed["sim_ticks"], failed["wall"])
        parts.append(f"{failed['hosts']} hosts not held ({why}; CPU: broker {fb:.0f} %"
                     + (f", PostgreSQL {fp:.0f} %" if fp is not None else "")
                     + f", vouch-attester --simulate {fs:.0f} %, the machine busy {fm:.0f} % of {100 * cores} %)")
    else:
        parts.append("every step of the ramp held: the limit is above the last")
    rows.append({
        "name": f"{name}: largest simulated fleet re-attested every 10 s", "config": config, "replicas": replicas, "kind": "fleet",
        "unit": "hosts", "rate": best["hosts"] if best else None,
        "broker_cpu_percent": broker, "postgres_cpu_percent": postgres, "sim_cpu_percent": sim,
        "machine_cpu_percent": machine, "other_cpu_percent": others(machine, broker, postgres, sim) if best else None,
        "steps": [{k: s[k] for k in ("hosts", "held", "rounds_per_s", "trusted_hosts", "ages", "broker_ticks", "pg_ticks", "sim_ticks", "machine_ticks", "wall")} for s in steps],
        "detail": "; ".join(parts) + f"; pull mode, software-key hosts (vouch-attester --simulate); ramp {', '.join(str(s['hosts']) for s in steps)}",
    })

with open(rows_path, "w") as f:
    for r in rows:
        f.write(json.dumps(r) + "\n")


def find(config, kind, clients=None):
    return next((r for r in rows if r["config"] == config and r["kind"] == kind and r.get("clients") == clients), None)


def beside(a, b):
    """What else the machine ran during the two rows a ratio compares (a shared machine's load)."""
    if a.get("other_cpu_percent") is None or b.get("other_cpu_percent") is None:
        return ""
    return (f"; CPU of no measured process meanwhile (other processes, interrupts, steal): "
            f"{a['other_cpu_percent']:.0f} % and {b['other_cpu_percent']:.0f} % of one core")


ratios = []
for clients in (8, 32):
    base = find("sqlite", "enroll", clients)
    one = find("pg1", "enroll", clients)
    for config, replicas in order:
        if config == "sqlite":
            continue
        r = find(config, "enroll", clients)
        if r and base and base["rate"]:
            ratios.append(f"enrollments/s with {clients} clients, PostgreSQL with {replicas} replica(s) vs SQLite with 1 broker "
                          f"(same clients, same run): {r['rate'] / base['rate']:.2f}×{beside(r, base)}")
        if r and one and one["rate"] and config != "pg1":
            ratios.append(f"enrollments/s with {clients} clients, PostgreSQL {replicas} replicas vs 1 replica: {r['rate'] / one['rate']:.2f}×{beside(r, one)}")
base = find("sqlite", "fleet")
for config, replicas in order:
    r = find(config, "fleet")
    if config != "sqlite" and r and base and r["rate"] and base["rate"]:
        ratios.append(f"largest fleet held (ramp steps), PostgreSQL with {replicas} replica(s) vs SQLite with 1 broker: "
                      f"{r['rate'] / base['rate']:.2f}× ({r['rate']} vs {base['rate']} hosts){beside(r, base)}")

header = (f"Release vouchd, vouch-bench and vouch-attester; PostgreSQL {pg_version} in a throwaway cluster on the same machine "
          "(fsync and synchronous_commit on, as SQLite runs synchronous=FULL). The brokers, PostgreSQL and the load generators "
          f"share the same cores. Enrollment: {enroll_seconds} s per row; fleet: a {window} s window after one interval in steady "
          "state per ramp step. All hosts are simulated with software keys (no TPM in the way).")
section.write(out, rows, ratios, "bench-replicas", header=header)
