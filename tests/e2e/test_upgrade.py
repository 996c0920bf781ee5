"""Upgrade / WebSocket: Connection and Upgrade forwarded as sent, bytes tunnelled both
ways, version routing of /cable by the pin cookie."""

import asyncio

import websockets

from helpers import (RawClient, build_request, free_port, header, header_values, make_config,
                     pattern_bytes, run_async, version_block, wait_for)


def ws_gateway(gateway, ws_upstream):
    v1, v2 = ws_upstream("4.1.0"), ws_upstream("4.2.0")
    h, a = free_port(), free_port()
    gw = gateway(make_config(h, a, {"v1": [v1.addr], "v2": [v2.addr]}, [
        {"hosts": ["127.0.0.1", "retro.example.org"],
         "version": version_block({"4.1.0": "v1", "4.2.0": "v2"}, "4.2.0")}]))
    return gw, v1, v2


async def echo_session(url, messages, **kw):
    async with websockets.connect(url, open_timeout=10, close_timeout=5, **kw) as ws:
        out = []
        for m in messages:
            await ws.send(m)
            out.append(await asyncio.wait_for(ws.recv(), 10))
        return out, ws.response_headers


def test_websocket_echo_through_gateway(gateway, ws_upstream):
    gw, v1, v2 = ws_gateway(gateway, ws_upstream)
    msgs = ["hello", "x" * 70000, b"\x00\x01\x02binary"]
    out, resp_headers = run_async(echo_session(
        "ws://127.0.0.1:%d/cable" % gw.http_port, msgs, origin="https://retro.example.org"))
    assert out == msgs
    # default version served, and the response says so
    assert len(v2.handshakes) == 1 and v1.handshakes == []
    path, hdrs = v2.handshakes[0]
    assert path == "/cable"
    assert header_values(hdrs, "Connection") == ["Upgrade"], hdrs
    assert header_values(hdrs, "Upgrade") == ["websocket"], hdrs
    assert header_values(hdrs, "Host") == ["127.0.0.1:%d" % gw.http_port], hdrs
    assert header_values(hdrs, "Origin") == ["https://retro.example.org"], hdrs
    assert resp_headers.get("X-Postfacto-Version") == "4.2.0"


def test_websocket_routed_by_pin_cookie(gateway, ws_upstream):
    gw, v1, v2 = ws_gateway(gateway, ws_upstream)
    out, _ = run_async(echo_session("ws://127.0.0.1:%d/cable" % gw.http_port, ["pinned"],
                                    extra_headers={"Cookie": "postfacto_version=4.1.0"}))
    assert out == ["pinned"]
    assert len(v1.handshakes) == 1, v1.handshakes
    assert v2.handshakes == []
    hdrs = v1.handshakes[0][1]
    assert header_values(hdrs, "Connection") == ["Upgrade"], hdrs
    assert header_values(hdrs, "Upgrade") == ["websocket"], hdrs


def test_websocket_routed_by_header(gateway, ws_upstream):
    gw, v1, v2 = ws_gateway(gateway, ws_upstream)
    out, _ = run_async(echo_session("ws://127.0.0.1:%d/cable" % gw.http_port, ["h"],
                                    extra_headers={"X-Postfacto-Version": "4.1.0"}))
    assert out == ["h"] and len(v1.handshakes) == 1 and v2.handshakes == []


def test_many_concurrent_websockets(gateway, ws_upstream):
    gw, v1, v2 = ws_gateway(gateway, ws_upstream)

    async def many():
        return await asyncio.gather(*[
            echo_session("ws://127.0.0.1:%d/cable" % gw.http_port, ["m%d-%d" % (i, j)
                                                                  for j in range(5)])
            for i in range(20)])

    res = run_async(many(), 60)
    for i, (out, _) in enumerate(res):
        assert out == ["m%d-%d" % (i, j) for j in range(5)]


def raw_upgrade_gateway(gateway, upstream):
    u = upstream("tun")
    h, a = free_port(), free_port()
    gw = gateway(make_config(h, a, {"u": [u.addr]}, [{"hosts": ["*"], "upstream": "u"}]))
    return gw, u


def test_raw_tunnel_both_ways_and_client_close(gateway, upstream):
    gw, u = raw_upgrade_gateway(gateway, upstream)
    c = gw.raw()
    try:
        c.send(build_request("GET", "/tunnel", "t.test",
                             [("Connection", "Upgrade"), ("Upgrade", "websocket"),
                              ("Origin", "https://t.test")]))
        r = c.read_response()
        assert r.status == 101, r
        assert header(r.headers, "Upgrade") == "websocket"
        assert "upgrade" in header(r.headers, "Connection").lower()
        data = pattern_bytes(300000, seed=5)
        c.send(data)
        assert c.read_exact(len(data)) == data
        c.send(b"more")
        assert c.read_exact(4) == b"more"
    finally:
        c.close()
    rec = u.requests[0]
    assert header_values(rec["headers"], "Connection") == ["Upgrade"], rec["headers"]
    assert header_values(rec["headers"], "Upgrade") == ["websocket"], rec["headers"]
    wait_for(lambda: ("eof-from-client", rec["conn"]) in u.tunnel_events, 5,
             what="the upstream to see the client's close through the tunnel")


def test_raw_tunnel_upstream_close_reaches_client(gateway, upstream):
    gw, u = raw_upgrade_gateway(gateway, upstream)
    c = gw.raw()
    try:
        c.send(build_request("GET", "/upgrade-then-close", "t.test",
                             [("Connection", "Upgrade"), ("Upgrade", "websocket")]))
        r = c.read_response()
        assert r.status == 101, r
        assert c.read_exact(3) == b"bye"
        assert c.wait_closed(5), "client connection not closed after the upstream closed"
    finally:
        c.close()
