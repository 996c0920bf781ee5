#!/usr/bin/env python3
"""Send exactly N requests to HOST:PORT over C keep-alive connections (one
request in flight per connection) and check every answer is a 200.

Usage: fixedload.py HOST PORT N [C] [HEADER_VALUE] [tls]
With "tls" the connections use TLS (certificate not verified: the handshakes
are not what is measured, 8 connections for thousands of requests).
Prints "done <n> ok <n> seconds <t>"; exits 1 if any request failed.
"""
import asyncio
import ssl
import sys
import time


async def worker(host, port, count, request, results, tls):
    reader, writer = await asyncio.open_connection(host, port, ssl=tls)
    try:
        for _ in range(count):
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            length, chunked = 0, False
            for line in lines[1:]:
                k, _, v = line.partition(":")
                k = k.strip().lower()
                if k == "content-length":
                    length = int(v.strip())
                elif k == "transfer-encoding" and "chunked" in v.lower():
                    chunked = True
            if chunked:
                while True:
                    size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                    await reader.readexactly(size + 2)
                    if size == 0:
                        break
            elif length:
                await reader.readexactly(length)
            results["done"] += 1
            if lines[0].startswith("HTTP/1.1 200"):
                results["ok"] += 1
    finally:
        writer.close()


async def main():
    host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    conns = int(sys.argv[4]) if len(sys.argv) > 4 else 8
    version = sys.argv[5] if len(sys.argv) > 5 else "4.1.0"
    tls = None
    if len(sys.argv) > 6 and sys.argv[6] == "tls":
        tls = ssl.create_default_context()
        tls.check_hostname = False
        tls.verify_mode = ssl.CERT_NONE
    request = ("GET / HTTP/1.1\r\nHost: %s:%d\r\nX-Postfacto-Version: %s\r\n\r\n"
               % (host, port, version)).encode()
    results = {"done": 0, "ok": 0}
    shares = [n // conns + (1 if i < n % conns else 0) for i in range(conns)]
    start = time.monotonic()
    await asyncio.gather(*(worker(host, port, s, request, results, tls) for s in shares if s))
    print("done %d ok %d seconds %.2f" % (results["done"], results["ok"], time.monotonic() - start))
    return 0 if results["ok"] == n else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
