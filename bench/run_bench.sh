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
#        CONTROL=none                        (none, or "local": a `gatewatch control
#                                             serve` on 127.0.0.1 using the fake DNS;
#                                             "both": every size without, then with it)
#
# Each row also gives the physical bound of the parallel run,
# max(T, n_timeouts x T / P) with T the TCP timeout and P --parallel (a
# blackholed URL cannot be classified faster than its timeout), the ratio
# wall / bound, and with a control the number of control failures. With a
# control, T is the larger of the TCP timeout and the control's own connect
# timeout (10 s in `control serve`): the URL waits for the control's answer.
#
# Every URL has its own host name (h<i>.bench.test), resolved by a local fake
# DNS server through --resolver, with --no-system-resolver: nothing leaves the
# machine.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
sizes=("${@:-100 500 2000}")
# shellcheck disable=SC2206
sizes=(${sizes[*]})
parallel="${PARALLEL:-16}"
tcp_timeout="${TCP_TIMEOUT:-2s}"
sequential="${SEQUENTIAL:-1}"
control_mode="${CONTROL:-none}"

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
control_pid=""
cleanup() {
    if [[ -n "$servers_pid" ]]; then kill "$servers_pid" 2>/dev/null || true; fi
    if [[ -n "$control_pid" ]]; then kill "$control_pid" 2>/dev/null || true; fi
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

control_url="none"
if [[ "$control_mode" == local || "$control_mode" == both ]]; then
    control_port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
    "$bin" control serve --listen "127.0.0.1:$control_port" --resolver "127.0.0.1:$dns_port" \
        --treat-as-public 127.0.0.0/8 --rate-limit 0 --max-in-flight 256 \
        >"$work/control.log" 2>&1 &
    control_pid=$!
    for _ in $(seq 100); do
        curl -s -o /dev/null "http://127.0.0.1:$control_port/" 2>/dev/null && break
        sleep 0.1
    done
    control_url="http://127.0.0.1:$control_port"
fi

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

measure() { # list parallel control -> "seconds rss_kib lines control_failures"
    local list="$1" par="$2" ctl="${3:-none}" out="$work/out.jsonl" tv="$work/time.txt"
    rm -f "$out"
    XDG_CONFIG_HOME="$work/config" XDG_DATA_HOME="$work/data" \
        /usr/bin/time -v -o "$tv" "$bin" run --yes --no-progress --control "$ctl" --stun none \
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
    local cf
    cf="$(python3 -c 'import json,sys
n = 0
for line in open(sys.argv[1]):
    f = json.loads(line).get("test_keys", {}).get("control_failure")
    n += f not in (None, "control_disabled")
print(n)' "$out")"
    echo "$wall $rss $(wc -l <"$out") $cf"
}

tcp_secs="$(python3 -c 'import re,sys
m = re.fullmatch(r"([0-9.]+)(ms|s|m)?", sys.argv[1])
v = float(m.group(1)); u = m.group(2) or "s"
print(v / 1000 if u == "ms" else v * 60 if u == "m" else v)' "$tcp_timeout")"

control_connect_secs=10

bound() { # n parallel control -> seconds
    local t="$tcp_secs"
    if [[ "${3:-none}" != none ]]; then
        t="$(awk -v a="$t" -v b="$control_connect_secs" 'BEGIN { print (a > b ? a : b) }')"
    fi
    awk -v n="$1" -v p="$2" -v t="$t" 'BEGIN {
        to = 0; for (i = 0; i < n; i++) if (i % 10 == 9) to++
        b = to * t / p; if (b < t) b = t; printf "%.1f", b }'
}

echo "binary: $bin"
echo "servers: dns 127.0.0.1:$dns_port, http 127.0.0.1:$http_port, blackhole 127.0.0.1:$bh_port"
echo "10% of URLs blackholed; --tcp-timeout $tcp_timeout; parallel run: --parallel $parallel; control: $control_mode"
echo
case "$control_mode" in
    both) controls=(none "$control_url") ;;
    *) controls=("$control_url") ;;
esac
printf '%6s %8s %10s %10s %8s %8s %6s %9s %12s %10s %8s\n' URLs control "par wall" "par RSS" lines bound ratio "ctl fail" "seq wall" "seq RSS" speedup
for ctl in "${controls[@]}"; do
    label=none
    [[ "$ctl" != none ]] && label=local
    for n in "${sizes[@]}"; do
        list="$work/list-$n.txt"
        make_list "$n" "$list"
        read -r pw pr pl pc <<<"$(measure "$list" "$parallel" "$ctl")"
        b="$(bound "$n" "$parallel" "$ctl")"
        r="$(awk -v w="$pw" -v b="$b" 'BEGIN { printf "%.2f", w / b }')"
        if [[ "$sequential" == 1 ]]; then
            read -r sw sr _ _ <<<"$(measure "$list" 1 "$ctl")"
            ratio="$(awk -v s="$sw" -v p="$pw" 'BEGIN { printf "%.1fx", s / p }')"
        else
            sw="-" sr="-" ratio="-"
        fi
        printf '%6s %8s %9.1fs %6d KiB %8s %7ss %6s %9s %11ss %6s KiB %8s\n' \
            "$n" "$label" "$pw" "$pr" "$pl" "$b" "$r" "$pc" "$sw" "$sr" "$ratio"
    done
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
