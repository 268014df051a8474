#!/usr/bin/env bash
# A manual trial, not part of the tests: it STEPS THIS MACHINE'S WALL CLOCK (root; no NTP running), back an hour and
# forward a day, under the demo hall delivering to a real HTTP receiver, and puts it back from the monotonic clock.
# Prints the receiver's rows every 10 s, then how long SIGTERM takes and the outbox's backlog (README, "clock").
# Run no build meanwhile: files written under a clock a day ahead look newer than later edits.
#
#   scripts/clock-step.sh [path to gatewayd, default .build/debug/gatewayd]
set -u
cd "$(dirname "$0")/.."
repo=$PWD
gatewayd=$(realpath "${1:-.build/debug/gatewayd}")
W=$(mktemp -d /tmp/hall-gateway-clock-step.XXXXXX); cd "$W"
echo "clockstep-token-0123456789abcdef" > token; chmod 600 token
python3 "$repo/scripts/cloudevents_receiver.py" --db "$W/recv.sqlite" --token "$(cat token)" --no-validate > recv.out 2> recv.err &
RP=$!
for _ in $(seq 50); do grep -q PORT recv.out && break; sleep 0.1; done
PORT=$(awk '/PORT/ {print $2}' recv.out)
cat > sinks.yaml <<EOT
sinks:
  - {type: http, name: central, url: "http://127.0.0.1:$PORT/events", token-file: $W/token}
EOT
"$gatewayd" run --profiles "$repo/devices" --sinks sinks.yaml --api-port 0 > gw.log 2>&1 &
GP=$!
real0=$(date +%s.%N); mono0=$(cut -d' ' -f1 /proc/uptime)
restore() { local mono; mono=$(cut -d' ' -f1 /proc/uptime); date -s "@$(echo "$real0 + $mono - $mono0" | bc)" > /dev/null; }
trap 'restore; kill $GP $RP 2>/dev/null; rm -rf "$W"' EXIT
rows() { curl -s "http://127.0.0.1:$PORT/stats"; }
sample() { for _ in $(seq "$1"); do sleep 10; echo "$(date -u +%FT%T) $(rows)"; done; }
echo "== normal"; sample 3
echo "== clock stepped back 1 hour"; date -s "@$(( $(date +%s) - 3600 ))" > /dev/null; sample 6
echo "== restored"; restore; sample 3
echo "== clock stepped forward 1 day"; date -s "@$(( $(date +%s) + 86400 ))" > /dev/null; sample 6
echo "== restored"; restore; sample 3
echo "== SIGTERM"; t0=$(cut -d' ' -f1 /proc/uptime); kill -TERM $GP; wait $GP; rc=$?
echo "exit $rc after $(echo "$(cut -d' ' -f1 /proc/uptime) - $t0" | bc) s"
sleep 1; echo "final $(rows)"
"$gatewayd" outbox status --outbox var/outbox.sqlite 2>&1 | head -20 || true
echo "== log (warnings and up, clock lines)"; grep -E "warning|error|clock|hall day" gw.log | head -40
