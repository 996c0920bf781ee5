"""HTTP/2 on the HTTPS listener: ALPN, streams forwarded as HTTP/1.1 requests (routing, pin
cookie, forwarded headers, bodies both ways, de-chunked answers), strictness at the h2->h1 edge
(each malformed request is reset or refused and never reaches the upstream), flow control tied
to progress, limits and floods, drain and reload. Black-box: curl --http2, nghttp, h2load and a
python3-h2 client with its own checks turned off."""

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import time

import pytest

from certs import TestCA
from h2util import (CONTINUATION, DATA, END_HEADERS, END_STREAM, H2Client, H2Gw, HEADERS, PING,
                    SETTINGS, frame, tls_h2_socket)
from helpers import Upstream, free_port, pattern_bytes, version_block, wait_for
from tlsutil import TlsClient, client_ctx, served, tls_config

ENHANCE_YOUR_CALM, PROTOCOL_ERROR, REFUSED_STREAM, SETTINGS_TIMEOUT = 0xb, 0x1, 0x7, 0x4
GOAWAY = 0x7
NEED = [t for t in ("curl", "nghttp", "h2load") if not shutil.which(t)]
pytestmark = pytest.mark.skipif(bool(NEED), reason="missing %s (nghttp2-client, curl)" % NEED)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    ca = TestCA(tmp_path_factory.mktemp("pki-h2"))
    return {"ca": ca, "a": ca.issue("a", ["a.test", "b.test"], key="ec")}


@pytest.fixture
def start_h2(gateway, upstream, pki):
    def start(http2=None, timeouts=None, limits=None, workers=1, default="4.2.0"):
        ups = {"4.1.0": upstream("4.1.0"), "4.2.0": upstream("4.2.0")}
        h, s, a = free_port(), free_port(), free_port()
        extra = {"http2": http2} if http2 else None
        cfg = tls_config(
            h, s, a, {"v1": [ups["4.1.0"].addr], "v2": [ups["4.2.0"].addr]},
            [{"hosts": ["a.test"],
              "version": version_block({"4.1.0": "v1", "4.2.0": "v2"}, default)}],
            [pki["a"]], hsts="max-age=60", workers=workers, timeouts=timeouts, limits=limits,
            extra=extra)
        return H2Gw(gateway(cfg), s, ups, pki, cfg)
    return start


def sanitized(binary):
    with open(binary, "rb") as f:
        return b"__asan_init" in f.read()


def hdr(headers, name):
    for k, v in headers:
        if k.lower() == name.lower():
            return v
    return None


def base(path="/", method="GET", authority="a.test"):
    return [(":method", method), (":scheme", "https"), (":path", path), (":authority", authority)]


def defence(gw, name):
    return gw.metric("switchyard_http2_defence_trips_total", defence=name)


def goaways(gw, reason):
    return gw.metric("switchyard_http2_goaways_sent_total", reason=reason)


# ---------------------------------------------------------------- ALPN

def test_alpn_prefers_h2_and_can_be_turned_off(start_h2, pki):
    gw = start_h2()
    ca = pki["ca"].cert
    assert served(gw.port, "a.test", client_ctx(ca, alpn=("http/1.1", "h2")))[2] == "h2"
    assert served(gw.port, "a.test", client_ctx(ca, alpn=("http/1.1",)))[2] == "http/1.1"
    assert served(gw.port, "a.test", client_ctx(ca, alpn=("h2",)))[2] == "h2"
    off = start_h2(http2={"enabled": False})
    assert served(off.port, "a.test", client_ctx(ca, alpn=("h2", "http/1.1")))[2] == "http/1.1"
    assert served(off.port, "a.test", client_ctx(ca, alpn=("h2",)))[2] is None
    status, hdrs, _ = off.curl("/x")
    assert status.startswith("HTTP/1.1 200"), status


# ---------------------------------------------------------------- metrics

def test_metrics_count_h2_connections_streams_and_protocol(start_h2):
    gw = start_h2()
    assert gw.metric("switchyard_http2_connections_total") == 0
    c = gw.client()
    for i in range(3):
        assert c.get("/m%d" % i).status == 200
    c.close()
    status, _, _ = gw.curl("/h1", "--http1.1")
    assert status.startswith("HTTP/1.1 200"), status
    wait_for(lambda: gw.metric("switchyard_requests_total", protocol="HTTP/2") == 3, 5,
             what="3 HTTP/2 requests counted")
    assert gw.metric("switchyard_requests_total", protocol="HTTP/1.1", code="2xx") == 1
    assert gw.metric("switchyard_request_duration_seconds_count", protocol="HTTP/2") == 3
    assert gw.metric("switchyard_request_duration_seconds_count", protocol="HTTP/1.1") == 1
    assert gw.metric("switchyard_http2_connections_total") == 1
    assert gw.metric("switchyard_http2_streams_total") == 3
    assert gw.metric("switchyard_http2_client_resets_total") == 0
    assert gw.metric("switchyard_http2_defence_trips_total") == 0
    # a stream the client resets
    c = gw.client()
    sid = c.request(base("/slow?ms=500"))
    c.conn.reset_stream(sid)
    c.flush()
    assert c.get("/after").status == 200
    c.close()
    assert gw.metric("switchyard_http2_client_resets_total") == 1
    assert gw.metric("switchyard_http2_connections_total") == 2
    assert gw.metric("switchyard_http2_streams_total") == 5


def test_drain_goaway_is_counted(start_h2):
    gw = start_h2(timeouts={"drain": "10s"})
    c = gw.client()
    sid = c.request(base("/slow?ms=1500"))
    wait_for(lambda: gw.started() == 1, 5, what="the slow request upstream")
    gw.signal(signal.SIGTERM)
    wait_for(lambda: goaways(gw, "drain") == 1, 5, what="a drain GOAWAY counted")
    c.wait(sid)
    c.close()
    assert gw.proc.wait(15) == 0


# ---------------------------------------------------------------- forwarding

def test_routing_pin_cookie_and_forwarded_headers_over_h2(start_h2):
    gw = start_h2()
    # default version
    status, hdrs, body = gw.curl("/a")
    assert status.startswith("HTTP/2 200"), status
    assert hdr(hdrs, "x-upstream") == "4.2.0" and hdr(hdrs, "x-postfacto-version") == "4.2.0"
    assert hdr(hdrs, "strict-transport-security") == "max-age=60"
    assert hdr(hdrs, "set-cookie") is None
    rec = json.loads(body)
    fwd = {k.lower(): v for k, v in rec["headers"]}
    assert fwd["host"] == "a.test:%d" % gw.port
    assert fwd["x-forwarded-proto"] == "https" and fwd["x-forwarded-for"] == "127.0.0.1"
    assert fwd["x-forwarded-host"] == "a.test:%d" % gw.port
    assert len(fwd["x-request-id"]) == 32
    assert "transfer-encoding" not in fwd and "content-length" not in fwd
    # by header: pinned with a Secure cookie
    status, hdrs, body = gw.curl("/b", "-H", "X-Postfacto-Version: 4.1.0")
    assert hdr(hdrs, "x-upstream") == "4.1.0"
    assert hdr(hdrs, "set-cookie") == \
        "postfacto_version=4.1.0; Path=/; HttpOnly; SameSite=Lax; Secure"
    # by query
    status, hdrs, body = gw.curl("/c?postfacto_version=4.1.0")
    assert hdr(hdrs, "x-upstream") == "4.1.0" and hdr(hdrs, "set-cookie")
    # by cookie: no new pin
    status, hdrs, body = gw.curl("/d", "-H", "Cookie: postfacto_version=4.1.0")
    assert hdr(hdrs, "x-upstream") == "4.1.0" and hdr(hdrs, "set-cookie") is None
    # hop-by-hop fields of the answer are dropped
    status, hdrs, body = gw.curl("/hop-response")
    names = {k.lower() for k, _ in hdrs}
    assert not names & {"connection", "keep-alive", "proxy-connection", "upgrade",
                        "x-resp-secret"}, names
    # several Set-Cookie fields stay separate
    status, hdrs, body = gw.curl("/set-cookie")
    assert [v for k, v in hdrs if k.lower() == "set-cookie"] == \
        ["session=abc; Path=/", "theme=dark; Path=/"]
    log = gw.wait_access_log(6)
    assert all(e["protocol"] == "HTTP/2" for e in log), log
    assert [e["version_source"] for e in log[:4]] == ["default", "header", "query", "cookie"]


def test_cookie_fields_are_joined_for_the_pin_and_the_upstream(start_h2):
    gw = start_h2()
    c = gw.client()
    st = c.get("/j", headers=[("cookie", "a=1"), ("cookie", "postfacto_version=4.1.0"),
                              ("x-other", "y"), ("cookie", "b=2")])
    assert st.status == 200 and st.header("x-upstream") == "4.1.0"
    rec = gw.ups["4.1.0"].requests[-1]
    cookies = [v for k, v in rec["headers"] if k.lower() == "cookie"]
    assert cookies == ["a=1; postfacto_version=4.1.0; b=2"], rec["head"]
    c.close()


def test_gateway_answers_over_h2(start_h2):
    gw = start_h2()
    c = gw.client()
    st = c.get("/x", authority="nosuch.test")
    assert st.status == 404 and st.ended and bytes(st.body) == b"no site for this host\n"
    assert st.header("content-length") == str(len(st.body))
    st = c.get("/y")   # the connection goes on
    assert st.status == 200
    c.close()


@pytest.mark.parametrize("mode", ["content-length", "chunked"])
def test_request_bodies(start_h2, tmp_path, mode):
    gw = start_h2()
    data = pattern_bytes(3 * 1000 * 1000 + 7, seed=3)
    f = tmp_path / "body"
    f.write_bytes(data)
    if mode == "content-length":
        args = ["--data-binary", "@%s" % f]
    else:   # from a pipe: curl knows no length, so the stream carries none
        args = ["-T", "-", "-X", "POST"]
    cmd = ["curl", "-s", "--http2", "--cacert", gw.pki["ca"].cert, "--resolve",
           "a.test:%d:127.0.0.1" % gw.port, *args, gw.url("/sink")]
    out = subprocess.run(cmd, input=data if mode == "chunked" else None, capture_output=True,
                         timeout=60)
    rec = json.loads(out.stdout)
    assert rec["body_len"] == len(data)
    assert rec["body_sha256"] == hashlib.sha256(data).hexdigest()
    assert rec["chunked"] == (mode == "chunked")
    fwd = {k.lower(): v for k, v in rec["headers"]}
    if mode == "content-length":
        assert fwd["content-length"] == str(len(data))
    else:
        assert fwd["transfer-encoding"] == "chunked" and "content-length" not in fwd
    log = gw.wait_access_log(1)
    assert log[-1]["bytes_in"] >= len(data)


def test_expect_100_continue(start_h2):
    gw = start_h2()
    data = pattern_bytes(200000, seed=5)
    cmd = ["curl", "-s", "-v", "--http2", "--cacert", gw.pki["ca"].cert, "--resolve",
           "a.test:%d:127.0.0.1" % gw.port, "-H", "Expect: 100-continue", "--data-binary", "@-",
           gw.url("/sink")]
    out = subprocess.run(cmd, input=data, capture_output=True, timeout=60)
    assert b"HTTP/2 100" in out.stderr, out.stderr[-2000:]
    rec = json.loads(out.stdout)
    assert rec["body_len"] == len(data)
    assert "expect" not in {k.lower() for k, _ in rec["headers"]}


def test_echo_small_bodies_and_chunked_answers(start_h2):
    gw = start_h2()
    c = gw.client()
    # a body in many small DATA frames, no content-length: chunked upstream, echoed chunked
    sid = c.request(base("/chunked", "POST"), end_stream=False)
    payload = b"".join(b"piece-%d;" % i for i in range(500))
    for i in range(0, len(payload), 37):
        c.conn.send_data(sid, payload[i:i + 37])
        c.flush()
    c.conn.end_stream(sid)
    c.flush()
    st = c.wait(sid)
    assert st.status == 200 and bytes(st.body) == payload
    assert gw.ups["4.2.0"].requests[-1]["chunked"]
    # an empty body with END_STREAM on a DATA frame
    sid = c.request(base("/echo", "POST"), body=b"")
    st = c.wait(sid)
    assert st.status == 200 and bytes(st.body) == b""
    # a large chunked answer, de-chunked into DATA frames
    st = c.get("/big-chunked?bytes=3000000", timeout=30)
    assert st.status == 200 and bytes(st.body) == pattern_bytes(3000000)
    assert st.header("transfer-encoding") is None
    # HEAD: no DATA
    sid = c.request(base("/big?bytes=1000", "HEAD"))
    st = c.wait(sid)
    assert st.status == 200 and st.ended and not st.body
    c.close()


def test_concurrency_h2load(start_h2):
    gw = start_h2(workers=2)
    out = subprocess.run(["h2load", "-n", "2000", "-c", "4", "-m", "10",
                          "-H", ":authority: a.test", "https://127.0.0.1:%d/load" % gw.port],
                         capture_output=True, text=True, timeout=180)
    assert "2000 succeeded" in out.stdout, out.stdout[-2000:]
    assert "status codes: 2000 2xx" in out.stdout, out.stdout[-2000:]


def test_nghttp_many_streams_on_one_connection(start_h2):
    gw = start_h2()
    urls = [gw.url("/n%d?postfacto_version=4.1.0" % i).replace("a.test", "127.0.0.1")
            for i in range(30)]
    out = subprocess.run(["nghttp", "-n", "-s", "-H", ":authority: a.test", *urls],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert len(gw.ups["4.1.0"].requests) == 30


# ---------------------------------------------------------------- strictness

MALFORMED = {
    "connection": base() + [("connection", "keep-alive")],
    "keep-alive": base() + [("keep-alive", "timeout=5")],
    "proxy-connection": base() + [("proxy-connection", "keep-alive")],
    "transfer-encoding": base("/", "POST") + [("transfer-encoding", "chunked")],
    "upgrade": base() + [("upgrade", "websocket")],
    "te-gzip": base() + [("te", "gzip")],
    "uppercase-name": base() + [("X-Foo", "1")],
    "colon-in-name": base() + [("x:foo", "1")],
    "space-in-name": base() + [("x foo", "1")],
    "crlf-in-value": base() + [("x-a", "1\r\nx-injected: 1")],
    "lf-in-value": base() + [("x-a", "1\nx-injected: 1")],
    "nul-in-value": base() + [("x-a", "1\x00")],
    "leading-space": base() + [("x-a", " 1")],
    "trailing-tab": base() + [("x-a", "1\t")],
    "duplicate-path": base() + [(":path", "/other")],
    "duplicate-method": [(":method", "GET")] + base(),
    "unknown-pseudo": base() + [(":foo", "bar")],
    "pseudo-after-regular": [(":method", "GET"), (":scheme", "https"), ("x-a", "1"),
                             (":path", "/"), (":authority", "a.test")],
    "status-in-request": base() + [(":status", "200")],
    "no-path": [(":method", "GET"), (":scheme", "https"), (":authority", "a.test")],
    "no-method": [(":scheme", "https"), (":path", "/"), (":authority", "a.test")],
    "no-scheme": [(":method", "GET"), (":path", "/"), (":authority", "a.test")],
    "empty-path": base(""),
    "absolute-path": base("https://a.test/"),
    "relative-path": base("x/y"),
    "asterisk-with-get": base("*"),
    "space-in-path": base("/a b"),
    "path-with-crlf": base("/a\r\nx-injected: 1"),
    "method-with-space": base("/", "GE T"),
    "authority-host-conflict": base() + [("host", "b.test")],
    "two-hosts": [(":method", "GET"), (":scheme", "https"), (":path", "/"),
                  ("host", "a.test"), ("host", "b.test")],
    "two-content-lengths": base("/", "POST") + [("content-length", "1"),
                                                ("content-length", "1")],
    "content-length-list": base("/", "POST") + [("content-length", "1, 1")],
    "content-length-without-data": base("/", "POST") + [("content-length", "5")],
}


def _malformed_then_ok(gw, headers, end_stream=True):
    c = gw.client()
    sid = c.request(headers, end_stream=end_stream)
    st = c.wait(sid)
    refused = st.reset is not None or (st.status is not None and 400 <= st.status < 500)
    assert refused, "not refused: %r" % st
    ok = None
    if not c.closed and c.goaway is None:
        ok = c.get("/after")  # a stream error: the connection goes on
        assert ok.status == 200, ok
    c.close()
    time.sleep(0.2)
    return st, ok


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_request_is_never_forwarded(start_h2, case):
    gw = start_h2()
    st, ok = _malformed_then_ok(gw, MALFORMED[case])
    paths = [r["path"] for u in gw.ups.values() for r in u.started]
    assert paths in ([], ["/after"]), "forwarded: %r" % paths


def test_te_trailers_is_allowed_and_not_forwarded(start_h2):
    gw = start_h2()
    c = gw.client()
    st = c.get("/t", headers=[("te", "trailers")])
    assert st.status == 200
    rec = json.loads(bytes(st.body))
    assert "te" not in {k.lower() for k, _ in rec["headers"]}
    c.close()


@pytest.mark.parametrize("sent", [5, 20])
def test_content_length_disagreeing_with_data_aborts_upstream(start_h2, sent):
    gw = start_h2()
    c = gw.client()
    sid = c.request(base("/sink", "POST") + [("content-length", "10")], end_stream=False)
    c.conn.send_data(sid, b"x" * sent, end_stream=True)
    c.flush()
    st = c.wait(sid)
    assert st.reset is not None, st
    assert c.get("/after").status == 200
    c.close()
    time.sleep(0.3)
    # the upstream never got a complete request with that body
    sinks = [r for u in gw.ups.values() for r in u.requests if r["path"] == "/sink"]
    assert sinks == [], sinks


def test_header_list_too_large_is_431(start_h2):
    gw = start_h2(http2={"max_header_list_size": "4k"})
    c = gw.client()
    st = c.get("/big-head", headers=[("x-h%d" % i, "v" * 100) for i in range(60)])
    assert st.status == 431, st
    st = c.get("/ok")
    assert st.status == 200
    c.close()
    assert [r["path"] for u in gw.ups.values() for r in u.started] == ["/ok"]


def test_too_many_fields_is_431_and_long_path_414(start_h2):
    gw = start_h2(limits={"max_headers": 10, "max_uri": 64})
    c = gw.client()
    assert c.get("/f", headers=[("x-h%d" % i, "v") for i in range(11)]).status == 431
    assert c.get("/" + "p" * 80).status == 414
    assert c.get("/fine", headers=[("x-h%d" % i, "v") for i in range(9)]).status == 200
    c.close()


# ---------------------------------------------------------------- trailers

# What a trailer may carry on both sides; Upstream.TRAILERS also has fields it must not.
PASSED = [("x-checksum", "sha256=abc"), ("grpc-status", "0"), ("x-spaced", "two words")]


def _send_with_trailers(c, headers, body, trailers):
    sid = c.request(headers, end_stream=False)
    c.conn.send_data(sid, body)
    c.conn.send_headers(sid, trailers, end_stream=True)
    c.flush()
    return sid


def test_request_trailers_reach_the_upstream_in_the_last_chunk(start_h2):
    gw = start_h2()
    c = gw.client()
    sid = _send_with_trailers(c, base("/sink", "POST"), b"hello" * 100,
                              [("x-checksum", "abc"), ("host", "evil.test"),
                               ("x-forwarded-for", "6.6.6.6"), ("grpc-timeout", "1S")])
    st = c.wait(sid)
    assert st.status == 200, st
    rec = json.loads(bytes(st.body))
    assert rec["chunked"] and rec["body_len"] == 500
    assert rec["trailers"] == [["x-checksum", "abc"], ["grpc-timeout", "1S"]], rec
    # with content-length the request went upstream unchunked: trailers are dropped
    sid = _send_with_trailers(c, base("/sink", "POST") + [("content-length", "5")], b"hello",
                              [("x-checksum", "abc")])
    st = c.wait(sid)
    assert st.status == 200, st
    rec = json.loads(bytes(st.body))
    assert not rec["chunked"] and rec["body_len"] == 5 and rec["trailers"] == [], rec
    # an empty body, then trailers
    sid = c.request(base("/sink", "POST"), end_stream=False)
    c.conn.send_headers(sid, [("x-only", "trailers")], end_stream=True)
    c.flush()
    rec = json.loads(bytes(c.wait(sid).body))
    assert rec["body_len"] == 0 and rec["trailers"] == [["x-only", "trailers"]], rec
    c.close()


@pytest.mark.parametrize("case", ["pseudo", "uppercase", "crlf", "connection"])
def test_malformed_request_trailers_reset_the_stream(start_h2, case):
    gw = start_h2()
    bad = {"pseudo": (":path", "/x"), "uppercase": ("X-Up", "1"),
           "crlf": ("x-a", "1\r\nx-injected: 1"), "connection": ("connection", "close")}[case]
    c = gw.client()
    sid = _send_with_trailers(c, base("/sink", "POST"), b"abc", [("x-ok", "1"), bad])
    st = c.wait(sid)
    assert st.reset is not None or c.closed, st
    if not c.closed:
        assert c.get("/after").status == 200
    c.close()
    time.sleep(0.3)
    assert [r for u in gw.ups.values() for r in u.requests if r["path"] == "/sink"] == []


def test_request_trailers_over_the_limit_get_431(start_h2):
    gw = start_h2(http2={"max_header_list_size": "4k"})
    c = gw.client()
    sid = _send_with_trailers(c, base("/sink", "POST"), b"abc",
                              [("x-t%d" % i, "v" * 100) for i in range(60)])
    st = c.wait(sid)
    assert st.status == 431, st
    assert c.get("/after").status == 200
    c.close()
    time.sleep(0.3)
    assert [r for u in gw.ups.values() for r in u.requests if r["path"] == "/sink"] == []


def test_request_trailers_far_beyond_the_limit_close_the_connection(start_h2):
    gw = start_h2(http2={"max_header_list_size": "1k"})
    c = gw.client()
    try:
        _send_with_trailers(c, base("/sink", "POST"), b"abc",
                            [("x-t%d" % i, "v" * 1000) for i in range(80)])
    except OSError:
        pass
    c.wait_closed(10)
    assert c.goaway == ENHANCE_YOUR_CALM, c.goaway
    assert defence(gw, "header_list_size") == 1
    assert [r for u in gw.ups.values() for r in u.requests if r["path"] == "/sink"] == []


def test_response_trailers_become_a_trailing_headers_frame(start_h2):
    gw = start_h2()
    c = gw.client()
    st = c.get("/trailers")
    assert st.status == 200 and st.ended and st.reset is None, st
    assert json.loads(bytes(st.body))["upstream"] == "4.2.0"
    assert st.trailers == PASSED, st.trailers
    assert st.header("trailer") is None   # hop-by-hop in HTTP/1.1 framing
    # the connection goes on, and an answer without trailers has none
    st = c.get("/chunked")
    assert st.status == 200 and st.trailers is None
    c.close()


def test_http1_chunked_trailers_pass_through_both_ways(start_h2):
    gw = start_h2()
    c = TlsClient(gw.port, "a.test", client_ctx(gw.pki["ca"].cert))
    c.send(b"POST /trailers HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n"
           b"Connection: close\r\n\r\n3\r\nabc\r\n0\r\nX-Req-Trailer: yes\r\n\r\n")
    _, status, _, head = c.read_head()
    while c._fill():
        pass
    body = c.buf
    c.close()
    assert status == 200 and hdr(head, "transfer-encoding") == "chunked", head
    # the upstream's trailer section reaches an HTTP/1.1 client as it was sent
    tail = b"".join(b"%s: %s\r\n" % (k.encode(), v.encode()) for k, v in Upstream.TRAILERS)
    assert body.endswith(b"\r\n0\r\n" + tail + b"\r\n"), body[-400:]
    rec = gw.ups["4.2.0"].requests[-1]
    assert rec["trailers"] == [("X-Req-Trailer", "yes")], rec["trailers"]


# ---------------------------------------------------------------- flow control, memory

def test_large_download_to_a_slow_reader_keeps_memory_flat(start_h2):
    gw = start_h2()
    size = int(os.environ.get("SWITCHYARD_H2_DOWNLOAD_MB", "200")) << 20
    c = gw.client(window=65535)
    c.auto_ack = False
    sid = c.request(base("/big?bytes=%d" % size))
    st = c.streams[sid]
    base_rss = gw.rss_kb()
    peak = base_rss
    digest = hashlib.sha256()
    seen = 0
    last_pause = 0
    deadline = time.monotonic() + 240
    while not (st.ended or st.reset is not None or c.closed):
        assert time.monotonic() < deadline, "download too slow: %d bytes" % seen
        c.read_some(5)
        if st.body:
            digest.update(st.body)
            seen += len(st.body)
            unacked = getattr(st, "unacked", 0)
            st.body = bytearray()
            # the client reads slowly: it opens its windows only after a pause per MiB
            if seen - last_pause >= 1 << 20:
                last_pause = seen
                time.sleep(0.02)
                peak = max(peak, gw.rss_kb())
            c.conn.acknowledge_received_data(unacked, sid)
            st.unacked = 0
            c.flush()
    assert st.ended and st.reset is None, st
    assert seen == size
    assert digest.hexdigest() == hashlib.sha256(pattern_bytes(size)).hexdigest()
    growth = peak - base_rss
    print("h2 download of %d MiB to a slow reader: RSS %d KiB, peak growth %d KiB" % (
        size >> 20, base_rss, growth))
    # Under AddressSanitizer freed blocks sit in its quarantine (OpenSSL frees its record
    # buffers after each write: SSL_MODE_RELEASE_BUFFERS), so RSS says nothing there.
    if not sanitized(gw.binary):
        assert growth < 16 * 1024, "RSS grew by %d KiB during a %d MiB download" % (
            growth, size >> 20)
    c.close()


def test_stalled_reader_stops_the_upstream_read(start_h2):
    """A client that never opens its window: the gateway stops reading the upstream (the
    upstream's socket fills up), holds only a few buffers, and the stream is reset after
    timeouts.client_body while the connection goes on."""
    gw = start_h2(timeouts={"client_body": "2s"})
    c = gw.client(window=65535)
    c.auto_ack = False
    sid = c.request(base("/big?bytes=%d" % (256 << 20)))
    st = c.wait(sid, timeout=15)
    assert st.reset is not None, st
    assert len(st.body) <= 65535
    assert defence(gw, "stalled_reader") == 1
    if not sanitized(gw.binary):
        assert gw.rss_kb() < 64 * 1024
    c.auto_ack = True
    # the connection window still has room for another stream
    assert c.get("/after").status == 200
    c.close()


# ---------------------------------------------------------------- limits and floods

def test_max_concurrent_streams(start_h2):
    gw = start_h2(http2={"max_concurrent_streams": 2})
    c = gw.client()
    # sent before the client read the server's SETTINGS: its library does not hold them back
    sids = [c.request(base("/slow?ms=1000")) for _ in range(2)] + [c.request(base("/third"))]
    res = [c.wait(s) for s in sids]
    assert c.remote_settings.get(3) == 2   # SETTINGS_MAX_CONCURRENT_STREAMS
    assert [r.status for r in res[:2]] == [200, 200], res
    assert res[2].reset == REFUSED_STREAM, res
    paths = [r["path"] for u in gw.ups.values() for r in u.started]
    assert "/third" not in paths, paths
    assert c.get("/after").status == 200
    c.close()


def test_rapid_reset_gets_goaway(start_h2):
    gw = start_h2(http2={"max_resets": 50})
    c = gw.client()
    for i in range(200):
        sid = c.request(base("/slow?ms=2000"))
        c.conn.reset_stream(sid)
        c.flush()
        if c.closed:
            break
    c.wait_closed(10)
    assert c.goaway == ENHANCE_YOUR_CALM, c.goaway
    wait_for(lambda: "too many stream resets" in gw.stderr_text(), 5, what="the warning")
    assert gw.metric("switchyard_http2_client_resets_total") >= 51
    assert defence(gw, "rapid_reset") == 1 and goaways(gw, "enhance_your_calm") == 1
    # the gateway is fine
    c2 = gw.client()
    assert c2.get("/after").status == 200
    c2.close()


def test_resets_the_client_provokes_count_as_its_own(start_h2):
    """MadeYouReset (CVE-2025-8671): each stream sends more DATA than its content-length, so
    the gateway resets it (PROTOCOL_ERROR) and the client never sends RST_STREAM itself."""
    gw = start_h2(http2={"max_resets": 50})
    c = gw.client()
    try:
        for i in range(400):
            sid = c.request(base("/slow?ms=2000", "POST") + [("content-length", "1")],
                            end_stream=False)
            c.raw(frame(DATA, END_STREAM, sid, b"xx"))
    except OSError:
        pass  # the gateway closed first
    c.wait_closed(10)
    assert c.goaway == ENHANCE_YOUR_CALM, c.goaway
    assert defence(gw, "rapid_reset") == 1
    assert gw.metric("switchyard_http2_client_resets_total") == 0
    assert gw.started() <= 51


def test_ping_flood_gets_goaway(start_h2):
    gw = start_h2()
    c = gw.client()
    flood = b"".join(frame(PING, 0, 0, b"%08d" % i) for i in range(1500))
    try:
        c.raw(flood)
    except OSError:
        pass
    c.wait_closed(10)
    assert c.goaway == ENHANCE_YOUR_CALM, c.goaway
    assert defence(gw, "control_flood") == 1 and goaways(gw, "enhance_your_calm") == 1


def test_empty_data_flood_trips_once(start_h2):
    """Frames still arriving after the GOAWAY are neither logged nor counted again."""
    gw = start_h2()
    c = gw.client()
    sid = c.request(base("/sink", "POST"), end_stream=False)
    try:
        c.raw(frame(DATA, 0, sid, b"") * 3000)
    except OSError:
        pass
    c.wait_closed(10)
    assert c.goaway == ENHANCE_YOUR_CALM, c.goaway
    assert defence(gw, "control_flood") == 1
    wait_for(lambda: "too many control frames" in gw.stderr_text(), 5, what="the warning")
    assert gw.stderr_text().count("too many control frames") == 1


def test_continuation_flood_closes_the_connection(start_h2):
    gw = start_h2()
    c = gw.client()
    block = c.encode(base("/cont"))
    c.raw(frame(HEADERS, 0, 1, block))
    try:
        for i in range(200):
            c.raw(frame(CONTINUATION, 0, 1, c.encode([("x-c%d" % i, "v" * 20)])))
    except (OSError, ValueError):
        pass  # the gateway closed first
    c.wait_closed(10)
    assert c.goaway == ENHANCE_YOUR_CALM, c.goaway
    assert gw.started() == 0
    assert defence(gw, "continuation_flood") == 1


def test_header_block_far_beyond_the_limit_closes_the_connection(start_h2):
    gw = start_h2(http2={"max_header_list_size": "1k"})
    c = gw.client()
    try:
        c.request(base("/huge") + [("x-h%d" % i, "v" * 1000) for i in range(80)])
    except OSError:
        pass
    c.wait_closed(10)
    assert c.goaway == ENHANCE_YOUR_CALM, c.goaway
    assert gw.started() == 0
    assert defence(gw, "header_list_size") == 1


def test_settings_never_acknowledged_gets_goaway_settings_timeout(start_h2):
    gw = start_h2(http2={"settings_timeout": "1s"})
    s = tls_h2_socket(gw.port, gw.pki["ca"].cert)
    # the preface and an empty SETTINGS, and never the ACK of the gateway's
    s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(SETTINGS, 0, 0, b""))
    t0 = time.monotonic()
    data = b""
    s.settimeout(10)
    while True:
        try:
            d = s.recv(65536)
        except OSError:
            break
        if not d:
            break
        data += d
    elapsed = time.monotonic() - t0
    s.close()
    frames, off = [], 0
    while off + 9 <= len(data):
        n = int.from_bytes(data[off:off + 3], "big")
        frames.append((data[off + 3], data[off + 9:off + 9 + n]))
        off += 9 + n
    codes = [int.from_bytes(p[4:8], "big") for t, p in frames if t == GOAWAY]
    assert codes == [SETTINGS_TIMEOUT], frames
    assert 0.9 <= elapsed < 5, elapsed
    assert defence(gw, "settings_timeout") == 1 and goaways(gw, "settings_timeout") == 1
    # a client that acknowledges is not closed when the time is up
    c = gw.client()
    c.read_some(2)   # the gateway's SETTINGS, acknowledged
    time.sleep(1.5)
    assert c.get("/still").status == 200
    c.close()


def test_idle_connection_gets_goaway_then_closes(start_h2):
    gw = start_h2(timeouts={"keepalive": "1s"})
    c = gw.client()
    assert c.get("/x").status == 200
    t0 = time.monotonic()
    c.wait_closed(10)
    assert c.goaway == 0
    assert time.monotonic() - t0 < 8
    assert goaways(gw, "idle") == 1 and goaways(gw, "drain") == 0


def test_unfinished_header_block_times_out(start_h2):
    gw = start_h2(timeouts={"client_header": "1s"})
    c = gw.client()
    c.read_some(2)   # its SETTINGS acknowledged first: nothing but the block is sent after
    c.raw(frame(HEADERS, 0, 1, c.encode(base("/never"))))   # no END_HEADERS, no CONTINUATION
    t0 = time.monotonic()
    c.wait_closed(10)
    assert time.monotonic() - t0 < 8
    assert gw.started() == 0
    assert defence(gw, "header_timeout") == 1 and goaways(gw, "protocol_error") == 1


def test_client_reset_mid_download_ends_the_exchange(start_h2):
    gw = start_h2()
    c = gw.client(window=65535)
    c.auto_ack = False
    sid = c.request(base("/big?bytes=%d" % (64 << 20)))
    deadline = time.monotonic() + 10
    while not c.streams[sid].body and time.monotonic() < deadline:
        c.read_some(1)
    c.conn.reset_stream(sid)
    c.flush()
    c.auto_ack = True
    assert c.get("/after").status == 200
    log = gw.wait_access_log(2)
    big = [e for e in log if e["path"].startswith("/big")]
    assert len(big) == 1 and big[0]["bytes_out"] < 64 << 20, log
    # the upstream connection of the reset stream was closed, not pooled with a half answer
    wait_for(lambda: gw.ups["4.2.0"].conn_count == 2, 5, what="a second upstream connection")
    c.close()


# ---------------------------------------------------------------- drain and reload

def test_sigterm_sends_goaway_and_lets_open_streams_finish(start_h2):
    gw = start_h2(timeouts={"drain": "10s"})
    # nghttp: python3-h2 takes a GOAWAY for the end of every stream
    p = subprocess.Popen(["nghttp", "-v", "-H", ":authority: a.test",
                          "https://127.0.0.1:%d/slow?ms=1500" % gw.port],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_for(lambda: gw.started() == 1, 5, what="the slow request upstream")
    gw.signal(signal.SIGTERM)
    out, _ = p.communicate(timeout=20)
    assert "recv GOAWAY frame" in out and "error_code=NO_ERROR" in out, out
    # a client that answers the PING gets the final GOAWAY one round trip after the notice
    assert out.count("recv GOAWAY frame") == 2, out
    sid = re.search(r"send HEADERS frame <[^>]*stream_id=(\d+)>", out).group(1)
    final = "last_stream_id=%s," % sid
    assert re.search(r"send PING frame <length=8, flags=0x01", out), out
    assert out.index("last_stream_id=2147483647") < out.index(final) < out.index(":status: 200")
    assert "recv DATA frame" in out and "; END_STREAM" in out, out
    assert gw.proc.wait(15) == 0
    assert gw.access_log()[-1]["status"] == 200


def test_sigterm_closes_idle_h2_connections(start_h2):
    gw = start_h2(timeouts={"drain": "20s"})
    c = gw.client()
    assert c.get("/x").status == 200
    t0 = time.monotonic()
    gw.signal(signal.SIGTERM)
    c.wait_closed(10)
    assert c.goaway == 0
    assert gw.proc.wait(15) == 0
    assert time.monotonic() - t0 < 10


def test_sigterm_goaway_is_graceful_notice_then_final(start_h2):
    """RFC 9113 6.8: first a GOAWAY naming stream 2^31-1 (and a PING), so that a request the
    client sent before it saw the drain is still taken; then the final GOAWAY naming the last
    stream taken. The client here does not answer the PING: the final one comes after 1 s."""
    import hpack
    from h2util import tls_h2_socket
    gw = start_h2(timeouts={"drain": "10s"})
    s = tls_h2_socket(gw.port, gw.pki["ca"].cert)
    enc = hpack.Encoder()
    s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(0x4, 0, 0, b""))
    buf = bytearray()

    def next_frame():
        while True:
            if len(buf) >= 9:
                n = int.from_bytes(buf[:3], "big")
                if len(buf) >= 9 + n:
                    f = (buf[3], buf[4], int.from_bytes(buf[5:9], "big") & 0x7fffffff,
                         bytes(buf[9:9 + n]))
                    del buf[:9 + n]
                    return f
            data = s.recv(65536)
            if not data:
                return None
            buf.extend(data)

    def request(sid, path):
        s.sendall(frame(HEADERS, END_HEADERS | END_STREAM, sid, enc.encode(base(path))))

    request(1, "/slow?ms=1500")
    wait_for(lambda: gw.started() == 1, 5, what="the slow request upstream")
    gw.signal(signal.SIGTERM)
    goaways, ended, pings = [], set(), 0
    while True:
        f = next_frame()
        if f is None:
            break
        ftype, flags, sid, payload = f
        if ftype == 0x4 and not flags & 0x1:
            s.sendall(frame(0x4, 0x1, 0, b""))           # SETTINGS ACK
        elif ftype == PING and not flags & 0x1:
            pings += 1                                   # not answered on purpose
        elif ftype == 0x7:
            last = int.from_bytes(payload[:4], "big") & 0x7fffffff
            goaways.append((last, int.from_bytes(payload[4:8], "big"), time.monotonic()))
            if len(goaways) == 1:
                request(3, "/sent-before-the-notice-arrived")
        elif ftype in (0x0, 0x1) and flags & END_STREAM:
            ended.add(sid)
    s.close()
    assert [g[:2] for g in goaways] == [(2**31 - 1, 0), (3, 0)], goaways
    assert 0.5 < goaways[1][2] - goaways[0][2] < 5, goaways
    assert pings == 1
    assert ended == {1, 3}, ended
    assert gw.proc.wait(15) == 0
    assert sorted(r["status"] for r in gw.access_log()) == [200, 200]


def test_reload_applies_to_new_streams(start_h2):
    gw = start_h2()
    c = gw.client()
    assert c.get("/r1").header("x-upstream") == "4.2.0"
    cfg = json.loads(json.dumps(gw.cfg))
    cfg["sites"][0]["version"]["default"] = "4.1.0"
    gw.reload(cfg)
    assert c.get("/r2").header("x-upstream") == "4.1.0"   # same connection, new stream
    c.close()
