"""Upstream faults: refused, hanging, reset, closing mid-body, garbage, endless
bodies, unresolvable names. Each must give the right status (or a cut
connection once a response has started), a line on stderr, a count in
switchyard_upstream_errors_total{reason=...}, and no harm to other sites.
"""

import socket
import time

import pytest

from helpers import ThreadedServer, dead_port, free_port, make_config, wait_for
from test_80_smuggling import ScriptedUpstream


@pytest.fixture
def faulty(gateway, upstream):
    good = upstream("good")
    bad = upstream("bad")
    script = ScriptedUpstream({
        "/reset-mid-response": [(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 5000,
                                 0), (b"rst", 0.2)],
        "/reset-before-head": [(b"rst", 0)],
        "/garbage": [(b"\x00\x01\x02 not http\r\n\r\n", 0), (b"close", 0.1)],
    })
    refused = "127.0.0.1:%d" % dead_port()
    hp, ap = free_port(), free_port()
    gw = gateway(make_config(
        hp, ap,
        upstreams={"good": [good.addr], "bad": [bad.addr], "script": [script.addr],
                   "refused": {"servers": [refused], "down_time": "100ms"},
                   "nxdomain": {"servers": ["does-not-exist.invalid:80"]}},
        sites=[{"hosts": ["good.test"], "upstream": "good"},
               {"hosts": ["bad.test"], "upstream": "bad"},
               {"hosts": ["script.test"], "upstream": "script"},
               {"hosts": ["refused.test"], "upstream": "refused"},
               {"hosts": ["nxdomain.test"], "upstream": "nxdomain"}],
        timeouts={"upstream_response": "1s", "upstream_connect": "1s"}))
    yield gw, good, bad, script
    script.stop()


def errors(gw, upstream_name, reason):
    return gw.metric("switchyard_upstream_errors_total", upstream=upstream_name, reason=reason) or 0


def good_still_served(gw):
    r = gw.get("/ok", host="good.test", timeout=5)
    assert r.status == 200 and r.header("X-Upstream") == "good", r


def test_refused_is_502(faulty):
    gw, *_ = faulty
    for _ in range(3):
        assert gw.get("/x", host="refused.test").status == 502
    assert errors(gw, "refused", "connect_refused") + errors(gw, "refused", "no_server") >= 3
    assert errors(gw, "refused", "connect_refused") >= 1
    wait_for(lambda: "refused" in gw.stderr_text(), 5, what="the error log line")
    good_still_served(gw)


def test_hanging_upstream_is_504(faulty):
    gw, *_ = faulty
    t0 = time.monotonic()
    r = gw.get("/hang", host="bad.test", timeout=10)
    assert r.status == 504
    assert 0.8 < time.monotonic() - t0 < 5
    assert errors(gw, "bad", "response_timeout") == 1
    wait_for(lambda: "response_timeout" in gw.stderr_text(), 5, what="the error log line")
    good_still_served(gw)


def test_reset_mid_response_cuts_the_client(faulty):
    gw, *_ = faulty
    rc = gw.raw(timeout=5)
    rc.send(b"GET /reset-mid-response HTTP/1.1\r\nHost: script.test\r\n\r\n")
    r = rc.read_response(allow_short=True)
    assert r.status == 200 and r.short and len(r.body) < 100000
    rc.close()
    wait_for(lambda: errors(gw, "script", "reset") >= 1, 3, what="reset counted")
    # Reset before any response byte: 502.
    assert gw.get("/reset-before-head", host="script.test").status == 502
    good_still_served(gw)


def test_close_mid_body_cuts_the_client(faulty):
    gw, *_ = faulty
    rc = gw.raw(timeout=5)
    rc.send(b"GET /close-mid-body HTTP/1.1\r\nHost: bad.test\r\n\r\n")
    r = rc.read_response(allow_short=True)
    assert r.status == 200 and r.short and r.body == b"0123456789"
    rc.close()
    wait_for(lambda: errors(gw, "bad", "reset") >= 1, 3, what="mid-body close counted")
    wait_for(lambda: "closed mid-response" in gw.stderr_text(), 5, what="the error log line")
    good_still_served(gw)


def test_garbage_is_502(faulty):
    gw, *_ = faulty
    assert gw.get("/garbage", host="bad.test").status == 502
    assert gw.get("/garbage", host="script.test").status == 502
    assert errors(gw, "bad", "bad_response") >= 1
    assert errors(gw, "script", "bad_response") >= 1
    good_still_served(gw)


def test_unresolvable_name_is_502_and_others_are_served(faulty):
    gw, *_ = faulty
    for _ in range(3):
        assert gw.get("/x", host="nxdomain.test").status == 502
        good_still_served(gw)
    assert errors(gw, "nxdomain", "no_server") >= 3
    wait_for(lambda: "does-not-exist.invalid" in gw.stderr_text(), 5, what="the error log line")


class EndlessUpstream(ThreadedServer):
    """Answers every request with Content-Length: 4 GiB and streams until the
    gateway closes the connection. Records how many connections ended."""

    def __init__(self):
        super().__init__(backlog=16)
        self.ended = 0
        self.sent = 0
        self.start()

    def _serve(self, s, cid):
        block = b"y" * 65536
        try:
            s.settimeout(30)
            buf = b""
            while b"\r\n\r\n" not in buf:
                d = s.recv(4096)
                if not d:
                    return
                buf += d
            s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 4294967296\r\n\r\n")
            while True:
                s.sendall(block)
                self.sent += len(block)
        except OSError:
            pass
        finally:
            s.close()
            self.ended += 1


def test_endless_body_streams_and_client_can_abort(gateway, upstream):
    """A 4 GiB response streams without memory growth; the client aborts after
    64 MiB and the gateway lets go of the upstream connection."""
    endless = EndlessUpstream()
    good = upstream("good")
    hp, ap = free_port(), free_port()
    gw = gateway(make_config(hp, ap, {"endless": [endless.addr], "good": [good.addr]},
                             [{"hosts": ["endless.test"], "upstream": "endless"},
                              {"hosts": ["good.test"], "upstream": "good"}],
                             log={"access": True, "level": "info"}))
    try:
        rss0 = gw.rss_kb()
        s = socket.create_connection(("127.0.0.1", gw.http_port), timeout=10)
        s.sendall(b"GET /endless HTTP/1.1\r\nHost: endless.test\r\n\r\n")
        got = 0
        peak = rss0
        while got < 64 << 20:
            d = s.recv(1 << 20)
            assert d
            got += len(d)
            if got % (8 << 20) < len(d):
                peak = max(peak, gw.rss_kb())
        s.close()
        assert peak - rss0 < 32 * 1024, "RSS grew %d kB while streaming" % (peak - rss0)
        wait_for(lambda: endless.ended == 1, 10, 0.1, "the upstream connection to be closed")
        sent = endless.sent
        time.sleep(0.3)
        assert endless.sent == sent  # nothing more is pulled from the upstream
        good_still_served(gw)
        log = gw.wait_access_log(1)
        assert any(e.get("path") == "/endless" for e in log)
    finally:
        endless.stop()


def test_reset_before_any_answer_resends_only_what_is_safe(gateway, upstream):
    """A fresh upstream connection reset before any response byte (a server going away resets
    its accept queue): GET, HEAD and OPTIONS without a body go to another server; a POST, which
    the server may have acted on, gets 502 and is never sent twice."""
    a, b = upstream("a"), upstream("b")
    hp, ap = free_port(), free_port()
    gw = gateway(make_config(
        hp, ap,
        upstreams={"ab": {"servers": [a.addr, b.addr], "balance": "round_robin",
                          "keepalive": 0},
                   "a": {"servers": [a.addr], "keepalive": 0}},
        sites=[{"hosts": ["ab.test"], "upstream": "ab"}, {"hosts": ["a.test"], "upstream": "a"}]))
    for _ in range(6):
        r = gw.get("/reset?only=a", host="ab.test")
        assert r.status == 200 and r.header("X-Upstream") == "b", r
    assert len(a.started) >= 2  # round robin sent some to a first: each went on to b
    posts = [gw.request("POST", "/reset?only=a", host="ab.test", body=b"once").status
             for _ in range(6)]
    assert posts.count(502) >= 2 and set(posts) <= {200, 502}, posts
    assert len([r for r in b.requests if r["method"] == "POST"]) == posts.count(200)
    # With nowhere else to go, the GET gets 502, and the server saw it once.
    before = len(a.started)
    assert gw.get("/reset", host="a.test").status == 502
    assert len(a.started) == before + 1
