"""Upstream server health: a failed server is backed off briefly, then longer while it keeps
failing (up to down_time), let back in by the first attempt that succeeds, and never left
untried when every server of a pool is down. The server state is in the metrics."""

import time

from helpers import SteadyLoad, free_port, make_config, wait_for


def pool_gateway(gateway, servers, workers=2, **pool):
    h, a = free_port(), free_port()
    spec = {"servers": servers}
    spec.update(pool)
    return gateway(make_config(h, a, {"pool": spec}, [{"hosts": ["*"], "upstream": "pool"}],
                               workers=workers, timeouts={"upstream_connect": "1s"}))


def server_metric(gw, name, server):
    return gw.metric(name, upstream="pool", server=server)


def test_restarted_only_server_is_served_within_a_second_of_its_return(gateway, upstream):
    app = upstream("app")
    gw = pool_gateway(gateway, [app.addr])
    with SteadyLoad(gw) as load:
        wait_for(lambda: load.ok_since(0) >= 20, 10, what="requests served before the stop")
        app.stop()
        time.sleep(1.0)
        back = time.monotonic()
        upstream("app", port=app.port)
        wait_for(lambda: load.ok_since(back + 1.0) >= 20, 20, 0.05,
                 "requests served after the restart")
    failed = load.failures()
    assert failed, "the stop was not seen: no request failed"
    assert {r[2] for r in failed} <= {502}, failed
    window = max(r[1] for r in failed) - back
    print("502s: %d; the last one %.3fs after the upstream was back" % (len(failed), window))
    assert window < 1.0, "502s went on for %.2fs after the upstream was back" % window


def test_every_server_down_is_still_tried(gateway, upstream):
    ports = [free_port(), free_port()]
    gw = pool_gateway(gateway, ["127.0.0.1:%d" % p for p in ports])
    for i in range(10):
        r = gw.get("/none%d" % i, host="x.test")
        assert r.status == 502, r
    upstream("late", port=ports[1])
    t0 = time.monotonic()
    for i in range(20):
        r = gw.get("/late%d" % i, host="x.test")
        assert r.status == 200 and r.header("X-Upstream") == "late", (i, r)
    assert time.monotonic() - t0 < 10
    for p in ports:
        assert server_metric(gw, "switchyard_upstream_server_marked_down_total",
                             "127.0.0.1:%d" % p) >= 1


def test_flapping_server_is_backed_off_while_the_other_serves(gateway, upstream):
    good = upstream("good")
    flap = upstream("flap")
    # keepalive 0: every request opens a connection, so each one could land on a refused port
    gw = pool_gateway(gateway, [good.addr, flap.addr], keepalive=0)
    cycles = 3
    served_after_return = []
    with SteadyLoad(gw) as load:
        wait_for(lambda: load.ok_since(0) >= 20, 10, what="requests before the first flap")
        t_first = time.monotonic()
        for _ in range(cycles):
            flap.close_listener()
            time.sleep(1.0)
            flap.listen_again()
            back = time.monotonic()
            time.sleep(2.0)
            with flap.lock:
                served_after_return.append(sum(1 for r in flap.started if r["time"] >= back))
        total = len([r for r in load.snapshot() if r[0] >= t_first])
    assert load.failures() == [], load.failures()[:5]
    # back in rotation within each up phase although it failed again and again
    assert all(n > 0 for n in served_after_return), served_after_return
    # backed off while down: a few probes per down phase and worker, not one per request
    refused = gw.metric("switchyard_upstream_errors_total", upstream="pool",
                        reason="connect_refused") or 0
    print("requests %d, refused connects %d, flap served %r" % (total, refused,
                                                                 served_after_return))
    assert total >= 100, total
    assert 1 <= refused <= 10 * cycles, (refused, total)
    assert server_metric(gw, "switchyard_upstream_server_marked_down_total", flap.addr) >= cycles


def test_server_state_is_in_the_metrics(gateway, upstream):
    live = upstream("live")
    port = free_port()
    dead = "127.0.0.1:%d" % port
    gw = pool_gateway(gateway, [live.addr, dead], workers=1, balance="round_robin")
    up = "switchyard_upstream_server_up"
    downs = "switchyard_upstream_server_marked_down_total"
    assert server_metric(gw, up, live.addr) == 1
    assert server_metric(gw, up, dead) == 1
    assert server_metric(gw, downs, dead) == 0
    for i in range(6):
        assert gw.get("/m%d" % i, host="x.test").status == 200
    assert server_metric(gw, up, dead) == 0
    assert server_metric(gw, downs, dead) >= 1
    assert server_metric(gw, up, live.addr) == 1
    assert server_metric(gw, downs, live.addr) == 0
    upstream("back", port=port)

    def served_by_back():
        return gw.get("/b", host="x.test").header("X-Upstream") == "back"
    wait_for(served_by_back, 5, 0.05, "the restarted server to get requests")
    assert server_metric(gw, up, dead) == 1
