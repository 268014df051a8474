#!/usr/bin/env bash
# The systemd unit (deploy/hall-gateway.service) run by a real systemd, as the README installs it: a service manager
# of its own as PID 1 of a private PID and mount namespace, so nothing on this machine changes (its /run, /var/lib,
# /usr/local/bin, /etc/passwd and /etc/group are private copies) and no reboot or host systemd is needed. Root only.
# Checks what an operator relies on: the gateway starts under the unit's restrictions and answers its API, keeps its
# state private, reads the clock's NTP state, runs with malloc's arenas bounded, is refused a device the unit does not
# allow (and says why), is started again after a crash and after `kill -HUP`, stops on `systemctl stop`, and is not
# started again after exit 2.
#
#   deploy/test-unit.sh GATEWAYD        (make test runs it with the debug build)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

if [ "${1:-}" = --inside ]; then
    # PID 1's side: a file system of its own where systemd would write (its boot must not clean this machine's /tmp),
    # then systemd, seeing only the units given here (no sysinit.target's mounts, udev or tmpfiles) and unable to
    # load kernel modules or set the clock.
    gatewayd=$2 work=$3
    mount -t proc proc /proc
    for private in /run /var/lib /var/log /usr/local/bin; do mount -t tmpfs tmpfs "$private"; done
    install -m 755 "$gatewayd" /usr/local/bin/gatewayd
    # Installed as the README says, the executable alone: its build folder is not there to fall back on.
    mount -t tmpfs tmpfs "$(dirname "$gatewayd")"
    mkdir -p /run/hall-test/units /run/hall-test/etc
    cp "$work/units/"* /run/hall-test/units/
    cp -r "$here/../devices" /run/hall-test/devices
    # Open to every user but of a kind the unit does not list (misc: /dev/fuse's numbers): only the unit can refuse it.
    mknod -m 666 /run/hall-test/ttyMISC0 c 10 229
    # The gateway's user, as the README's useradd makes it (a uid and gid no one has), in the dialout group.
    uid=$(cut -d: -f3 /etc/passwd /etc/group | sort -n | awk '{used[$1] = 1} END {for (i = 990; i > 900; i--) if (!used[i]) {print i; exit}}')
    cp /etc/passwd /etc/group /run/hall-test/etc/
    echo "hall-gateway:x:$uid:$uid::/var/lib/hall-gateway:/usr/sbin/nologin" >> /run/hall-test/etc/passwd
    echo "hall-gateway:x:$uid:" >> /run/hall-test/etc/group
    sed -i 's/^\(dialout:x:[0-9]*:\)$/\1hall-gateway/; s/^\(dialout:x:[0-9]*:.\+\)$/\1,hall-gateway/' /run/hall-test/etc/group
    mount --bind /run/hall-test/etc/passwd /etc/passwd
    mount --bind /run/hall-test/etc/group /etc/group
    # What systemd writes to its console (this machine's, else) lands in a file.
    : > /run/hall-test/console
    mount --bind /run/hall-test/console /dev/console
    mount -t tmpfs tmpfs /tmp
    mount -t tmpfs tmpfs /var/tmp
    # This test's own cgroup (the namespace's root), unified: DeviceAllow= is enforced there.
    umount -l /sys/fs/cgroup 2>/dev/null || true
    mount -t cgroup2 cgroup2 /sys/fs/cgroup
    export container=hall-gateway-test SYSTEMD_UNIT_PATH=/run/hall-test/units
    # Kernel settings are this machine's: read-only here (systemd would raise some at its start).
    mount --bind /proc/sys /proc/sys && mount -o remount,bind,ro /proc/sys
    exec setpriv --bounding-set -sys_module,-sys_time,-sys_boot \
        /lib/systemd/systemd --system --unit=hall-test.target --machine-id=$(printf '4a11ca7e%.0s' 1 2 3 4) \
        --log-target=console --log-level=${HALL_UNIT_TEST_LOG_LEVEL:-warning}
fi

gatewayd=$(realpath "${1:?usage: deploy/test-unit.sh GATEWAYD}")
[ "$(id -u)" = 0 ] || { echo "deploy/test-unit.sh: needs root (it runs a systemd of its own)"; exit 1; }
[ -x /lib/systemd/systemd ] || { echo "deploy/test-unit.sh: /lib/systemd/systemd missing: apt-get install systemd"; exit 1; }
work=$(mktemp -d /tmp/hall-unit-test.XXXXXX)
manager=
cgroup=
# Every step whatever the one before did (set -e would end the trap at the first that fails).
cleanup() {
    set +e
    # The namespace ends with its PID 1; its cgroups can go once its processes are gone.
    [ -n "$manager" ] && kill -9 "$manager" 2>/dev/null
    [ -n "${unshare_pid:-}" ] && { kill -9 "$unshare_pid" 2>/dev/null; wait "$unshare_pid" 2>/dev/null; }
    [ -n "$cgroup" ] && [ -d "$cgroup" ] && for _ in $(seq 50); do
        find "$cgroup" -depth -type d -exec rmdir {} + 2>/dev/null && break
        sleep 0.1
    done
    [ -n "${socat_pid:-}" ] && kill "$socat_pid" 2>/dev/null
    rm -rf "$work"
    return 0
}
trap cleanup EXIT
failures=0
pass() { echo "  ok: $*"; }
fail() { echo "  FAILED: $*"; failures=$((failures + 1)); }
# Waits up to $1 seconds for the command after it to succeed, looking every 0.1 s.
within() {
    local deadline=$((SECONDS + $1)); shift
    until "$@" >/dev/null 2>&1; do [ $SECONDS -lt $deadline ] || return 1; sleep 0.1; done
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
api_port=$(free_port)
# A serial line the unit allows (systemd allows pseudo-terminals to every service), open to the gateway's user.
socat pty,raw,echo=0,mode=666,link="$work/line-a" pty,raw,echo=0,link="$work/line-b" 2>/dev/null & socat_pid=$!
within 10 test -e "$work/line-a"
pty=$(readlink "$work/line-a")

mkdir -p "$work/units"
# The unit as shipped; only where it finds the configuration differs (/etc is the host's).
sed 's#--config /etc/hall-gateway/hall.yaml#--config /run/hall-test/hall.yaml#' "$here/hall-gateway.service" \
    > "$work/units/hall-gateway.service"
grep -q -- '--config /run/hall-test/hall.yaml' "$work/units/hall-gateway.service"
cat > "$work/units/hall-test.target" <<'UNIT'
[Unit]
Description=the unit test's own boot target: a journal and nothing else
Wants=systemd-journald.socket systemd-journald.service
UNIT
# What a service's default dependencies name, empty; the journal as the distribution ships it.
for target in sysinit basic shutdown network-online sockets; do
    printf '[Unit]\nDescription=%s (empty in this test)\n' "$target" > "$work/units/$target.target"
done
# Not systemd-journald-dev-log.socket: it links /dev/log, and /dev is this machine's.
cp /usr/lib/systemd/system/systemd-journald.service /usr/lib/systemd/system/systemd-journald.socket "$work/units/"

echo "deploy/test-unit.sh: the unit under a systemd of its own"
verify=$(sed "s#/usr/local/bin/gatewayd#$gatewayd#" "$here/hall-gateway.service" > "$work/verify.service" &&
    systemd-analyze verify "$work/verify.service" 2>&1) && [ -z "$verify" ] &&
    pass "systemd-analyze verify: no complaint" || fail "systemd-analyze verify: $verify"

# The manager's cgroup: a new one below this script's in the unified hierarchy, the root of its cgroup namespace.
unified=$(findmnt -t cgroup2 -n -o TARGET | head -1)
[ -n "$unified" ] || { echo "  FAILED: no cgroup2 hierarchy mounted: DeviceAllow= cannot be enforced here"; exit 1; }
cgroup="$unified$(awk -F: '$1 == "0" {print $3}' /proc/self/cgroup | sed 's#/$##')/hall-unit-test.$$"
mkdir "$cgroup"
sh -c 'echo $$ > "$1/cgroup.procs" && shift && exec "$@"' sh "$cgroup" \
    unshare --pid --fork --mount --uts --cgroup --net --propagation private "$0" --inside "$gatewayd" "$work" \
    > "$work/manager.log" 2>&1 &
unshare_pid=$!
within 10 pgrep -P "$unshare_pid" || { cat "$work/manager.log"; echo "  FAILED: no systemd started"; exit 1; }
manager=$(pgrep -P "$unshare_pid")
in_namespace() { nsenter -t "$manager" -m -p -n "$@"; }
running() { [[ "$(in_namespace systemctl is-system-running 2>/dev/null)" =~ ^(running|degraded)$ ]]; }
within 30 running || { cat "$work/manager.log"; in_namespace cat /run/hall-test/console; echo "  FAILED: the test's systemd did not come up"; exit 1; }
property() { in_namespace systemctl show -P "$1" hall-gateway; }

write_config() {
    cat > "$work/hall.yaml" <<YAML
hall: {id: unit-test, timezone: Asia/Shanghai}
state-directory: /var/lib/hall-gateway
profiles: /run/hall-test/devices
api: {listen: "127.0.0.1:$api_port"}
buses:
  - {id: rs485-1, transport: modbus-rtu, port: $pty, baud: 9600}
  - {id: rs485-2, transport: modbus-rtu, port: /run/hall-test/ttyMISC0, baud: 9600}
devices:
  - {id: eval-w01, profile: modbus-evaluator-3key, bus: rs485-1, address: 1, window: "1"}
  - {id: eval-w02, profile: modbus-evaluator-3key, bus: rs485-2, address: 1, window: "2"}
$1
YAML
    in_namespace sh -c 'cat > /run/hall-test/hall.yaml && chmod -R a+rX /run/hall-test' < "$work/hall.yaml"
}
token() { in_namespace cat /var/lib/hall-gateway/api-token; }
# The namespace has a network of its own (its loopback): asked from inside it.
api() { in_namespace curl -fsS --max-time 5 -H "Authorization: Bearer $(token)" "http://127.0.0.1:$api_port$1"; }
answers() { api /v1/devices; }
journal() { in_namespace journalctl -q -u hall-gateway --no-pager -o cat; }
# Not grep -q: it would stop reading, and journalctl's SIGPIPE would fail the pipe under pipefail.
journal_says() { journal | grep -F -- "$1" >/dev/null; }

write_config ""
in_namespace systemctl start hall-gateway
if within 60 answers; then pass "started under the unit's restrictions; its API answers"; else
    fail "no answer from the API"; journal | tail -20; fi

# The technician's view, as the README sets it up: root's shell with HALL_GATEWAY_CONFIG.
# Exit 1: a device is not online; 3 would be a daemon that does not answer.
status=$(in_namespace env HALL_GATEWAY_CONFIG=/run/hall-test/hall.yaml /usr/local/bin/gatewayd status 2>&1) && code=0 || code=$?
[ "$code" = 1 ] && grep -q "eval-w01" <<< "$status" && ! grep -q "as last recorded" <<< "$status" &&
    pass "gatewayd status reaches it: $(grep -m1 eval-w01 <<< "$status" | tr -s ' ')" || fail "gatewayd status (exit $code): $status"

mode=$(in_namespace stat -c '%U %a' /var/lib/hall-gateway)
[ "$mode" = "hall-gateway 750" ] && pass "state directory: $mode" || fail "state directory: $mode"
others=$(in_namespace find /var/lib/hall-gateway -mindepth 1 -perm /o=rwx -printf '%f %m\n')
[ -z "$others" ] && pass "no state file open to other users" || fail "state files open to others: $others"

within 15 journal_says "gateway for hall unit-test" || fail "no 'gateway for hall unit-test' in the journal"
# The clock's NTP state as the kernel reports it here, against what the gateway under the unit reads.
host_synchronised=$(python3 -c '
import ctypes
timex = ctypes.create_string_buffer(256)
state = ctypes.CDLL(None, use_errno=True).adjtimex(timex)
status = int.from_bytes(timex.raw[40:44], "little")
print("true" if state >= 0 and state != 5 and not status & 0x40 else "false")')
gateway_synchronised=$(api /v1/devices | python3 -c 'import json, sys; print(str(json.load(sys.stdin)["clock"]["synchronised"]).lower())')
[ "$gateway_synchronised" = "$host_synchronised" ] && ! journal_says "clock: cannot read" &&
    pass "reads the clock's NTP state (synchronised: $gateway_synchronised, as the kernel says)" ||
    fail "clock synchronised: the gateway says $gateway_synchronised, the kernel $host_synchronised; $(journal | grep -F "clock: cannot read")"

if within 15 journal_says "eval-w01 offline: no answer to poll"; then
    pass "a serial line the unit allows (a pseudo-terminal) is opened and polled"
else fail "eval-w01 on $pty: no 'no answer to poll' in the journal"; journal | tail -5; fi
refused="cannot open /run/hall-test/ttyMISC0: not permitted (the service's device list: add DeviceAllow=char-misc rw)"
if within 15 journal_says "$refused"; then
    pass "a device outside the unit's list is refused, and said: $refused"
else fail "no '$refused' in the journal"; journal | grep -F ttyMISC0 | tail -3; fi

# glibc's arenas bounded (the unit's Environment=; without it an outage of the central store grows the heap for good).
environment=$(in_namespace cat "/proc/$(property MainPID)/environ" | tr '\0' '\n') || environment=
grep -qx MALLOC_ARENA_MAX=2 <<< "$environment" && pass "its environment bounds malloc's arenas: MALLOC_ARENA_MAX=2" ||
    fail "no MALLOC_ARENA_MAX=2 in the gateway's environment: $(tr '\n' ' ' <<< "$environment")"

first=$(property MainPID)
# A crash from outside, as the kernel's OOM killer ends a process. (A sent SIGSEGV or SIGABRT is caught by Swift's
# backtracer, which prints the backtrace and leaves the process suspended: not a crash the gateway can have.)
in_namespace kill -KILL "$first"
started_again() { [ "$(property NRestarts)" = "$1" ] && [ "$(property ActiveState)" = active ] && answers; }
within 30 started_again 1 && pass "started again after being killed (SIGKILL), as the unit says: 5 s later" ||
    fail "not started again after SIGKILL: $(property ActiveState) $(property NRestarts)"
second=$(property MainPID)
in_namespace kill -HUP "$second"
within 30 started_again 2 && [ "$(property MainPID)" != "$second" ] && pass "kill -HUP restarts it" ||
    fail "after kill -HUP: $(property ActiveState), restarts $(property NRestarts)"

in_namespace systemctl stop hall-gateway
[ "$(property ActiveState)" = inactive ] && [ "$(property Result)" = success ] &&
    pass "systemctl stop: stopped, result $(property Result)" ||
    fail "systemctl stop: $(property ActiveState), result $(property Result)"

write_config "  - {id: eval-w03, profile: no-such-profile, bus: rs485-1, address: 2}"
in_namespace systemctl reset-failed hall-gateway 2>/dev/null || true
in_namespace systemctl start hall-gateway || true
failed() { [ "$(property ActiveState)" = failed ]; }
if within 30 failed && [ "$(property ExecMainStatus)" = 2 ] && [ "$(property NRestarts)" = 0 ]; then
    pass "a broken configuration: exit 2, failed, not started again; the journal: $(journal | grep -m1 no-such-profile)"
else fail "a broken configuration: $(property ActiveState), status $(property ExecMainStatus), restarts $(property NRestarts)"; fi

if [ -n "${HALL_UNIT_TEST_HOLD:-}" ]; then
    echo "held: nsenter -t $manager -m -p systemctl …; press return to end"; read -r
fi
if [ "$failures" -gt 0 ]; then
    echo "deploy/test-unit.sh: $failures failed; the manager's log:"
    tail -20 "$work/manager.log"; in_namespace tail -20 /run/hall-test/console; exit 1
fi
echo "deploy/test-unit.sh: the unit does what the README says"
