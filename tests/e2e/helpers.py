"""Peers and clients for the black-box suite (standard library + websockets).

- Upstream: a threaded HTTP/1.1 server on raw sockets that records every
  request it sees and behaves according to the request path.
- WsUpstream: a websockets echo server that records handshake headers.
- Gateway: runs the real binary with a config written to a temporary dir.
- RawClient: a socket client for pipelining and malformed input.
"""

import asyncio
import base64
import ctypes
import hashlib
import http.client
import json
import os
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.parse

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from ports import free_port  # noqa: E402  (shared with tests/acme)

STARTUP_TIMEOUT = 10.0

_libc = ctypes.PyDLL(None, use_errno=True)  # calls through it keep the GIL


# ---------------------------------------------------------------- utilities

def dead_port():
    """A port on 127.0.0.1 where nothing listens (connections are refused)."""
    return free_port()


def wait_for(pred, timeout=5.0, interval=0.02, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(interval)


def header_values(headers, name):
    name = name.lower()
    return [v for (k, v) in headers if k.lower() == name]


def header(headers, name):
    vals = header_values(headers, name)
    return vals[0] if vals else None


def pattern_bytes(n, seed=0):
    """Deterministic, non-repeating-at-small-period bytes."""
    block = hashlib.sha256(b"switchyard-%d" % seed).digest() * 2048  # 64 KiB
    out = bytearray()
    while len(out) < n:
        out += block[: n - len(out)]
    return bytes(out)


# ---------------------------------------------------------------- YAML

_PLAIN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:/-]*\Z")


def _scalar(v):
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, (int, float)):
        return str(v)
    s = str(v)
    if _PLAIN.match(s) and not re.fullmatch(r"[0-9.]+", s) and s.lower() not in (
            "yes", "no", "on", "off", "true", "false", "null", "y", "n"):
        return s
    return json.dumps(s)


def _is_scalar(v):
    return not isinstance(v, (dict, list))


def _emit(obj, indent, lines):
    pad = " " * indent
    for k, v in obj.items():
        key = _scalar(k)
        if _is_scalar(v):
            lines.append("%s%s: %s" % (pad, key, _scalar(v)))
        elif isinstance(v, list) and all(_is_scalar(x) for x in v):
            lines.append("%s%s: [%s]" % (pad, key, ", ".join(_scalar(x) for x in v)))
        elif isinstance(v, dict):
            if not v:
                lines.append("%s%s: {}" % (pad, key))
            else:
                lines.append("%s%s:" % (pad, key))
                _emit(v, indent + 2, lines)
        else:
            lines.append("%s%s:" % (pad, key))
            for item in v:
                sub = []
                _emit(item, indent + 4, sub)
                sub[0] = pad + "  - " + sub[0].lstrip()
                lines.extend(sub)


def to_yaml(cfg):
    lines = []
    _emit(cfg, 0, lines)
    return "\n".join(lines) + "\n"


def version_block(routes, default, header="X-Postfacto-Version", query="postfacto_version",
                  cookie="postfacto_version"):
    v = {"header": header}
    if query:
        v["query"] = query
    if cookie:
        v["cookie"] = cookie
    v["routes"] = dict(routes)
    v["default"] = default
    return v


def make_config(http_port, admin_port, upstreams, sites, workers=1, timeouts=None, limits=None,
                log=None, extra=None):
    """upstreams: {name: [servers] or {servers: [...], ...}}."""
    cfg = {"workers": workers,
           "listen": {"http": "127.0.0.1:%d" % http_port, "admin": "127.0.0.1:%d" % admin_port}}
    if limits:
        cfg["limits"] = limits
    if timeouts:
        cfg["timeouts"] = timeouts
    cfg["log"] = log or {"access": True, "level": "info"}
    ups = {}
    for name, spec in upstreams.items():
        ups[name] = spec if isinstance(spec, dict) else {"servers": list(spec)}
    cfg["upstreams"] = ups
    cfg["sites"] = sites
    if extra:
        cfg.update(extra)
    return cfg


# ---------------------------------------------------------------- HTTP parsing

class Resp:
    def __init__(self, status, reason, headers, body, version="HTTP/1.1"):
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body
        self.version = version

    def header(self, name):
        return header(self.headers, name)

    def header_values(self, name):
        return header_values(self.headers, name)

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def __repr__(self):
        return "<Resp %s %r headers=%r body=%r>" % (self.status, self.reason, self.headers,
                                                   self.body[:300])


class RawClient:
    """A socket with a read buffer. Every read is bounded by `timeout`."""

    def __init__(self, port, host="127.0.0.1", timeout=10.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.settimeout(timeout)
        self.buf = b""
        self.eof = False

    def send(self, data):
        if isinstance(data, str):
            data = data.encode("latin-1")
        self.sock.sendall(data)

    def _fill(self):
        if self.eof:
            return False
        try:
            chunk = self.sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            self.eof = True
            return False
        self.buf += chunk
        return True

    def read_exact(self, n):
        while len(self.buf) < n:
            if not self._fill():
                raise EOFError("connection closed after %d of %d bytes" % (len(self.buf), n))
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_line(self):
        while b"\r\n" not in self.buf:
            if not self._fill():
                raise EOFError("connection closed inside a line: %r" % self.buf[:200])
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def read_head(self):
        while b"\r\n\r\n" not in self.buf:
            if not self._fill():
                raise EOFError("connection closed inside a response head: %r" % self.buf[:300])
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        m = re.match(r"(HTTP/\d\.\d) (\d{3})(?: (.*))?$", lines[0])
        if not m:
            raise AssertionError("bad status line %r" % lines[0])
        headers = []
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers.append((k, v.strip()))
        return m.group(1), int(m.group(2)), m.group(3) or "", headers

    def read_response(self, method="GET", allow_short=False):
        """Reads one response. 1xx responses are returned as they come.
        With allow_short, a body cut short by EOF is returned (resp.short=True)."""
        version, status, reason, headers = self.read_head()
        resp = Resp(status, reason, headers, b"", version)
        resp.short = False
        if 100 <= status < 200 or status in (204, 304) or method == "HEAD":
            return resp
        te = ",".join(header_values(headers, "transfer-encoding")).lower()
        cl = header(headers, "content-length")
        body = bytearray()
        try:
            if "chunked" in te:
                while True:
                    size = int(self.read_line().split(b";")[0].strip(), 16)
                    if size == 0:
                        while self.read_line() != b"":
                            pass
                        break
                    body += self.read_exact(size)
                    if self.read_line() != b"":
                        raise AssertionError("bad chunk terminator")
            elif cl is not None:
                n = int(cl)
                while len(body) < n:
                    if not self.buf and not self._fill():
                        raise EOFError("short body: %d of %d" % (len(body), n))
                    take = self.buf[: n - len(body)]
                    body += take
                    self.buf = self.buf[len(take):]
            else:
                while self._fill():
                    pass
                body += self.buf
                self.buf = b""
        except EOFError:
            if not allow_short:
                raise
            resp.short = True
            body += self.buf
            self.buf = b""
        resp.body = bytes(body)
        return resp

    def read_final_response(self, method="GET"):
        while True:
            r = self.read_response(method)
            if not (100 <= r.status < 200):
                return r

    def wait_closed(self, timeout=5.0):
        """True when the peer closes within timeout (extra bytes are discarded)."""
        deadline = time.monotonic() + timeout
        self.sock.settimeout(0.2)
        try:
            while time.monotonic() < deadline:
                try:
                    if not self._fill():
                        return True
                except socket.timeout:
                    continue
                except OSError:
                    return True
            return False
        finally:
            self.sock.settimeout(10.0)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def build_request(method, target, host, headers=(), body=None):
    lines = ["%s %s HTTP/1.1" % (method, target)]
    if host is not None:
        lines.append("Host: %s" % host)
    for k, v in headers:
        lines.append("%s: %s" % (k, v))
    if body is not None and not any(k.lower() in ("content-length", "transfer-encoding")
                                    for k, _ in headers):
        lines.append("Content-Length: %d" % len(body))
    data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    if body is not None:
        data += body
    return data


def chunked(data, size=1000):
    out = bytearray()
    for i in range(0, len(data), size):
        piece = data[i:i + size]
        out += b"%x\r\n" % len(piece) + piece + b"\r\n"
    out += b"0\r\n\r\n"
    return bytes(out)


def http_request(port, method, path, host, headers=(), body=None, timeout=10.0):
    """One request on a fresh connection via http.client; returns Resp."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        return conn_request(conn, method, path, host, headers, body)
    finally:
        conn.close()


def conn_request(conn, method, path, host, headers=(), body=None):
    conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
    if host is not None:
        conn.putheader("Host", host)
    for k, v in headers:
        conn.putheader(k, v)
    if body is not None:
        conn.putheader("Content-Length", str(len(body)))
    conn.endheaders(body)
    r = conn.getresponse()
    data = r.read()
    return Resp(r.status, r.reason, list(r.getheaders()), data)


class SteadyLoad:
    """Client threads sending GETs one after another, each on a fresh connection, while the
    test changes the upstream side. Records (start, end, status, X-Upstream) per request;
    status 0 stands for a connection error or a timeout. Use as a context manager."""

    def __init__(self, gw, host="x.test", threads=4, path="/load", timeout=10.0):
        self.gw = gw
        self.host = host
        self.threads = threads
        self.path = path
        self.timeout = timeout
        self.results = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.workers = []

    def _run(self, k):
        i = 0
        while not self.stopping.is_set():
            t0 = time.monotonic()
            try:
                r = self.gw.get("%s?c=%d&i=%d" % (self.path, k, i), host=self.host,
                                timeout=self.timeout)
                rec = (t0, time.monotonic(), r.status, r.header("X-Upstream"))
            except (OSError, http.client.HTTPException):
                rec = (t0, time.monotonic(), 0, None)
            with self.lock:
                self.results.append(rec)
            i += 1

    def __enter__(self):
        for k in range(self.threads):
            t = threading.Thread(target=self._run, args=(k,), daemon=True)
            t.start()
            self.workers.append(t)
        return self

    def __exit__(self, *exc):
        self.stopping.set()
        for t in self.workers:
            t.join(self.timeout + 5)
        return False

    def snapshot(self):
        with self.lock:
            return list(self.results)

    def ok_since(self, t):
        """Requests started at or after t that were answered 200."""
        return sum(1 for r in self.snapshot() if r[0] >= t and r[2] == 200)

    def failures(self):
        return [r for r in self.snapshot() if r[2] != 200]


# ---------------------------------------------------------------- metrics

_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)')
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?')


def parse_metrics(text):
    samples = []
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if not m:
            raise AssertionError("not a Prometheus sample line: %r" % line)
        labels = {}
        if m.group(3):
            pos = 0
            s = m.group(3)
            while pos < len(s):
                lm = _LABEL.match(s, pos)
                if not lm:
                    raise AssertionError("bad labels in %r" % line)
                labels[lm.group(1)] = lm.group(2)
                pos = lm.end()
        v = m.group(4)
        value = float("inf") if v == "+Inf" else float(v)
        samples.append((m.group(1), labels, value))
    return samples


def metric_sum(samples, name, **labels):
    """Sum of samples with this name whose labels include `labels`; None if none."""
    found = [v for (n, l, v) in samples
             if n == name and all(l.get(k) == str(val) for k, val in labels.items())]
    return sum(found) if found else None


# ---------------------------------------------------------------- Upstream

class ThreadedServer:
    """A listening socket on 127.0.0.1 with one thread per accepted connection.
    Subclasses define _serve(sock, conn_id); the socket is closed and forgotten
    when it returns. start() begins accepting, stop() closes the listener and
    every accepted socket still open."""

    def __init__(self, host="127.0.0.1", port=0, backlog=128):
        self.host = host
        self.backlog = backlog
        self.lsock = self._listen(port)
        self.port = self.lsock.getsockname()[1]
        self.addr = "%s:%d" % (host, self.port)
        self.lock = threading.Lock()
        self.conn_count = 0         # connections accepted so far; also the last id given
        self.stopping = threading.Event()
        self.socks = set()

    def _listen(self, port):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((self.host, port))
        s.listen(self.backlog)
        return s

    def start(self):
        threading.Thread(target=self._accept_loop, args=(self.lsock,), daemon=True).start()
        return self

    def close_listener(self):
        """Refuses new connections (like a stopped process's port); the connections already
        accepted are served to their end. Connections waiting in the backlog are accepted
        first (closing would reset them), which leaves a window of microseconds. The listener
        is shut down, not only closed: the accept thread's poll holds the socket open (and
        listening) until it returns."""
        lsock, self.lsock = self.lsock, None
        if not lsock:
            return
        lsock.setblocking(False)  # also ends the accept thread
        # accept4 and close through PyDLL keep the GIL: no other thread runs between the last
        # accept and the close, so the window is as short as in C.
        fds = []
        lfd = lsock.fileno()
        interval = sys.getswitchinterval()
        sys.setswitchinterval(1.0)
        try:
            while True:
                fd = _libc.accept4(lfd, None, None, socket.SOCK_CLOEXEC)
                if fd < 0:
                    break
                fds.append(fd)
            fd = lsock.detach()
            _libc.shutdown(fd, socket.SHUT_RDWR)
            _libc.close(fd)
        finally:
            sys.setswitchinterval(interval)
        for fd in fds:
            self._spawn(socket.socket(fileno=fd))

    def listen_again(self):
        """Accepts connections on the same address again after close_listener()."""
        self.lsock = self._listen(self.port)
        self.start()

    def stop(self):
        self.stopping.set()
        try:
            if self.lsock:
                self.lsock.close()
        except OSError:
            pass
        with self.lock:
            socks = list(self.socks)
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                s.close()
            except OSError:
                pass

    def _accept_loop(self, lsock):
        lsock.settimeout(0.2)
        while not self.stopping.is_set():
            try:
                s, _ = lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self._spawn(s)

    def _spawn(self, s):
        s.setblocking(True)
        with self.lock:
            self.conn_count += 1
            cid = self.conn_count
            self.socks.add(s)
        threading.Thread(target=self._serve_until_stopped, args=(s, cid), daemon=True).start()

    def _serve_until_stopped(self, s, cid):
        try:
            self._serve(s, cid)
        except OSError:
            # stop() closes accepted sockets, possibly before _serve first used one
            if not self.stopping.is_set():
                raise
        finally:
            with self.lock:
                self.socks.discard(s)
            try:
                s.close()
            except OSError:
                pass

    def _serve(self, s, cid):
        raise NotImplementedError


class Upstream(ThreadedServer):
    """Raw-socket HTTP/1.1 upstream. Behaviour by path:

    /slow?ms=N       wait N ms, then answer normally
    /hang            read the request and never answer
    /close-mid-body  headers with Content-Length: 1000, 10 bytes, then close
    /big?bytes=N     N bytes of pattern_bytes(N) with Content-Length
    /big-chunked?bytes=N   the same, chunked
    /chunked         the request body echoed back with chunked framing
    /trailers        200 chunked, the JSON description as body, then TRAILERS as trailer fields
    /echo            the request body echoed back with Content-Length
    /sink            like the default, body hashed but not kept
    /status?code=N   answer with status N
    /hop-response    response with hop-by-hop headers that must not reach the client
    /set-cookie      response carrying its own Set-Cookie
    /garbage         an invalid response, then close
    /reset[?only=NAME]  reset the connection (RST) without answering (only upstream NAME)
    /close-after     a normal keep-alive response, then close the connection
    Upgrade requests (Connection: upgrade + Upgrade): 101 (with Sec-WebSocket-Accept when a
                     Sec-WebSocket-Key came), then echo bytes; /upgrade-then-close: "bye", then
                     close; /upgrade-refused: 403; /upgrade-bad-accept: an accept for another key.
    anything else    200 JSON describing what was received.
    Every response carries X-Upstream: NAME.
    """

    MAX_KEEP_BODY = 1 << 20
    # /trailers sends these: some only a trailer may carry, some it must not (RFC 9110 §6.5.1)
    TRAILERS = [("X-Checksum", "sha256=abc"), ("grpc-status", "0"),
                ("X-Spaced", "  two words\t"), ("Content-Length", "99"), ("Set-Cookie", "a=1"),
                ("Connection", "close"), ("Host", "evil.test"), ("x-request-id", "forged")]

    def __init__(self, name, host="127.0.0.1", port=0):
        super().__init__(host, port)
        self.name = name
        self.requests = []          # completed request records
        self.started = []           # request records as soon as the head is read
        self.body_bytes = 0         # body bytes received so far, all requests
        self.tunnel_events = []

    def conn_ids(self):
        with self.lock:
            return [r["conn"] for r in self.requests]

    def paths(self):
        with self.lock:
            return [r["path"] for r in self.requests]

    # ---- internals

    def _recv(self, s, state):
        # poll so that stop() is noticed; sends stay blocking (slow readers are fine)
        while True:
            if self.stopping.is_set():
                return b""
            try:
                r, _, _ = select.select([s], [], [], 0.2)
            except (OSError, ValueError):
                return b""
            if not r:
                continue
            try:
                return s.recv(65536)
            except OSError:
                return b""

    def _serve(self, s, cid):
        s.settimeout(60)
        state = {"buf": b""}
        try:
            while not self.stopping.is_set():
                if not self._one_request(s, cid, state):
                    break
        except (OSError, EOFError):
            pass

    def _read_line(self, s, state):
        while b"\r\n" not in state["buf"]:
            d = self._recv(s, state)
            if not d:
                raise EOFError
            state["buf"] += d
        line, state["buf"] = state["buf"].split(b"\r\n", 1)
        return line

    def _read_body_bytes(self, s, state, n, sink):
        while n > 0:
            if not state["buf"]:
                d = self._recv(s, state)
                if not d:
                    raise EOFError
                state["buf"] = d
            take = state["buf"][:n]
            state["buf"] = state["buf"][len(take):]
            n -= len(take)
            with self.lock:
                self.body_bytes += len(take)
            sink(take)

    def _one_request(self, s, cid, state):
        while b"\r\n\r\n" not in state["buf"]:
            d = self._recv(s, state)
            if not d:
                return False
            state["buf"] += d
        head, state["buf"] = state["buf"].split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        method, target, version = lines[0].split(" ", 2)
        headers = []
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers.append((k, v.strip()))
        u = urllib.parse.urlsplit(target)
        query = dict(urllib.parse.parse_qsl(u.query, keep_blank_values=True))
        rec = {"conn": cid, "method": method, "target": target, "path": u.path,
               "version": version, "headers": headers, "head": head.decode("latin-1"),
               "time": time.monotonic()}
        with self.lock:
            self.started.append(rec)

        conn_tokens = [t.strip().lower() for v in header_values(headers, "connection")
                       for t in v.split(",")]
        if "upgrade" in conn_tokens and header(headers, "upgrade"):
            return self._upgrade(s, state, rec, headers)

        if (header(headers, "expect") or "").lower() == "100-continue":
            s.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")

        h = hashlib.sha256()
        kept = bytearray()
        total = [0]

        def sink(b):
            h.update(b)
            total[0] += len(b)
            if len(kept) < self.MAX_KEEP_BODY:
                kept.extend(b[: self.MAX_KEEP_BODY - len(kept)])

        te = ",".join(header_values(headers, "transfer-encoding")).lower()
        cl = header(headers, "content-length")
        rec["chunked"] = "chunked" in te
        rec["trailers"] = []
        if "chunked" in te:
            while True:
                size = int(self._read_line(s, state).split(b";")[0].strip(), 16)
                if size == 0:
                    while True:
                        line = self._read_line(s, state)
                        if line == b"":
                            break
                        k, _, v = line.decode("latin-1").partition(":")
                        rec["trailers"].append((k, v.strip()))
                    break
                self._read_body_bytes(s, state, size, sink)
                self._read_line(s, state)
        elif cl is not None:
            self._read_body_bytes(s, state, int(cl), sink)
        rec["body"] = bytes(kept)
        rec["body_len"] = total[0]
        rec["body_sha256"] = h.hexdigest()
        rec["done"] = time.monotonic()
        with self.lock:
            self.requests.append(rec)

        keep = version == "HTTP/1.1" and "close" not in conn_tokens
        if version == "HTTP/1.0" and "keep-alive" in conn_tokens:
            keep = True
        return self._respond(s, rec, query, keep)

    def _send(self, s, status, headers, body, keep, reason=None):
        reasons = {200: "OK", 101: "Switching Protocols", 204: "No Content", 404: "Not Found",
                   500: "Internal Server Error", 503: "Service Unavailable"}
        lines = ["HTTP/1.1 %d %s" % (status, reason or reasons.get(status, "Status"))]
        lines.append("X-Upstream: %s" % self.name)
        for k, v in headers:
            lines.append("%s: %s" % (k, v))
        if status not in (204, 304) and not any(k.lower() in ("content-length", "transfer-encoding")
                                                for k, _ in headers):
            lines.append("Content-Length: %d" % len(body))
        if not keep:
            lines.append("Connection: close")
        s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)

    def _describe(self, rec):
        return json.dumps({"upstream": self.name, "conn": rec["conn"], "method": rec["method"],
                           "target": rec["target"], "headers": rec["headers"],
                           "body_len": rec["body_len"], "body_sha256": rec["body_sha256"],
                           "chunked": rec.get("chunked", False),
                           "trailers": rec.get("trailers", [])}).encode()

    def _respond(self, s, rec, query, keep):
        path = rec["path"]
        method = rec["method"]
        if path == "/slow":
            time.sleep(int(query.get("ms", "1000")) / 1000.0)
        if path == "/hang":
            while not self.stopping.is_set():
                if not self._recv(s, {}):
                    return False
            return False
        if path == "/close-mid-body":
            s.sendall(("HTTP/1.1 200 OK\r\nX-Upstream: %s\r\nContent-Type: text/plain\r\n"
                       "Content-Length: 1000\r\n\r\n" % self.name).encode() + b"0123456789")
            time.sleep(0.3)
            return False
        if path == "/garbage":
            s.sendall(b"THIS IS NOT HTTP AT ALL\r\n\r\n")
            return False
        if path == "/reset" and query.get("only", self.name) == self.name:
            # What a server that is going away does to a request it had not started on.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return False
        if path in ("/big", "/big-chunked"):
            n = int(query.get("bytes", "1048576"))
            data = pattern_bytes(n)
            if path == "/big":
                hdrs = "HTTP/1.1 200 OK\r\nX-Upstream: %s\r\nContent-Length: %d\r\n%s\r\n" % (
                    self.name, n, "" if keep else "Connection: close\r\n")
                s.sendall(hdrs.encode())
                if method != "HEAD":
                    for i in range(0, n, 65536):
                        s.sendall(data[i:i + 65536])
            else:
                hdrs = "HTTP/1.1 200 OK\r\nX-Upstream: %s\r\nTransfer-Encoding: chunked\r\n%s\r\n" % (
                    self.name, "" if keep else "Connection: close\r\n")
                s.sendall(hdrs.encode())
                for i in range(0, n, 65536):
                    piece = data[i:i + 65536]
                    s.sendall(b"%x\r\n" % len(piece) + piece + b"\r\n")
                s.sendall(b"0\r\n\r\n")
            return keep
        if path == "/trailers":
            s.sendall(("HTTP/1.1 200 OK\r\nX-Upstream: %s\r\nTransfer-Encoding: chunked\r\n"
                       "Trailer: X-Checksum\r\n\r\n" % self.name).encode())
            body = self._describe(rec)
            s.sendall(b"%x\r\n" % len(body) + body + b"\r\n0\r\n")
            s.sendall(b"".join(b"%s: %s\r\n" % (k.encode(), v.encode())
                               for k, v in self.TRAILERS) + b"\r\n")
            return keep
        if path == "/chunked":
            body = rec["body"] if rec["body_len"] else self._describe(rec)
            hdrs = "HTTP/1.1 200 OK\r\nX-Upstream: %s\r\nTransfer-Encoding: chunked\r\n%s\r\n" % (
                self.name, "" if keep else "Connection: close\r\n")
            s.sendall(hdrs.encode())
            # uneven chunk sizes, written separately
            sizes = [1, 7, 100, 4096, 333]
            i = 0
            k = 0
            while i < len(body):
                n = sizes[k % len(sizes)]
                piece = body[i:i + n]
                s.sendall(b"%x\r\n" % len(piece) + piece + b"\r\n")
                i += n
                k += 1
            s.sendall(b"0\r\n\r\n")
            return keep
        if path == "/echo":
            self._send(s, 200, [("Content-Type", "application/octet-stream")], rec["body"], keep)
            return keep
        if path == "/status":
            code = int(query.get("code", "200"))
            body = b"" if code in (204, 304) else self._describe(rec)
            self._send(s, code, [("Content-Type", "application/json")], body, keep)
            return keep
        if path == "/hop-response":
            self._send(s, 200, [("Content-Type", "application/json"),
                                ("Connection", "X-Resp-Secret"),
                                ("X-Resp-Secret", "leak"),
                                ("Keep-Alive", "timeout=3, max=777"),
                                ("Proxy-Connection", "keep-alive-777"),
                                ("Upgrade", "h2c-777")],
                       self._describe(rec), keep)
            return keep
        if path == "/set-cookie":
            self._send(s, 200, [("Content-Type", "application/json"),
                                ("Set-Cookie", "session=abc; Path=/"),
                                ("Set-Cookie", "theme=dark; Path=/")],
                       self._describe(rec), keep)
            return keep
        body = self._describe(rec)
        if method == "HEAD":
            self._send(s, 200, [("Content-Type", "application/json"),
                                ("Content-Length", str(len(body)))], b"", keep)
        else:
            self._send(s, 200, [("Content-Type", "application/json")], body, keep)
        if path == "/close-after":
            time.sleep(0.1)
            return False
        return keep

    def _upgrade(self, s, state, rec, headers):
        rec["body_len"] = 0
        rec["body_sha256"] = ""
        with self.lock:
            self.requests.append(rec)
        proto = header(headers, "upgrade")
        if rec["path"] == "/upgrade-refused":
            self._send(s, 403, [("Content-Type", "text/plain")], b"no websocket for you", False)
            return False
        accept = ""
        key = header(headers, "sec-websocket-key")
        if key is not None:
            if rec["path"] == "/upgrade-bad-accept":
                key = "x" + key
            digest = hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()
            accept = "Sec-WebSocket-Accept: %s\r\n" % base64.b64encode(digest).decode()
        s.sendall(("HTTP/1.1 101 Switching Protocols\r\nX-Upstream: %s\r\nConnection: Upgrade\r\n"
                   "Upgrade: %s\r\n%s\r\n" % (self.name, proto, accept)).encode())
        if rec["path"] == "/upgrade-then-close":
            s.sendall(b"bye")
            time.sleep(0.2)
            with self.lock:
                self.tunnel_events.append(("closed-by-upstream", rec["conn"]))
            return False
        if state["buf"]:
            s.sendall(state["buf"])
            state["buf"] = b""
        while True:
            d = self._recv(s, state)
            if not d:
                with self.lock:
                    self.tunnel_events.append(("eof-from-client", rec["conn"]))
                return False
            s.sendall(d)


# ---------------------------------------------------------------- WebSocket upstream

class WsUpstream:
    """websockets (10.x) echo server in its own thread and event loop. Records the
    request path and headers of every handshake. pages: {path: (content type, bytes)}
    answered to plain GETs (no Upgrade), e.g. the page a browser test loads."""

    def __init__(self, name, pages=None):
        self.name = name
        self.pages = dict(pages or {})
        self.handshakes = []   # (path, [(name, value), ...])
        self.lock = threading.Lock()
        self.port = None
        self.addr = None
        self.loop = None
        self.server = None
        self.ready = threading.Event()
        self.thread = None

    def start(self):
        import websockets  # noqa: F401  (fail loudly here if missing)

        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        if not self.ready.wait(10):
            raise RuntimeError("websocket upstream did not start")

    def _run(self):
        import websockets
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)

        async def process_request(path, request_headers):
            page = self.pages.get(path.split("?", 1)[0])
            if page and "upgrade" not in (request_headers.get("Connection") or "").lower():
                return (http.HTTPStatus.OK, [("Content-Type", page[0]), ("Content-Length", str(len(page[1]))),
                              ("X-Upstream", self.name)], page[1])
            with self.lock:
                self.handshakes.append((path, list(request_headers.raw_items())))
            return None

        async def handler(ws):
            try:
                async for msg in ws:
                    await ws.send(msg)
            except websockets.ConnectionClosed:
                pass

        async def main():
            self.server = await websockets.serve(handler, "127.0.0.1", 0,
                                                 process_request=process_request)
            self.port = self.server.sockets[0].getsockname()[1]
            self.addr = "127.0.0.1:%d" % self.port
            self.ready.set()

        self.loop.run_until_complete(main())
        self.loop.run_forever()

    def stop(self):
        if not self.loop:
            return

        async def shutdown():
            self.server.close()
            try:
                await asyncio.wait_for(self.server.wait_closed(), 3)
            except Exception:
                pass
            self.loop.stop()

        try:
            asyncio.run_coroutine_threadsafe(shutdown(), self.loop)
        except RuntimeError:
            pass
        self.thread.join(5)


def run_async(coro, timeout=30):
    """Runs a coroutine to completion in a fresh loop, bounded by `timeout`."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


# ---------------------------------------------------------------- Gateway

class Gateway:
    """pipes: names among "stdout" and "stderr" that are connected to pipes the test reads
    itself (self.proc.stdout / self.proc.stderr) instead of files."""

    def __init__(self, binary, tmp_path, config, name="gw", env=None, pipes=()):
        self.binary = binary
        self.env = dict(os.environ, **env) if env else None  # added to the environment
        self.pipes = tuple(pipes)
        self.dir = str(tmp_path)
        self.name = name
        self.path = os.path.join(self.dir, "%s.yaml" % name)
        self.stdout_path = os.path.join(self.dir, "%s.stdout" % name)
        self.stderr_path = os.path.join(self.dir, "%s.stderr" % name)
        self.proc = None
        self._write(config)

    def _write(self, config):
        text = config if isinstance(config, str) else to_yaml(config)
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, self.path)
        m = re.search(r"^\s*http:\s*\"?127\.0\.0\.1:(\d+)", text, re.M)
        self.http_port = int(m.group(1)) if m else None
        m = re.search(r"^\s*admin:\s*\"?127\.0\.0\.1:(\d+)", text, re.M)
        self.admin_port = int(m.group(1)) if m else None
        self.text = text

    def start(self):
        self._out = open(self.stdout_path, "wb")
        self._err = open(self.stderr_path, "wb")
        out = subprocess.PIPE if "stdout" in self.pipes else self._out
        err = subprocess.PIPE if "stderr" in self.pipes else self._err
        self.proc = subprocess.Popen([self.binary, "-c", self.path], stdout=out,
                                     stderr=err, stdin=subprocess.DEVNULL, cwd=self.dir,
                                     start_new_session=True, env=self.env)
        self.pid = self.proc.pid

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, timeout=STARTUP_TIMEOUT):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running():
                pytest.fail("gateway exited with %s during startup; stderr:\n%s" % (
                    self.proc.returncode, self.stderr_text()[-3000:]), pytrace=False)
            try:
                if self.admin_port:
                    r = http_request(self.admin_port, "GET", "/readyz", "127.0.0.1", timeout=1)
                    if r.status != 200:
                        raise OSError("readyz %d" % r.status)
                if self.http_port:
                    socket.create_connection(("127.0.0.1", self.http_port), timeout=1).close()
                return
            except (OSError, http.client.HTTPException):
                time.sleep(0.05)
        pytest.fail("gateway not ready within %.0fs; stderr:\n%s" % (
            timeout, self.stderr_text()[-3000:]), pytrace=False)

    # ---- requests
    def request(self, method, path, host="plain.test", headers=(), body=None, timeout=10.0):
        return http_request(self.http_port, method, path, host, headers, body, timeout)

    def get(self, path, host="plain.test", headers=(), timeout=10.0):
        return self.request("GET", path, host, headers, None, timeout)

    def admin(self, path, timeout=5.0):
        return http_request(self.admin_port, "GET", path, "127.0.0.1:%d" % self.admin_port,
                            timeout=timeout)

    def raw(self, timeout=10.0):
        return RawClient(self.http_port, timeout=timeout)

    def metrics(self):
        r = self.admin("/metrics")
        assert r.status == 200, r
        return parse_metrics(r.body.decode())

    def metric(self, name, **labels):
        return metric_sum(self.metrics(), name, **labels)

    # ---- logs
    @staticmethod
    def _text(path):
        try:
            with open(path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def stdout_text(self):
        return self._text(self.stdout_path)

    def stderr_text(self):
        return self._text(self.stderr_path)

    def access_log(self):
        out = []
        text = self.stdout_text()
        lines = text.split("\n")
        if not text.endswith("\n"):
            lines = lines[:-1]  # a line still being written
        for line in lines:
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError:
                raise AssertionError("stdout line is not JSON: %r" % line)
            assert isinstance(obj, dict), line
            out.append(obj)
        return out

    def wait_access_log(self, n, timeout=5.0):
        return wait_for(lambda: len(self.access_log()) >= n and self.access_log(), timeout,
                        what="%d access log lines (have %d)" % (n, len(self.access_log())))

    # ---- process control
    def rss_kb(self):
        with open("/proc/%d/status" % self.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def signal(self, sig):
        self.proc.send_signal(sig)

    def _reload_marker(self):
        try:
            samples = self.metrics()
            ok = metric_sum(samples, "switchyard_config_reloads_total", result="ok") or 0
            bad = metric_sum(samples, "switchyard_config_reloads_total", result="failed") or 0
            return ok + bad
        except Exception:
            return None

    def reload(self, config, timeout=10.0):
        """Rewrites the file, sends SIGHUP and waits until the gateway reports the
        reload (reload counter in /metrics changes, or stderr mentions a reload)."""
        before_metric = self._reload_marker()
        before_err = len(self.stderr_text())
        self._write(config)
        self.signal(signal.SIGHUP)

        def done():
            if not self.running():
                raise AssertionError("gateway died on SIGHUP; stderr:\n%s" % self.stderr_text()[-3000:])
            m = self._reload_marker()
            if before_metric is not None and m is not None and m > before_metric:
                return True
            new = self.stderr_text()[before_err:]
            return bool(re.search(r"reload", new, re.I))

        wait_for(done, timeout, 0.05, "the reload to be reported (metrics or stderr)")

    def terminate(self, timeout=5.0):
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
            except ProcessLookupError:
                pass
        for f in (getattr(self, "_out", None), getattr(self, "_err", None)):
            if f:
                f.close()
        return self.proc.returncode
