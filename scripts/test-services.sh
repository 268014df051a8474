#!/usr/bin/env bash
# Starts the real servers the tests talk to — PostgreSQL and mosquitto, on loopback, in a private
# folder — runs the given command with their addresses in the environment, and stops them after.
#
#   scripts/test-services.sh swift test --skip-build
#   scripts/test-services.sh pg-stop | pg-start [DATADIR]   (inside such a run: stop or start its PostgreSQL)
#   scripts/test-services.sh pg-private FOLDER | pg-private-remove FOLDER   (a test's own cluster; prints its URL)
#
# Exported: HALL_TEST_POSTGRES_URL (postgres://gateway:…@127.0.0.1:PORT/central), HALL_TEST_PGDATA,
# HALL_TEST_MQTT_HOST, HALL_TEST_MQTT_PORT, HALL_TEST_SERVICES (this script, for pg-stop/pg-start).
set -euo pipefail
PG_BIN=${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}
as_postgres() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# Makes and starts a cluster in $1 (data in $1/pgdata, socket in $1/pgsocket) on port $2, with role gateway
# (password $3) owning database central. SCRAM over TCP on 127.0.0.1 only.
pg_create() {
    local folder=$1 port=$2 password=$3
    mkdir -p "$folder/pgdata" "$folder/pgsocket"
    # The server runs as postgres: it must be able to reach the folder.
    chmod 755 "$folder" "$(dirname "$folder")"
    [ "$(id -u)" = 0 ] && chown postgres "$folder/pgdata" "$folder/pgsocket"
    as_postgres "$PG_BIN/initdb" -D "$folder/pgdata" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
        -E UTF8 --locale=C.UTF-8 >/dev/null
    cat >> "$folder/pgdata/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$folder/pgsocket'
fsync = on
CONF
    as_postgres "$PG_BIN/pg_ctl" -D "$folder/pgdata" -l "$folder/pgdata/server.log" -w start >/dev/null
    as_postgres psql -q -h "$folder/pgsocket" -p "$port" -U postgres -d postgres -v ON_ERROR_STOP=1 \
        -c "CREATE ROLE gateway LOGIN CREATEROLE PASSWORD '$password'" -c "CREATE DATABASE central OWNER gateway" >/dev/null
}

# A server started from here must not keep our caller's descriptors open: a caller such as Foundation's
# Process watches one of them to learn that this script has ended.
for fd in $(ls /proc/$$/fd); do
    # 255 is bash's own handle on this script.
    [ "$fd" -gt 2 ] && [ "$fd" != 255 ] && eval "exec $fd>&-" 2>/dev/null || true
done

case "${1:-}" in
    pg-stop)
        as_postgres "$PG_BIN/pg_ctl" -D "${2:-$HALL_TEST_PGDATA}" -m fast -w stop >/dev/null
        exit 0 ;;
    pg-start)
        data=${2:-$HALL_TEST_PGDATA}
        as_postgres "$PG_BIN/pg_ctl" -D "$data" -l "$data/server.log" -w start >/dev/null
        exit 0 ;;
    pg-private)
        # A cluster of a test's own (one that stops and starts it must not take the shared one away from
        # other suites): prints its URL; its data folder is $2/pgdata for pg-stop/pg-start.
        port=$(free_port)
        password="private-$RANDOM$RANDOM"
        pg_create "$2" "$port" "$password"
        echo "postgres://gateway:$password@127.0.0.1:$port/central"
        exit 0 ;;
    pg-private-remove)
        as_postgres "$PG_BIN/pg_ctl" -D "$2/pgdata" -m immediate -w stop >/dev/null 2>&1 || true
        rm -rf "$2"
        exit 0 ;;
esac
[ $# -gt 0 ] || { echo "usage: $0 COMMAND [ARGS…] | pg-stop | pg-start" >&2; exit 2; }

command -v mosquitto >/dev/null || { echo "mosquitto is not installed (make deps)" >&2; exit 1; }
[ -x "$PG_BIN/initdb" ] || { echo "PostgreSQL server binaries not found (make deps)" >&2; exit 1; }

work=$(mktemp -d /tmp/hall-gateway-services-XXXXXX)
chmod 755 "$work"
pg_port=$(free_port)
mqtt_port=$(free_port)
pg_password="gateway-test-$RANDOM$RANDOM"
export HALL_TEST_PGDATA="$work/pg/pgdata"

stop_all() {
    status=$?
    [ -f "$work/mosquitto/mosquitto.pid" ] && kill "$(cat "$work/mosquitto/mosquitto.pid")" 2>/dev/null || true
    as_postgres "$PG_BIN/pg_ctl" -D "$HALL_TEST_PGDATA" -m immediate -w stop >/dev/null 2>&1 || true
    rm -rf "$work"
    exit $status
}
trap stop_all EXIT INT TERM

# PostgreSQL: the cluster all suites share.
pg_create "$work/pg" "$pg_port" "$pg_password"

# mosquitto: loopback only, persistent sessions kept in the private folder. Started as root it drops to the
# mosquitto user before writing its pid file, so everything it writes lives in the folder given to that user.
mkdir -p "$work/mosquitto"
[ "$(id -u)" = 0 ] && chown mosquitto "$work/mosquitto" 2>/dev/null || true
cat > "$work/mosquitto.conf" <<CONF
listener $mqtt_port 127.0.0.1
allow_anonymous true
persistence true
persistence_location $work/mosquitto/
pid_file $work/mosquitto/mosquitto.pid
log_dest file $work/mosquitto/mosquitto.log
CONF
mosquitto -c "$work/mosquitto.conf" -d
for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$mqtt_port") 2>/dev/null && break
    sleep 0.1
done
(exec 3<>"/dev/tcp/127.0.0.1/$mqtt_port") 2>/dev/null || {
    echo "mosquitto did not start on 127.0.0.1:$mqtt_port:" >&2
    cat "$work/mosquitto/mosquitto.log" >&2 2>/dev/null || true
    exit 1
}

export HALL_TEST_POSTGRES_URL="postgres://gateway:$pg_password@127.0.0.1:$pg_port/central"
export HALL_TEST_MQTT_HOST=127.0.0.1 HALL_TEST_MQTT_PORT=$mqtt_port
export HALL_TEST_SERVICES="$(cd "$(dirname "$0")" && pwd)/$(basename "$0")"
echo "test services: PostgreSQL on 127.0.0.1:$pg_port, mosquitto on 127.0.0.1:$mqtt_port" >&2
"$@"
