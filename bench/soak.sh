#!/usr/bin/env bash
# The demo hall left running (docs/benchmarks.md, "The demo hall left running"): what grows while nothing should.
#
#   bench/soak.sh            # 60 minutes, a line a minute
#   bench/soak.sh 480 10     # 8 hours, a line every 10 minutes
#
# Builds gatewayd in release into .build-release, runs `gatewayd run` (the demo hall: its simulated devices live in
# the same process) in a folder of its own, and prints its resident memory, threads, open files, state directory and
# log size as it goes; at the end the growth of its anonymous memory over the second half, per hour. With gdb
# installed, the heap in use and SQLite's share of it are printed too (gdb stops the daemon for a moment).
set -euo pipefail
cd "$(dirname "$0")/.."

minutes="${1:-60}"
every="${2:-1}"
source bench/release.sh
build_release gatewayd
profiles="$PWD/devices"
gatewayd="$PWD/$scratch/release/gatewayd"
folder=$(mktemp -d /tmp/hall-gateway-soak.XXXXXX)
cd "$folder"
"$gatewayd" run --profiles "$profiles" --api-port 0 > gatewayd.log 2>&1 &
pid=$!
trap 'kill -INT $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$folder"' EXIT

field() { awk -v key="$1:" '$1 == key { print $2 }' "/proc/$pid/status"; }
heap() {
    command -v gdb > /dev/null || return 0
    local before sqlite
    before=$(grep -c "^Total (incl. mmap)" gatewayd.log || true)
    sqlite=$(gdb -p "$pid" -batch -ex "call (long long)sqlite3_memory_used()" -ex "call (void)malloc_stats()" 2>&1 |
        awk '/^\$1 =/ { print $3 }')
    for _ in 1 2 3 4 5 6 7 8 9 10; do
        [ "$(grep -c "^Total (incl. mmap)" gatewayd.log || true)" -gt "$before" ] && break
        sleep 0.1
    done
    printf "  heap %5.1f MB, SQLite %4.1f MB" "$(grep -A2 "^Total (incl. mmap)" gatewayd.log | tail -1 |
        awk '{ print $5 / 1048576 }')" "$(awk -v b="${sqlite:-0}" 'BEGIN { print b / 1048576 }')"
}
ticks_per_second=$(getconf CLK_TCK)
sleep 5  # started: its buses open, its API listens
echo "gatewayd (release), demo hall, pid $pid, in $folder; $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "minute  VmRSS MB  RssAnon MB  threads  files  state MB  log KB  CPU %"
anon=()
last_ticks=0
for minute in $(seq 0 "$every" "$minutes"); do
    [ "$minute" -gt 0 ] && sleep $((every * 60))
    kill -0 "$pid" 2>/dev/null || { echo "gatewayd stopped:"; tail -5 gatewayd.log; exit 1; }
    ticks=$(awk '{ print $14 + $15 }' "/proc/$pid/stat")
    cpu=$(awk -v t=$((ticks - last_ticks)) -v s=$((every * 60)) -v hz="$ticks_per_second" \
        'BEGIN { if (s > 0) printf "%.1f", 100 * t / hz / s; else print "-" }')
    [ "$minute" -eq 0 ] && cpu="-"
    last_ticks=$ticks
    anon+=("$minute $(field RssAnon)")
    printf "%6d  %8.1f  %10.1f  %7d  %5d  %8.1f  %6d  %5s%s\n" "$minute" \
        "$(awk -v k="$(field VmRSS)" 'BEGIN { print k / 1024 }')" "$(awk -v k="$(field RssAnon)" 'BEGIN { print k / 1024 }')" \
        "$(field Threads)" "$(ls "/proc/$pid/fd" | wc -l)" "$(du -sk var | awk '{ print $1 / 1024 }')" \
        "$(($(grep -E '^[0-9]{4}-' gatewayd.log | wc -c) / 1024))" "$cpu" "$(heap)"
done
half=$(( ${#anon[@]} / 2 ))
read -r from_minute from_kb <<< "${anon[$half]}"
read -r to_minute to_kb <<< "${anon[-1]}"
if [ "$to_minute" -gt "$from_minute" ]; then
    awk -v a="$from_kb" -v b="$to_kb" -v m=$((to_minute - from_minute)) -v f="$from_minute" -v t="$to_minute" \
        'BEGIN { printf "RssAnon from minute %d to %d: %+.1f MB, %+.2f MB an hour\n", f, t, (b - a) / 1024, (b - a) / 1024 / m * 60 }'
fi
