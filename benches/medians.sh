#!/usr/bin/env bash
# Prints the median (p50) and mean of every criterion benchmark's last run.
set -euo pipefail
dir="$(cd "$(dirname "$0")/.." && pwd)/target/criterion"
for f in "$dir"/*/new/estimates.json; do
    name=$(basename "$(dirname "$(dirname "$f")")")
    python3 - "$f" "$name" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
print(f"{sys.argv[2]:<28} p50 {d['median']['point_estimate']/1000:8.2f} us   mean {d['mean']['point_estimate']/1000:8.2f} us")
PY
done
