"""Forwarding: keep-alive, bodies (length, chunked, large, 100-continue), pipelining,
hop-by-hop headers, X-Forwarded-*, X-Request-Id, Host/Origin."""

import hashlib
import http.client
import os
import socket
import threading
import time

import pytest

from helpers import (RawClient, build_request, chunked, conn_request, free_port, header,
                     header_values, make_config, pattern_bytes, wait_for)

BIN = os.environ.get("SWITCHYARD_BIN", "")
ASAN = "asan" in BIN
RSS_ALLOWANCE_KB = int(os.environ.get("SWITCHYARD_E2E_RSS_MB", "160" if ASAN else "40")) * 1024


def seen_headers(r):
    return [tuple(x) for x in r.json()["headers"]]


def test_keepalive_reuses_one_upstream_connection(retro):
    conn = http.client.HTTPConnection("127.0.0.1", retro.http_port, timeout=10)
    try:
        for i in range(5):
            r = conn_request(conn, "GET", "/n%d" % i, "plain.test")
            assert r.status == 200, r
    finally:
        conn.close()
    up = retro.ups["plain"]
    assert up.paths() == ["/n%d" % i for i in range(5)]
    assert len(set(up.conn_ids())) == 1, up.conn_ids()


def test_upstream_connection_reused_across_client_connections(retro):
    for i in range(3):
        assert retro.get("/c%d" % i, host="plain.test").status == 200
    ids = retro.ups["plain"].conn_ids()
    assert len(ids) == 3 and len(set(ids)) == 1, ids


def test_stale_pooled_upstream_connection_is_not_an_error(retro):
    # the upstream closes its side right after answering; the next request must
    # not fail because the gateway picked that dead pooled connection
    assert retro.get("/close-after", host="plain.test").status == 200
    time.sleep(0.5)
    for i in range(3):
        assert retro.get("/after%d" % i, host="plain.test").status == 200


def test_content_length_bodies_both_ways(retro):
    body = pattern_bytes(300000, seed=1)
    r = retro.request("POST", "/echo", "plain.test", body=body)
    assert r.status == 200, r
    assert r.body == body
    rec = retro.ups["plain"].requests[-1]
    assert rec["body_len"] == len(body)
    assert header(rec["headers"], "content-length") == str(len(body))


def test_chunked_request_and_chunked_response(retro):
    body = pattern_bytes(123457, seed=2)
    c = retro.raw()
    try:
        c.send(build_request("POST", "/chunked", "plain.test",
                             [("Transfer-Encoding", "chunked")], chunked(body, 777)))
        r = c.read_response()
    finally:
        c.close()
    assert r.status == 200, r
    assert r.body == body
    rec = retro.ups["plain"].requests[-1]
    assert rec["body_sha256"] == hashlib.sha256(body).hexdigest()
    # never both framings upstream
    assert not (header(rec["headers"], "content-length") and
                header(rec["headers"], "transfer-encoding")), rec["headers"]


def test_chunked_response_to_get(retro):
    c = retro.raw()
    try:
        c.send(build_request("GET", "/big-chunked?bytes=200000", "plain.test"))
        r = c.read_response()
        # connection still usable afterwards
        c.send(build_request("GET", "/next", "plain.test"))
        r2 = c.read_response()
    finally:
        c.close()
    assert r.status == 200 and r.body == pattern_bytes(200000), (r.status, len(r.body))
    assert r2.status == 200 and r2.json()["target"] == "/next"


def test_head_response_has_no_body_and_connection_continues(retro):
    c = retro.raw()
    try:
        c.send(build_request("HEAD", "/big?bytes=5000", "plain.test"))
        r = c.read_response(method="HEAD")
        c.send(build_request("GET", "/after-head", "plain.test"))
        r2 = c.read_response()
    finally:
        c.close()
    assert r.status == 200 and r.body == b""
    assert r.header("Content-Length") == "5000"
    assert r2.status == 200 and r2.json()["target"] == "/after-head", r2


def test_204_and_304_have_no_body(retro):
    c = retro.raw()
    try:
        c.send(build_request("GET", "/status?code=204", "plain.test"))
        r1 = c.read_response()
        c.send(build_request("GET", "/status?code=304", "plain.test"))
        r2 = c.read_response()
        c.send(build_request("GET", "/x", "plain.test"))
        r3 = c.read_response()
    finally:
        c.close()
    assert (r1.status, r2.status, r3.status) == (204, 304, 200)
    assert r3.json()["target"] == "/x"


def _rss_sampler(gw, stop, out):
    while not stop.is_set():
        try:
            out.append(gw.rss_kb())
        except OSError:
            return
        time.sleep(0.05)


def test_large_upload_is_streamed(retro):
    total = 50 * 1024 * 1024
    first = 8 * 1024 * 1024
    up = retro.ups["plain"]
    base = retro.rss_kb()
    samples, stop = [], threading.Event()
    t = threading.Thread(target=_rss_sampler, args=(retro.gw, stop, samples), daemon=True)
    t.start()
    block = pattern_bytes(1 << 20, seed=3)
    h = hashlib.sha256()
    c = retro.raw(timeout=30)
    try:
        c.send(build_request("POST", "/sink", "plain.test",
                             [("Content-Length", str(total))]))
        sent = 0
        while sent < first:
            c.send(block)
            h.update(block)
            sent += len(block)
        # the upstream must see body bytes before the client has sent everything
        wait_for(lambda: up.body_bytes > 0, 10, what="body bytes at the upstream mid-upload")
        while sent < total:
            c.send(block)
            h.update(block)
            sent += len(block)
        r = c.read_response()
    finally:
        c.close()
        stop.set()
        t.join(2)
    assert r.status == 200, r
    assert r.json()["body_len"] == total
    assert r.json()["body_sha256"] == h.hexdigest()
    assert max(samples) - base < RSS_ALLOWANCE_KB, (base, max(samples))


def test_large_download_is_streamed(retro):
    total = 50 * 1024 * 1024
    base = retro.rss_kb()
    c = retro.raw(timeout=30)
    try:
        c.send(build_request("GET", "/big?bytes=%d" % total, "plain.test"))
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        ver, status, reason, headers = c.read_head()
        assert status == 200
        got = c.read_exact(1 << 20)
        # stop reading: a gateway that buffers whole responses would now swallow 50 MB
        time.sleep(1.5)
        peak = retro.rss_kb()
        h = hashlib.sha256(got)
        remaining = total - len(got)
        while remaining:
            piece = c.read_exact(min(remaining, 1 << 20))
            h.update(piece)
            remaining -= len(piece)
    finally:
        c.close()
    assert h.hexdigest() == hashlib.sha256(pattern_bytes(total)).hexdigest()
    assert peak - base < RSS_ALLOWANCE_KB, (base, peak)


def test_expect_100_continue(retro):
    body = b"x" * 5000
    c = retro.raw()
    try:
        c.send(build_request("POST", "/echo", "plain.test",
                             [("Content-Length", str(len(body))), ("Expect", "100-continue")]))
        interim = c.read_response()
        assert interim.status == 100, interim
        c.send(body)
        final = c.read_final_response()
    finally:
        c.close()
    assert final.status == 200, final
    assert final.body == body
    assert retro.ups["plain"].requests[-1]["body_len"] == len(body)


def test_pipelined_requests_answered_in_order(retro):
    reqs = (build_request("GET", "/p1", "plain.test") +
            build_request("POST", "/echo", "plain.test", body=b"second") +
            build_request("GET", "/p3", "retro.example.org", [("X-Postfacto-Version", "4.1.0")]) +
            build_request("GET", "/big?bytes=70000", "plain.test") +
            build_request("GET", "/p5", "plain.test"))
    c = retro.raw()
    try:
        c.send(reqs)
        rs = [c.read_response() for _ in range(5)]
    finally:
        c.close()
    assert [r.status for r in rs] == [200] * 5, rs
    assert rs[0].json()["target"] == "/p1"
    assert rs[1].body == b"second"
    assert rs[2].header("X-Upstream") == "4.1.0" and rs[2].json()["target"] == "/p3"
    assert rs[3].body == pattern_bytes(70000)
    assert rs[4].json()["target"] == "/p5"


def test_request_hop_by_hop_headers_are_removed(retro):
    r = retro.get("/hop", host="plain.test", headers=[
        ("Connection", "keep-alive, X-Secret"),
        ("Keep-Alive", "timeout=5, max=7z7"),
        ("Proxy-Connection", "keep-alive-7z7"),
        ("TE", "gzip"),
        ("Upgrade", "h2c"),
        ("X-Secret", "s3cr3t"),
        ("X-Kept", "yes"),
    ])
    assert r.status == 200, r
    h = seen_headers(r)
    names = [k.lower() for k, v in h]
    assert "x-secret" not in names, h
    assert "proxy-connection" not in names, h
    assert "upgrade" not in names, h
    assert not any("7z7" in v for k, v in h), h  # not hex: never in a request id
    assert "gzip" not in [v.lower() for k, v in h if k.lower() == "te"], h
    assert not any("x-secret" in v.lower() for k, v in h if k.lower() == "connection"), h
    assert header(h, "X-Kept") == "yes"


def test_connection_close_names_a_header_and_closes(retro):
    c = retro.raw()
    try:
        c.send(build_request("GET", "/cc", "plain.test",
                             [("Connection", "close, X-Secret"), ("X-Secret", "1")]))
        r = c.read_response()
        assert c.wait_closed(5), "client connection not closed after Connection: close"
    finally:
        c.close()
    assert r.status == 200
    h = seen_headers(r)
    assert "x-secret" not in [k.lower() for k, v in h], h


def test_response_hop_by_hop_headers_are_removed(retro):
    r = retro.get("/hop-response", host="plain.test")
    assert r.status == 200, r
    names = [k.lower() for k, v in r.headers]
    assert "x-resp-secret" not in names, r.headers
    assert "proxy-connection" not in names, r.headers
    assert not any("777" in v for k, v in r.headers), r.headers
    assert r.header("X-Upstream") == "plain"


def test_forwarded_headers(retro):
    r = retro.get("/fwd", host="retro.example.org", headers=[("X-Forwarded-For", "1.2.3.4")])
    h = seen_headers(r)
    assert header_values(h, "X-Forwarded-For") == ["1.2.3.4, 127.0.0.1"], h
    assert header_values(h, "X-Forwarded-Proto") == ["http"], h
    assert header_values(h, "X-Forwarded-Host") == ["retro.example.org"], h
    r = retro.get("/fwd", host="plain.test")
    h = seen_headers(r)
    assert header_values(h, "X-Forwarded-For") == ["127.0.0.1"], h


def test_client_cannot_claim_https(retro):
    r = retro.get("/fwd", host="plain.test", headers=[("X-Forwarded-Proto", "https")])
    assert header_values(seen_headers(r), "X-Forwarded-Proto") == ["http"]


def test_request_id_added_or_kept(retro):
    r1 = retro.get("/a", host="plain.test")
    r2 = retro.get("/b", host="plain.test")
    id1 = header_values(seen_headers(r1), "X-Request-Id")
    id2 = header_values(seen_headers(r2), "X-Request-Id")
    assert len(id1) == 1 and len(id2) == 1 and id1[0] and id1 != id2, (id1, id2)
    r3 = retro.get("/c", host="plain.test", headers=[("X-Request-Id", "abc-123")])
    assert header_values(seen_headers(r3), "X-Request-Id") == ["abc-123"]


def test_host_and_origin_unchanged(retro):
    r = retro.get("/o", host="Retro.Example.org:8443",
                  headers=[("Origin", "https://retro.example.org")])
    h = seen_headers(r)
    assert header_values(h, "Host") == ["Retro.Example.org:8443"], h
    assert header_values(h, "Origin") == ["https://retro.example.org"], h


def test_method_target_and_end_to_end_headers_pass(retro):
    r = retro.request("DELETE", "/api/retros/7?x=1&y=%20z", "plain.test",
                      headers=[("X-Auth-Token", "jwt.value.here"), ("Accept", "application/json")])
    j = r.json()
    assert j["method"] == "DELETE"
    assert j["target"] == "/api/retros/7?x=1&y=%20z"
    h = [tuple(x) for x in j["headers"]]
    assert header(h, "X-Auth-Token") == "jwt.value.here"
    assert header(h, "Accept") == "application/json"


def test_http10_client(retro):
    c = retro.raw()
    try:
        c.send(b"GET /ten HTTP/1.0\r\nHost: plain.test\r\n\r\n")
        r = c.read_response()
        assert c.wait_closed(5)
    finally:
        c.close()
    assert r.status == 200 and r.json()["target"] == "/ten"


def test_two_workers_serve_concurrent_clients(gateway, upstream):
    u = upstream("u")
    h, a = free_port(), free_port()
    gw = gateway(make_config(h, a, {"u": [u.addr]}, [{"hosts": ["*"], "upstream": "u"}],
                             workers=2))
    errors = []

    def client(n):
        try:
            conn = http.client.HTTPConnection("127.0.0.1", h, timeout=10)
            for i in range(15):
                r = conn_request(conn, "GET", "/w%d-%d" % (n, i), "w.test")
                if r.status != 200:
                    errors.append(r)
            conn.close()
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    ts = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    assert not errors, errors[:3]
    assert len(u.requests) == 8 * 15
