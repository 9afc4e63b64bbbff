#!/usr/bin/env bash
# Checks that every Swift target declares in Package.swift exactly the package targets it
# imports (Vouch*, C*): an import that is not declared builds only by accident (through another
# target's dependencies), and a declared target that is never imported widens the layer for nothing.
# Reads the manifest with `swift package dump-package`; prints each mismatch and exits 1 if any.
set -euo pipefail
cd "$(dirname "$0")/.."
SWIFT=${SWIFT:-swift}

manifest=$(mktemp)
trap 'rm -f "$manifest"' EXIT
"$SWIFT" package dump-package >"$manifest"

python3 - "$manifest" <<'PY'
import json, os, re, sys

with open(sys.argv[1], encoding="utf-8") as fh:
    package = json.load(fh)
targets = package["targets"]
names = {t["name"] for t in targets}
# import lines at the top level of a file, with any access level or attribute in front
pattern = re.compile(r"^\s*(?:@\w+(?:\([^)]*\))?\s+)*(?:(?:public|package|internal|fileprivate|private)\s+)?import\s+(?:(?:typealias|struct|class|enum|protocol|let|var|func)\s+)?([A-Za-z_]\w*)")

def declared(target):
    out = set()
    for d in target.get("dependencies", []):
        for kind in ("byName", "target", "product"):
            if kind in d and d[kind]:
                out.add(d[kind][0])
    return out

def imported(target):
    path = target.get("path") or ("Tests/" if target["type"] == "test" else "Sources/") + target["name"]
    out, swift_files = set(), 0
    for root, _, files in os.walk(path):
        for f in files:
            if not f.endswith(".swift"):
                continue
            swift_files += 1
            with open(os.path.join(root, f), encoding="utf-8") as fh:
                for line in fh:
                    m = pattern.match(line)
                    if m and m.group(1) in names:
                        out.add(m.group(1))
    return out, swift_files

problems = []
for t in sorted(targets, key=lambda t: t["name"]):
    if t["type"] == "system":
        continue
    imports, swift_files = imported(t)
    if swift_files == 0:
        continue  # C targets: their headers, not Swift imports, say what they use
    deps = declared(t)
    missing = sorted(imports - deps)
    unused = sorted(deps - imports)
    if missing:
        problems.append(f"{t['name']}: imports but does not declare: {', '.join(missing)}")
    if unused:
        problems.append(f"{t['name']}: declares but does not import: {', '.join(unused)}")

checked = sum(1 for t in targets if t["type"] != "system" and imported(t)[1] > 0)
if problems:
    print("check-imports: Package.swift does not match the imports:")
    for p in problems:
        print("  " + p)
    sys.exit(1)
print(f"check-imports: {checked} Swift targets declare exactly the package targets they import")
PY
