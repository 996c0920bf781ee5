"""Limits and strict parsing: 431, 414, 413, 408, 400, 501."""

import time

import pytest

from helpers import build_request

LIMITS = {"max_request_head": "4k", "max_headers": 20, "max_uri": "1k", "max_body": "1k"}


@pytest.fixture
def limited(start_retro):
    return start_retro(limits=LIMITS, timeouts={"client_header": "1s"})


def exchange(gw, data, method="GET"):
    c = gw.raw()
    try:
        c.send(data)
        r = c.read_response(method=method)
        closed = c.wait_closed(5) if r.status >= 400 else None
        return r, closed
    finally:
        c.close()


def nothing_forwarded(retro):
    for u in retro.ups.values():
        assert u.started == [], "%s received %r" % (u.name, u.started)


def test_within_limits_works(limited):
    r, _ = exchange(limited, build_request("POST", "/echo", "plain.test",
                                           [("X-H%d" % i, "v") for i in range(10)],
                                           body=b"b" * 1000))
    assert r.status == 200 and r.body == b"b" * 1000, r


def test_head_too_big_is_431(limited):
    r, closed = exchange(limited, build_request("GET", "/", "plain.test", [("X-Big", "a" * 5000)]))
    assert r.status == 431, r
    nothing_forwarded(limited)


def test_too_many_headers_is_431(limited):
    r, _ = exchange(limited, build_request("GET", "/", "plain.test",
                                           [("X-H%d" % i, "v") for i in range(25)]))
    assert r.status == 431, r
    nothing_forwarded(limited)


def test_uri_too_long_is_414(limited):
    r, _ = exchange(limited, build_request("GET", "/" + "u" * 2000, "plain.test"))
    assert r.status == 414, r
    nothing_forwarded(limited)


def test_body_too_big_is_413(limited):
    r, _ = exchange(limited, build_request("POST", "/echo", "plain.test", body=b"b" * 2000))
    assert r.status == 413, r
    nothing_forwarded(limited)


def test_default_limits_accept_a_big_head(retro):
    r, _ = exchange(retro, build_request("GET", "/", "plain.test", [("X-Big", "a" * 12000)]))
    assert r.status == 200, r


def test_stalled_head_is_408_and_closed(limited):
    c = limited.raw()
    try:
        c.send(b"GET / HTTP/1.1\r\nHost: plain.test\r\n")
        t0 = time.monotonic()
        r = c.read_response()
        assert r.status == 408, r
        assert c.wait_closed(5)
        assert time.monotonic() - t0 < 9
    finally:
        c.close()
    nothing_forwarded(limited)


BAD = {
    "bare_cr_in_value": b"GET / HTTP/1.1\r\nHost: plain.test\r\nX-A: a\rb\r\n\r\n",
    "nul_in_value": b"GET / HTTP/1.1\r\nHost: plain.test\r\nX-A: a\x00b\r\n\r\n",
    "space_before_colon": b"GET / HTTP/1.1\r\nHost: plain.test\r\nX-A : b\r\n\r\n",
    "obs_fold": b"GET / HTTP/1.1\r\nHost: plain.test\r\nX-A: a\r\n  folded\r\n\r\n",
    "cl_and_te": b"POST / HTTP/1.1\r\nHost: plain.test\r\nContent-Length: 5\r\n"
                 b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "bad_cl": b"POST / HTTP/1.1\r\nHost: plain.test\r\nContent-Length: abc\r\n\r\n",
    "negative_cl": b"POST / HTTP/1.1\r\nHost: plain.test\r\nContent-Length: -1\r\n\r\n",
    "conflicting_cl": b"POST / HTTP/1.1\r\nHost: plain.test\r\nContent-Length: 3\r\n"
                      b"Content-Length: 4\r\n\r\nabcd",
    "bad_chunk_size": b"POST /echo HTTP/1.1\r\nHost: plain.test\r\nTransfer-Encoding: chunked\r\n"
                      b"\r\nzz\r\nabc\r\n0\r\n\r\n",
    "bad_header_name": b"GET / HTTP/1.1\r\nHost: plain.test\r\nX(A): b\r\n\r\n",
    "missing_host": b"GET / HTTP/1.1\r\nX-A: b\r\n\r\n",
    "two_hosts": b"GET / HTTP/1.1\r\nHost: plain.test\r\nHost: retro.example.org\r\n\r\n",
    "bad_request_line": b"GET /\r\nHost: plain.test\r\n\r\n",
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_request_is_400_and_closed(retro, case):
    r, closed = exchange(retro, BAD[case])
    assert r.status == 400, r
    assert closed, "connection should be closed after a 400"
    if case != "bad_chunk_size":
        nothing_forwarded(retro)


def test_unknown_transfer_coding_is_501(retro):
    r, _ = exchange(retro, b"POST / HTTP/1.1\r\nHost: plain.test\r\n"
                           b"Transfer-Encoding: frobnicate, chunked\r\n\r\n0\r\n\r\n")
    assert r.status == 501, r
    nothing_forwarded(retro)


def test_smuggling_attempt_does_not_reach_upstream_as_second_request(retro):
    # CL+TE: whatever the answer, the upstream must never see the smuggled request
    data = (b"POST / HTTP/1.1\r\nHost: plain.test\r\nContent-Length: 44\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: plain.test\r\n\r\n")
    c = retro.raw()
    try:
        c.send(data)
        c.read_response()
        c.wait_closed(3)
    finally:
        c.close()
    time.sleep(0.3)
    assert "/smuggled" not in retro.ups["plain"].paths()
