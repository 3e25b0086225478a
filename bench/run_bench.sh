#!/usr/bin/env bash
# Benchmark of `gatewatch run` (not a test): wall time and peak RSS for lists
# of 100, 500 and 2000 URLs against local servers on 127.0.0.1, where 10% of
# the URLs time out at TCP connect (a port whose accept queue is full), and
# the ratio to a sequential run (--parallel 1) of the same list.
#
# Usage: bench/run_bench.sh [SIZES...]      (default: 100 500 2000)
# Env:   GATEWATCH=path/to/binary           (default: target/release, else debug)
#        PARALLEL=16                         (the parallel run's --parallel)
#        TCP_TIMEOUT=2s                      (connect timeout of the blackholed URLs)
#        SEQUENTIAL=1                        (0: skip the --parallel 1 runs)
#        LOSS=0.1                            (also run each list with this share of
#                                             DNS queries lost, and compare)
#
# Every URL has its own host name (h<i>.bench.test), resolved by a local fake
# DNS server through --resolver, with --no-system-resolver: nothing leaves the
# machine. --control none: the control is not part of this measurement.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
sizes=("${@:-100 500 2000}")
# shellcheck disable=SC2206
sizes=(${sizes[*]})
parallel="${PARALLEL:-16}"
tcp_timeout="${TCP_TIMEOUT:-2s}"
sequential="${SEQUENTIAL:-1}"

bin="${GATEWATCH:-}"
if [[ -z "$bin" ]]; then
    if [[ -x "$root/target/release/gatewatch" ]]; then
        bin="$root/target/release/gatewatch"
    else
        bin="$root/target/debug/gatewatch"
    fi
fi
[[ -x "$bin" ]] || { echo "no gatewatch binary at $bin (cargo build --release)" >&2; exit 2; }
[[ -x /usr/bin/time ]] || { echo "needs GNU time: apt-get install time" >&2; exit 2; }

work="$(mktemp -d)"
servers_pid=""
cleanup() {
    if [[ -n "$servers_pid" ]]; then kill "$servers_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

loss="${LOSS:-}"
start_servers() { # dns_loss -> sets dns_port http_port bh_port servers_pid
    if [[ -n "$servers_pid" ]]; then kill "$servers_pid" 2>/dev/null || true; fi
    rm -f "$work/ports"
    DNS_LOSS="$1" python3 "$here/run_servers.py" >"$work/ports" &
    servers_pid=$!
    for _ in $(seq 100); do
        [[ -s "$work/ports" ]] && break
        sleep 0.1
    done
    local dns_kv http_kv bh_kv
    read -r dns_kv http_kv bh_kv <"$work/ports"
    dns_port="${dns_kv#dns=}"
    http_port="${http_kv#http=}"
    bh_port="${bh_kv#blackhole=}"
}
start_servers 0

make_list() { # n file
    local n="$1" f="$2" i
    for ((i = 0; i < n; i++)); do
        if ((i % 10 == 9)); then
            echo "http://h$i.bench.test:$bh_port/"
        else
            echo "http://h$i.bench.test:$http_port/"
        fi
    done >"$f"
}

measure() { # list parallel -> "seconds rss_kib lines"
    local list="$1" par="$2" out="$work/out.jsonl" tv="$work/time.txt"
    rm -f "$out"
    XDG_CONFIG_HOME="$work/config" XDG_DATA_HOME="$work/data" \
        /usr/bin/time -v -o "$tv" "$bin" run --yes --no-progress --control none --stun none \
        --no-system-resolver --resolver "127.0.0.1:$dns_port" \
        --treat-as-public 127.0.0.0/8 --tcp-timeout "$tcp_timeout" \
        --parallel "$par" -i "$list" -o "$out" --json-summary "$work/summary.json" \
        >/dev/null 2>"$work/stderr" || {
        echo "gatewatch failed:" >&2
        cat "$work/stderr" >&2
        exit 1
    }
    local wall rss
    wall="$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$tv")"
    rss="$(awk -F': ' '/Maximum resident set size/ {print $2}' "$tv")"
    # h:mm:ss or m:ss.ss -> seconds
    wall="$(echo "$wall" | awk -F: '{ if (NF == 3) print $1*3600 + $2*60 + $3; else print $1*60 + $2 }')"
    echo "$wall $rss $(wc -l <"$out")"
}

echo "binary: $bin"
echo "servers: dns 127.0.0.1:$dns_port, http 127.0.0.1:$http_port, blackhole 127.0.0.1:$bh_port"
echo "10% of URLs blackholed; --tcp-timeout $tcp_timeout; parallel run: --parallel $parallel"
echo
printf '%6s %10s %10s %8s %12s %10s %8s %8s\n' URLs "par wall" "par RSS" lines "seq wall" "seq RSS" lines speedup
for n in "${sizes[@]}"; do
    list="$work/list-$n.txt"
    make_list "$n" "$list"
    read -r pw pr pl <<<"$(measure "$list" "$parallel")"
    if [[ "$sequential" == 1 ]]; then
        read -r sw sr sl <<<"$(measure "$list" 1)"
        ratio="$(awk -v s="$sw" -v p="$pw" 'BEGIN { printf "%.1fx", s / p }')"
    else
        sw="-" sr="-" sl="-" ratio="-"
    fi
    printf '%6s %9.1fs %7d KiB %8s %11ss %7s KiB %8s %8s\n' "$n" "$pw" "$pr" "$pl" "$sw" "$sr" "$sl" "$ratio"
done

# A lossy line (LOSS=P): the same lists with P of the DNS queries lost, at
# --parallel $parallel. Without loss no step is retried and no lookup fails;
# with loss the resend (1 s, then 2 s) recovers most queries, so the wall time
# grows by the resend delay, not by a timeout per lost datagram.
if [[ -n "$loss" ]]; then
    dns_failed() { # out.jsonl -> URLs with a UDP lookup that timed out
        grep -c '"engine":"udp","failure":"generic_timeout_error"' "$work/out.jsonl" || true
    }
    echo
    echo "DNS loss: none vs $loss (resolver datagrams dropped by the local DNS server)"
    printf '%6s %8s %10s %12s %10s %10s\n' URLs loss wall "retried" "loss est." "DNS failed"
    for n in "${sizes[@]}"; do
        list="$work/list-$n.txt"
        make_list "$n" "$list"
        for p in 0 "$loss"; do
            start_servers "$p"
            read -r w _ _ <<<"$(measure "$list" "$parallel")"
            r="$(python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); print("%s/%s %s" % (s.get("retried_steps", "-"), s.get("retriable_steps", "-"), s.get("line_loss_estimate", "-")))' "$work/summary.json")"
            printf '%6s %8s %9.1fs %12s %10s %10s\n' "$n" "$p" "$w" ${r% *} "${r##* }" "$(dns_failed)"
        done
    done
fi
