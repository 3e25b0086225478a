#!/usr/bin/env bash
# Cost of each probes primitive on loopback (p50/p99 per step, parallel UDP
# queries). Builds in release mode.
#   PROBES_BENCH_N=300 bash bench/probes_bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo bench --bench probes_bench "$@"
