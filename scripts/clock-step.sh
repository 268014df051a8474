#!/usr/bin/env bash
# A manual trial, not part of the tests: it STEPS THIS MACHINE'S WALL CLOCK, back an hour and forward a day, under
# the demo hall delivering to a real HTTP receiver, and puts it back from the monotonic clock (also when it fails).
# Prints the receiver's rows every 10 s, then how long SIGTERM takes and the outbox's backlog (README, "The hall's
# day"). Needs root and no NTP client running (it would fight the steps). Run no build meanwhile (files written under a
# clock a day ahead look newer than later edits), and not on a machine whose cron jobs or timers must not fire: the day
# forward makes daily ones due.
#
#   scripts/clock-step.sh [path to gatewayd, default .build/debug/gatewayd]
set -u
cd "$(dirname "$0")/.."
repo=$PWD
gatewayd=$(realpath "${1:-.build/debug/gatewayd}")
fail() { echo "clock-step: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || fail "needs root (it sets the clock)"
[ -x "$gatewayd" ] || fail "no gatewayd at $gatewayd (swift build first, or give its path)"
for client in systemd-timesyncd chronyd ntpd openntpd; do
    ! pgrep -x "$client" > /dev/null || fail "$client is running: it would step the clock back under the trial; stop it first"
done

real0=$(date +%s.%N)
mono0=$(cut -d' ' -f1 /proc/uptime)
# The clock put back from the monotonic one: awk, not bc (not on every machine).
restore() {
    date -s "@$(awk -v r="$real0" -v m0="$mono0" -v m="$(cut -d' ' -f1 /proc/uptime)" 'BEGIN { printf "%.3f", r + m - m0 }')" > /dev/null
}
W=$(mktemp -d /tmp/hall-gateway-clock-step.XXXXXX)
RP=""
GP=""
trap 'restore; kill $GP $RP 2> /dev/null; rm -rf "$W"' EXIT
cd "$W"
echo "clockstep-token-0123456789abcdef" > token
chmod 600 token
python3 "$repo/scripts/cloudevents_receiver.py" --db "$W/recv.sqlite" --token "$(cat token)" --no-validate > recv.out 2> recv.err &
RP=$!
for _ in $(seq 50); do grep -q PORT recv.out && break; sleep 0.1; done
PORT=$(awk '/PORT/ { print $2 }' recv.out)
[ -n "$PORT" ] || fail "the receiver did not start: $(cat recv.err)"
cat > sinks.yaml <<EOT
sinks:
  - {type: http, name: central, url: "http://127.0.0.1:$PORT/events", token-file: $W/token}
EOT
"$gatewayd" run --profiles "$repo/devices" --sinks sinks.yaml --api-port 0 > gw.log 2>&1 &
GP=$!
rows() { curl -s "http://127.0.0.1:$PORT/stats"; }
sample() { for _ in $(seq "$1"); do sleep 10; echo "$(date -u +%FT%T) $(rows)"; done; }
step() { date -s "@$(( $(date +%s) + $1 ))" > /dev/null || fail "cannot set the clock"; }
echo "== normal"; sample 3
echo "== clock stepped back 1 hour"; step -3600; sample 6
echo "== restored"; restore; sample 3
echo "== clock stepped forward 1 day"; step 86400; sample 6
echo "== restored"; restore; sample 3
echo "== SIGTERM"; t0=$(cut -d' ' -f1 /proc/uptime); kill -TERM "$GP"; wait "$GP"; rc=$?; GP=""
echo "exit $rc after $(awk -v a="$t0" -v b="$(cut -d' ' -f1 /proc/uptime)" 'BEGIN { printf "%.2f", b - a }') s"
sleep 1; echo "final $(rows)"
"$gatewayd" outbox status --outbox var/outbox.sqlite 2>&1 | head -20 || true
echo "== log (warnings and up, clock lines)"; grep -E "warning|error|clock|hall day" gw.log | head -40
