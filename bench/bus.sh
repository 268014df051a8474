#!/usr/bin/env bash
# The bus engine at wire speed (issue 8; docs/benchmarks.md, "Bus engine at wire speed").
#
#   bench/bus.sh                      # all of them, about 28 minutes
#   bench/bus.sh rtu-wire tcp-scale   # some of them: rtu-wire rtu-call-latency engine-cpu tcp-vs-libmodbus tcp-scale rss
#   bench/bus.sh rtu-trace            # where an RTU transaction's time goes (perf: every write(2) of rtu-wire)
#   bench/bus.sh rtu-call-trace       # where a call's time after the line is free goes (perf, rtu-call-latency)
#
# Builds gatewayd and GatewayBenchmarks in release (.build-release, apart from the debug .build), the libmodbus
# baseline (bench/modbus_tcp_loop.c) and a trivial Swift program importing Foundation (the memory floor), then runs
# each benchmark and prints its table. The simulated devices run in a process of their own except on the paced RTU
# line, whose pseudo-terminal and timing stamps live in the benchmark. Other work on the machine changes the
# figures: the load average is printed before each benchmark.
set -euo pipefail
cd "$(dirname "$0")/.."

source bench/release.sh
bin="$scratch/release"
tools="$scratch/bench"

echo "== build (release)"
build_release gatewayd
build_release GatewayBenchmarks
mkdir -p "$tools"
cc -O2 -Wall -o "$tools/modbus_tcp_loop" bench/modbus_tcp_loop.c $(pkg-config --cflags --libs libmodbus)
cat > "$tools/foundation-floor.swift" <<'EOF'
import Foundation
print("started \(Date())")
Thread.sleep(forTimeInterval: 60)
EOF
swiftc -O -o "$tools/foundation-floor" "$tools/foundation-floor.swift"

# rtu-wire under `perf record -e syscalls:sys_enter_write`: the gateway's 8-byte requests, the paced mock's answer
# bytes (one write(2) a character) and libmodbus's encoded replies, timed by the kernel. Splits a transaction into
# the gateway's turnaround (last answer byte to next request; the wire asks 3.5 characters) and the mock's parts.
# Runs a benchmark (the arguments after the first two) and records its write(2) calls and read(2) returns with perf,
# from $1 seconds after its start for $2 seconds: its output in $data/out, the kernel's records in $data/syscalls.
record_syscalls() {
    local after=$1 seconds=$2
    shift 2
    "$@" > "$data/out" 2>&1 &
    local pid=$!
    sleep "$after"
    perf record -q -e syscalls:sys_enter_write,syscalls:sys_exit_read -p "$pid" -o "$data/perf.data" -- sleep "$seconds" \
        > /dev/null 2>&1 || true
    wait "$pid"
    perf script -i "$data/perf.data" -F tid,time,event,trace > "$data/syscalls" 2>/dev/null
}

rtu_trace() {
    local data
    data=$(mktemp -d)
    record_syscalls 10 12 "$bin/GatewayBenchmarks" rtu-wire --seconds 25 --warmup 6
    python3 < "$data/syscalls" -c '
import bisect, sys
sys.path.insert(0, "bench")
from perf_syscalls import load
writes, reads = load(sys.stdin)
character = 10 / 9600 * 1000
gap = 3.5 * character
answer_bytes = [e[0] for e in writes if e[3] == 1]
answers = len(answer_bytes) / 69
# The requests: the thread and descriptor with 8-byte writes as many as the answers (eventfd writes are 8 bytes too).
writers = {(e[1], e[2]) for e in writes if e[3] == 8}
writer = min(writers, key=lambda k: abs(sum(1 for e in writes if (e[1], e[2]) == k and e[3] == 8) - answers))
requests = [e[0] for e in writes if (e[1], e[2]) == writer and e[3] == 8]
# When the gateway read returned, on the thread that writes the requests.
gateway_reads = sorted(t for t, tid, _ in reads if tid == writer[0])
turn, delivered, inside, mock, span, cycle = [], [], [], [], [], []
for i, r in enumerate(requests):
    j = bisect.bisect_left(answer_bytes, r)
    if j == 0 or j >= len(answer_bytes) or i + 1 >= len(requests):
        continue
    k = bisect.bisect_left(answer_bytes, requests[i + 1])
    turn.append((r - answer_bytes[j - 1]) * 1000)
    read = gateway_reads[bisect.bisect_left(gateway_reads, r) - 1]
    if read >= answer_bytes[j - 1]:
        delivered.append((read - answer_bytes[j - 1]) * 1000)
        inside.append((r - read) * 1000)
    mock.append((answer_bytes[j] - r) * 1000)
    span.append((answer_bytes[k - 1] - answer_bytes[j]) * 1000)
    cycle.append((requests[i + 1] - r) * 1000)
def row(name, ideal, values):
    values = sorted(values)
    mean = sum(values) / len(values)
    print("%-52s %7.2f %7.2f %7.2f %7.2f %7.2f" % (name, ideal, values[len(values) // 2], mean,
                                                  values[int(len(values) * 0.99)], values[-1]))
print("%-52s %7s %7s %7s %7s %7s" % ("ms, over %d transactions" % len(cycle), "wire", "p50", "mean", "p99", "max"))
row("gateway: last answer byte to next request", gap, turn)
row("  of which the kernel, until the read returns", 0, delivered)
row("  of which the gateway, from the read to the write", gap, inside)
row("mock: request written to first answer byte", 9 * character + gap, mock)
row("mock: first to last answer byte", 68 * character, span)
row("whole transaction, request to request", 77 * character + 2 * gap, cycle)
'
    rm -rf "$data"
}

# rtu-call-latency under perf: when each call's first frame was written against when the line was free (the paced
# mock's last answer byte plus 3.5 characters), split at the gateway's read of that byte.
rtu_call_trace() {
    local data
    data=$(mktemp -d)
    record_syscalls 8 35 "$bin/GatewayBenchmarks" rtu-call-latency --calls 150 --warmup 6
    grep -E "steal|p50|p99|max" "$data/out"
    python3 < "$data/syscalls" -c '
import bisect, sys
from collections import Counter
sys.path.insert(0, "bench")
from perf_syscalls import load
writes, reads = load(sys.stdin)
gap = 3.5 * 10 / 9600 * 1000
# The paced transmitter: the thread writing most single bytes (the bus wake-ups are single bytes too).
transmitter = Counter((e[1], e[2]) for e in writes if e[3] == 1).most_common(1)[0][0]
answer_bytes = sorted(e[0] for e in writes if e[3] == 1 and (e[1], e[2]) == transmitter)
commands = [e for e in writes if e[3] == 73]
gateway_reads = sorted(t for t, tid, _ in reads if commands and tid == commands[0][1])
# The paced mock reading a whole command frame: its thread is not the gateway'"'"'s.
mock_reads = sorted(t for t, tid, count in reads if count == 73 and commands and tid != commands[0][1])
late, delivered, inside, heard = [], [], [], []
for t, tid, fd, n in commands:
    j = bisect.bisect_left(answer_bytes, t)
    if j == 0 or t - answer_bytes[j - 1] > 0.02:
        continue  # the line was idle: not a call on a busy line
    last = answer_bytes[j - 1]
    late.append((t - last) * 1000 - gap)
    k = bisect.bisect_left(gateway_reads, t) - 1
    if k >= 0 and gateway_reads[k] >= last:
        delivered.append((gateway_reads[k] - last) * 1000)
        inside.append((t - gateway_reads[k]) * 1000 - gap)
    m = bisect.bisect_left(mock_reads, t)
    if m < len(mock_reads) and mock_reads[m] - t < 0.02:
        heard.append((mock_reads[m] - t) * 1000)
def row(name, values):
    values = sorted(values)
    if values:
        print("%-64s %4d %7.3f %7.3f %7.3f" % (name, len(values), values[len(values) // 2],
                                             values[int(len(values) * 0.9)], values[int(len(values) * 0.99)]))
print("%-64s %4s %7s %7s %7s" % ("ms after the line was free", "n", "p50", "p90", "p99"))
row("the gateway'"'"'s command write", late)
row("  of which the kernel, until the gateway'"'"'s read returned", delivered)
row("  of which the gateway, from its read to its write, less the gap", inside)
row("the paced mock'"'"'s read of the command, after the gateway'"'"'s write", heard)
'
    rm -rf "$data"
}

selected=("$@")
if [ ${#selected[@]} -eq 0 ]; then selected=(rtu-wire rtu-call-latency engine-cpu tcp-vs-libmodbus tcp-scale rss); fi

for name in "${selected[@]}"; do
    echo
    echo "== $name ($(nproc) cores; $(uptime | sed 's/.*load/load/'))"
    case "$name" in
        rtu-wire) "$bin/GatewayBenchmarks" rtu-wire --seconds 30 --warmup 6 ;;
        rtu-call-latency) "$bin/GatewayBenchmarks" rtu-call-latency --calls 200 --warmup 6 ;;
        engine-cpu) taskset -c 0 "$bin/GatewayBenchmarks" engine-cpu --seconds 5 --rounds 3 ;;
        tcp-vs-libmodbus)
            # Client (the gateway in this process, or the C loop it starts) on CPU 0; the server on CPU 1 (a device
            # elsewhere: each reply is a wake-up on the other core), then on CPU 0 too (no wake-up latency: the
            # figure is the CPU each client spends per transaction). The gateway also with 4 polls in flight.
            # Then, in both placements, the two clients at once taking turns of 250 ms (gatewayd as shipped): the
            # host's drift from one 10 s round to the next falls on both alike.
            for server_cpu in 1 0; do
                taskset -c 0 "$bin/GatewayBenchmarks" tcp-vs-libmodbus --baseline "$tools/modbus_tcp_loop" \
                    --server-cpu "$server_cpu" --seconds 10 --rounds 3 --requests-in-flight 4
                echo
            done
            for server_cpu in 1 0; do
                taskset -c 0 "$bin/GatewayBenchmarks" tcp-vs-libmodbus --baseline "$tools/modbus_tcp_loop" \
                    --server-cpu "$server_cpu" --seconds 20 --warmup 3 --interleave-ms 250 --gatewayd "$bin/gatewayd"
                echo
            done ;;
        tcp-scale)
            "$bin/GatewayBenchmarks" tcp-scale --devices 50,250,500 --seconds 60 --warmup 10 \
                --gatewayd "$bin/gatewayd" ;;
        rss)
            "$bin/GatewayBenchmarks" rss --pads 50 --seconds 60 --gatewayd "$bin/gatewayd" \
                --floor "$tools/foundation-floor"
            echo
            "$bin/GatewayBenchmarks" rss --pads 50 --seconds 60 --layouts tcp-50 --top 0 --gatewayd "$bin/gatewayd" \
                --env MALLOC_ARENA_MAX=2 ;;
        rtu-trace) rtu_trace ;;
        rtu-call-trace) rtu_call_trace ;;
        *) echo "unknown benchmark $name" >&2; exit 2 ;;
    esac
done
