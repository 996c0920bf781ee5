"""WebSockets over HTTP/2 (RFC 8441): SETTINGS_ENABLE_CONNECT_PROTOCOL, an extended CONNECT
forwarded as an HTTP/1.1 Upgrade GET with the gateway's own Sec-WebSocket-Key, the 101 answered
as :status 200, bytes both ways in DATA frames under flow control, either side's end and reset,
routing by the pin cookie, the idle timeout, reloads and the drain. Client: python3-h2 with its
own checks turned off."""

import hashlib
import json
import os
import signal
import struct
import time

import pytest

from certs import TestCA
from h2util import DATA, H2Gw, frame
from helpers import free_port, header_values, pattern_bytes, version_block, wait_for
from tlsutil import tls_config

ENABLE_CONNECT_PROTOCOL = 0x8
CANCEL = 0x8
GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
CLIENT_KEY = "dGhlIHNhbXBsZSBub25jZQ=="


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    ca = TestCA(tmp_path_factory.mktemp("pki-h2ws"))
    return {"ca": ca, "a": ca.issue("a", ["a.test"], key="ec")}


@pytest.fixture
def start_ws(gateway, upstream, ws_upstream, pki):
    """Versions 4.1.0 and 4.2.0 (default) behind websockets echo servers (kind="ws"), or
    behind the raw test upstream (kind="raw": 101 then a byte echo; /upgrade-* variants)."""
    def start(kind="ws", timeouts=None):
        make = ws_upstream if kind == "ws" else upstream
        ups = {"4.1.0": make("4.1.0"), "4.2.0": make("4.2.0")}
        h, s, a = free_port(), free_port(), free_port()
        cfg = tls_config(
            h, s, a, {"v1": [ups["4.1.0"].addr], "v2": [ups["4.2.0"].addr]},
            [{"hosts": ["a.test"],
              "version": version_block({"4.1.0": "v1", "4.2.0": "v2"}, "4.2.0")}],
            [pki["a"]], timeouts=timeouts)
        return H2Gw(gateway(cfg), s, ups, pki, cfg)
    return start


def connect_head(path="/cable", protocol="websocket", extra=(), method="CONNECT"):
    h = [(":method", method), (":protocol", protocol), (":scheme", "https"), (":path", path),
         (":authority", "a.test")]
    if protocol is None:
        h = [x for x in h if x[0] != ":protocol"]
    return h + [("sec-websocket-version", "13"), ("origin", "https://a.test")] + list(extra)


def open_tunnel(c, path="/cable", extra=(), timeout=10.0):
    """Sends an extended CONNECT; returns (stream id, result) once the response head came."""
    sid = c.request(connect_head(path, extra=extra), end_stream=False)
    st = c.streams[sid]
    deadline = time.monotonic() + timeout
    while st.status is None and st.reset is None and not c.closed:
        assert time.monotonic() < deadline, "no answer to the CONNECT: %r" % st
        c.read_some(1)
    return sid, st


def raw_tunnel(start_ws, path, **kw):
    """A gateway in front of the raw upstream, a client, and a tunnel open on `path`."""
    gw = start_ws(kind="raw", **kw)
    c = gw.client()
    sid, st = open_tunnel(c, path)
    return gw, c, sid, st


def ws_frame(payload, opcode=None, mask=b"\x11\x22\x33\x44"):
    """A client frame (masked, FIN set)."""
    if opcode is None:
        opcode = 1 if isinstance(payload, str) else 2
    if isinstance(payload, str):
        payload = payload.encode()
    n = len(payload)
    head = bytes([0x80 | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack(">H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack(">Q", n)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + body


def ws_parse(buf):
    """One server frame from the front of buf: (opcode, payload, rest) or None if incomplete."""
    if len(buf) < 2:
        return None
    op, n = buf[0] & 0x0f, buf[1] & 0x7f
    pos = 2
    if n == 126:
        if len(buf) < 4:
            return None
        n, pos = struct.unpack(">H", buf[2:4])[0], 4
    elif n == 127:
        if len(buf) < 10:
            return None
        n, pos = struct.unpack(">Q", buf[2:10])[0], 10
    if len(buf) < pos + n:
        return None
    return op, bytes(buf[pos:pos + n]), bytes(buf[pos + n:])


def ws_roundtrip(c, sid, message, timeout=10.0):
    c.send_body(sid, ws_frame(message), end_stream=False)
    st = c.streams[sid]
    deadline = time.monotonic() + timeout
    while True:
        got = ws_parse(st.body)
        if got:
            op, payload, rest = got
            st.body = bytearray(rest)
            return op, payload
        assert not (st.ended or st.reset is not None or c.closed), st
        assert time.monotonic() < deadline, "no echo: %r" % st
        c.read_some(1)


def read_until(c, st, n, timeout=10.0):
    deadline = time.monotonic() + timeout
    while len(st.body) < n and not (st.ended or st.reset is not None or c.closed):
        assert time.monotonic() < deadline, "only %d of %d bytes: %r" % (len(st.body), n, st)
        c.read_some(1)


def hdr(headers, name):
    return header_values(headers, name)


def wait_upstream_eof(gw, what):
    u = gw.ups["4.2.0"]
    wait_for(lambda: any(e[0] == "eof-from-client" for e in u.tunnel_events), 5, what=what)


# ---------------------------------------------------------------- settings and the handshake

def test_settings_enable_connect_protocol(start_ws):
    gw = start_ws()
    c = gw.client()
    wait_for(lambda: c.read_some(0.5) or ENABLE_CONNECT_PROTOCOL in c.remote_settings, 5,
             what="the server's SETTINGS")
    assert c.remote_settings.get(ENABLE_CONNECT_PROTOCOL) == 1, c.remote_settings
    c.close()


def test_extended_connect_echoes_websocket_frames(start_ws):
    gw = start_ws()
    c = gw.client()
    sid, st = open_tunnel(c, extra=[("sec-websocket-key", CLIENT_KEY),
                                    ("sec-websocket-protocol", "actioncable-v1-json"),
                                    ("cookie", "a=1"), ("cookie", "b=2")])
    assert st.status == 200, st
    names = [k for k, _ in st.headers]
    for hop in ("upgrade", "connection", "sec-websocket-accept"):
        assert hop not in names, st.headers
    assert st.header("x-postfacto-version") == "4.2.0"
    assert not st.ended and st.reset is None
    assert ws_roundtrip(c, sid, "hello") == (1, b"hello")
    big = pattern_bytes(70000, seed=3)
    assert ws_roundtrip(c, sid, big) == (2, big)
    c.close()

    v2 = gw.ups["4.2.0"]
    assert len(v2.handshakes) == 1 and gw.ups["4.1.0"].handshakes == []
    path, h = v2.handshakes[0]
    assert path == "/cable"
    assert hdr(h, "Upgrade") == ["websocket"], h
    assert hdr(h, "Connection") == ["Upgrade"], h
    assert hdr(h, "Host") == ["a.test"], h
    assert hdr(h, "Origin") == ["https://a.test"], h
    assert hdr(h, "Sec-WebSocket-Version") == ["13"], h
    assert hdr(h, "Sec-WebSocket-Protocol") == ["actioncable-v1-json"], h
    assert hdr(h, "Cookie") == ["a=1; b=2"], h
    keys = hdr(h, "Sec-WebSocket-Key")
    assert len(keys) == 1 and keys[0] != CLIENT_KEY, h
    assert len(__import__("base64").b64decode(keys[0])) == 16


def test_upstream_gets_a_get_and_a_fresh_key_each_time(start_ws):
    gw = start_ws(kind="raw")
    c = gw.client()
    for _ in range(2):
        sid, st = open_tunnel(c, "/t")
        assert st.status == 200, st
        c.send_body(sid, b"ping", end_stream=False)
        read_until(c, st, 4)
        assert bytes(st.body) == b"ping"
    c.close()
    recs = gw.ups["4.2.0"].started
    assert [r["method"] for r in recs] == ["GET", "GET"]
    assert all(r["target"] == "/t" and r["version"] == "HTTP/1.1" for r in recs)
    keys = [hdr(r["headers"], "Sec-WebSocket-Key")[0] for r in recs]
    assert keys[0] != keys[1]
    for r in recs:
        assert hdr(r["headers"], "Transfer-Encoding") == [] and hdr(r["headers"],
                                                                     "Content-Length") == []


def test_pinned_version_by_cookie(start_ws):
    gw = start_ws()
    c = gw.client()
    sid, st = open_tunnel(c, extra=[("cookie", "postfacto_version=4.1.0")])
    assert st.status == 200 and st.header("x-postfacto-version") == "4.1.0", st
    assert ws_roundtrip(c, sid, "pinned") == (1, b"pinned")
    c.close()
    assert len(gw.ups["4.1.0"].handshakes) == 1 and gw.ups["4.2.0"].handshakes == []


REFUSED = {
    # well-formed but not implemented: answered, never forwarded
    "other-protocol": (connect_head(protocol="connect-udp"), 501),
    # malformed (RFC 8441 §4, RFC 9113 §8.5): stream error PROTOCOL_ERROR
    "connect-without-protocol": (connect_head(protocol=None), None),
    "protocol-without-connect": (connect_head(method="GET"), None),
    "no-authority": ([x for x in connect_head() if x[0] != ":authority"], None),
    "content-length": (connect_head(extra=[("content-length", "5")]), None),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_other_connects_are_refused_and_never_forwarded(start_ws, case):
    gw = start_ws(kind="raw")
    head, status = REFUSED[case]
    c = gw.client()
    sid = c.request(head, end_stream=False)
    st = c.wait(sid)
    if status:
        assert st.status == status, st
    else:
        assert st.status is None and st.reset is not None, st
    # a stream error or an answer: the connection goes on, and a WebSocket still opens on it
    sid, st = open_tunnel(c, "/after")
    assert st.status == 200, st
    c.send_body(sid, b"ok", end_stream=False)
    read_until(c, st, 2)
    assert bytes(st.body) == b"ok"
    c.close()
    assert [r["path"] for u in gw.ups.values() for r in u.started] == ["/after"]


def test_upstream_refusing_the_upgrade_is_forwarded(start_ws):
    gw, c, sid, st = raw_tunnel(start_ws, "/upgrade-refused")
    c.wait(sid)
    assert st.status == 403 and st.ended, st
    assert bytes(st.body) == b"no websocket for you"
    c.close()


def test_wrong_accept_is_502(start_ws):
    gw, c, sid, st = raw_tunnel(start_ws, "/upgrade-bad-accept")
    c.wait(sid)
    assert st.status == 502, st
    c.close()


# ---------------------------------------------------------------- ends

def test_upstream_close_ends_the_stream(start_ws):
    gw, c, sid, st = raw_tunnel(start_ws, "/upgrade-then-close")
    assert st.status == 200, st
    c.wait(sid)
    assert st.ended and bytes(st.body) == b"bye", st
    assert gw.metric("switchyard_tunnels_active") == 0
    c.close()


def test_client_end_stream_half_closes_the_upstream(start_ws):
    gw, c, sid, st = raw_tunnel(start_ws, "/t")
    c.send_body(sid, b"last words", end_stream=True)
    c.wait(sid)
    # the upstream saw the half-close after the bytes, echoed them, and closed
    assert bytes(st.body) == b"last words" and st.ended, st
    wait_upstream_eof(gw, "the upstream to see the end of the stream")
    c.close()


def test_client_reset_closes_the_upstream(start_ws):
    gw, c, sid, st = raw_tunnel(start_ws, "/t")
    c.send_body(sid, b"x", end_stream=False)
    read_until(c, st, 1)
    c.conn.reset_stream(sid, CANCEL)
    c.flush()
    wait_upstream_eof(gw, "the upstream connection to close after the client's RST_STREAM")
    assert c.get("/after").status == 200   # only the stream ended
    wait_for(lambda: gw.metric("switchyard_tunnels_active") == 0, 5, what="tunnel count")
    c.close()


# ---------------------------------------------------------------- flow control, memory

def test_large_transfer_to_a_slow_reader_keeps_memory_bounded(start_ws):
    """Several MiB each way through the byte echo; the client acknowledges what it receives
    only after a pause per 256 KiB, so the gateway must stop reading the upstream (which then
    stops reading the gateway) rather than buffer."""
    gw = start_ws(kind="raw")
    size = int(os.environ.get("SWITCHYARD_H2_WS_MB", "8")) << 20
    c = gw.client(window=65535)
    c.auto_ack = False
    sid, st = open_tunnel(c, "/t")
    assert st.status == 200, st
    data = pattern_bytes(size, seed=9)
    base_rss = gw.rss_kb()
    peak = base_rss
    sent = seen = 0
    digest = hashlib.sha256()
    last_pause = 0
    deadline = time.monotonic() + 240
    while seen < size:
        assert time.monotonic() < deadline, "transfer too slow: sent %d, got %d" % (sent, seen)
        assert st.reset is None and not st.ended and not c.closed, st
        window = min(c.conn.local_flow_control_window(sid), c.conn.max_outbound_frame_size)
        if sent < size and window > 0:
            n = min(window, size - sent)
            c.conn.send_data(sid, data[sent:sent + n])
            sent += n
            c.flush()
            if sent == size:
                c.conn.end_stream(sid)
                c.flush()
        c.read_some(0.05)
        if st.body:
            digest.update(st.body)
            seen += len(st.body)
            st.body = bytearray()
            if seen - last_pause >= 256 << 10:
                last_pause = seen
                time.sleep(0.01)
                peak = max(peak, gw.rss_kb())
            c.conn.acknowledge_received_data(st.unacked, sid)
            st.unacked = 0
            c.flush()
    c.wait(sid, 10)
    assert st.ended, st
    assert digest.hexdigest() == hashlib.sha256(data).hexdigest()
    growth = peak - base_rss
    print("h2 tunnel of %d MiB each way: RSS %d KiB, peak growth %d KiB" % (
        size >> 20, base_rss, growth))
    with open(gw.binary, "rb") as f:
        sanitized = b"__asan_init" in f.read()
    if not sanitized:   # ASan's quarantine keeps freed buffers: RSS says nothing there
        assert growth < 8 * 1024, "RSS grew by %d KiB" % growth
    c.close()


# ---------------------------------------------------------------- timeouts, reload, drain

def test_tunnel_survives_reload_and_ends_at_the_idle_timeout(start_ws):
    gw, c, sid, st = raw_tunnel(start_ws, "/t", timeouts={"tunnel_idle": "2s"})
    cfg = json.loads(json.dumps(gw.cfg))
    cfg["sites"][0]["version"]["default"] = "4.1.0"
    gw.reload(cfg)
    for i in range(3):   # activity keeps it open past the idle time
        if i:
            time.sleep(1.2)
        c.send_body(sid, b"tick%d" % i, end_stream=False)
        read_until(c, st, 5 * (i + 1))
    t0 = time.monotonic()
    assert bytes(st.body) == b"tick0tick1tick2"
    assert st.reset is None and not st.ended
    c.wait(sid, 10)
    waited = time.monotonic() - t0
    assert st.reset == CANCEL, st
    assert 1.5 < waited < 6, waited
    wait_upstream_eof(gw, "the upstream connection to close at the idle timeout")
    assert c.get("/after").header("x-upstream") == "4.1.0"   # the reload applied to new streams
    c.close()


def test_drain_lets_the_tunnel_run(start_ws):
    gw, c, sid, st = raw_tunnel(start_ws, "/t", timeouts={"drain": "3s"})
    t0 = time.monotonic()
    gw.signal(signal.SIGTERM)
    wait_for(lambda: c.read_some(0.2) or c.goaway is not None, 5, what="GOAWAY")
    assert c.goaway == 0
    time.sleep(1)
    # python3-h2 sends nothing after a GOAWAY: the frame is written by hand, the answer
    # looked for in the decrypted bytes
    c.raw(frame(DATA, 0, sid, b"still here"))
    got = b""
    c.sock.settimeout(5)
    while b"still here" not in got:
        d = c.sock.recv(65536)
        assert d, "closed before the tunnel answered: %r" % got
        got += d
    try:
        while c.sock.recv(65536):   # until the drain time is over
            pass
    except OSError:
        pass
    assert 2.5 < time.monotonic() - t0 < 8
    assert gw.proc.wait(15) == 0
