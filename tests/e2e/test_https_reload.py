"""Certificate reload: the watcher (atomic rename, Kubernetes ..data symlink swap) and
SIGHUP swap the served certificate while an open wss tunnel keeps working; a bad new
pair is refused and the old certificate keeps being served."""

import asyncio
import os
import re
import signal

import pytest
import websockets

from certs import TestCA
from helpers import free_port, header_values, run_async, version_block, wait_for
from tlsutil import atomic_write, client_ctx, served, tls_config, wait_served


@pytest.fixture
def ca(tmp_path):
    return TestCA(tmp_path / "ca")


def wss_gateway(gateway, ws_upstream, certs, tmp_path):
    v1, v2 = ws_upstream("4.1.0"), ws_upstream("4.2.0")
    h, s, a = free_port(), free_port(), free_port()
    cfg = tls_config(h, s, a, {"v1": [v1.addr], "v2": [v2.addr]},
                     [{"hosts": ["a.test"],
                       "version": version_block({"4.1.0": "v1", "4.2.0": "v2"}, "4.2.0")}],
                     certs)
    gw = gateway(cfg)
    gw.https_port = s
    gw.cfg = cfg
    return gw, v1, v2


async def open_wss(port, ca_cert, **kw):
    return await websockets.connect("wss://a.test:%d/cable" % port, host="127.0.0.1", port=port,
                                    ssl=client_ctx(ca_cert, alpn=None), server_hostname="a.test",
                                    open_timeout=10, close_timeout=5, **kw)


async def echo(ws, msg):
    await ws.send(msg)
    return await asyncio.wait_for(ws.recv(), 10)


def reloads(gw, result):
    return gw.metric("switchyard_config_reloads_total", result=result) or 0


def swap_while_tunnel_open(gw, ca_cert, swap, new_der, expect_upstream=None):
    """Opens a wss tunnel, calls swap(), waits for new_der to be served, checks the tunnel."""
    async def scenario():
        ws = await open_wss(gw.https_port, ca_cert,
                            extra_headers={"Cookie": "postfacto_version=4.1.0"})
        try:
            assert await echo(ws, "before") == "before"
            assert ws.response_headers.get("X-Postfacto-Version") == (expect_upstream or "4.1.0")
            await asyncio.to_thread(swap)
            await asyncio.to_thread(wait_served, gw.https_port, "a.test", new_der)
            for i in range(3):
                assert await echo(ws, "after-%d" % i) == "after-%d" % i
            assert await echo(ws, "x" * 100000) == "x" * 100000
        finally:
            await ws.close()
        # a new tunnel verifies against the new certificate
        ws = await open_wss(gw.https_port, ca_cert)
        try:
            assert await echo(ws, "new") == "new"
        finally:
            await ws.close()
    run_async(scenario(), 40)


def test_wss_echo_and_pin_cookie(gateway, ws_upstream, ca, tmp_path):
    a = ca.issue("a", ["a.test"], out_dir=tmp_path / "certs")
    gw, v1, v2 = wss_gateway(gateway, ws_upstream, [a], tmp_path)

    async def scenario():
        ws = await open_wss(gw.https_port, ca.cert, origin="https://a.test",
                            extra_headers={"Cookie": "postfacto_version=4.1.0"})
        try:
            out = [await echo(ws, m) for m in ("hello", "y" * 70000, b"\x00\x01bin")]
        finally:
            await ws.close()
        ws = await open_wss(gw.https_port, ca.cert)
        try:
            assert await echo(ws, "default") == "default"
        finally:
            await ws.close()
        return out

    out = run_async(scenario())
    assert out == ["hello", "y" * 70000, b"\x00\x01bin"]
    assert len(v1.handshakes) == 1 and len(v2.handshakes) == 1, (v1.handshakes, v2.handshakes)
    hdrs = v1.handshakes[0][1]
    assert header_values(hdrs, "X-Forwarded-Proto") == ["https"], hdrs
    assert header_values(hdrs, "Origin") == ["https://a.test"], hdrs
    assert header_values(hdrs, "Connection") == ["Upgrade"], hdrs
    assert header_values(hdrs, "Upgrade") == ["websocket"], hdrs


def test_watcher_reloads_on_atomic_rename(gateway, ws_upstream, ca, tmp_path):
    d = tmp_path / "certs"
    a = ca.issue("site", ["a.test"], out_dir=d)
    gw, v1, v2 = wss_gateway(gateway, ws_upstream, [a], tmp_path)
    assert served(gw.https_port, "a.test")[0] == a.der
    new = ca.issue("next", ["a.test"], out_dir=tmp_path / "staging")
    ok0 = reloads(gw, "ok")

    def swap():
        # key first, then the certificate, each by rename (what the ACME code does)
        atomic_write(a.key, open(new.key, "rb").read())
        atomic_write(a.cert, open(new.cert, "rb").read())

    swap_while_tunnel_open(gw, ca.cert, swap, new.der)
    assert reloads(gw, "ok") >= ok0 + 1
    assert reloads(gw, "failed") == 0, gw.stderr_text()[-2000:]
    # the metric follows
    wait_for(lambda: gw.metric("switchyard_tls_certificate_expiry_timestamp_seconds",
                               serial=new.serial) == new.not_after, 5,
             what="the expiry metric of the new certificate")
    assert gw.metric("switchyard_tls_certificate_expiry_timestamp_seconds",
                     serial=a.serial) is None


def test_watcher_reloads_on_kubernetes_secret_swap(gateway, ws_upstream, ca, tmp_path):
    # the layout of a mounted Secret: files are symlinks through ..data to a timestamped dir
    d = tmp_path / "secret"
    first = ca.issue("tls", ["a.test"], out_dir=d / "..2026_11_01_00_00_00.1")
    os.symlink("..2026_11_01_00_00_00.1", str(d / "..data"))
    for n in ("tls.crt", "tls.key"):
        os.symlink("..data/" + n, str(d / n))
    gw, v1, v2 = wss_gateway(gateway, ws_upstream, [(str(d / "tls.crt"), str(d / "tls.key"))],
                             tmp_path)
    assert served(gw.https_port, "a.test")[0] == first.der

    for i, stamp in enumerate(("..2026_11_02_00_00_00.2", "..2026_11_03_00_00_00.3")):
        new = ca.issue("tls", ["a.test"], out_dir=d / stamp)

        def swap(stamp=stamp):
            os.symlink(stamp, str(d / "..data_tmp"))
            os.rename(str(d / "..data_tmp"), str(d / "..data"))

        swap_while_tunnel_open(gw, ca.cert, swap, new.der)
    assert reloads(gw, "failed") == 0, gw.stderr_text()[-2000:]


def test_sighup_reload_swaps_certificate(gateway, ws_upstream, ca, tmp_path):
    a = ca.issue("a", ["a.test"], out_dir=tmp_path / "one")
    gw, v1, v2 = wss_gateway(gateway, ws_upstream, [a], tmp_path)
    new = ca.issue("b", ["a.test"], key="rsa", out_dir=tmp_path / "two")
    cfg = dict(gw.cfg)
    cfg["tls"] = dict(cfg["tls"], certificates=[{"cert": new.cert, "key": new.key}])

    def swap():
        gw.reload(cfg)

    swap_while_tunnel_open(gw, ca.cert, swap, new.der)
    assert reloads(gw, "ok") == 1


def test_bad_new_pair_is_refused(gateway, ws_upstream, ca, tmp_path):
    d = tmp_path / "certs"
    a = ca.issue("site", ["a.test"], out_dir=d)
    gw, v1, v2 = wss_gateway(gateway, ws_upstream, [a], tmp_path)
    line = [i for i, l in enumerate(gw.text.split("\n"), 1) if a.cert in l][0]
    other = ca.issue("other", ["a.test"], out_dir=tmp_path / "staging")

    async def scenario():
        ws = await open_wss(gw.https_port, ca.cert)
        try:
            assert await echo(ws, "before") == "before"
            # a certificate whose key is not the one next to it
            await asyncio.to_thread(atomic_write, a.cert, open(other.cert, "rb").read())
            await asyncio.to_thread(
                wait_for, lambda: reloads(gw, "failed") >= 1, 12, 0.1,
                "the watcher's reload to be refused (config_reloads_total{result=failed})")
            assert await echo(ws, "after") == "after"
        finally:
            await ws.close()
    run_async(scenario(), 40)

    err = gw.stderr_text()
    m = re.search(r"%s:(\d+): [^\n]*" % re.escape(gw.path), err)
    assert m, "no FILE:LINE reason on stderr:\n%s" % err[-2000:]
    assert int(m.group(1)) in (line, line - 1), (m.group(0), line)
    assert re.search(r"match", m.group(0), re.I), m.group(0)
    # the old certificate is still served, also to new connections
    for _ in range(3):
        assert served(gw.https_port, "a.test")[0] == a.der
    assert reloads(gw, "ok") == 0
    # SIGHUP with the broken pair on disk is refused too
    failed = reloads(gw, "failed")
    gw.signal(signal.SIGHUP)
    wait_for(lambda: reloads(gw, "failed") == failed + 1, 5, what="the SIGHUP reload refused")
    assert served(gw.https_port, "a.test")[0] == a.der
    # the next good change is picked up
    atomic_write(a.key, open(other.key, "rb").read())
    wait_served(gw.https_port, "a.test", other.der)
    assert gw.metric("switchyard_tls_certificate_expiry_timestamp_seconds",
                     serial=other.serial) == other.not_after
