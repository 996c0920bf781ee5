"""Request smuggling and response splitting, sent as raw bytes.

Every request case opens a fresh connection, sends one byte string (often a
request with a second request hidden in its body), reads every response the
gateway sends until it closes or goes quiet, and then checks two things: the
status codes the client got, and the exact list of complete requests the
upstream received (a request whose chunked body turns out to be malformed
after its head was forwarded reaches the upstream as that head and a cut
connection: bodies stream, they are not buffered). A hidden request ("/smuggled") must never reach the upstream.

Response cases use a scripted upstream that writes fixed bytes, and check that
the client gets a 502 or a cut connection, never a response it did not ask
for, and that the poisoned upstream connection is not used again.
"""

import socket
import struct
import time

import pytest

from helpers import ThreadedServer, free_port, make_config

HOST = "plain.test"
SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: plain.test\r\n\r\n"


def cl_req(headers, body, target="/a", method="POST", version="HTTP/1.1"):
    head = "%s %s %s\r\nHost: %s\r\n%s\r\n" % (method, target, version, HOST,
                                             "".join(h + "\r\n" for h in headers))
    return head.encode("latin-1") + body


def te_req(te_lines, body, target="/a"):
    return cl_req(["Transfer-Encoding: %s" % v if not v.startswith("!") else v[1:]
                   for v in te_lines], body, target)


# (id, bytes, expected statuses in order, expected upstream targets in order)
# A status of None means "the connection may be cut instead of answered".
REQUEST_CASES = [
    # ---- Content-Length and Transfer-Encoding together
    ("cl-and-te", cl_req(["Content-Length: 4", "Transfer-Encoding: chunked"],
                         b"0\r\n\r\n" + SMUGGLED), [400], []),
    ("te-and-cl", cl_req(["Transfer-Encoding: chunked", "Content-Length: 50"],
                         b"0\r\n\r\n" + SMUGGLED), [400], []),
    ("te-and-cl-zero", cl_req(["Transfer-Encoding: chunked", "Content-Length: 0"],
                              b"5\r\nhello\r\n0\r\n\r\n"), [400], []),
    # ---- obfuscated Transfer-Encoding
    ("te-trailing-space", te_req(["chunked "], b"5\r\nhello\r\n0\r\n\r\n"), [200], ["/a"]),
    ("te-capitalised", te_req(["Chunked"], b"5\r\nhello\r\n0\r\n\r\n"), [200], ["/a"]),
    ("te-leading-tab", te_req(["\tchunked"], b"5\r\nhello\r\n0\r\n\r\n"), [200], ["/a"]),
    ("te-chunked-identity", te_req(["chunked, identity"], b"0\r\n\r\n" + SMUGGLED), [400], []),
    ("te-identity-chunked", te_req(["identity, chunked"], b"0\r\n\r\n"), [501], []),
    ("te-x-chunked", te_req(["x-chunked"], b"0\r\n\r\n" + SMUGGLED), [501], []),
    ("te-chunked-twice", te_req(["chunked, chunked"], b"0\r\n\r\n"), [400], []),
    ("te-second-line-gzip", te_req(["chunked", "gzip"], b"0\r\n\r\n"), [400], []),
    ("te-second-line-chunked", te_req(["gzip", "chunked"], b"0\r\n\r\n"), [501], []),
    ("te-two-chunked-lines", te_req(["chunked", "chunked"], b"0\r\n\r\n"), [400], []),
    ("te-quoted", te_req(['"chunked"'], b"0\r\n\r\n"), [400], []),
    ("te-semicolon-param", te_req(["chunked;q=1"], b"0\r\n\r\n"), [400], []),
    ("te-vertical-tab", te_req(["\x0bchunked"], b"0\r\n\r\n"), [400], []),
    ("te-empty", te_req([""], b"0\r\n\r\n" + SMUGGLED), [400], []),
    ("te-space-before-colon", te_req(["!Transfer-Encoding : chunked"], b"0\r\n\r\n" + SMUGGLED),
     [400], []),
    ("te-obs-fold", te_req(["!Transfer-Encoding:\r\n chunked"], b"0\r\n\r\n" + SMUGGLED),
     [400], []),
    ("te-http10", cl_req(["Transfer-Encoding: chunked"], b"0\r\n\r\n" + SMUGGLED,
                         version="HTTP/1.0"), [400], []),
    # ---- Content-Length forms
    ("cl-space-before-colon", cl_req(["Content-Length : 0"], SMUGGLED), [400], []),
    ("cl-duplicate-same", cl_req(["Content-Length: 5", "Content-Length: 5"], b"hello"), [400], []),
    ("cl-duplicate-differ", cl_req(["Content-Length: 0", "Content-Length: %d" % len(SMUGGLED)],
                                   SMUGGLED), [400], []),
    ("cl-list", cl_req(["Content-Length: 5, 5"], b"hello"), [400], []),
    ("cl-plus", cl_req(["Content-Length: +5"], b"hello"), [400], []),
    ("cl-minus", cl_req(["Content-Length: -5"], b"hello"), [400], []),
    ("cl-hex", cl_req(["Content-Length: 0x5"], b"hello"), [400], []),
    ("cl-inner-space", cl_req(["Content-Length: 1 0"], b"helloworld"), [400], []),
    ("cl-overflow", cl_req(["Content-Length: 18446744073709551621"], b"hello"), [400], []),
    ("cl-leading-zeros", cl_req(["Content-Length: 0005"], b"hello"), [200], ["/a"]),
    ("cl-padded-ows", cl_req(["Content-Length: \t 5 \t"], b"hello"), [200], ["/a"]),
    ("cl-body-is-request", cl_req(["Content-Length: %d" % len(SMUGGLED)], SMUGGLED), [200], ["/a"]),
    ("connection-lists-cl", cl_req(["Connection: content-length",
                                    "Content-Length: %d" % len(SMUGGLED)], SMUGGLED),
     [200], ["/a"]),
    ("connection-lists-host", cl_req(["Connection: host, keep-alive"], b""), [200], ["/a"]),
    # ---- chunked framing
    ("chunk-size-overflow", te_req(["chunked"], b"1" + b"0" * 16 + b"\r\nx\r\n0\r\n\r\n"),
     [400], []),
    ("chunk-size-2^64+5", te_req(["chunked"], b"10000000000000005\r\nhello\r\n0\r\n\r\n" + SMUGGLED),
     [400], []),
    ("chunk-size-2^63", te_req(["chunked"], b"8000000000000000\r\nhello\r\n0\r\n\r\n"), [400], []),
    ("chunk-size-negative", te_req(["chunked"], b"-5\r\nhello\r\n0\r\n\r\n"), [400], []),
    ("chunk-size-0x", te_req(["chunked"], b"0x5\r\nhello\r\n0\r\n\r\n"), [400], []),
    ("chunk-size-space", te_req(["chunked"], b"5 \r\nhello\r\n0\r\n\r\n"), [400], []),
    ("chunk-ext-ok", te_req(["chunked"], b'5;a=b;c="d e"\r\nhello\r\n0\r\n\r\n'), [200], ["/a"]),
    ("chunk-ext-empty", te_req(["chunked"], b"5;\r\nhello\r\n0\r\n\r\n"), [400], []),
    ("chunk-ext-space", te_req(["chunked"], b"5 ;a=b\r\nhello\r\n0\r\n\r\n"), [400], []),
    ("chunk-ext-unterminated-quote", te_req(["chunked"], b'5;a="b\r\nhello\r\n0\r\n\r\n'),
     [400], []),
    ("chunk-ext-bare-lf", te_req(["chunked"], b"5;a=b\nhello\r\n0\r\n\r\n"), [400], []),
    ("chunk-data-too-long", te_req(["chunked"], b"3\r\nhello\r\n0\r\n\r\n" + SMUGGLED), [400], []),
    ("chunk-missing-crlf", te_req(["chunked"], b"5\r\nhello0\r\n\r\n" + SMUGGLED), [400], []),
    ("chunk-bare-lf", te_req(["chunked"], b"5\nhello\n0\n\n" + SMUGGLED), [400], []),
    ("chunk-bare-cr", te_req(["chunked"], b"5\rhello\r0\r\r" + SMUGGLED), [400], []),
    ("chunk-last-then-request", te_req(["chunked"], b"0\r\n\r\n" + SMUGGLED), [200, 200],
     ["/a", "/smuggled"]),  # a real pipelined request: both sides agree on it
    ("trailer-ok", te_req(["chunked"], b"5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n"), [200], ["/a"]),
    ("trailer-no-colon", te_req(["chunked"], b"0\r\nX-T 1\r\n\r\n" + SMUGGLED), [400], []),
    ("trailer-obs-fold", te_req(["chunked"], b"0\r\nX-T: 1\r\n 2\r\n\r\n" + SMUGGLED), [400], []),
    ("trailer-nul", te_req(["chunked"], b"0\r\nX-T: a\x00b\r\n\r\n" + SMUGGLED), [400], []),
    ("trailer-bare-lf", te_req(["chunked"], b"0\r\nX-T: 1\n\r\n" + SMUGGLED), [400], []),
    # ---- bytes that must never pass
    ("nul-in-value", cl_req(["X-A: a\x00b"], b""), [400], []),
    ("nul-in-target", b"GET /a\x00b HTTP/1.1\r\nHost: plain.test\r\n\r\n", [400], []),
    ("nul-in-name", cl_req(["X-\x00A: b"], b""), [400], []),
    ("bare-cr-in-value", cl_req(["X-A: a\rContent-Length: 5"], b""), [400], []),
    ("bare-lf-in-value", cl_req(["X-A: a\nContent-Length: %d" % len(SMUGGLED)], SMUGGLED),
     [400], []),
    ("bare-lf-lines", b"GET /a HTTP/1.1\nHost: plain.test\n\n", [400], []),
    ("obs-fold-header", cl_req(["X-A: a", " folded"], b""), [400], []),
    ("obs-fold-first-header", b"GET /a HTTP/1.1\r\n Host: plain.test\r\n\r\n", [400], []),
    ("space-in-name", cl_req(["X A: b"], b""), [400], []),
    ("empty-name", cl_req([": b"], b""), [400], []),
    ("del-in-value", cl_req(["X-A: a\x7fb"], b""), [400], []),
    # ---- request line: methods, versions, targets
    ("method-bad-char", b"G@T /a HTTP/1.1\r\nHost: plain.test\r\n\r\n", [400], []),
    ("method-empty", b" /a HTTP/1.1\r\nHost: plain.test\r\n\r\n", [400], []),
    ("two-spaces", b"GET  /a HTTP/1.1\r\nHost: plain.test\r\n\r\n", [400], []),
    ("tab-separator", b"GET\t/a HTTP/1.1\r\nHost: plain.test\r\n\r\n", [400], []),
    ("space-in-target", b"GET /a b HTTP/1.1\r\nHost: plain.test\r\n\r\n", [400], []),
    ("version-1.2", b"GET /a HTTP/1.2\r\nHost: plain.test\r\n\r\n", [505], []),
    ("version-2.0", b"GET /a HTTP/2.0\r\nHost: plain.test\r\n\r\n", [505], []),
    ("version-lowercase", b"GET /a http/1.1\r\nHost: plain.test\r\n\r\n", [400], []),
    ("version-trailing-space", b"GET /a HTTP/1.1 \r\nHost: plain.test\r\n\r\n", [400], []),
    ("version-0.9", b"GET /a\r\n\r\n", [400], []),
    ("connect", b"CONNECT plain.test:443 HTTP/1.1\r\nHost: plain.test:443\r\n\r\n", [501], []),
    ("authority-form-get", b"GET plain.test:80 HTTP/1.1\r\nHost: plain.test\r\n\r\n", [400], []),
    ("relative-target", b"GET a/b HTTP/1.1\r\nHost: plain.test\r\n\r\n", [400], []),
    ("asterisk-get", b"GET * HTTP/1.1\r\nHost: plain.test\r\n\r\n", [400], []),
    ("asterisk-options", b"OPTIONS * HTTP/1.1\r\nHost: plain.test\r\n\r\n", [200], ["*"]),
    ("absolute-form", b"GET http://plain.test/abs?q=1 HTTP/1.1\r\nHost: plain.test\r\n\r\n",
     [200], ["/abs?q=1"]),
    ("absolute-form-https-case", b"GET HTTPS://PLAIN.test HTTP/1.1\r\nHost: plain.test\r\n\r\n",
     [200], ["/"]),
    ("absolute-form-host-conflict",
     b"GET http://exact.example.org/abs HTTP/1.1\r\nHost: plain.test\r\n\r\n", [400], []),
    ("absolute-form-userinfo",
     b"GET http://evil@plain.test/abs HTTP/1.1\r\nHost: plain.test\r\n\r\n", [400], []),
    ("absolute-form-no-host-header", b"GET http://plain.test/abs HTTP/1.0\r\n\r\n", [400], []),
    ("absolute-form-other-scheme", b"GET ftp://plain.test/abs HTTP/1.1\r\nHost: plain.test\r\n\r\n",
     [400], []),
    # ---- Host
    ("host-missing", b"GET /a HTTP/1.1\r\nX: y\r\n\r\n", [400], []),
    ("host-twice-same", b"GET /a HTTP/1.1\r\nHost: plain.test\r\nHost: plain.test\r\n\r\n",
     [400], []),
    ("host-twice-differ", b"GET /a HTTP/1.1\r\nHost: plain.test\r\nHost: exact.example.org\r\n\r\n",
     [400], []),
    ("host-with-path", b"GET /a HTTP/1.1\r\nHost: plain.test/x\r\n\r\n", [400], []),
    ("host-with-userinfo", b"GET /a HTTP/1.1\r\nHost: u@plain.test\r\n\r\n", [400], []),
    ("host-bad-port", b"GET /a HTTP/1.1\r\nHost: plain.test:8x\r\n\r\n", [400], []),
    ("host-space-list", b"GET /a HTTP/1.1\r\nHost: plain.test, exact.example.org\r\n\r\n",
     [400], []),
    ("host-trailing-dot-and-port", b"GET /a HTTP/1.1\r\nHost: PLAIN.test.:8080\r\n\r\n",
     [200], ["/a"]),
    ("http10-no-host-unknown-site", b"GET /a HTTP/1.0\r\n\r\n", [404], []),
]


def read_all_responses(rc, quiet=0.6, limit=5.0):
    """Returns (statuses, closed). Reads responses until EOF or `quiet` seconds
    without a byte (bounded by `limit`)."""
    statuses = []
    deadline = time.monotonic() + limit
    rc.sock.settimeout(quiet)
    closed = False
    while time.monotonic() < deadline:
        try:
            r = rc.read_response()
            statuses.append(r.status)
        except socket.timeout:
            break
        except EOFError:
            closed = True
            break
        except (ConnectionResetError, BrokenPipeError):
            closed = True
            break
    return statuses, closed


@pytest.fixture
def smuggle_gw(gateway, upstream):
    up = upstream("plain")
    hp, ap = free_port(), free_port()
    gw = gateway(make_config(hp, ap, {"plain": [up.addr]},
                             [{"hosts": ["plain.test"], "upstream": "plain"},
                              {"hosts": ["exact.example.org"], "upstream": "plain"}],
                             timeouts={"client_header": "2s", "client_body": "2s"}))
    return gw, up


def test_request_smuggling_table(smuggle_gw):
    """Each case: expected statuses and exactly the expected upstream requests."""
    gw, up = smuggle_gw
    assert len(REQUEST_CASES) >= 30
    failures = []
    for name, data, want_status, want_targets in REQUEST_CASES:
        n0, c0 = len(up.started), len(up.requests)
        rc = gw.raw(timeout=5)
        try:
            rc.send(data)
            statuses, _ = read_all_responses(rc)
        finally:
            rc.close()
        # Let anything in flight reach the upstream before counting.
        time.sleep(0.05)
        with up.lock:
            heads = [r["target"] for r in up.started[n0:]]
            seen = [r["target"] for r in up.requests[c0:]]
        # Bodies stream: a chunked body that turns bad after its head was
        # forwarded leaves the upstream with that head and a cut connection,
        # never a complete request. So: complete requests must be exactly the
        # expected ones, and the only extra head allowed is the case's own.
        partial = [t for t in heads if t not in seen]
        if statuses != want_status or seen != want_targets or partial not in ([], ["/a"]):
            failures.append("%s: statuses %s (want %s), upstream completed %s (want %s), "
                            "heads %s" % (name, statuses, want_status, seen, want_targets, heads))
    with up.lock:
        hidden = [r for r in up.started if r["target"] == "/smuggled"]
    # Only the one case where /smuggled is a genuine pipelined request may show it.
    assert len(hidden) == 1, hidden
    assert not failures, "\n".join(failures)
    # The gateway still serves normally afterwards.
    assert gw.get("/after").status == 200


def test_forwarded_framing_is_normalised(smuggle_gw):
    """An accepted obfuscated Transfer-Encoding reaches the upstream as a plain
    `Transfer-Encoding: chunked`, with the body intact; Content-Length listed in
    Connection still reaches the upstream."""
    gw, up = smuggle_gw
    for te in ("Chunked", "chunked ", "\tchunked", "CHUNKED"):
        n0 = len(up.requests)
        rc = gw.raw(timeout=5)
        rc.send(te_req([te], b"5\r\nhello\r\n0\r\n\r\n", target="/te"))
        r = rc.read_response()
        rc.close()
        assert r.status == 200, (te, r)
        rec = up.requests[n0]
        tes = [v for k, v in rec["headers"] if k.lower() == "transfer-encoding"]
        assert tes == ["chunked"], (te, rec["headers"])
        assert rec["body"] == b"hello"
    rc = gw.raw(timeout=5)
    rc.send(cl_req(["Connection: content-length", "Content-Length: 5"], b"hello", target="/cl"))
    r = rc.read_response()
    rc.close()
    assert r.status == 200
    rec = [x for x in up.requests if x["target"] == "/cl"][-1]
    assert ("Content-Length", "5") in rec["headers"], rec["headers"]
    assert rec["body"] == b"hello"


# ---------------------------------------------------------------- responses


class ScriptedUpstream(ThreadedServer):
    """Answers each request with fixed bytes chosen by the request path
    (`script[path]`: bytes, or a list of (bytes, delay) pieces), and keeps
    the connection open afterwards unless the script says "close" (or "rst":
    close with a TCP reset). Records
    (connection id, request line) for every request head it reads."""

    def __init__(self, script):
        super().__init__(backlog=64)
        self.script = script
        self.seen = []
        self.start()

    def _serve(self, s, cid):
        buf = b""
        s.settimeout(10)
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    d = s.recv(65536)
                    if not d:
                        return
                    buf += d
                head, buf = buf.split(b"\r\n\r\n", 1)
                line = head.split(b"\r\n")[0].decode("latin-1")
                with self.lock:
                    self.seen.append((cid, line))
                path = line.split(" ")[1]
                pieces = self.script.get(path, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                if isinstance(pieces, bytes):
                    pieces = [(pieces, 0)]
                for data, delay in pieces:
                    if delay:
                        time.sleep(delay)
                    if data == b"close":
                        return
                    if data == b"rst":
                        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                     struct.pack("ii", 1, 0))
                        return
                    s.sendall(data)
        except OSError:
            pass
        finally:
            s.close()


FAKE = b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\nX-Fake: yes\r\n\r\nhijack!"

# (path, bytes the upstream answers, acceptable client outcomes)
# outcome "502": exactly one 502 response; "cut": the connection is cut
# (a head may have been sent), never a second response.
RESPONSE_CASES = [
    ("/cr-in-value", b"HTTP/1.1 200 OK\r\nX-A: a\rSet-Cookie: x=1\r\nContent-Length: 2\r\n\r\nok",
     {"502"}),
    ("/lf-in-value", b"HTTP/1.1 200 OK\r\nX-A: a\nSet-Cookie: x=1\r\nContent-Length: 2\r\n\r\nok",
     {"502"}),
    ("/nul-in-value", b"HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 2\r\n\r\nok", {"502"}),
    ("/obs-fold", b"HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 2\r\n\r\nok", {"502"}),
    ("/cl-and-te", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n"
                   b"0\r\n\r\n" + FAKE, {"502"}),
    ("/two-cls", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 40\r\n\r\nok" + FAKE,
     {"502"}),
    ("/cl-signed", b"HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\nok", {"502"}),
    ("/te-http10", b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", {"502"}),
    ("/bad-status", b"HTTP/1.1 2000 OK\r\nContent-Length: 2\r\n\r\nok", {"502"}),
    ("/bare-lf-head", b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok", {"502"}),
    ("/unasked-101", b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     b"Connection: upgrade\r\n\r\n" + FAKE, {"502"}),
    ("/bad-chunk-size", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nok\r\n0\r\n\r\n",
     {"cut"}),
    ("/chunk-too-long", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nokXX\r\n0\r\n\r\n"
                        + FAKE, {"cut"}),
    ("/chunk-overflow", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                        b"10000000000000002\r\nok\r\n0\r\n\r\n", {"cut"}),
]


def _one_response_outcome(rc):
    """Reads what the client gets for one request: ("502"|"ok"|"cut", extra_bytes)."""
    try:
        r = rc.read_response()
    except (EOFError, ConnectionResetError):
        return "cut", b""
    except AssertionError:
        return "garbage", b""
    if r.status == 502:
        return "502", b""
    return "status-%d" % r.status, r.body


def test_bad_upstream_responses(gateway):
    script = {p: data for p, data, _ in RESPONSE_CASES}
    up = ScriptedUpstream(script)
    try:
        hp, ap = free_port(), free_port()
        gw = gateway(make_config(hp, ap, {"bad": [up.addr]},
                                 [{"hosts": ["plain.test"], "upstream": "bad"}],
                                 timeouts={"upstream_response": "2s"}))
        failures = []
        for path, _, allowed in RESPONSE_CASES:
            rc = gw.raw(timeout=5)
            rc.send(b"GET %s HTTP/1.1\r\nHost: plain.test\r\n\r\n" % path.encode())
            outcome, _ = _one_response_outcome(rc)
            if outcome != "cut":
                # Nothing else may follow on this connection.
                extra, _ = read_all_responses(rc, quiet=0.3, limit=1.0)
                if extra:
                    failures.append("%s: a second response %s reached the client" % (path, extra))
            rc.close()
            if outcome not in allowed:
                failures.append("%s: client got %s (want %s)" % (path, outcome, allowed))
            # The poisoned connection must not be reused: the next request
            # arrives on a new upstream connection and gets the real answer.
            before = up.conn_count
            r = gw.get("/fine")
            if r.status != 200 or r.body != b"ok":
                failures.append("%s: next request got %s %r" % (path, r.status, r.body))
            with up.lock:
                last_conn = up.seen[-1][0]
            if last_conn <= before and before != 0:
                failures.append("%s: the next request reused upstream connection %d" % (
                    path, last_conn))
        assert not failures, "\n".join(failures)
        assert (gw.metric("switchyard_upstream_errors_total", reason="bad_response") or 0) >= 11
    finally:
        up.stop()


def test_response_longer_than_content_length_is_not_replayed(gateway):
    """The upstream answers with more bytes than its Content-Length: a second,
    fake response follows on the kept-alive connection (at once, and later
    while the connection sits in the pool). The client gets exactly its own
    response, the next client never gets the fake one, and the poisoned
    connection is dropped."""
    script = {
        "/same-packet": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" + FAKE,
        "/later": [(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 0), (FAKE, 0.2)],
        "/before-close": [(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 0), (FAKE, 0.2),
                          (b"close", 0.5)],
    }
    up = ScriptedUpstream(script)
    try:
        hp, ap = free_port(), free_port()
        gw = gateway(make_config(hp, ap, {"u": [up.addr]},
                                 [{"hosts": ["plain.test"], "upstream": "u"}]))
        for path in ("/same-packet", "/later", "/before-close"):
            rc = gw.raw(timeout=5)
            rc.send(b"GET %s HTTP/1.1\r\nHost: plain.test\r\n\r\n" % path.encode())
            r = rc.read_response()
            assert r.status == 200 and r.body == b"ok", (path, r)
            time.sleep(0.4)  # the fake response arrives meanwhile
            # Same client connection, next request: must get the real answer.
            rc.send(b"GET /fine HTTP/1.1\r\nHost: plain.test\r\n\r\n")
            r2 = rc.read_response()
            assert r2.status == 200 and r2.body == b"ok" and not r2.header("X-Fake"), (path, r2)
            extra, _ = read_all_responses(rc, quiet=0.3, limit=1.0)
            assert extra == [], (path, extra)
            rc.close()
            # And a different client too.
            for _ in range(3):
                r3 = gw.get("/fine")
                assert r3.status == 200 and r3.body == b"ok" and not r3.header("X-Fake"), (path, r3)
        # Every fake-carrying connection was closed: no request line was ever
        # answered from a poisoned connection (the fixture counts one request
        # per head it read; /fine requests that landed on a poisoned
        # connection would have been answered with FAKE and caught above).
    finally:
        up.stop()
