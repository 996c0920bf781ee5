"""A real browser through the gateway: headless Chromium loads a page over HTTP/2 from the
version a query parameter pins (the gateway answers with its pin cookie), then opens a WebSocket
to the same host. Chromium sends it as an extended CONNECT (RFC 8441) on the same HTTP/2
connection, which the gateway proves: one TLS handshake, both requests logged as HTTP/2, the
WebSocket's upstream handshake on the pinned version.

Driven through the Chrome DevTools Protocol with python3-websockets (no other dependency).
Debian's Chromium (156 when this was written) uses WebSockets over HTTP/2 by default when the
server's SETTINGS carry ENABLE_CONNECT_PROTOCOL and an HTTP/2 connection to the host is already
open: no feature flag is needed. Without the setting it opens a second connection, over
HTTP/1.1, for the WebSocket, which this test catches."""

import asyncio
import itertools
import json
import os
import shutil
import signal
import subprocess

import pytest
import websockets

from certs import TestCA
from helpers import free_port, header_values, run_async, version_block, wait_for
from tlsutil import tls_config

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if os.access("/usr/bin/chromium",
                                                                          os.X_OK) else None)
pytestmark = pytest.mark.skipif(CHROMIUM is None,
                                reason="chromium not installed (scripts/install-deps.sh)")

HOST = "retro.test"

PAGE = b"""<!doctype html>
<html><head><meta charset="utf-8"><title>retro</title><link rel="icon" href="data:,"></head>
<body><p id="v">loading</p>
<script>
window.openSocket = function () { return new Promise(function (resolve) {
  var nav = performance.getEntriesByType('navigation')[0].nextHopProtocol;
  var ws = new WebSocket('wss://' + location.host + '/cable');
  var t = setTimeout(function () { resolve({nav: nav, error: 'timeout'}); }, 15000);
  ws.onopen = function () { ws.send('hello over ' + nav); };
  ws.onmessage = function (e) {
    clearTimeout(t);
    resolve({nav: nav, echo: e.data});
    ws.close();
  };
  ws.onerror = function () { clearTimeout(t); resolve({nav: nav, error: 'websocket error'}); };
}); };
</script></body></html>
"""


class Cdp:
    """A minimal Chrome DevTools Protocol client over one page target's WebSocket."""

    def __init__(self, ws):
        self.ws = ws
        self.ids = itertools.count(1)

    async def call(self, method, **params):
        mid = next(self.ids)
        await self.ws.send(json.dumps({"id": mid, "method": method, "params": params}))
        while True:
            msg = json.loads(await self.ws.recv())
            if msg.get("id") == mid:
                if "error" in msg:
                    raise AssertionError("%s: %r" % (method, msg["error"]))
                return msg["result"]

    async def evaluate(self, expr, timeout=20):
        r = await asyncio.wait_for(self.call("Runtime.evaluate", expression=expr,
                                              awaitPromise=True, returnByValue=True), timeout)
        if "exceptionDetails" in r:
            raise AssertionError("%s: %r" % (expr, r["exceptionDetails"]))
        return r["result"].get("value")


def start_chromium(tmp_path, url):
    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    args = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--no-default-browser-check", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--disable-extensions",
            "--disable-dev-shm-usage", "--ignore-certificate-errors",
            "--host-resolver-rules=MAP %s 127.0.0.1" % HOST,
            "--remote-debugging-port=0", "--user-data-dir=%s" % profile, url]
    with open(tmp_path / "chromium.log", "wb") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    port_file = profile / "DevToolsActivePort"
    wait_for(lambda: port_file.exists() and len(port_file.read_text().split("\n")) >= 2, 30,
             what="chromium's DevToolsActivePort")
    port, path = port_file.read_text().split("\n")[:2]
    return proc, int(port), path


def stop_chromium(proc):
    """Its whole process group: the browser and the renderer, GPU and utility processes."""
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(wait)
            break
        except subprocess.TimeoutExpired:
            continue


async def run_page(port, browser_path, loaded):
    """Finds the page among the browser's targets, waits until it loaded, calls loaded(), then
    has the page open its WebSocket; returns what the page saw."""
    async with websockets.connect("ws://127.0.0.1:%d%s" % (port, browser_path),
                                  max_size=None) as bws:
        cdp = Cdp(bws)
        for _ in range(100):
            pages = [t for t in (await cdp.call("Target.getTargets"))["targetInfos"]
                     if t["type"] == "page"]
            if pages:
                break
            await asyncio.sleep(0.1)
        assert pages, "no page target"
    url = "ws://127.0.0.1:%d/devtools/page/%s" % (port, pages[0]["targetId"])
    async with websockets.connect(url, max_size=None) as ws:
        cdp = Cdp(ws)
        for _ in range(200):   # until the page ran its script
            if await cdp.evaluate("document.readyState === 'complete' && !!window.openSocket"):
                break
            await asyncio.sleep(0.1)
        loaded()
        return await cdp.evaluate("window.openSocket()")


def test_chromium_page_and_websocket_share_one_h2_connection(gateway, ws_upstream, tmp_path):
    ca = TestCA(tmp_path / "pki")
    leaf = ca.issue("retro", [HOST], key="ec")
    pages = {"/": ("text/html; charset=utf-8", PAGE)}
    v1, v2 = ws_upstream("4.1.0", pages=pages), ws_upstream("4.2.0", pages=pages)
    h, s, a = free_port(), free_port(), free_port()
    gw = gateway(tls_config(
        h, s, a, {"v1": [v1.addr], "v2": [v2.addr]},
        [{"hosts": [HOST], "version": version_block({"4.1.0": "v1", "4.2.0": "v2"}, "4.2.0")}],
        [leaf]))
    seen = {}

    def loaded():
        # Chromium may have opened a spare connection while navigating: counted before the
        # WebSocket, which must add none
        wait_for(lambda: gw.access_log(), 5, what="the page's access log line")
        seen["handshakes"] = gw.metric("switchyard_tls_handshakes_total")
        seen["accepted"] = gw.metric("switchyard_connections_accepted_total")

    proc, port, path = start_chromium(tmp_path,
                                      "https://%s:%d/?postfacto_version=4.1.0" % (HOST, s))
    try:
        result = run_async(run_page(port, path, loaded), 60)
    finally:
        stop_chromium(proc)
    print("chromium:", result)
    assert result.get("error") is None, (result, (tmp_path / "chromium.log").read_text())
    assert result["nav"] == "h2", result
    assert result["echo"] == "hello over h2", result

    # the pinned version served the WebSocket, with the cookie the gateway set
    assert v2.handshakes == [], v2.handshakes
    assert len(v1.handshakes) == 1, v1.handshakes
    path, hdrs = v1.handshakes[0]
    assert path == "/cable"
    assert header_values(hdrs, "Connection") == ["Upgrade"], hdrs
    assert header_values(hdrs, "Upgrade") == ["websocket"], hdrs
    assert any("postfacto_version=4.1.0" in c for c in header_values(hdrs, "Cookie")), hdrs

    # at the gateway: both on HTTP/2, over one TLS connection
    log = gw.wait_access_log(2)
    by_path = {e["path"]: e for e in log}
    assert by_path["/cable"]["protocol"] == "HTTP/2" and by_path["/cable"]["status"] == 101, log
    assert by_path["/cable"]["version_source"] == "cookie", log   # the pin cookie (HttpOnly)
    page = [e for e in log if e["path"].startswith("/?")]
    assert page and page[0]["protocol"] == "HTTP/2" and page[0]["version"] == "4.1.0", log
    assert all(e["protocol"] == "HTTP/2" for e in log), log
    assert gw.metric("switchyard_tls_handshakes_total") == seen["handshakes"], seen
    assert gw.metric("switchyard_connections_accepted_total") == seen["accepted"], seen
    assert by_path["/cable"]["client"] == page[0]["client"], log   # the same connection
