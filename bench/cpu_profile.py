"""Where vouchd's CPU goes under a load: a summary of `perf record` samples taken on the broker
(bench/run.sh: while vouch-bench enrolls, section 3; while the largest simulated fleet is pulled,
section 5). Prints one JSON object:
{"available": true, "samples": N, "seconds": S, "label": L, "areas": [{"area", "percent", "libraries"}],
 "symbols": [{"percent", "library", "symbol"}]}, or {"available": false, "reason": ...}.

Areas group the samples by the library (DSO) they fell in; symbols are the hottest functions,
Swift names demangled when `swift demangle` is there. The percentages are shares of the samples
perf took in the broker process (on-CPU time), not of wall time.

Usage: python3 bench/cpu_profile.py PERF_DATA SECONDS LABEL
"""
import json
import re
import shutil
import subprocess
import sys

AREAS = [  # (area, pattern on the library's file name), first match wins
    ("OpenSSL libcrypto (signatures, verifies, DER, provider lookups)", r"^libcrypto"),
    ("TLS (GnuTLS, nettle, GMP)", r"^lib(gnutls|nettle|hogweed|gmp|tasn1|p11-kit|idn2|unistring)"),
    ("HTTP server (libmicrohttpd)", r"^libmicrohttpd"),
    ("SQLite", r"^libsqlite3"),
    ("kernel (network, fsync, futex, scheduling)", r"^\[kernel"),
    ("Swift runtime and standard library (ARC, generics, collections)", r"^libswift"),
    ("Foundation (JSON, strings, dates, ICU)", r"^(libFoundation|lib_FoundationICU)"),
    ("libc (malloc/free, memcpy, locks)", r"^(libc\.so|libm\.so|ld-linux)"),
    ("Vouch code (vouchd)", r"^vouchd$"),
]


def report(data, sort):
    """perf report's rows for `sort`, and the sample count from its header."""
    text = subprocess.run(["perf", "report", "-i", data, "--no-children", "--sort", sort, "--stdio", "-g", "none", "--percent-limit", "0.3"],
                          capture_output=True, text=True, check=True).stdout
    samples = re.search(r"^# Samples: (\S+)", text, re.M)
    return [line for line in text.splitlines() if line.strip() and not line.startswith("#")], samples.group(1) if samples else None


def main():
    data, seconds, label = sys.argv[1], float(sys.argv[2]), sys.argv[3]
    if not shutil.which("perf"):
        print(json.dumps({"available": False, "reason": "perf not available"}))
        return
    try:
        by_dso, samples = report(data, "dso")
        by_symbol, _ = report(data, "dso,symbol")
    except (subprocess.CalledProcessError, FileNotFoundError) as e:
        print(json.dumps({"available": False, "reason": f"perf report failed: {e}"}))
        return
    areas = {}
    for line in by_dso:
        m = re.match(r"\s*([\d.]+)%\s+(\S+)", line)
        if not m:
            continue
        pct, dso = float(m.group(1)), m.group(2)
        area = next((a for a, p in AREAS if re.search(p, dso)), "other")
        entry = areas.setdefault(area, {"area": area, "percent": 0.0, "libraries": []})
        entry["percent"] += pct
        entry["libraries"].append(dso)
    symbols = []
    for line in by_symbol[:15]:
        m = re.match(r"\s*([\d.]+)%\s+(\S+)\s+\[[.k]\]\s+(.*?)\s*$", line)
        if m:
            symbols.append({"percent": float(m.group(1)), "library": m.group(2), "symbol": re.sub(r"(\s+-)+\s*$", "", m.group(3)).strip()})
    if shutil.which("swift") and symbols:
        names = subprocess.run(["swift", "demangle", "--simplified", "--compact"], input="\n".join(s["symbol"] for s in symbols),
                               capture_output=True, text=True).stdout.splitlines()
        if len(names) == len(symbols):
            for s, n in zip(symbols, names):
                s["symbol"] = n
    for s in symbols:
        s["symbol"] = s["symbol"][:110]
    print(json.dumps({"available": True, "samples": samples, "seconds": seconds, "label": label,
                      "areas": sorted(areas.values(), key=lambda a: -a["percent"]), "symbols": symbols}))


main()
