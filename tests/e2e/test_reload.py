"""SIGHUP reload: good files apply to new requests, bad files are refused, no request
fails during reloads, WebSockets survive reloads."""

import asyncio
import http.client
import re
import threading
import time

import websockets

from helpers import conn_request, free_port, make_config, run_async, version_block, wait_for


def default_served(gw):
    r = gw.get("/", host="retro.example.org")
    assert r.status == 200, r
    return r.header("X-Upstream")


def test_good_reload_applies(retro):
    assert default_served(retro) == "4.2.0"
    retro.reload(retro.config(default="4.1.0"))
    wait_for(lambda: default_served(retro) == "4.1.0", 5, what="the new default to serve")
    # The log line is written after the workers got the snapshot, by the log writer thread.
    wait_for(lambda: re.search(r"reload", retro.stderr_text(), re.I), 5, what="the reload's log line")
    assert retro.metric("switchyard_config_reloads_total", result="ok") == 1


def test_reload_adds_a_site(retro):
    assert retro.get("/", host="new.test").status == 404
    cfg = retro.config()
    cfg["sites"].append({"hosts": ["new.test"], "upstream": "v3"})
    retro.reload(cfg)
    r = wait_for(lambda: (lambda r: r.status == 200 and r)(retro.get("/", host="new.test")), 5,
                 what="new.test to be served")
    assert r.header("X-Upstream") == "4.3.0"


def test_bad_reload_is_refused_and_old_config_serves(retro):
    good = retro.text
    bad = good.rstrip("\n") + "\nsurprise_key: 1\n"
    line = len(bad.rstrip("\n").split("\n"))
    retro.reload(bad)
    wait_for(lambda: "%s:%d:" % (retro.path, line) in retro.stderr_text(), 5,
             what="'%s:%d: reason' on stderr" % (retro.path, line))
    assert retro.running()
    assert default_served(retro) == "4.2.0"
    assert retro.get("/", host="plain.test").status == 200
    assert retro.metric("switchyard_config_reloads_total", result="failed") == 1
    # and a good file afterwards still applies
    retro.reload(retro.config(default="4.3.0"))
    wait_for(lambda: default_served(retro) == "4.3.0", 5, what="the new default to serve")
    assert retro.metric("switchyard_config_reloads_total", result="ok") == 1


def test_no_failed_request_across_reloads(retro):
    stop = threading.Event()
    failures, counts = [], [0] * 4

    def hammer(n):
        conn = None
        try:
            while not stop.is_set():
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", retro.http_port, timeout=10)
                r = conn_request(conn, "GET", "/h%d" % n, "retro.example.org")
                if r.status != 200:
                    failures.append(r)
                counts[n] += 1
                if r.header("Connection") == "close":
                    conn.close()
                    conn = None
        except Exception as e:  # noqa: BLE001
            failures.append(repr(e))
        finally:
            if conn:
                conn.close()

    threads = [threading.Thread(target=hammer, args=(n,), daemon=True) for n in range(4)]
    for t in threads:
        t.start()
    try:
        for i in range(20):
            retro.reload(retro.config(default=["4.1.0", "4.2.0", "4.3.0"][i % 3]))
            time.sleep(0.05)
    finally:
        stop.set()
        for t in threads:
            t.join(15)
    assert not failures, failures[:5]
    assert all(c > 0 for c in counts), counts
    assert retro.metric("switchyard_config_reloads_total", result="ok") == 20


def test_websocket_survives_reloads(gateway, ws_upstream):
    ws1 = ws_upstream("4.1.0")
    h, a = free_port(), free_port()

    def cfg(default):
        return make_config(h, a, {"v1": [ws1.addr]}, [
            {"hosts": ["127.0.0.1"], "version": version_block({"4.1.0": "v1", "4.2.0": "v1"},
                                                              default)}])

    gw = gateway(cfg("4.1.0"))

    async def session():
        async with websockets.connect("ws://127.0.0.1:%d/cable" % h, open_timeout=10,
                                      close_timeout=5) as ws:
            await ws.send("before")
            assert await asyncio.wait_for(ws.recv(), 10) == "before"
            for i in range(5):
                await asyncio.get_running_loop().run_in_executor(
                    None, gw.reload, cfg(["4.2.0", "4.1.0"][i % 2]))
                await ws.send("after-%d" % i)
                assert await asyncio.wait_for(ws.recv(), 10) == "after-%d" % i
            return True

    assert run_async(session(), 90)
    assert len(ws1.handshakes) == 1
