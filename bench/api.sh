#!/usr/bin/env bash
# A queue system's call through the local API on a busy paced line (issue 9; docs/benchmarks.md, "API call to a
# window's board on a busy line").
#
#   bench/api.sh              # three runs of 200 calls, about 6 minutes
#   bench/api.sh 1 --calls 50 # one run; further arguments go to GatewayBenchmarks api-call-latency
#
# Builds gatewayd and GatewayBenchmarks in release into .build-release (apart from the debug .build), then runs
# `GatewayBenchmarks api-call-latency`: the release gatewayd polls 32 paced pads and a window board on one
# pseudo-terminal at 9600 8N1 served by the benchmark, which posts the calls over HTTP. Other work on the machine
# changes the figures: the load average and the hypervisor's steal time are printed beside them.
set -euo pipefail
cd "$(dirname "$0")/.."

runs="${1:-3}"
shift || true
source bench/release.sh
build_release gatewayd
build_release GatewayBenchmarks
for run in $(seq 1 "$runs"); do
    echo "== api-call-latency, run $run of $runs (load $(cut -d' ' -f1-3 /proc/loadavg))"
    "$scratch/release/GatewayBenchmarks" api-call-latency "$@"
done
