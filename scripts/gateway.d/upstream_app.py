"""The protected application behind the gateway (scripts/gateway-e2e).

    python3 upstream_app.py PORT

Answers every GET/POST under any path with JSON naming the method, the path
and every x-auth-* header it received (what nginx's auth_request put there),
and counts those hits. GET /__hits (asked on this port directly, never
through nginx) returns {"hits": N} and is not counted itself.
Standard library only.
"""

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_lock = threading.Lock()
_hits = 0


class Handler(BaseHTTPRequestHandler):
    # HTTP/1.1 so that nginx's upstream keepalive really keeps connections.
    protocol_version = "HTTP/1.1"
    # Headers and body go out as two writes: without TCP_NODELAY, Nagle's
    # algorithm and the peer's delayed ACK hold the body back ~40 ms.
    disable_nagle_algorithm = True

    def _answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _serve(self):
        global _hits
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        if self.path == "/__hits":
            with _lock:
                n = _hits
            self._answer(200, {"hits": n})
            return
        with _lock:
            _hits += 1
        auth = {k.lower(): v for k, v in self.headers.items() if k.lower().startswith("x-auth-")}
        self._answer(200, {"app": "upstream", "method": self.command, "path": self.path, "headers": auth})

    do_GET = _serve
    do_POST = _serve

    def log_message(self, fmt, *args):
        sys.stderr.write("upstream_app: %s\n" % (fmt % args))


def main():
    port = int(sys.argv[1])
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    print(f"upstream_app listening on 127.0.0.1:{port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
