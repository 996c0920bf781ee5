"""HTTP/2 attacks with a scripted attacker (raw frames over python3-h2's connection), each with
the defaults a deployment ships: the attacker's connection is ended, a normal client on its own
connection is served while the attack runs, the upstream sees no amplification and the gateway's
memory stays bounded. The older classics (Rapid Reset, PING and CONTINUATION floods, header
lists, stalled readers) are in test_h2.py; these are the rest of the list in configuration.md."""

import struct
import threading
import time

import pytest

from helpers import wait_for
from h2util import DATA, END_HEADERS, END_STREAM, HEADERS, SETTINGS, StreamResult, frame
from test_h2 import ENHANCE_YOUR_CALM, base, pki, sanitized, start_h2  # noqa: F401 (fixtures)

PRIORITY, WINDOW_UPDATE = 0x2, 0x8
FLOW_CONTROL_ERROR = 0x3


class NormalClient:
    """A well-behaved client on its own connection, asking one request after another until
    stopped. Every answer must be a 200."""

    def __init__(self, gw):
        self.gw, self.ok, self.bad = gw, 0, []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        c = self.gw.client()
        try:
            while not self.stop.is_set():
                st = c.get("/normal", timeout=10)
                if st.status == 200:
                    self.ok += 1
                else:
                    self.bad.append(st)
                time.sleep(0.01)
        except Exception as e:  # noqa: BLE001 - reported by the assertion below
            self.bad.append(e)
        finally:
            c.close()

    def __enter__(self):
        self.thread.start()
        wait_for(lambda: self.ok > 0 or self.bad, 10, what="the normal client's first answer")
        return self

    def __exit__(self, *exc):
        # served during the attack and after it
        done = self.ok
        wait_for(lambda: self.ok > done or self.bad, 10, what="an answer after the attack")
        self.stop.set()
        self.thread.join(20)
        assert not self.bad, self.bad
        assert self.ok > 0


def attacker_paths(gw):
    return [r["path"] for u in gw.ups.values() for r in u.started if r["path"] != "/normal"]


def send_quietly(c, data):
    try:
        c.raw(data)
    except OSError:
        pass  # the gateway closed first


def test_made_you_reset_spends_the_reset_budget(start_h2):
    """MadeYouReset (CVE-2025-8671): the attacker never sends RST_STREAM; it makes the gateway
    reset each stream (here with a WINDOW_UPDATE that overflows the stream's window, a stream
    error in RFC 9113 6.9.1; nghttp2 1.52 treats the other primitives of that paper as
    connection errors) so that its streams leave the concurrency count while their upstream
    requests would go on. The gateway's own resets spend the client's reset budget."""
    gw = start_h2(http2={"max_resets": 50})
    with NormalClient(gw):
        c = gw.client()
        resets = 0
        for _ in range(300):
            sid = c.request(base("/slow?ms=3000"))
            send_quietly(c, frame(WINDOW_UPDATE, 0, sid, struct.pack(">I", 0x7fffffff)))
            while c.read_some(0.05):
                pass
            resets = sum(1 for s in c.streams.values() if s.reset == FLOW_CONTROL_ERROR)
            if c.closed or c.goaway is not None:
                break
        c.wait_closed(10)
        assert c.goaway == ENHANCE_YOUR_CALM, (c.goaway, resets)
        assert 50 <= resets <= 60, resets
        wait_for(lambda: "too many stream resets" in gw.stderr_text(), 5, what="the warning")
        # no amplification: at most one upstream request per stream the budget allowed
        time.sleep(0.3)
        assert len(attacker_paths(gw)) <= 60, len(attacker_paths(gw))


@pytest.mark.parametrize("kind", ["settings", "priority", "empty_data"])
def test_control_frame_floods_get_goaway(start_h2, kind):
    gw = start_h2()
    with NormalClient(gw):
        c = gw.client()
        if kind == "settings":
            flood = frame(SETTINGS, 0, 0, b"") * 2000
        elif kind == "priority":
            # PRIORITY on idle streams: each would be a stream object to keep
            flood = b"".join(frame(PRIORITY, 0, 2 * i + 1, struct.pack(">IB", 0, 15))
                             for i in range(2000))
        else:
            sid = c.request(base("/upload", "POST"), end_stream=False)
            flood = frame(DATA, 0, sid, b"") * 2000
        rss0 = gw.rss_kb()
        send_quietly(c, flood)
        c.wait_closed(10)
        assert c.goaway == ENHANCE_YOUR_CALM, c.goaway
        wait_for(lambda: "too many control frames" in gw.stderr_text(), 5, what="the warning")
        if not sanitized(gw.binary):
            assert gw.rss_kb() - rss0 < 8 * 1024
    assert len(attacker_paths(gw)) <= 1


def hpack_int(value, prefix_bits, first):
    """RFC 7541 5.1 integer with `first` holding the bits above the prefix."""
    top = (1 << prefix_bits) - 1
    if value < top:
        return bytes([first | value])
    out = bytearray([first | top])
    value -= top
    while value >= 128:
        out.append((value & 0x7f) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def test_hpack_bomb_is_refused_without_decoding_into_memory(start_h2):
    """One 4,000-byte field put in the dynamic table, then referenced 3,000 times with one byte
    each: 12 MB of header list from a 7 KB header block. The default header list limit
    (16 KiB) answers 431 and the upstream sees nothing; the gateway keeps no copy of it."""
    gw = start_h2()
    with NormalClient(gw):
        c = gw.client()
        name, value = b"x-bomb", b"a" * 4000
        insert = b"\x40" + hpack_int(len(name), 7, 0) + name + hpack_int(len(value), 7, 0) + value
        block = c.encode(base("/bomb")) + insert + b"\xbe" * 3000   # 0xbe: dynamic entry 62
        assert len(block) < 16384
        rss0 = gw.rss_kb()
        c.streams[1] = StreamResult()
        send_quietly(c, frame(HEADERS, END_HEADERS | END_STREAM, 1, block))
        deadline = time.monotonic() + 10
        st = c.streams[1]
        while st.status is None and st.reset is None and not c.closed:
            assert time.monotonic() < deadline, st
            c.read_some(1)
        assert st.status == 431 or st.reset is not None or c.goaway is not None, st
        if not sanitized(gw.binary):
            assert gw.rss_kb() - rss0 < 8 * 1024
        c.close()
    assert attacker_paths(gw) == []
