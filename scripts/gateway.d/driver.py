"""Scenario driver of scripts/gateway-e2e: every request and assertion.

    python3 driver.py ready URL... [--deadline S]
    python3 driver.py a|b|c|d|e [options]     (see the subparsers below)

scripts/gateway-e2e starts PostgreSQL, Redis, the Tessera replicas, the
upstream application (upstream_app.py) and nginx (nginx.conf.in), then calls
one scenario at a time. A failed assertion exits 1 with a line starting
"FAIL"; the script then prints the logs. Standard library only, every
request with a timeout, every loop bounded in time and count.
"""

import argparse
import http.client
import json
import os
import re
import signal
import sys
import threading
import time
import urllib.parse
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

TIMEOUT = 10  # seconds, every single request


class Fail(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Fail(msg)


def log(msg):
    print(f"  {msg}", flush=True)


class Resp:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers  # lower-cased names
        self.body = body

    def json(self):
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    def code(self):
        j = self.json()
        return j.get("code") if isinstance(j, dict) else None

    def __repr__(self):
        return f"{self.status} {self.body[:300]!r}"


def request(base, method, path, token=None, body=None, headers=None, conn=None):
    """One request; a fresh connection unless `conn` is given."""
    u = urllib.parse.urlsplit(base)
    own = conn is None
    if own:
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=TIMEOUT)
    h = dict(headers or {})
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        h["Content-Type"] = "application/json"
    if token is not None:
        h["Authorization"] = f"Bearer {token}"
    try:
        conn.request(method, path, body=data, headers=h)
        r = conn.getresponse()
        raw = r.read()
        return Resp(r.status, {k.lower(): v for k, v in r.getheaders()}, raw.decode("utf-8", "replace"))
    finally:
        if own:
            conn.close()


def hits(app):
    r = request(app, "GET", "/__hits")
    check(r.status == 200, f"upstream /__hits: {r}")
    return r.json()["hits"]


def new_user(base, tag):
    """Registers a fresh account through `base`; returns (id, email, password)."""
    suffix = uuid.uuid4().hex[:10]
    username = f"gw_{tag}_{suffix}"
    email = f"{username}@example.com"
    password = f"pw-{suffix}-long-enough"
    r = request(base, "POST", "/auth/register", body={"username": username, "email": email, "password": password})
    check(r.status == 201, f"register {username} through {base}: expected 201, got {r}")
    return r.json()["id"], email, password


def login(base, email, password):
    r = request(base, "POST", "/auth/login", body={"email": email, "password": password})
    check(r.status == 200, f"login {email} through {base}: expected 200, got {r}")
    j = r.json()
    check(j.get("access_token") and j.get("refresh_token"), f"login answer without tokens: {r}")
    return j


def expect_401(r, what, codes=None):
    check(r.status == 401, f"{what}: expected 401, got {r}")
    if codes is not None:
        check(r.code() in codes, f"{what}: expected code in {sorted(codes)}, got {r}")


class LogTail:
    """The lines a log file gains from now on (nginx writes each at once)."""

    def __init__(self, path):
        self.path = path
        self.pos = os.path.getsize(path) if path and os.path.exists(path) else 0

    def new_lines(self):
        if not self.path:
            return []
        with open(self.path, errors="replace") as f:
            f.seek(self.pos)
            return f.read().splitlines()


def upstreams_of(lines, request_prefix):
    """Counter of (upstream, status) of each matching request of the
    gateway's access log (format `gateway` of nginx.conf.in)."""
    out = Counter()
    for line in lines:
        m = re.search(r'"([^"]*)" (\d+) upstream=([^\s,]+(?:, [^\s,]+)*) ', line)
        if m and m.group(1).startswith(request_prefix):
            out[(m.group(3), int(m.group(2)))] += 1
    return out


# ---------------------------------------------------------------- ready


def alive(pid):
    """True while the process exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def cmd_ready(args):
    deadline = time.monotonic() + args.deadline
    pending = list(args.urls)
    last = {}
    while pending:
        dead = [pid for pid in args.pids if not alive(pid)]
        check(not dead, f"process {dead} exited while waiting for {pending} to be ready")
        for url in list(pending):
            u = urllib.parse.urlsplit(url)
            try:
                r = request(f"{u.scheme}://{u.netloc}", "GET", u.path or "/")
                if r.status == 200:
                    pending.remove(url)
                else:
                    last[url] = repr(r)
            except OSError as e:
                last[url] = repr(e)
        if not pending:
            break
        if time.monotonic() > deadline:
            raise Fail(f"not ready within {args.deadline}s: " + "; ".join(f"{u} ({last.get(u)})" for u in pending))
        time.sleep(0.1)


# ---------------------------------------------------------------- a


def cmd_a(args):
    gw, app = args.gw, args.app
    uid, email, password = new_user(gw, "a")
    tokens = login(gw, email, password)
    access = tokens["access_token"]

    before = hits(app)
    r = request(gw, "GET", "/app/orders?page=1", token=access)
    check(r.status == 200, f"GET /app/orders with a valid token: expected 200, got {r}")
    seen = r.json()
    check(seen.get("app") == "upstream", f"the answer is not the upstream's: {r}")
    check(seen["headers"].get("x-auth-user-id") == uid,
          f"upstream got x-auth-user-id {seen['headers'].get('x-auth-user-id')!r}, expected {uid!r}")
    check(seen["headers"].get("x-auth-user-role") == "user",
          f"upstream got x-auth-user-role {seen['headers'].get('x-auth-user-role')!r}, expected 'user'")
    check(seen["path"] == "/app/orders?page=1", f"upstream got path {seen['path']!r}")
    # A client cannot choose the identity headers itself.
    r = request(gw, "GET", "/app/orders", token=access,
                headers={"x-auth-user-id": "00000000-0000-0000-0000-000000000000", "x-auth-user-role": "admin"})
    check(r.status == 200, f"GET with spoofed x-auth-* and a valid token: {r}")
    check(r.json()["headers"].get("x-auth-user-id") == uid and r.json()["headers"].get("x-auth-user-role") == "user",
          f"spoofed x-auth-* headers reached the upstream: {r}")
    check(hits(app) == before + 2, f"upstream hits: expected {before + 2}, got {hits(app)}")
    log(f"valid token: 200 from the upstream with x-auth-user-id={uid}, x-auth-user-role=user (spoofed headers replaced)")

    before = hits(app)
    expect_401(request(gw, "GET", "/app/orders"), "GET /app/orders without a token")
    expect_401(request(gw, "GET", "/app/orders", headers={"x-auth-user-id": uid, "x-auth-user-role": "admin"}),
               "GET /app/orders without a token but with forged x-auth-* headers")
    expect_401(request(gw, "GET", "/app/orders", token="not.a.jwt"), "GET /app/orders with a garbage token")
    expect_401(request(gw, "GET", "/app/orders", token=tokens["refresh_token"]),
               "GET /app/orders with a refresh token as the bearer")
    check(hits(app) == before, f"the upstream was reached without a valid token: hits {before} -> {hits(app)}")
    r = request(gw, "GET", "/auth/verify")
    expect_401(r, "GET /auth/verify through the gateway without a token", {"TokenMissing"})
    log("no token / garbage / refresh token as bearer / forged headers: 401, upstream hit count unchanged")

    r = request(gw, "POST", "/auth/logout", token=access)
    check(r.status == 204, f"logout through the gateway: expected 204, got {r}")
    before = hits(app)
    for i in range(4):  # round robin: both replicas get asked
        expect_401(request(gw, "GET", "/app/orders", token=access), f"GET /app/orders with the revoked token (try {i + 1})")
        expect_401(request(gw, "GET", "/auth/verify", token=access), f"GET /auth/verify with the revoked token (try {i + 1})",
                   {"TokenRevoked"})
    check(hits(app) == before, f"the upstream was reached with a revoked token: hits {before} -> {hits(app)}")
    log("revoked token (after logout): 401 x4 at /app/, 401 TokenRevoked x4 at /auth/verify, upstream hit count unchanged")


# ---------------------------------------------------------------- b


def cmd_b(args):
    gw, app, replicas = args.gw, args.app, args.replicas
    check(len(replicas) == 2, "two replicas expected")
    for out_idx in (0, 1):
        other = 1 - out_idx
        _, email, password = new_user(gw, "b")
        access = login(gw, email, password)["access_token"]
        for i, rep in enumerate(replicas):
            r = request(rep, "GET", "/auth/verify", token=access)
            check(r.status == 200, f"verify on replica {i + 1} ({rep}) before logout: {r}")
        r = request(replicas[out_idx], "POST", "/auth/logout", token=access)
        check(r.status == 204, f"logout on replica {out_idx + 1}: expected 204, got {r}")
        # The very next request, on the OTHER replica first, then on the same.
        for i in (other, out_idx):
            expect_401(request(replicas[i], "GET", "/auth/verify", token=access),
                       f"verify on replica {i + 1} right after logout on replica {out_idx + 1}", {"TokenRevoked"})
        before = hits(app)
        for i in range(4):
            expect_401(request(gw, "GET", "/app/x", token=access),
                       f"GET /app/x through the gateway after logout on replica {out_idx + 1} (try {i + 1})")
        check(hits(app) == before, f"upstream reached after logout: hits {before} -> {hits(app)}")
        log(f"logout on replica {out_idx + 1} -> replica {other + 1} then {out_idx + 1} refuse it at once "
            f"(401 TokenRevoked), gateway 401 x4, upstream untouched")


# ---------------------------------------------------------------- c


def concurrent_refresh(targets, refresh, n):
    """n refreshes of one refresh token at once, request i to targets[i % len]:
    every connection is opened first, then all are sent behind a barrier."""
    barrier = threading.Barrier(n)

    def one(i):
        base = targets[i % len(targets)]
        u = urllib.parse.urlsplit(base)
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=TIMEOUT)
        try:
            conn.connect()
            barrier.wait(timeout=TIMEOUT)
            return base, request(base, "POST", "/auth/refresh", token=refresh, conn=conn)
        except Exception as e:  # reported, and fails the scenario
            return base, e
        finally:
            conn.close()

    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(one, range(n)))


def cmd_c(args):
    gw, replicas, n = args.gw, args.replicas, args.n
    rounds = [("alternately to the two replica ports", replicas), ("through the gateway", [gw])]
    for label, targets in rounds:
        _, email, password = new_user(gw, "c")
        refresh = login(gw, email, password)["refresh_token"]
        tail = LogTail(args.access_log)
        results = concurrent_refresh(targets, refresh, n)
        errors = [(b, r) for b, r in results if isinstance(r, Exception)]
        check(not errors, f"{label}: requests failed: {errors[:3]}")
        statuses = Counter(r.status for _, r in results)
        ok = [r for _, r in results if r.status == 200]
        if targets == [gw] and args.access_log:
            # Which replica nginx chose for each, from its access log: both.
            served = upstreams_of(tail.new_lines(), "POST /auth/refresh ")
            replicas_seen = {up for up, _ in served}
            check(sum(served.values()) == n and len(replicas_seen) == 2,
                  f"{label}: nginx's access log shows the refreshes went to {dict(served)}, expected both replicas")
            per_target = {f"nginx->{up}": {st: c for (u, st), c in served.items() if u == up}
                          for up in sorted(replicas_seen)}
        else:
            per_target = {t: dict(Counter(r.status for b, r in results if b == t)) for t in targets}
        detail = f"statuses {dict(statuses)}, per target {dict(per_target)}"
        check(not any(s >= 500 for s in statuses), f"{label}: 5xx among {n} concurrent refreshes: {detail}")
        if args.mode == "strict":
            check(len(ok) == 1, f"strict, {label}: expected exactly one 200, {detail}")
            codes = Counter(r.code() for _, r in results if r.status != 200)
            check(all(r.status == 401 for _, r in results if r.status != 200), f"strict, {label}: losers not 401: {detail}")
            check(set(codes) <= {"TokenReused", "TokenRevoked"},
                  f"strict, {label}: loser codes {dict(codes)}, expected TokenReused/TokenRevoked")
            winner = ok[0].json()["refresh_token"]
            after = request(replicas[0], "POST", "/auth/refresh", token=winner)
            if codes.get("TokenReused"):
                # API.md: a loser's reuse revokes the session, the winner's token too.
                expect_401(after, f"strict, {label}: the winner's new refresh token after the losers' reuse",
                           {"TokenRevoked", "TokenReused"})
            log(f"strict, {n} refreshes {label}: 1 x 200, losers {dict(codes)}; "
                f"per target {dict(per_target)}; the winner's new refresh token then: {after.status} {after.code()}")
        else:
            check(len(ok) == n, f"grace, {label}: expected {n} x 200, {detail}; "
                  f"first refusal: {next((r for _, r in results if r.status != 200), None)}")
            tokens = {r.json()["refresh_token"] for r in ok}
            check(len(tokens) == 1, f"grace, {label}: {len(tokens)} different refresh tokens among {n} answers")
            # The one new refresh token works.
            nxt = request(replicas[1], "POST", "/auth/refresh", token=tokens.pop())
            check(nxt.status == 200, f"grace, {label}: refreshing with the shared new refresh token: {nxt}")
            log(f"grace, {n} refreshes {label}: {n} x 200, one identical refresh token; "
                f"per target {dict(per_target)}; that token refreshes again: 200")


# ---------------------------------------------------------------- d


def cmd_d(args):
    for base in [args.gw] + args.replicas:
        j = login(base, args.admin_email, args.admin_password)
        r = request(base, "GET", "/auth/verify", token=j["access_token"])
        check(r.status == 200 and r.headers.get("x-auth-user-role") == "admin",
              f"the bootstrapped admin's token at {base}/auth/verify: expected 200 role admin, got {r} {r.headers}")
    log("the admin logs in through the gateway and on each replica; /auth/verify says role=admin")


# ---------------------------------------------------------------- e


def cmd_e(args):
    gw = args.gw
    _, email, password = new_user(gw, "e")
    access = login(gw, email, password)["access_token"]
    u = urllib.parse.urlsplit(gw)
    stop = threading.Event()
    lock = threading.Lock()
    statuses = {"before": Counter(), "after": Counter()}
    app_ok = Counter()  # 200s of the upstream app, per thread
    problems = []
    phase = ["before"]

    def worker(k):
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=TIMEOUT)
        paths = ["/auth/verify", f"/app/load/{k}"]
        i = 0
        while not stop.is_set() and i < args.max_per_thread:
            path = paths[i % 2]
            i += 1
            ph = phase[0]
            try:
                r = request(gw, "GET", path, token=access, conn=conn)
                with lock:
                    statuses[ph][r.status] += 1
                    if r.status == 200 and path.startswith("/app/"):
                        app_ok[k] += 1
                    if r.status != 200 and len(problems) < 20:
                        problems.append(f"{ph}: GET {path} -> {r}")
                if r.headers.get("connection", "").lower() == "close":
                    conn.close()
            except Exception as e:
                with lock:
                    statuses[ph]["exception"] += 1
                    if len(problems) < 20:
                        problems.append(f"{ph}: GET {path} -> {type(e).__name__}: {e}")
                conn.close()
                conn = http.client.HTTPConnection(u.hostname, u.port, timeout=TIMEOUT)
        conn.close()

    access_tail, error_tail = LogTail(args.access_log), LogTail(args.error_log)
    hits_before = hits(args.app)
    threads = [threading.Thread(target=worker, args=(k,)) for k in range(args.threads)]
    for t in threads:
        t.start()
    time.sleep(args.before)
    with lock:
        phase[0] = "after"
    os.kill(args.pid, signal.SIGTERM)
    t_kill = time.monotonic()
    log(f"SIGTERM sent to replica pid {args.pid} after {args.before}s of load")
    time.sleep(args.after)
    stop.set()
    for t in threads:
        t.join(timeout=TIMEOUT + 5)
    check(not any(t.is_alive() for t in threads), "load threads did not stop")
    b, a = statuses["before"], statuses["after"]
    log(f"{args.threads} threads, GET /auth/verify and /app/load through nginx: "
        f"before SIGTERM {dict(b)}, in the {time.monotonic() - t_kill:.1f}s after {dict(a)}")
    check(sum(b.values()) > 0 and sum(a.values()) > 0, "no requests in one of the phases")
    if args.access_log:
        lines = access_tail.new_lines()
        retried = sum(1 for line in lines if re.search(r"upstream=\S+, ", line))
        served = Counter()
        for (up, _), c in upstreams_of(lines, "GET /auth/verify ").items():
            served[up] += c
        log(f"nginx: GET /auth/verify served by {dict(served)} ({retried} of them passed on to the other replica)")
    if args.error_log:
        errs = [line for line in error_tail.new_lines() if "upstream" in line and "[error]" in line]
        kinds = Counter(re.sub(r".*\[error\] [0-9#]+: \*[0-9]+ ", "", e).split(" while ")[0] for e in errs)
        log(f"nginx error log, upstream errors it absorbed (auth subrequests included): {dict(kinds) or 'none'}")
    bad = {ph: {s: c for s, c in cnt.items() if s != 200} for ph, cnt in statuses.items()}
    check(not bad["before"] and not bad["after"],
          f"non-200 answers or connection errors under the drain: {bad}; first ones: {problems}")
    delivered = hits(args.app) - hits_before
    check(delivered == sum(app_ok.values()),
          f"the upstream app counted {delivered} hits for {sum(app_ok.values())} answered /app/ requests")
    log(f"all 200: no 5xx, no 401, no connection reset; the upstream app got each of the "
        f"{delivered} /app/ requests exactly once")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("ready", help="poll URLs until each answers 200")
    s.add_argument("urls", nargs="+")
    s.add_argument("--deadline", type=float, default=30)
    s.add_argument("--pids", type=int, nargs="*", default=[], help="fail at once when one of these exits")
    s.set_defaults(fn=cmd_ready)

    def common(s, app=True):
        s.add_argument("--gw", required=True, help="the gateway's base URL")
        s.add_argument("--replicas", nargs="+", default=[], help="each replica's direct base URL")
        if app:
            s.add_argument("--app", required=True, help="the upstream app's direct base URL (for /__hits)")

    s = sub.add_parser("a", help="identity headers reach the upstream; 401 without/with a revoked token")
    common(s)
    s.set_defaults(fn=cmd_a)
    s = sub.add_parser("b", help="a logout on one replica is refused by both")
    common(s)
    s.set_defaults(fn=cmd_b)
    s = sub.add_parser("c", help="N concurrent refreshes of one refresh token")
    common(s, app=False)
    s.add_argument("--access-log", help="nginx's access log: show which replica served each refresh")
    s.add_argument("--mode", choices=["strict", "grace"], required=True)
    s.add_argument("-n", type=int, default=20)
    s.set_defaults(fn=cmd_c)
    s = sub.add_parser("d", help="the bootstrapped admin logs in everywhere")
    common(s, app=False)
    s.add_argument("--admin-email", required=True)
    s.add_argument("--admin-password", default=os.environ.get("GW_ADMIN_PASSWORD"))
    s.set_defaults(fn=cmd_d)
    s = sub.add_parser("e", help="SIGTERM one replica under steady load through nginx")
    common(s)
    s.add_argument("--pid", type=int, required=True)
    s.add_argument("--threads", type=int, default=4)
    s.add_argument("--before", type=float, default=3)
    s.add_argument("--after", type=float, default=3)
    s.add_argument("--max-per-thread", type=int, default=6000)
    s.add_argument("--access-log", help="nginx's access log (report which replica served what)")
    s.add_argument("--error-log", help="nginx's error log (report the upstream errors it absorbed)")
    s.set_defaults(fn=cmd_e)

    args = p.parse_args()
    try:
        args.fn(args)
    except Fail as e:
        print(f"FAIL ({args.cmd}): {e}", file=sys.stderr, flush=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
