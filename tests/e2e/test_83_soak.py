"""Soak: wrk load over mixed routes, WebSocket echo clients throughout and a
SIGHUP reload every 2 s. No failed request, no lost WebSocket message, file
descriptors back to the baseline and bounded RSS growth afterwards; and the
ASan/LSan build stays clean under a shorter run ending in SIGTERM.

SWITCHYARD_SOAK_SECONDS (default 20) sets the load duration;
tests/soak/run.sh runs it for minutes. SWITCHYARD_ASAN_BIN (default
build-asan/switchyard, `make asan`) names the sanitizer build.
"""

import asyncio
import os
import re
import signal
import subprocess
import threading
import time

import pytest
import websockets

from helpers import Gateway, free_port, make_config, version_block, wait_for

SOAK_SECONDS = int(os.environ.get("SWITCHYARD_SOAK_SECONDS", "20"))
REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
ASAN_BIN = os.environ.get("SWITCHYARD_ASAN_BIN") or os.path.join(REPO, "build-asan", "switchyard")

WRK_LUA = r"""
local versions = { "4.1.0", "4.2.0", "" }
local paths = { "/", "/api/retros", "/status?code=204", "/echo" }
local n = 0
request = function()
  n = n + 1
  local v = versions[(n % 3) + 1]
  local p = paths[(n % 4) + 1]
  local h = { ["Host"] = "retro.example.org" }
  if v ~= "" then h["X-Postfacto-Version"] = v end
  if p == "/echo" then
    return wrk.format("POST", p, h, string.rep("b", (n % 2000) + 1))
  end
  return wrk.format("GET", p, h, nil)
end
"""


def proc_stats(pid):
    with open("/proc/%d/status" % pid) as f:
        rss = next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
    return rss, len(os.listdir("/proc/%d/fd" % pid))


def soak_config(hp, ap, ups, ws):
    return make_config(
        hp, ap,
        upstreams={"v1": [ups["4.1.0"].addr], "v2": [ups["4.2.0"].addr], "ws": [ws.addr]},
        sites=[{"hosts": ["retro.example.org"],
                "version": version_block({"4.1.0": "v1", "4.2.0": "v2"}, "4.2.0")},
               {"hosts": ["127.0.0.1"], "upstream": "ws"}],
        workers=2, log={"access": False, "level": "warn"})


class WsClients:
    """n WebSocket echo clients, each sending a message every 50 ms until stopped."""

    def __init__(self, port, n=4):
        self.url = "ws://127.0.0.1:%d/cable" % port
        self.n = n
        self.sent = 0
        self.errors = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    async def _one(self, i):
        try:
            async with websockets.connect(self.url, open_timeout=10, close_timeout=5) as ws:
                k = 0
                while not self.stop.is_set():
                    msg = "client %d message %d %s" % (i, k, "z" * (k % 3000))
                    await ws.send(msg)
                    got = await asyncio.wait_for(ws.recv(), 10)
                    if got != msg:
                        self.errors.append("client %d: echo mismatch at %d" % (i, k))
                        return
                    self.sent += 1
                    k += 1
                    await asyncio.sleep(0.05)
        except Exception as e:  # noqa: BLE001 - every failure is reported
            self.errors.append("client %d: %r" % (i, e))

    async def _main(self):
        await asyncio.gather(*(self._one(i) for i in range(self.n)))

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(30)


def run_wrk(port, seconds, tmp_path, conns=16):
    script = tmp_path / "mix.lua"
    script.write_text(WRK_LUA)
    out = subprocess.run(["wrk", "-t1", "-c%d" % conns, "-d%ds" % seconds, "--timeout", "5s",
                          "-s", str(script), "http://127.0.0.1:%d/" % port],
                         capture_output=True, text=True, timeout=seconds + 60)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    m = re.search(r"(\d+) requests in", text)
    assert m, text
    return int(m.group(1)), text


def reload_loop(gw, stop, every=2.0):
    n = 0
    while not stop.wait(every):
        gw.signal(signal.SIGHUP)
        n += 1
    return n


def soak(gw, seconds, tmp_path):
    reloads = [0]
    stop = threading.Event()

    def loop():
        reloads[0] = reload_loop(gw, stop)

    t = threading.Thread(target=loop, daemon=True)
    with WsClients(gw.http_port) as ws:
        t.start()
        try:
            requests, text = run_wrk(gw.http_port, seconds, tmp_path)
        finally:
            stop.set()
            t.join(10)
        time.sleep(0.3)
        assert ws.errors == [], ws.errors
        assert ws.sent > seconds * 4, ws.sent
    return requests, text, reloads[0], ws.sent


def test_soak_mixed_load_with_reloads(gateway, upstream, ws_upstream, tmp_path):
    ups = {n: upstream(n) for n in ("4.1.0", "4.2.0")}
    ws = ws_upstream("ws")
    hp, ap = free_port(), free_port()
    gw = gateway(soak_config(hp, ap, ups, ws))
    # Warm up (fills buffer pools and upstream pools), then a reload empties
    # the upstream pools: that is the baseline.
    run_wrk(hp, 2, tmp_path)
    gw.reload(soak_config(hp, ap, ups, ws))
    time.sleep(0.5)
    rss0, fds0 = proc_stats(gw.pid)
    ok0 = gw.metric("switchyard_config_reloads_total", result="ok") or 0

    requests, text, reloads, ws_msgs = soak(gw, SOAK_SECONDS, tmp_path)
    print(text)
    assert "Non-2xx" not in text, text
    assert "Socket errors" not in text, text
    assert requests > SOAK_SECONDS * 100, text
    ok = gw.metric("switchyard_config_reloads_total", result="ok") or 0
    assert ok - ok0 >= reloads >= SOAK_SECONDS // 2 - 1, (ok, ok0, reloads)
    assert (gw.metric("switchyard_config_reloads_total", result="failed") or 0) == 0
    # Both versions and the default were served.
    for v in ("4.1.0", "4.2.0"):
        assert len(ups[v].requests) > 0

    # Afterwards: one more reload drops pooled upstream connections.
    gw.reload(soak_config(hp, ap, ups, ws))

    def settled():
        return proc_stats(gw.pid)[1] <= fds0

    wait_for(settled, 10, 0.2, "fds back to %d (now %d)" % (fds0, proc_stats(gw.pid)[1]))
    rss1, fds1 = proc_stats(gw.pid)
    print("soak %ds: %d requests, %d ws messages, %d reloads; RSS %d -> %d kB, fds %d -> %d" % (
        SOAK_SECONDS, requests, ws_msgs, reloads, rss0, rss1, fds0, fds1))
    assert rss1 - rss0 < 16 * 1024, "RSS grew from %d to %d kB" % (rss0, rss1)
    assert "error" not in gw.stderr_text().lower(), gw.stderr_text()[-2000:]


def test_asan_build_clean_under_mixed_load(upstream, ws_upstream, tmp_path):
    if not (os.path.isfile(ASAN_BIN) and os.access(ASAN_BIN, os.X_OK)):
        pytest.fail("sanitizer build %s missing: run `make asan` (or set SWITCHYARD_ASAN_BIN)"
                    % ASAN_BIN, pytrace=False)
    ups = {n: upstream(n) for n in ("4.1.0", "4.2.0")}
    ws = ws_upstream("ws")
    hp, ap = free_port(), free_port()
    gw = Gateway(ASAN_BIN, tmp_path, soak_config(hp, ap, ups, ws), name="asan")
    env_before = os.environ.get("ASAN_OPTIONS")
    os.environ["ASAN_OPTIONS"] = "detect_leaks=1:abort_on_error=0"
    try:
        gw.start()
    finally:
        if env_before is None:
            del os.environ["ASAN_OPTIONS"]
        else:
            os.environ["ASAN_OPTIONS"] = env_before
    try:
        gw.wait_ready(30)
        requests, text, reloads, _ = soak(gw, max(5, SOAK_SECONDS // 3), tmp_path)
        assert "Socket errors" not in text and "Non-2xx" not in text, text
        # Fault paths too: a bad request, and an upstream that vanishes mid-body.
        rc = gw.raw(timeout=5)
        rc.send(b"GET /a HTTP/1.1\r\nHost: retro.example.org\r\nContent-Length: 1\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n")
        assert rc.read_response().status == 400
        rc.close()
        rc = gw.raw(timeout=5)
        rc.send(b"GET /close-mid-body HTTP/1.1\r\nHost: retro.example.org\r\n\r\n")
        assert rc.read_response(allow_short=True).short
        rc.close()
    except Exception:
        gw.terminate()
        raise
    rc = gw.terminate(timeout=30)
    err = gw.stderr_text()
    print("asan run: %d requests, %d reloads, exit %s" % (requests, reloads, rc))
    assert not re.search(r"AddressSanitizer|LeakSanitizer|runtime error:", err), err[-6000:]
    assert rc == 0, (rc, err[-3000:])
