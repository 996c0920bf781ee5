#!/usr/bin/env python3
"""Open N keep-alive connections to HOST:PORT, send one request on each, read
the response, then hold every connection idle.

Protocol on stdout/stdin (driven by bench.py):
  prints  "READY opened=<n> answered=<n> failed=<n> seconds=<t>"  once all are idle,
  waits for any line on stdin (the caller measures the server's memory meanwhile),
  prints  "ALIVE <n>"  (connections still open, i.e. not closed by the server),
  closes everything and exits 0.

Usage: idleconns.py HOST PORT N [HEADER_VALUE] [--h2 CA_FILE]

With --h2 each connection is TLS with ALPN h2 (the certificate checked against
CA_FILE): the client preface, one GET stream, its answer read to END_STREAM,
then the connection stays open and idle (SETTINGS acknowledged, nothing else).
"""
import asyncio
import resource
import ssl
import sys
import time

CONCURRENT_CONNECTS = 200


class Conn(asyncio.Protocol):
    def __init__(self, request, done):
        self.request = request
        self.done = done
        self.buf = b""
        self.transport = None
        self.closed = False

    def connection_made(self, transport):
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data):
        if self.done.done():
            return
        self.buf += data
        head_end = self.buf.find(b"\r\n\r\n")
        if head_end < 0:
            return
        head = self.buf[:head_end].decode("latin-1").lower()
        body = self.buf[head_end + 4:]
        status_ok = head.startswith("http/1.1 200")
        length = None
        chunked = False
        for line in head.split("\r\n")[1:]:
            name, _, value = line.partition(":")
            if name.strip() == "content-length":
                length = int(value.strip())
            elif name.strip() == "transfer-encoding" and "chunked" in value:
                chunked = True
        if length is not None and len(body) < length:
            return
        if chunked and not body.endswith(b"0\r\n\r\n"):
            return
        self.buf = b""
        self.done.set_result(status_ok)

    def connection_lost(self, exc):
        self.closed = True
        if not self.done.done():
            self.done.set_result(False)


class H2Conn(asyncio.Protocol):
    """One HTTP/2 connection: a single GET, then idle."""

    def __init__(self, authority, version, done):
        import h2.config
        import h2.connection
        self.h2 = h2.connection.H2Connection(
            config=h2.config.H2Configuration(client_side=True, header_encoding=None))
        self.headers = [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", authority),
                        (b":path", b"/"), (b"x-postfacto-version", version)]
        self.done = done
        self.status = None
        self.transport = None
        self.closed = False

    def connection_made(self, transport):
        self.transport = transport
        sslobj = transport.get_extra_info("ssl_object")
        if sslobj is None or sslobj.selected_alpn_protocol() != "h2":
            self.done.set_result(False)
            transport.close()
            return
        self.h2.initiate_connection()
        self.h2.send_headers(1, self.headers, end_stream=True)
        transport.write(self.h2.data_to_send())

    def data_received(self, data):
        import h2.events
        try:
            events = self.h2.receive_data(data)
        except Exception:  # a protocol error: count it as a failure
            if not self.done.done():
                self.done.set_result(False)
            return
        for ev in events:
            if isinstance(ev, h2.events.ResponseReceived):
                self.status = dict(ev.headers).get(b":status")
            elif isinstance(ev, h2.events.DataReceived):
                self.h2.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, (h2.events.StreamEnded, h2.events.StreamReset)):
                if not self.done.done():
                    self.done.set_result(self.status == b"200" and isinstance(ev, h2.events.StreamEnded))
            elif isinstance(ev, h2.events.ConnectionTerminated):
                self.closed = True
        out = self.h2.data_to_send()
        if out:
            self.transport.write(out)

    def connection_lost(self, exc):
        self.closed = True
        if not self.done.done():
            self.done.set_result(False)


async def main():
    args = sys.argv[1:]
    cafile = None
    if "--h2" in args:
        i = args.index("--h2")
        cafile = args[i + 1]
        del args[i:i + 2]
    host, port, n = args[0], int(args[1]), int(args[2])
    version = args[3] if len(args) > 3 else "4.1.0"
    sslctx = None
    if cafile:
        sslctx = ssl.create_default_context(cafile=cafile)
        sslctx.set_alpn_protocols(["h2"])
        authority = ("%s:%d" % (host, port)).encode()
    request = (
        "GET / HTTP/1.1\r\nHost: %s:%d\r\nX-Postfacto-Version: %s\r\n\r\n" % (host, port, version)
    ).encode()

    def factory(done):
        if sslctx is not None:
            return H2Conn(authority, version.encode(), done)
        return Conn(request, done)
    loop = asyncio.get_running_loop()
    sem = asyncio.Semaphore(CONCURRENT_CONNECTS)
    conns = []
    failed = 0
    answered = 0
    reasons = {}

    def fail(why):
        nonlocal failed
        failed += 1
        reasons[why] = reasons.get(why, 0) + 1
    start = time.monotonic()

    async def one():
        nonlocal answered
        async with sem:
            done = loop.create_future()
            try:
                _, proto = await asyncio.wait_for(
                    loop.create_connection(lambda: factory(done), host, port, ssl=sslctx), 10
                )
            except asyncio.TimeoutError:
                fail("connect-timeout")
                return
            except OSError as e:
                fail("connect-" + (e.strerror or str(e)).replace(" ", "-"))
                return
            try:
                ok = await asyncio.wait_for(done, 10)
            except asyncio.TimeoutError:
                fail("answer-timeout")
                conns.append(proto)
                return
            conns.append(proto)
            if ok:
                answered += 1
            else:
                fail("closed-or-not-200")

    await asyncio.gather(*(one() for _ in range(n)))
    print(
        "READY opened=%d answered=%d failed=%d seconds=%.1f reasons=%s"
        % (len(conns), answered, failed, time.monotonic() - start,
           ",".join("%s:%d" % kv for kv in sorted(reasons.items())) or "none"),
        flush=True,
    )
    await loop.run_in_executor(None, sys.stdin.readline)
    alive = sum(1 for c in conns if not c.closed)
    print("ALIVE %d" % alive, flush=True)
    for c in conns:
        if c.transport is not None:
            c.transport.close()
    await asyncio.sleep(0.2)


if __name__ == "__main__":
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = int(sys.argv[3]) + 256  # HOST PORT N come first
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(want, soft), hard), hard))
    asyncio.run(main())
