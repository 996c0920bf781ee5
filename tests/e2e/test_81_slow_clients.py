"""Slow, silent and greedy clients; connection and file-descriptor exhaustion.

Hundreds of sockets that dribble a request head a byte at a time, say nothing
at all, or ask for a large response and never read it must not delay a normal
client, and must be timed out. With limits.max_connections reached, or with the
process out of file descriptors, the gateway backs off accepting: it does not
crash, the admin port answers, and new clients are served once the crowd
leaves.
"""

import os
import resource
import socket
import subprocess
import threading
import time

import pytest

from helpers import Gateway, free_port, make_config, wait_for


def raise_nofile(n=4096):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(max(n, soft), hard)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] >= min(n, hard)


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def connect_many(port, n):
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        socks.append(s)
    return socks


def is_closed(s, timeout=0.05):
    """True when the peer closed (EOF or reset); reads and drops pending bytes."""
    s.settimeout(timeout)
    try:
        while True:
            d = s.recv(65536)
            if not d:
                return True
    except socket.timeout:
        return False
    except OSError:
        return True


def close_all(socks):
    for s in socks:
        try:
            s.close()
        except OSError:
            pass


def slow_config(hp, ap, up, **kw):
    return make_config(hp, ap, {"plain": [up.addr]},
                       [{"hosts": ["plain.test"], "upstream": "plain"}],
                       timeouts={"client_header": "1s", "client_body": "1s", "keepalive": "1s",
                                 "upstream_response": "5s"},
                       log={"access": False, "level": "info"}, **kw)


def test_slow_silent_and_non_reading_clients(gateway, upstream):
    raise_nofile(4096)
    up = upstream("plain")
    hp, ap = free_port(), free_port()
    gw = gateway(slow_config(hp, ap, up))
    base_fds = fd_count(gw.pid)

    silent = connect_many(hp, 100)
    dribblers = connect_many(hp, 100)
    greedy = []
    for _ in range(40):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.settimeout(5)
        s.connect(("127.0.0.1", hp))
        s.sendall(b"GET /big?bytes=8388608 HTTP/1.1\r\nHost: plain.test\r\n\r\n")
        greedy.append(s)

    head = b"GET /slow-head HTTP/1.1\r\nHost: plain.test\r\nX-Pad: " + b"a" * 200 + b"\r\n\r\n"
    stop = threading.Event()

    def dribble():
        i = 0
        while not stop.is_set() and i < len(head):
            for s in dribblers:
                try:
                    s.send(head[i:i + 1])
                except OSError:
                    pass
            i += 1
            time.sleep(0.05)

    t = threading.Thread(target=dribble, daemon=True)
    t.start()
    try:
        # A normal client is served while all of them are connected.
        t0 = time.monotonic()
        for _ in range(5):
            r = gw.get("/normal", timeout=5)
            assert r.status == 200
        assert time.monotonic() - t0 < 5 * 5
        # Every kind of bad client is timed out (generous bound: 1 s timeouts).
        wait_for(lambda: all(is_closed(s) for s in silent), 8, 0.2, "silent clients closed")
        wait_for(lambda: all(is_closed(s) for s in greedy), 8, 0.2, "non-readers cut off")
    finally:
        stop.set()
        t.join(10)
    # Dribblers: answered 408 (or closed) after client_header.
    got408 = 0
    for s in dribblers:
        s.settimeout(5)
        data = b""
        try:
            while True:
                d = s.recv(65536)
                if not d:
                    break
                data += d
        except OSError:
            pass
        if data.startswith(b"HTTP/1.1 408"):
            got408 += 1
        else:
            assert data == b"", data[:200]
    assert got408 >= 90, got408
    close_all(silent + dribblers + greedy)
    # The normal client still works and descriptors return to the baseline.
    assert gw.get("/after").status == 200
    wait_for(lambda: fd_count(gw.pid) <= base_fds + 4, 10, 0.2,
             "gateway fds back to baseline %d (now %d)" % (base_fds, fd_count(gw.pid)))
    assert (gw.metric("switchyard_client_errors_total", code="408") or 0) >= 90
    assert gw.running()


def test_max_connections_backs_off(gateway, upstream):
    raise_nofile(4096)
    up = upstream("plain")
    hp, ap = free_port(), free_port()
    cfg = slow_config(hp, ap, up, limits={"max_connections": 50})
    cfg["timeouts"]["client_header"] = "30s"
    cfg["timeouts"]["keepalive"] = "30s"
    gw = gateway(cfg)
    socks = connect_many(hp, 100)  # the kernel backlog takes the extra 50
    try:
        time.sleep(0.5)
        assert gw.admin("/healthz").status == 200
        active = gw.metric("switchyard_connections_active")
        assert active is not None and active <= 50, active
        assert (gw.metric("switchyard_accept_paused_total") or 0) >= 1
        # One of the first 50 is served at once; a waiting one once a slot frees.
        socks[0].sendall(b"GET /first HTTP/1.1\r\nHost: plain.test\r\n\r\n")
        socks[0].settimeout(5)
        assert socks[0].recv(100).startswith(b"HTTP/1.1 200")
        socks[99].sendall(b"GET /waiting HTTP/1.1\r\nHost: plain.test\r\nConnection: close\r\n\r\n")
        close_all(socks[:50])  # frees every slot: the 50 waiting ones get in
        socks[99].settimeout(5)
        assert socks[99].recv(100).startswith(b"HTTP/1.1 200")
        assert gw.running()
    finally:
        close_all(socks)
    wait_for(lambda: (gw.metric("switchyard_connections_active") or 0) <= 1, 10, 0.2,
             "connections to drain")
    assert gw.get("/again").status == 200


class LowFdGateway(Gateway):
    """The gateway started with a small RLIMIT_NOFILE."""

    nofile = 64

    def start(self):
        n = self.nofile

        def limit():
            resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))

        self._out = open(self.stdout_path, "wb")
        self._err = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen([self.binary, "-c", self.path], stdout=self._out,
                                     stderr=self._err, stdin=subprocess.DEVNULL, cwd=self.dir,
                                     start_new_session=True, preexec_fn=limit)
        self.pid = self.proc.pid


def test_file_descriptor_exhaustion(switchyard_bin, tmp_path, upstream):
    raise_nofile(4096)
    up = upstream("plain")
    hp, ap = free_port(), free_port()
    gw = LowFdGateway(switchyard_bin, tmp_path, slow_config(hp, ap, up), name="lowfd")
    gw.start()
    socks = []
    try:
        gw.wait_ready()
        with open("/proc/%d/limits" % gw.pid) as f:
            assert any(l.startswith("Max open files") and l.split()[3] == "64" for l in f), \
                "RLIMIT_NOFILE not applied"
        socks = connect_many(hp, 150)
        wait_for(lambda: "pausing accepts" in gw.stderr_text(), 5, 0.1,
                 "the gateway to log its accept back-off")
        assert gw.running()
        # The crowd is timed out (keepalive 1s); then everyone is served again.
        time.sleep(1.5)
        assert gw.running()
        close_all(socks)
        socks = []

        def served():
            try:
                return gw.get("/after", timeout=2).status == 200
            except OSError:
                return False

        wait_for(served, 10, 0.2, "a request to be served after the exhaustion")
        assert gw.admin("/healthz").status == 200
        assert gw.running()
    finally:
        close_all(socks)
        rc = gw.terminate()
        err = gw.stderr_text()
        print(err[-3000:])
    assert rc == 0, rc
    assert "AddressSanitizer" not in err
