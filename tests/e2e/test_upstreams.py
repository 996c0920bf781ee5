"""Upstream pools: balancing, retry on refused connections, 502/504, broken responses,
name resolution."""

import time

from helpers import RawClient, build_request, dead_port, free_port, make_config, wait_for


def pool_gateway(gateway, servers, timeouts=None, **pool):
    h, a = free_port(), free_port()
    spec = {"servers": servers}
    spec.update(pool)
    return gateway(make_config(h, a, {"pool": spec}, [{"hosts": ["*"], "upstream": "pool"}],
                               timeouts=timeouts))


def upstream_errors(gw, reason=None):
    labels = {"upstream": "pool"}
    if reason:
        labels["reason"] = reason
    return gw.metric("switchyard_upstream_errors_total", **labels) or 0


def test_round_robin_spreads_requests(gateway, upstream):
    us = [upstream("s%d" % i) for i in range(3)]
    gw = pool_gateway(gateway, [u.addr for u in us], balance="round_robin")
    seen = []
    for i in range(30):
        r = gw.get("/rr%d" % i, host="x.test")
        assert r.status == 200, r
        seen.append(r.header("X-Upstream"))
    for u in us:
        assert seen.count(u.name) >= 5, seen


def test_round_robin_spreads_requests_on_one_client_connection(gateway, upstream):
    import http.client
    from helpers import conn_request
    us = [upstream("s%d" % i) for i in range(2)]
    gw = pool_gateway(gateway, [u.addr for u in us], balance="round_robin")
    conn = http.client.HTTPConnection("127.0.0.1", gw.http_port, timeout=10)
    seen = [conn_request(conn, "GET", "/k%d" % i, "x.test").header("X-Upstream")
            for i in range(10)]
    conn.close()
    assert seen.count("s0") >= 3 and seen.count("s1") >= 3, seen


def test_least_conn_prefers_the_idle_server(gateway, upstream):
    import threading
    a, b = upstream("a"), upstream("b")
    gw = pool_gateway(gateway, [a.addr, b.addr], balance="least_conn")
    # occupy one server with a slow request, then the others go to the idle one
    results = []
    t = threading.Thread(target=lambda: results.append(gw.get("/slow?ms=3000", host="x.test",
                                                              timeout=15)))
    t.start()
    wait_for(lambda: len(a.started) + len(b.started) == 1, 5, what="the slow request upstream")
    busy = a if a.started else b
    idle = b if busy is a else a
    for i in range(4):
        r = gw.get("/q%d" % i, host="x.test")
        assert r.header("X-Upstream") == idle.name, (i, r)
    t.join(15)
    assert results and results[0].status == 200


def test_refused_server_is_retried_on_another(gateway, upstream):
    live = upstream("live")
    gw = pool_gateway(gateway, ["127.0.0.1:%d" % dead_port(), live.addr], balance="round_robin")
    for i in range(10):
        r = gw.get("/r%d" % i, host="x.test")
        assert r.status == 200, r
        assert r.header("X-Upstream") == "live"
    assert upstream_errors(gw, "connect_refused") >= 1


def test_refusing_server_is_marked_down(gateway, upstream):
    live = upstream("live")
    gw = pool_gateway(gateway, ["127.0.0.1:%d" % dead_port(), live.addr], balance="round_robin",
                      down_time="30s")
    for i in range(20):
        assert gw.get("/d%d" % i, host="x.test").status == 200
    # once marked down it is backed off (500 ms first): not tried on every request (one worker)
    assert 1 <= upstream_errors(gw, "connect_refused") <= 4


def test_all_servers_down_is_502(gateway):
    gw = pool_gateway(gateway, ["127.0.0.1:%d" % dead_port(), "127.0.0.1:%d" % dead_port()])
    r = gw.get("/", host="x.test")
    assert r.status == 502, r
    r = gw.get("/again", host="x.test")
    assert r.status == 502, r
    assert upstream_errors(gw) >= 1
    reasons = {l.get("reason") for (n, l, v) in gw.metrics()
               if n == "switchyard_upstream_errors_total" and v > 0}
    assert reasons & {"connect_refused", "no_server"}, reasons


def test_upstream_response_timeout_is_504(gateway, upstream):
    u = upstream("hang")
    gw = pool_gateway(gateway, [u.addr], timeouts={"upstream_response": "1s"})
    t0 = time.monotonic()
    r = gw.get("/hang", host="x.test", timeout=15)
    assert r.status == 504, r
    assert time.monotonic() - t0 < 12
    assert upstream_errors(gw, "response_timeout") >= 1
    # and the gateway keeps serving
    assert gw.get("/ok", host="x.test").status == 200


def test_upstream_closing_mid_response(gateway, upstream):
    u = upstream("cut")
    gw = pool_gateway(gateway, [u.addr])
    c = gw.raw()
    try:
        c.send(build_request("GET", "/close-mid-body", "x.test"))
        r = c.read_response(allow_short=True)
        if r.status == 200:
            # headers were already on their way: the client must see a cut, not a padded body
            assert r.short and len(r.body) < 1000, r
            assert r.body == b"0123456789"[:len(r.body)]
        else:
            assert r.status == 502, r
    finally:
        c.close()
    assert gw.get("/next", host="x.test").status == 200


def test_garbage_response_is_502(gateway, upstream):
    u = upstream("junk")
    gw = pool_gateway(gateway, [u.addr])
    r = gw.get("/garbage", host="x.test")
    assert r.status == 502, r
    assert upstream_errors(gw, "bad_response") >= 1
    assert gw.get("/fine", host="x.test").status == 200


def test_upstream_names_are_resolved(gateway, upstream):
    u = upstream("named")
    gw = pool_gateway(gateway, ["localhost:%d" % u.port])
    r = gw.get("/", host="x.test")
    assert r.status == 200, r
    assert r.header("X-Upstream") == "named"


def test_upstream_error_status_is_passed_through(gateway, upstream):
    u = upstream("err")
    gw = pool_gateway(gateway, [u.addr])
    for code in (500, 503, 404):
        r = gw.get("/status?code=%d" % code, host="x.test")
        assert r.status == code, r
        assert r.header("X-Upstream") == "err"
