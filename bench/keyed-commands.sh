#!/usr/bin/env bash
# Resident memory of the daemon as a queue system posts calls, each with an Idempotency-Key of its own (docs/benchmarks.md,
# "Keyed commands"): a finished keyed command was once held in memory with all its run had used.
#
#   bench/keyed-commands.sh           # 5 rounds of 1,000 calls, about a minute
#   bench/keyed-commands.sh 10 2000   # rounds, calls a round
#
# Builds gatewayd in release (.build-release), starts it on a hall of one window board on a Modbus TCP connection
# nobody answers (each call ends device-offline: the command's path, not a device's, is measured) with its API on
# loopback, and prints the daemon's RssAnon after each round.
set -euo pipefail
cd "$(dirname "$0")/.."

rounds="${1:-5}"
calls="${2:-1000}"
source bench/release.sh
build_release gatewayd
work=$(mktemp -d)
port=18641
cat > "$work/hall.yaml" <<YAML
hall: {id: bench-hall, timezone: Asia/Shanghai}
state-directory: $work/var
profiles: $PWD/devices
buses:
  - {id: lan-1, transport: modbus-tcp, host: 127.0.0.1, tcp-port: 9, response-timeout-ms: 300, poll-interval-ms: 1000}
devices:
  - {id: board-w01, profile: modbus-window-board, bus: lan-1, address: 21, window: "1"}
sinks:
  - {type: sqlite, name: local}
api: {listen: "127.0.0.1:$port"}
YAML
MALLOC_ARENA_MAX=2 "$scratch/release/gatewayd" run --config "$work/hall.yaml" > "$work/gatewayd.log" 2>&1 &
daemon=$!
trap 'kill $daemon 2>/dev/null; wait $daemon 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 100); do grep -q "api: listening" "$work/gatewayd.log" && break; sleep 0.1; done
if ! kill -0 $daemon 2>/dev/null || ! grep -q "api: listening" "$work/gatewayd.log"; then
    echo "gatewayd did not start:" >&2; cat "$work/gatewayd.log" >&2; exit 1
fi
rss() { awk '/RssAnon/ {print $2 / 1024}' "/proc/$daemon/status"; }
echo "keyed-commands: gatewayd (release, MALLOC_ARENA_MAX=2), $calls calls a round, each with its own key; load $(cut -d' ' -f1-3 /proc/loadavg)"
printf "%-6s %-10s %s\n" round calls "RssAnon MB"
printf "%-6s %-10s %.1f\n" 0 0 "$(rss)"
for round in $(seq "$rounds"); do
    python3 - "$port" "$work/var/api-token" "$calls" <<'PY'
import json, sys, urllib.request, uuid
port, token, calls = sys.argv[1], open(sys.argv[2]).read().strip(), int(sys.argv[3])
for number in range(calls):
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/windows/1/call", method="POST",
        data=json.dumps({"ticket": "A%03d" % (number % 1000)}).encode(),
        headers={"Authorization": "Bearer " + token, "Content-Type": "application/json",
                 "Idempotency-Key": "bench-" + uuid.uuid4().hex})
    with urllib.request.urlopen(request, timeout=30) as answer:
        assert answer.status == 200, answer.status
PY
    printf "%-6s %-10s %.1f\n" "$round" $((round * calls)) "$(rss)"
done
