#!/usr/bin/env python3
"""A tiny stand-in for one Postfacto version, for trying Switchyard locally.

    python3 examples/demo-upstream.py --port 3001 --name 4.1.0

Answers every request with a short text (or JSON, if the client asks for it)
saying which version it is and what was asked. Standard library only.
"""

import argparse
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def make_handler(name):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "demo-upstream"

        def _answer(self):
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            if "application/json" in (self.headers.get("Accept") or ""):
                body = json.dumps({"version": name, "method": self.command, "path": self.path,
                                   "x_forwarded_for": self.headers.get("X-Forwarded-For"),
                                   "x_request_id": self.headers.get("X-Request-Id")}) + "\n"
                ctype = "application/json"
            else:
                body = "Hello from Postfacto %s (demo upstream) \u2014 you asked for %s %s\n" % (
                    name, self.command, self.path)
                ctype = "text/plain; charset=utf-8"
            data = body.encode("utf-8")
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("X-Demo-Upstream", name)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _answer

        def log_message(self, fmt, *args):
            sys.stderr.write("[demo %s] %s\n" % (name, fmt % args))

    return Handler


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--name", required=True, help="the version this upstream claims to be")
    p.add_argument("--host", default="127.0.0.1")
    a = p.parse_args()
    try:
        srv = ThreadingHTTPServer((a.host, a.port), make_handler(a.name))
    except OSError as e:
        sys.stderr.write("demo-upstream %s: cannot listen on %s:%d: %s\n"
                         % (a.name, a.host, a.port, e.strerror or e))
        return 1
    srv.daemon_threads = True
    sys.stderr.write("demo-upstream %s listening on http://%s:%d/\n" % (a.name, a.host, a.port))
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
