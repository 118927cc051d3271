# shellcheck shell=bash
# Shared by the end-to-end scripts that drive a live Tessera (clients, browser).
# Source it, then call `tessera_start`; it exports TESSERA_BASE (http://127.0.0.1:PORT)
# and the root admin's credentials; everything started is stopped on exit
# (`tessera_lib_exit`, the EXIT trap; a script with its own trap calls it).
#
#   TESSERA_BIN=/path/to/tessera   use that binary instead of building target/debug/tessera
#
# The server: temporary SQLite database, in-memory token store, fast argon2,
# a fixed JWT secret, a root admin created at start. `tessera_pg_redis` first
# starts a private PostgreSQL and redis-server for `tessera_start
# DATABASE_URL=$TESSERA_PG_URL REDIS_URL=$TESSERA_REDIS_URL`.

TESSERA_LIB_WORK=$(mktemp -d)
TESSERA_LIB_PID=""

tessera_stop() {
    if [ -n "$TESSERA_LIB_PID" ]; then
        kill "$TESSERA_LIB_PID" 2>/dev/null || true
        for _ in $(seq 100); do
            kill -0 "$TESSERA_LIB_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$TESSERA_LIB_PID" 2>/dev/null || true
        wait "$TESSERA_LIB_PID" 2>/dev/null || true
        TESSERA_LIB_PID=""
    fi
}

TESSERA_LIB_REDIS_PID=""
TESSERA_LIB_PG=()
tessera_lib_exit() {
    tessera_stop
    if [ -n "$TESSERA_LIB_REDIS_PID" ]; then
        kill "$TESSERA_LIB_REDIS_PID" 2>/dev/null || true
        wait "$TESSERA_LIB_REDIS_PID" 2>/dev/null || true
    fi
    if [ ${#TESSERA_LIB_PG[@]} -gt 0 ]; then
        timeout 30 "${TESSERA_LIB_PG[@]}" -m fast -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$TESSERA_LIB_WORK"
}
trap tessera_lib_exit EXIT

tessera_free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# tessera_start [extra VAR=value ...]: start a server, wait until /readyz answers 200.
tessera_start() {
    local bin=${TESSERA_BIN:-}
    if [ -z "$bin" ]; then
        echo "== cargo build --bin tessera"
        cargo build --quiet --bin tessera
        bin=target/debug/tessera
    fi
    local port
    port=$(tessera_free_port)
    export TESSERA_BASE="http://127.0.0.1:$port"
    export TESSERA_ADMIN_EMAIL=e2e-root@example.com
    export TESSERA_ADMIN_PASSWORD=e2e-root-password
    TESSERA_LIB_SERIAL=$((${TESSERA_LIB_SERIAL:-0} + 1))
    TESSERA_LIB_LOG="$TESSERA_LIB_WORK/server-$TESSERA_LIB_SERIAL.log"
    env DATABASE_URL="sqlite://$TESSERA_LIB_WORK/tessera-$TESSERA_LIB_SERIAL.db?mode=rwc" \
        TESSERA_BIND="127.0.0.1:$port" \
        TESSERA_JWT_SECRET=e2e-only-secret-0123456789abcdef-0123 \
        TESSERA_ARGON2_MEMORY_KIB=1024 \
        TESSERA_ARGON2_ITERATIONS=1 \
        TESSERA_LOG_FORMAT=json \
        RUST_LOG=warn \
        "$@" \
        "$bin" serve >"$TESSERA_LIB_LOG" 2>&1 &
    TESSERA_LIB_PID=$!
    if ! python3 - "$TESSERA_BASE/readyz" <<'PY'; then
import sys, time, urllib.request
for _ in range(300):
    try:
        if urllib.request.urlopen(sys.argv[1], timeout=1).status == 200:
            sys.exit(0)
    except Exception:
        time.sleep(0.1)
sys.exit(1)
PY
        echo "the service did not become ready; its log:" >&2
        tail -n 40 "$TESSERA_LIB_LOG" >&2
        return 1
    fi
}

# tessera_check_log: fail when the server logged an ERROR line (an internal error).
tessera_check_log() {
    if grep -q '"level":"ERROR"' "$TESSERA_LIB_LOG"; then
        echo "the service logged errors:" >&2
        grep '"level":"ERROR"' "$TESSERA_LIB_LOG" | tail -n 20 >&2
        return 1
    fi
}

# tessera_pg_redis: a private PostgreSQL (as the postgres OS user when root:
# it refuses to run as root) and redis-server on free loopback ports;
# exports TESSERA_PG_URL (an empty database) and TESSERA_REDIS_URL.
tessera_pg_redis() {
    local pgbin
    pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    if [ -z "$pgbin" ] || ! command -v redis-server >/dev/null 2>&1; then
        echo "PostgreSQL or redis-server is missing; on Debian: apt-get install postgresql redis-server" >&2
        return 1
    fi
    local dir=$TESSERA_LIB_WORK/pg as_pg=() pg_port redis_port
    mkdir -p "$dir"
    chmod 711 "$TESSERA_LIB_WORK"
    if [ "$(id -u)" -eq 0 ]; then
        chown postgres:postgres "$dir"
        as_pg=(runuser -u postgres --)
    fi
    pg_port=$(tessera_free_port)
    timeout 60 "${as_pg[@]}" "$pgbin/initdb" -D "$dir/data" -U postgres -A trust --no-sync \
        >"$TESSERA_LIB_WORK/initdb.log" 2>&1 || { cat "$TESSERA_LIB_WORK/initdb.log" >&2; return 1; }
    TESSERA_LIB_PG=("${as_pg[@]}" "$pgbin/pg_ctl" -D "$dir/data")
    timeout 60 "${TESSERA_LIB_PG[@]}" \
        -o "-p $pg_port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" \
        -l "$dir/postgres.log" -w -t 30 start >"$TESSERA_LIB_WORK/pg_ctl.log" 2>&1 ||
        { cat "$TESSERA_LIB_WORK/pg_ctl.log" "$dir/postgres.log" >&2; return 1; }
    timeout 20 psql -X -q -h 127.0.0.1 -p "$pg_port" -U postgres -d postgres \
        -v ON_ERROR_STOP=1 -c "CREATE DATABASE tessera" || return 1
    export TESSERA_PG_URL="postgres://postgres@127.0.0.1:$pg_port/tessera"

    redis_port=$(tessera_free_port)
    redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$TESSERA_LIB_WORK" \
        --save '' --appendonly no >"$TESSERA_LIB_WORK/redis.log" 2>&1 &
    TESSERA_LIB_REDIS_PID=$!
    local end=$((SECONDS + 20))
    until [ "$(timeout 2 redis-cli -h 127.0.0.1 -p "$redis_port" ping 2>/dev/null)" = PONG ]; do
        if [ "$SECONDS" -gt "$end" ]; then
            echo "redis-server did not answer PING within 20 s" >&2
            cat "$TESSERA_LIB_WORK/redis.log" >&2
            return 1
        fi
        sleep 0.1
    done
    export TESSERA_REDIS_URL="redis://127.0.0.1:$redis_port"
}
