#!/usr/bin/env bash
# Control-server benchmark (loopback only): requests/s, p50/p99 latency and
# server RSS with 50 concurrent clients. Builds in release mode.
#   CONTROL_BENCH_REQUESTS=2000 CONTROL_BENCH_CLIENTS=50 bash bench/control_bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo bench --bench control_bench "$@"
