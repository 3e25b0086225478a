#!/usr/bin/env bash
# Benchmark (not a test): does a run lose control answers under load?
# `gatewatch run --parallel P` over N URLs against our own `control serve`
# on 127.0.0.1 — with its defaults, and with the old defaults
# (--rate-limit 600 --rate-burst 120) that lost 1,457 of 2,000 answers at 64
# slots before the client honoured 429/503. Prints, per setting: wall time,
# measurements without a control answer, and the 429/503 answers the client
# waited out.
#
# Usage: bench/control_backpressure.sh [N] [P]      (default: 2000 64)
# Env:   GATEWATCH=path/to/binary   (default: target/release, else debug)
#
# Every URL has its own host name (h<i>.bench.test) resolved by the local fake
# DNS of run_servers.py, for the probe and the control: nothing leaves the
# machine.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
n="${1:-2000}"
par="${2:-64}"
bin="${GATEWATCH:-}"
if [[ -z "$bin" ]]; then
    if [[ -x "$root/target/release/gatewatch" ]]; then
        bin="$root/target/release/gatewatch"
    else
        bin="$root/target/debug/gatewatch"
    fi
fi
[[ -x "$bin" ]] || { echo "no gatewatch binary at $bin" >&2; exit 2; }

work="$(mktemp -d)"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

python3 "$here/run_servers.py" >"$work/ports" &
pids+=($!)
for _ in $(seq 100); do
    [[ -s "$work/ports" ]] && break
    sleep 0.1
done
read -r dns_kv http_kv _ <"$work/ports"
dns_port="${dns_kv#dns=}"
http_port="${http_kv#http=}"

for ((i = 0; i < n; i++)); do echo "http://h$i.bench.test:$http_port/"; done >"$work/list.txt"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

one() { # key, label, extra control serve flags...
    local key="$1" label="$2"
    shift 2
    local port
    port="$(free_port)"
    "$bin" control serve --listen "127.0.0.1:$port" --treat-as-public 127.0.0.0/8 \
        --resolver "127.0.0.1:$dns_port" "$@" 2>/dev/null &
    local cpid=$!
    pids+=("$cpid")
    sleep 1
    local t0 t1
    t0="$(date +%s.%N)"
    XDG_CONFIG_HOME="$work/config" XDG_DATA_HOME="$work/data" \
        "$bin" run --yes --no-progress --stun none --no-system-resolver \
        --resolver "127.0.0.1:$dns_port" --treat-as-public 127.0.0.0/8 \
        --control "http://127.0.0.1:$port/" --parallel "$par" \
        -i "$work/list.txt" -o "$work/out-$key.jsonl" \
        --json-summary "$work/sum-$key.json" >/dev/null 2>"$work/err-$key" || true
    t1="$(date +%s.%N)"
    kill "$cpid" 2>/dev/null || true
    python3 - "$work/sum-$key.json" "$label" "$t0" "$t1" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
c = s["network"]["controls"][0]
print(f'{sys.argv[2]:>22} {float(sys.argv[4]) - float(sys.argv[3]):7.1f}s  measured {s["measured"]:5}  '
      f'control failures {s["control_failures"]:5}  429 waited {c["http_429"]:5}  503 waited {c["http_503"]:5}  '
      f'window at end {c["window"]}')
import collections
why = collections.Counter()
for line in open(sys.argv[1].replace("sum-", "out-").replace(".json", ".jsonl")):
    f = json.loads(line)["test_keys"].get("control_failure")
    if f:
        why[f[:100]] += 1
for f, k in why.most_common(3):
    print(f'{"":>22}   {k} x {f}')
PY
}

echo "binary: $bin; $n URLs, --parallel $par"
one defaults "defaults"
one old "old 600/min burst 120" --rate-limit 600 --rate-burst 120
