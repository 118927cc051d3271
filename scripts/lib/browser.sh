# shellcheck shell=bash
# Shared by the scripts that run the browser checks (clients/swagger-ui/docs.mjs:
# scripts/gateway-e2e, scripts/swagger-ui-e2e). Source it, then call
# `browser_tools NAME [PKG...]`: installs chromium, nodejs and npm (and the
# caller's missing PKGs) with apt-get when missing, runs `npm ci` in clients/swagger-ui only when package-lock.json
# changed since the last install (playwright-core only; never a browser of
# Playwright's own), and exports CHROMIUM (default /usr/bin/chromium).

browser_tools() {
    local who=$1 client
    shift
    client=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../clients/swagger-ui" && pwd)
    export CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
    local need_apt=("$@")
    [ -x "$CHROMIUM" ] || need_apt+=(chromium)
    command -v node >/dev/null 2>&1 || need_apt+=(nodejs)
    command -v npm >/dev/null 2>&1 || need_apt+=(npm)
    if [ ${#need_apt[@]} -gt 0 ]; then
        echo "== $who: installing ${need_apt[*]} with apt-get"
        local SUDO=""
        if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
    fi
    if [ ! -x "$CHROMIUM" ]; then
        echo "$who: FAIL: no browser at $CHROMIUM" >&2
        return 1
    fi
    export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
    local stamp=$client/node_modules/.package-lock.stamp
    if [ -f "$stamp" ] && cmp -s "$client/package-lock.json" "$stamp"; then
        echo "== $who: node_modules current (package-lock.json unchanged), npm ci skipped"
    else
        echo "== $who: npm ci (clients/swagger-ui)"
        (cd "$client" && npm ci --no-audit --no-fund --loglevel=error) || return 1
        cp "$client/package-lock.json" "$stamp"
    fi
}
