# shellcheck shell=bash
# Shared by the end-to-end scripts that drive a live Tessera (clients, browser).
# Source it, then call `tessera_start`; it exports TESSERA_BASE (http://127.0.0.1:PORT)
# and the root admin's credentials, and stops the server on exit.
#
#   TESSERA_BIN=/path/to/tessera   use that binary instead of building target/debug/tessera
#
# The server: temporary SQLite database, in-memory token store, fast argon2,
# a fixed JWT secret, a root admin created at start.

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
    rm -rf "$TESSERA_LIB_WORK"
}
trap tessera_stop EXIT

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
    TESSERA_LIB_LOG="$TESSERA_LIB_WORK/server.log"
    env DATABASE_URL="sqlite://$TESSERA_LIB_WORK/tessera.db?mode=rwc" \
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
