#!/usr/bin/env bash
# Records a technician's terminal session against the demo hall and writes it to docs/technician-session.txt:
# the demo hall is started (gatewayd run, simulated devices, its local API on 127.0.0.1:8420), then a shell in tmux
# runs status, scan, printer status, check and trace as a technician would type them. Rerun it after a change to
# the CLI's output; the file in docs/ is what it printed.
#
#   scripts/record-session.sh [OUTPUT]      (default docs/technician-session.txt; needs tmux, from Debian)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
output=${1:-docs/technician-session.txt}
command -v tmux >/dev/null || { echo "tmux is missing: apt-get install tmux" >&2; exit 1; }

swift build --product gatewayd 2>&1 | tail -1
bin="$(swift build --show-bin-path)"
work=$(mktemp -d /tmp/hall-session.XXXXXX)
session="hall-session-$$"
daemon=""
cleanup() {
    tmux kill-session -t "$session" 2>/dev/null || true
    if [ -n "$daemon" ]; then kill "$daemon" 2>/dev/null || true; wait "$daemon" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

# The demo hall, as `make demo` runs it, in a scratch directory (its store under ./var).
cd "$work"
ln -s "$repo/devices" devices
"$bin/gatewayd" run > daemon.log 2>&1 &
daemon=$!
ready=""
for _ in $(seq 1 300); do
    if curl -sf http://127.0.0.1:8420/readyz >/dev/null 2>&1; then
        ready=yes
        break
    fi
    kill -0 "$daemon" 2>/dev/null || break
    sleep 0.1
done
[ -n "$ready" ] || { echo "the demo hall did not start:" >&2; cat daemon.log >&2; exit 1; }
# The demo's Modbus TCP pads listen in the daemon's process on a port of their own, beside the API's 8420.
tcp_port=$(ss -ltnpH "sport != :8420" | grep "pid=$daemon," | grep -o "127.0.0.1:[0-9]*" | head -1 | sed 's/.*://')
[ -n "$tcp_port" ] || { echo "the demo hall's Modbus TCP endpoint was not found" >&2; exit 1; }

# A plain shell whose every prompt tells tmux the previous command is done.
tmux new-session -d -s "$session" -x 200 -y 50 -c "$work" \
    "env -i HOME=$work PATH=$bin:/usr/bin:/bin TERM=xterm-256color NO_COLOR=1 \
     PS1='technician@hall:~\$ ' PROMPT_COMMAND='tmux wait-for -S $session' bash --norc --noprofile"
tmux set-option -t "$session" history-limit 20000 >/dev/null
tmux wait-for "$session"

type_command() {
    # The prompt command signals before readline has the terminal: keys sent that early would be echoed before
    # the prompt. A recording, not a test: a moment's pause is what a technician's typing takes anyway.
    sleep 0.3
    tmux send-keys -t "$session" -l "$1"
    tmux send-keys -t "$session" Enter
    tmux wait-for "$session"
}

type_command "gatewayd status"
type_command "gatewayd scan --host 127.0.0.1 --port $tcp_port --from 1 --to 8"
type_command "gatewayd printer status printer-1"
type_command "gatewayd check"
type_command "echo \"check exit status: \$?\""
type_command "timeout 3 gatewayd trace rs485-1"

cd "$repo"
tmux capture-pane -p -t "$session" -S - -E - 2>/dev/null | sed -e 's/[[:space:]]*$//' | sed -e :a -e '/^\n*$/{$d;N;ba' -e '}' \
    > "$output" || true
echo "recorded: $output ($(wc -l < "$output") lines)"
