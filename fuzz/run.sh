#!/usr/bin/env bash
# Runs every decoder's libFuzzer target for SECONDS each (default 10) and prints one line per target.
#   fuzz/run.sh 600          # the long run recorded in docs/fuzzing.md
#   fuzz/run.sh 5 onbon      # one target
# Each target is Sources/Protocols compiled with fuzz/targets/<name>.swift under -sanitize=fuzzer,address.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}
only=${2:-}
out=.build-fuzz
mkdir -p "$out"
mapfile -t protocol_sources < <(find Sources/Protocols -name '*.swift' | sort)
status=0
for target in fuzz/targets/*.swift; do
    name=$(basename "$target" .swift)
    [[ -n "$only" && "$name" != "$only" ]] && continue
    swiftc -O -sanitize=fuzzer,address -parse-as-library -module-name FuzzProtocols \
        "${protocol_sources[@]}" fuzz/FuzzSupport.swift "$target" -o "$out/$name" 2> "$out/$name.build.log" \
        || { echo "$name: build failed, see $out/$name.build.log"; status=1; continue; }
    corpus="$out/corpus/$name"
    mkdir -p "$corpus"
    [[ -d "fuzz/seeds/$name" ]] && cp -n fuzz/seeds/"$name"/* "$corpus"/ 2>/dev/null || true
    log="$out/$name.log"
    if "$out/$name" -max_total_time="$seconds" -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$out/$name-" "$corpus" > "$log" 2>&1; then
        crashes=0
    else
        crashes=1
        status=1
    fi
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
    coverage=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*' || echo '?')
    echo "$name: ${seconds}s, executions: $runs, coverage: $coverage edges, crashes: $crashes"
    if (( crashes )); then
        echo "  the crashing input and the report: $log, $out/$name-crash-*"
        grep -m3 -E 'ERROR|Fatal error|precondition' "$log" | sed 's/^/  /' || true
    fi
done
exit $status
