"""Shared by bench/tee.sh and bench/gpu.sh: writes OUT/results.json (machine, date, results,
ratios) and replaces the generated section of docs/performance.md between `<!-- MARKER:start -->`
and `<!-- MARKER:end -->` with the machine line, the results table and the ratios; prints it."""
import datetime
import json
import os
import platform


def rate(r):
    if r["rate"] is None:
        return "—"
    return f"{r['rate']:,.1f}" if r["rate"] < 100 else f"{r['rate']:,.0f}"


def write(out, results, ratios, marker, header="Release build, one thread; `BENCH_SECONDS` per measurement; "
                                              "rates per CPU-second of the measuring thread or process."):
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.machine())
    machine = f"{os.cpu_count()} vCPU ({cpu}), {platform.system()} {platform.release()}"
    day = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    json.dump({"machine": machine, "date": day, "results": results, "ratios": ratios}, open(os.path.join(out, "results.json"), "w"), indent=2)
    table = ["| measurement | rate | unit | detail |", "|---|---|---|---|"]
    table += [f"| {r['name']} | {rate(r)} | {r['unit']} | {r['detail']} |" for r in results]
    section = "\n".join([f"Machine: {machine}; run {day}. {header}", "",
                         *table, "", *[f"- {r}" for r in ratios]])
    doc = open("docs/performance.md").read()
    start, end = f"<!-- {marker}:start -->", f"<!-- {marker}:end -->"
    doc = doc[:doc.index(start) + len(start)] + "\n" + section + "\n" + doc[doc.index(end):]
    open("docs/performance.md", "w").write(doc)
    print(section)
