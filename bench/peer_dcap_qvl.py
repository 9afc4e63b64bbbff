"""dcap-qvl's Python bindings on the same TDX quote as Vouch, for `make bench` (run inside a
throwaway virtualenv; bench/tee.sh installs the pinned version from PyPI).

Usage: python peer_dcap_qvl.py TDX_FIXTURES SAMPLE SECONDS
TDX_FIXTURES is Tests/Fixtures/tdx: SAMPLE/quote.bin, SAMPLE/collateral.json (dcap-qvl's own
QuoteCollateralV3 JSON) and manifest.json, whose entry for SAMPLE pins the verification time.

Prints one JSON line: dcap_qvl.verify(quote, collateral, now) per CPU-second of this process
(user and system time, as Vouch's rows count theirs; per wall-clock second in the detail), the
collateral parsed once (QuoteCollateralV3.from_json) as Vouch parses it once. dcap_qvl.verify checks everything on every
call (CRLs, PCK chain, TCB info and QE identity signatures, QE report and quote signatures, TCB
level); it keeps nothing between calls. The first call must answer UpToDate with no advisories,
the verdict the manifest records and Vouch reaches, or nothing is timed and the script fails.
"""
import calendar, json, sys, time
from importlib.metadata import version

import dcap_qvl

fixtures, sample, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
manifest = json.load(open(f"{fixtures}/manifest.json"))
entry = next(s for s in manifest["samples"] if s["dir"] == sample)
now = calendar.timegm(time.strptime(entry["now"], "%Y-%m-%dT%H:%M:%SZ"))
quote = open(f"{fixtures}/{sample}/quote.bin", "rb").read()
collateral = dcap_qvl.QuoteCollateralV3.from_json(open(f"{fixtures}/{sample}/collateral.json").read())

first = dcap_qvl.verify(quote, collateral, now)
if first.status != "UpToDate" or list(first.advisory_ids):
    sys.exit(f"dcap-qvl answered {first.status} {list(first.advisory_ids)} on {sample} at {entry['now']}, not UpToDate without advisories")

n, start, cpu_start = 0, time.perf_counter(), time.process_time()
while time.perf_counter() - start < seconds:
    for _ in range(16):
        dcap_qvl.verify(quote, collateral, now)
    n += 16
cpu, wall = time.process_time() - cpu_start, time.perf_counter() - start
print(json.dumps({"name": "dcap-qvl verify (Python bindings)", "unit": "quotes per CPU-second", "rate": n / cpu,
                  "detail": f"dcap-qvl {version('dcap-qvl')} dcap_qvl.verify on the same {sample} quote and collateral at {entry['now']}: "
                            "CRLs, PCK chain, TCB info and QE identity, QE report and quote signatures, TCB level, every call; "
                            f"answered {first.status}; wall clock {round(n / wall)}/s"}))
