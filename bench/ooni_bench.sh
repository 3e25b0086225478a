#!/usr/bin/env bash
# Benchmark of reading OONI's own data: `gatewatch analyze` and
# `gatewatch report` over N lines (default 100,000) of real OONI Web
# Connectivity measurements, made by repeating the 57 fixtures of
# ../shared/ooni-fixtures and our older-shape ones (tests/data/ooni) as
# compact JSONL. Prints wall time and peak RSS of each command (GNU time
# -v). Release build.
#
#   bash bench/ooni_bench.sh [N] [FIXTURES_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-100000}
fixtures=${2:-../shared/ooni-fixtures}
target=${CARGO_TARGET_DIR:-target}

if [ ! -d "$fixtures" ]; then
  echo "ooni_bench: no OONI fixtures at $fixtures" >&2
  exit 1
fi
if [ ! -x /usr/bin/time ]; then
  echo "ooni_bench: /usr/bin/time is missing (apt-get install time)" >&2
  exit 1
fi

cargo build --release --quiet --bin gatewatch
bin=$target/release/gatewatch
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# One compact line per fixture, then repeated up to N lines.
python3 - "$n" "$work/ooni.jsonl" "$fixtures"/*.json tests/data/ooni/*.json tests/data/ooni/*.jsonl <<'PY'
import json, sys
n, out, files = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
lines = []
for f in files:
    text = open(f, encoding="utf-8").read()
    if f.endswith(".jsonl"):
        lines += [l for l in text.splitlines() if l.strip()]
    else:
        lines.append(json.dumps(json.loads(text), separators=(",", ":")))
with open(out, "w", encoding="utf-8") as o:
    for i in range(n):
        o.write(lines[i % len(lines)] + "\n")
PY
size=$(du -h "$work/ooni.jsonl" | cut -f1)
echo "input: $(wc -l <"$work/ooni.jsonl") lines of OONI measurements, $size"

measure() {
  local name=$1
  shift
  /usr/bin/time -v "$@" >"$work/out" 2>"$work/time" || {
    echo "$name failed:" >&2
    tail -5 "$work/time" >&2
    exit 1
  }
  local wall rss
  wall=$(sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$work/time")
  rss=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$work/time")
  printf '%-22s wall %-8s peak RSS %6d MiB\n' "$name" "$wall" $((rss / 1024))
}

measure "analyze" "$bin" analyze "$work/ooni.jsonl" -o "$work/analyzed.jsonl"
measure "report (OONI lines)" "$bin" report "$work/ooni.jsonl" --html "$work/report.html"
measure "report (analyzed)" "$bin" report "$work/analyzed.jsonl" --html "$work/report2.html"
echo "analyzed.jsonl: $(du -h "$work/analyzed.jsonl" | cut -f1), report.html: $(du -h "$work/report.html" | cut -f1)"
