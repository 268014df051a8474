#!/usr/bin/env bash
# The bus engine at wire speed (issue 8; docs/benchmarks.md, "Bus engine at wire speed").
#
#   bench/bus.sh                      # all of them, about 20 minutes
#   bench/bus.sh rtu-wire tcp-scale   # some of them: rtu-wire rtu-call-latency tcp-vs-libmodbus tcp-scale rss
#
# Builds gatewayd and GatewayBenchmarks in release (.build-release, apart from the debug .build), the libmodbus
# baseline (bench/modbus_tcp_loop.c) and a trivial Swift program importing Foundation (the memory floor), then runs
# each benchmark and prints its table. The simulated devices run in a process of their own except on the paced RTU
# line, whose pseudo-terminal and timing stamps live in the benchmark. Other work on the machine changes the
# figures: the load average is printed before each benchmark.
set -euo pipefail
cd "$(dirname "$0")/.."

scratch=.build-release
bin="$scratch/release"
tools="$scratch/bench"

build() {
    local output
    if ! output=$(swift build -c release --scratch-path "$scratch" --product "$1" 2>&1); then
        echo "$output" | grep -E "error" >&2 || echo "$output" | tail -20 >&2
        exit 1
    fi
    echo "$output" | tail -1
}

echo "== build (release)"
build gatewayd
build GatewayBenchmarks
mkdir -p "$tools"
cc -O2 -Wall -o "$tools/modbus_tcp_loop" bench/modbus_tcp_loop.c $(pkg-config --cflags --libs libmodbus)
cat > "$tools/foundation-floor.swift" <<'EOF'
import Foundation
print("started \(Date())")
Thread.sleep(forTimeInterval: 60)
EOF
swiftc -O -o "$tools/foundation-floor" "$tools/foundation-floor.swift"

selected=("$@")
if [ ${#selected[@]} -eq 0 ]; then selected=(rtu-wire rtu-call-latency tcp-vs-libmodbus tcp-scale rss); fi

for name in "${selected[@]}"; do
    echo
    echo "== $name ($(nproc) cores; $(uptime | sed 's/.*load/load/'))"
    case "$name" in
        rtu-wire) "$bin/GatewayBenchmarks" rtu-wire --seconds 30 --warmup 6 ;;
        rtu-call-latency) "$bin/GatewayBenchmarks" rtu-call-latency --calls 200 --warmup 6 ;;
        tcp-vs-libmodbus)
            # Client (the gateway in this process, or the C loop it starts) on CPU 0, the server on CPU 1.
            taskset -c 0 "$bin/GatewayBenchmarks" tcp-vs-libmodbus --baseline "$tools/modbus_tcp_loop" \
                --server-cpu 1 --seconds 10 --rounds 3 ;;
        tcp-scale) "$bin/GatewayBenchmarks" tcp-scale --devices 50,250,500 --seconds 60 --warmup 10 --gatewayd "$bin/gatewayd" ;;
        rss)
            "$bin/GatewayBenchmarks" rss --pads 50 --seconds 60 --gatewayd "$bin/gatewayd" \
                --floor "$tools/foundation-floor"
            echo
            "$bin/GatewayBenchmarks" rss --pads 50 --seconds 60 --layouts tcp-50 --top 0 --gatewayd "$bin/gatewayd" \
                --env MALLOC_ARENA_MAX=2 ;;
        *) echo "unknown benchmark $name" >&2; exit 2 ;;
    esac
done
