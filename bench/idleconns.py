#!/usr/bin/env python3
"""Open N keep-alive connections to HOST:PORT, send one request on each, read
the response, then hold every connection idle.

Protocol on stdout/stdin (driven by bench.py):
  prints  "READY opened=<n> answered=<n> failed=<n> seconds=<t>"  once all are idle,
  waits for any line on stdin (the caller measures the server's memory meanwhile),
  prints  "ALIVE <n>"  (connections still open, i.e. not closed by the server),
  closes everything and exits 0.

Usage: idleconns.py HOST PORT N [HEADER_VALUE]
"""
import asyncio
import resource
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


async def main():
    host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    version = sys.argv[4] if len(sys.argv) > 4 else "4.1.0"
    request = (
        "GET / HTTP/1.1\r\nHost: %s:%d\r\nX-Postfacto-Version: %s\r\n\r\n" % (host, port, version)
    ).encode()
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
                    loop.create_connection(lambda: Conn(request, done), host, port), 10
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
    want = int(sys.argv[3]) + 256
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(want, soft), hard), hard))
    asyncio.run(main())
