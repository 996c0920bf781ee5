"""SIGTERM: stop accepting, finish in-flight requests, exit 0 within timeouts.drain."""

import errno
import signal
import socket
import threading
import time

from helpers import free_port, make_config, wait_for


def slow_gateway(gateway, upstream, drain="10s"):
    u = upstream("slow")
    h, a = free_port(), free_port()
    gw = gateway(make_config(h, a, {"u": [u.addr]}, [{"hosts": ["*"], "upstream": "u"}],
                             timeouts={"drain": drain}))
    return gw, u


def in_flight(gw, u, path):
    results = []

    def run():
        try:
            results.append(gw.get(path, host="x.test", timeout=20))
        except Exception as e:  # noqa: BLE001  (a cut request is a result too)
            results.append(e)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    wait_for(lambda: len(u.started) >= 1, 5, what="the request to reach the upstream")
    return t, results


def test_sigterm_finishes_in_flight_request_and_exits_0(gateway, upstream):
    gw, u = slow_gateway(gateway, upstream)
    t, results = in_flight(gw, u, "/slow?ms=1000")
    gw.signal(signal.SIGTERM)
    t.join(15)
    assert results and getattr(results[0], "status", None) == 200, results
    assert results[0].json()["target"] == "/slow?ms=1000"
    rc = gw.proc.wait(15)
    assert rc == 0, gw.stderr_text()[-2000:]


def test_sigterm_stops_accepting(gateway, upstream):
    gw, u = slow_gateway(gateway, upstream)
    t, results = in_flight(gw, u, "/slow?ms=3000")
    gw.signal(signal.SIGTERM)

    wait_for(lambda: _refused(gw.http_port), 2.5, 0.05, "the listener to close while a request is in flight")
    t.join(15)
    assert results and getattr(results[0], "status", None) == 200, results
    assert gw.proc.wait(15) == 0


def test_readyz_503_while_draining(gateway, upstream):
    gw, u = slow_gateway(gateway, upstream)
    t, results = in_flight(gw, u, "/slow?ms=3000")
    gw.signal(signal.SIGTERM)
    wait_for(lambda: gw.admin("/readyz", timeout=2).status == 503, 2.5, 0.05,
             "/readyz to answer 503 while draining")
    t.join(15)
    assert results and getattr(results[0], "status", None) == 200, results
    assert gw.proc.wait(15) == 0


def test_drain_deadline_bounds_exit(gateway, upstream):
    gw, u = slow_gateway(gateway, upstream, drain="1s")
    t, results = in_flight(gw, u, "/hang")
    t0 = time.monotonic()
    gw.signal(signal.SIGTERM)
    gw.proc.wait(12)
    assert time.monotonic() - t0 < 10
    t.join(15)


def test_idle_keepalive_connection_does_not_hold_shutdown(gateway, upstream):
    import http.client
    from helpers import conn_request
    gw, u = slow_gateway(gateway, upstream, drain="3s")
    conn = http.client.HTTPConnection("127.0.0.1", gw.http_port, timeout=10)
    assert conn_request(conn, "GET", "/", "x.test").status == 200
    gw.signal(signal.SIGTERM)
    assert gw.proc.wait(10) == 0
    conn.close()


def test_drain_grace_keeps_accepting_then_closes_the_listener(gateway, upstream):
    """timeouts.drain_grace: new connections are still served during the grace (each told to
    close), /readyz already says 503; after it the listener is closed."""
    u = upstream("u")
    h, a = free_port(), free_port()
    gw = gateway(make_config(h, a, {"u": [u.addr]}, [{"hosts": ["*"], "upstream": "u"}],
                             timeouts={"drain": "10s", "drain_grace": "1500ms"}))
    t, results = in_flight(gw, u, "/slow?ms=3000")
    t0 = time.monotonic()
    gw.signal(signal.SIGTERM)
    wait_for(lambda: "draining" in gw.stderr_text(), 2, what="the drain to start")
    assert gw.admin("/readyz", timeout=2).status == 503
    r = gw.get("/during-grace", host="x.test", timeout=5)
    assert r.status == 200 and (r.header("connection") or "").lower() == "close", r
    assert time.monotonic() - t0 < 1.5  # still inside the grace
    wait_for(lambda: _refused(gw.http_port), 5, 0.05, "the listener to close after the grace")
    assert time.monotonic() - t0 >= 1.4
    t.join(15)
    assert results and getattr(results[0], "status", None) == 200, results
    assert gw.proc.wait(15) == 0


def _refused(port):
    s = socket.socket()
    s.settimeout(1)
    try:
        s.connect(("127.0.0.1", port))
        return False
    except OSError as e:
        return isinstance(e, ConnectionRefusedError) or e.errno == errno.ECONNREFUSED
    finally:
        s.close()
