"""Big bodies stream through with flat memory.

SWITCHYARD_BIG_BODY_MB (default 200) sets the size; 1024 gives the 1 GB run.
The gateway's peak RSS (VmHWM) may not grow by more than a small bound while a
request body, a Content-Length response and a chunked response of that size
pass through, and every byte arrives intact (checked by hash or count).
"""

import hashlib
import os
import socket

import pytest

from helpers import ThreadedServer, free_port, make_config, wait_for

MB = int(os.environ.get("SWITCHYARD_BIG_BODY_MB", "200"))
SIZE = MB << 20
BLOCK = hashlib.sha256(b"big").digest() * 2048  # 64 KiB
MAX_GROWTH_KB = 48 * 1024


def hwm_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM")


def expected_sha(n):
    h = hashlib.sha256()
    full, rest = divmod(n, len(BLOCK))
    for _ in range(full):
        h.update(BLOCK)
    h.update(BLOCK[:rest])
    return h.hexdigest()


class StreamUpstream(ThreadedServer):
    """GET /cl?n / /chunked?n: streams n bytes of BLOCK. POST /sink: reads a
    Content-Length or chunked body, answers its length and sha256."""

    def __init__(self):
        super().__init__(backlog=16)
        self.start()

    def _serve(self, s, cid):
        f = s.makefile("rb")
        try:
            while True:
                line = f.readline()
                if not line:
                    return
                method, target, _ = line.decode().split(" ", 2)
                headers = {}
                while True:
                    h = f.readline()
                    if h in (b"\r\n", b""):
                        break
                    k, _, v = h.decode().partition(":")
                    headers[k.strip().lower()] = v.strip()
                if method == "POST":
                    sha, n = hashlib.sha256(), 0
                    if "content-length" in headers:
                        left = int(headers["content-length"])
                        while left:
                            d = f.read(min(left, 1 << 20))
                            if not d:
                                return
                            sha.update(d)
                            n += len(d)
                            left -= len(d)
                    else:
                        while True:
                            size = int(f.readline().split(b";")[0], 16)
                            if size == 0:
                                while f.readline() not in (b"\r\n", b""):
                                    pass
                                break
                            d = f.read(size)
                            sha.update(d)
                            n += len(d)
                            f.readline()
                    body = ("%d %s" % (n, sha.hexdigest())).encode()
                    s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
                    continue
                path, _, q = target.partition("?")
                n = int(q)
                full, rest = divmod(n, len(BLOCK))
                if path == "/cl":
                    s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % n)
                    for _ in range(full):
                        s.sendall(BLOCK)
                    s.sendall(BLOCK[:rest])
                else:
                    s.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                    chunk = b"%x\r\n" % len(BLOCK) + BLOCK + b"\r\n"
                    for _ in range(full):
                        s.sendall(chunk)
                    if rest:
                        s.sendall(b"%x\r\n" % rest + BLOCK[:rest] + b"\r\n")
                    s.sendall(b"0\r\n\r\n")
        except (OSError, ValueError):
            pass
        finally:
            s.close()


@pytest.fixture
def big_gw(gateway):
    up = StreamUpstream()
    hp, ap = free_port(), free_port()
    gw = gateway(make_config(hp, ap, {"s": [up.addr]}, [{"hosts": ["big.test"], "upstream": "s"}],
                             timeouts={"upstream_response": "30s", "client_body": "30s"}))
    gw.get("/cl?10", host="big.test")  # warm up pools and buffers
    yield gw
    up.stop()


def read_response_streaming(s):
    f = s.makefile("rb")
    status = f.readline()
    headers = {}
    while True:
        h = f.readline()
        if h == b"\r\n":
            break
        k, _, v = h.decode().partition(":")
        headers[k.strip().lower()] = v.strip()
    sha, n, small = hashlib.sha256(), 0, b""
    if "content-length" in headers:
        left = int(headers["content-length"])
        while left:
            d = f.read(min(left, 1 << 20))
            assert d, "cut after %d bytes" % n
            if n < 4096:
                small += d[:4096]
            sha.update(d)
            n += len(d)
            left -= len(d)
    else:
        assert headers.get("transfer-encoding") == "chunked", headers
        while True:
            size = int(f.readline().split(b";")[0], 16)
            if size == 0:
                assert f.readline() == b"\r\n"
                break
            d = f.read(size)
            sha.update(d)
            n += len(d)
            assert f.readline() == b"\r\n"
    return status, n, sha.hexdigest(), small




@pytest.mark.parametrize("kind", ["cl", "chunked"])
def test_big_response_streams_with_flat_memory(big_gw, kind):
    gw = big_gw
    before = hwm_kb(gw.pid)
    s = socket.create_connection(("127.0.0.1", gw.http_port), timeout=60)
    s.sendall(b"GET /%s?%d HTTP/1.1\r\nHost: big.test\r\n\r\n" % (kind.encode(), SIZE))
    status, n, sha, _ = read_response_streaming(s)
    s.close()
    assert status.startswith(b"HTTP/1.1 200"), status
    assert n == SIZE and sha == expected_sha(SIZE)
    growth = hwm_kb(gw.pid) - before
    print("response %s %d MB: peak RSS growth %d kB" % (kind, MB, growth))
    assert growth < MAX_GROWTH_KB, "peak RSS grew by %d kB for a %d MB body" % (growth, MB)


@pytest.mark.parametrize("kind", ["cl", "chunked"])
def test_big_request_streams_with_flat_memory(big_gw, kind):
    gw = big_gw
    before = hwm_kb(gw.pid)
    s = socket.create_connection(("127.0.0.1", gw.http_port), timeout=60)
    if kind == "cl":
        s.sendall(b"POST /sink HTTP/1.1\r\nHost: big.test\r\nContent-Length: %d\r\n\r\n" % SIZE)
        for _ in range(SIZE // len(BLOCK)):
            s.sendall(BLOCK)
    else:
        s.sendall(b"POST /sink HTTP/1.1\r\nHost: big.test\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"%x\r\n" % len(BLOCK) + BLOCK + b"\r\n"
        for _ in range(SIZE // len(BLOCK)):
            s.sendall(chunk)
        s.sendall(b"0\r\n\r\n")
    status, _, _, body = read_response_streaming(s)
    s.close()
    assert status.startswith(b"HTTP/1.1 200"), status
    assert body.decode() == "%d %s" % (SIZE, expected_sha(SIZE)), body
    growth = hwm_kb(gw.pid) - before
    print("request %s %d MB: peak RSS growth %d kB" % (kind, MB, growth))
    assert growth < MAX_GROWTH_KB, "peak RSS grew by %d kB for a %d MB body" % (growth, MB)
