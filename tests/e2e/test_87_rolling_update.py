"""A rolling update as a cluster does it, under load, on the release and the
sanitizer builds.

Two gateways behind an L4 balancer (HAProxy in tcp mode, health checks on
/readyz, the stand-in for the cloud load balancer), nginx upstreams, a steady
keep-alive load from wrk through the balancer. Then: SIGTERM the first gateway,
start its replacement, wait until the balancer sends it traffic, SIGTERM the
second, start its replacement. While the first one drains, the test also
checks, on that gateway directly:

- /readyz answers 503 as soon as the drain has started;
- requests in flight when SIGTERM arrives are answered;
- a keep-alive connection that sends its next request during the drain gets
  it answered, with `Connection: close`, and is closed after it;
- a keep-alive connection that stays idle is closed (FIN, not RST) once it has
  been idle for the drain's idle limit, long before the drain time ends;
- a WebSocket-style tunnel keeps working during the drain and is closed with
  a FIN on both sides when the drain time ends.

Every gateway exits 0 within timeouts.drain; the balancer's clients see no
failed request (wrk's socket errors and non-2xx answers are reported).
"""

import os
import re
import signal
import socket
import subprocess
import threading
import time

import pytest

from helpers import Gateway, free_port, make_config, version_block, wait_for

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
ASAN_BIN = os.environ.get("SWITCHYARD_ASAN_BIN") or os.path.join(REPO, "build-asan", "switchyard")
LOAD_SECONDS = 10
DRAIN = 4.0          # timeouts.drain of the gateways (s): bounded by the open tunnel
DRAIN_GRACE = 1.0    # timeouts.drain_grace: longer than one failed health check (300 ms)
IDLE_LIMIT = 1.0     # what the gateway allows an idle keep-alive connection while draining

NGINX_CONF = """
daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 2048; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    keepalive_requests 1000000;
    server {{
        listen 127.0.0.1:{port};
        location / {{ return 200 "{name}\\n"; }}
    }}
}}
"""

HAPROXY_CONF = """
global
    maxconn 4096
defaults
    mode tcp
    timeout connect 1s
    timeout client 30s
    timeout server 30s
    retries 3
    option redispatch
frontend lb
    bind 127.0.0.1:{port}
    default_backend gateways
backend gateways
    balance roundrobin
    option httpchk GET /readyz
    default-server inter 300 fall 1 rise 2
{servers}
"""


class Proc:
    """A peer process started from a config file in its own directory."""

    def __init__(self, argv, d, name):
        self.name = name
        self.log = open(os.path.join(d, name + ".log"), "wb")
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()


def start_nginx(tmp_path, name):
    d = tmp_path / ("nginx-" + name)
    d.mkdir()
    port = free_port()
    conf = d / "nginx.conf"
    conf.write_text(NGINX_CONF.format(d=d, port=port, name=name))
    p = Proc(["nginx", "-p", str(d), "-c", str(conf)], str(d), "nginx")
    wait_for(lambda: _connects(port), 5, what="nginx %s to listen" % name)
    p.addr = "127.0.0.1:%d" % port
    return p


def start_haproxy(tmp_path, port, gateways):
    d = tmp_path / "haproxy"
    d.mkdir()
    servers = "\n".join("    server %s 127.0.0.1:%d check port %d" % (n, hp, ap)
                        for n, hp, ap in gateways)
    conf = d / "haproxy.cfg"
    conf.write_text(HAPROXY_CONF.format(port=port, servers=servers))
    p = Proc(["haproxy", "-db", "-f", str(conf)], str(d), "haproxy")
    wait_for(lambda: _connects(port), 5, what="haproxy to listen")
    return p


def lb_log(tmp_path):
    with open(tmp_path / "haproxy" / "haproxy.log", errors="replace") as f:
        return f.read()


def _connects(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


def gateway_config(hp, ap, ups):
    return make_config(
        hp, ap,
        upstreams={"v1": [ups["4.1.0"].addr], "v2": [ups["4.2.0"].addr],
                   "slow": [ups["slow"].addr]},
        sites=[{"hosts": ["retro.test"],
                "version": version_block({"4.1.0": "v1", "4.2.0": "v2", "slow": "slow"},
                                         "4.2.0")}],
        workers=2, log={"access": False, "level": "info"},
        timeouts={"drain": "%dms" % (DRAIN * 1000), "drain_grace": "%dms" % (DRAIN_GRACE * 1000)})


def start_gateway(binary, tmp_path, ups, name, env, ports=None):
    hp, ap = ports or (free_port(), free_port())
    gw = Gateway(binary, tmp_path, gateway_config(hp, ap, ups), name=name, env=env)
    gw.start()
    gw.wait_ready(30)
    return gw


def get(port, path, version, timeout=10):
    """One request on a fresh connection; returns (status, headers, body)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(("GET %s HTTP/1.1\r\nHost: retro.test\r\nX-Postfacto-Version: %s\r\n"
                   "Connection: close\r\n\r\n" % (path, version)).encode())
        data = b""
        while True:
            d = s.recv(65536)
            if not d:
                break
            data += d
    finally:
        s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), head.decode("latin-1").lower(), body


class KeepAlive:
    """A keep-alive connection straight to a gateway."""

    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buf = b""

    def request(self, version="4.1.0"):
        self.s.sendall(("GET / HTTP/1.1\r\nHost: retro.test\r\nX-Postfacto-Version: %s\r\n\r\n"
                        % version).encode())
        while b"\r\n\r\n" not in self.buf:
            d = self.s.recv(65536)
            assert d, "connection closed before the response head"
            self.buf += d
        head, _, rest = self.buf.partition(b"\r\n\r\n")
        n = int(re.search(rb"(?i)content-length:\s*(\d+)", head).group(1))
        while len(rest) < n:
            d = self.s.recv(65536)
            assert d, "connection closed inside the body"
            rest += d
        self.buf = rest[n:]
        return int(head.split()[1]), head.decode("latin-1").lower()

    def wait_end(self, timeout):
        """'fin' or 'reset' when the server ends the connection, None if it stays open."""
        self.s.settimeout(timeout)
        try:
            d = self.s.recv(65536)
        except socket.timeout:
            return None
        except ConnectionResetError:
            return "reset"
        return "fin" if not d else "data %r" % d[:100]

    def close(self):
        self.s.close()


class Tunnel:
    """An Upgrade tunnel through a gateway to the test upstream, which echoes."""

    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.s.sendall(b"GET /ws HTTP/1.1\r\nHost: retro.test\r\nX-Postfacto-Version: slow\r\n"
                       b"Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
        head = b""
        while b"\r\n\r\n" not in head:
            d = self.s.recv(1)
            assert d, "closed during the upgrade"
            head += d
        assert head.split()[1] == b"101", head

    def echo(self, data):
        self.s.sendall(data)
        got = b""
        while len(got) < len(data):
            d = self.s.recv(65536)
            assert d, "tunnel closed"
            got += d
        return got

    def wait_end(self, timeout):
        self.s.settimeout(timeout)
        try:
            while True:
                d = self.s.recv(65536)
                if not d:
                    return "fin"
        except socket.timeout:
            return None
        except ConnectionResetError:
            return "reset"


def run_wrk(port, seconds, out):
    p = subprocess.run(["wrk", "-t1", "-c32", "-d%ds" % seconds, "--timeout", "5s",
                        "-H", "Host: retro.test", "-H", "X-Postfacto-Version: 4.1.0",
                        "http://127.0.0.1:%d/" % port],
                       capture_output=True, text=True, timeout=seconds + 60)
    out.append(p.stdout + p.stderr)


def wrk_failures(text):
    m = re.search(r"(\d+) requests in", text)
    assert m, text
    errors = {k: 0 for k in ("connect", "read", "write", "timeout")}
    m2 = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m2:
        errors = dict(zip(("connect", "read", "write", "timeout"), map(int, m2.groups())))
    m3 = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    return int(m.group(1)), errors, int(m3.group(1)) if m3 else 0


def sanitizer_report(gw):
    return re.search(r"AddressSanitizer|LeakSanitizer|runtime error:", gw.stderr_text())


@pytest.fixture(params=["release", "asan"])
def binary(request, switchyard_bin):
    if request.param == "release":
        return switchyard_bin, None
    if not (os.path.isfile(ASAN_BIN) and os.access(ASAN_BIN, os.X_OK)):
        pytest.fail("sanitizer build %s missing: run `make asan`" % ASAN_BIN, pytrace=False)
    return ASAN_BIN, {"ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0"}


def test_rolling_update_under_load(binary, upstream, tmp_path):
    path, env = binary
    ups = {"4.1.0": start_nginx(tmp_path, "4.1.0"), "4.2.0": start_nginx(tmp_path, "4.2.0"),
           "slow": upstream("slow")}
    gws, peers = [], [ups["4.1.0"], ups["4.2.0"]]
    try:
        _rolling_update(path, env, ups, gws, peers, tmp_path)
    finally:
        for gw in gws:
            gw.terminate()
            print("---- %s stderr (tail) ----\n%s" % (gw.name, gw.stderr_text()[-3000:]))
        for p in peers:
            p.stop()


def _rolling_update(path, env, ups, gws, peers, tmp_path):
    g1 = start_gateway(path, tmp_path, ups, "g1", env)
    g2 = start_gateway(path, tmp_path, ups, "g2", env)
    gws += [g1, g2]
    # The replacements' ports are known to the balancer from the start (like new pod
    # addresses): down until they answer their health checks.
    g3_ports, g4_ports = (free_port(), free_port()), (free_port(), free_port())
    lb_port = free_port()
    lb = start_haproxy(tmp_path, lb_port, [("g1", g1.http_port, g1.admin_port),
                                           ("g2", g2.http_port, g2.admin_port),
                                           ("g3",) + g3_ports, ("g4",) + g4_ports])
    peers.append(lb)
    wait_for(lambda: "g4 is DOWN" in lb_log(tmp_path), 10, 0.05,
             what="the balancer's first health checks")

    wrk_out = []
    load = threading.Thread(target=run_wrk, args=(lb_port, LOAD_SECONDS, wrk_out))
    load.start()
    time.sleep(2.0)

    # ---- the first gateway: what a client of that replica sees during its drain
    results = []

    def slow_request():
        try:
            results.append(get(g1.http_port, "/slow?ms=1500", "slow", timeout=15))
        except Exception as e:  # noqa: BLE001  (a failed request is a result)
            results.append(e)

    slow = [threading.Thread(target=slow_request) for _ in range(3)]
    for t in slow:
        t.start()
    wait_for(lambda: len(ups["slow"].started) >= 3, 5, what="the slow requests to be in flight")
    busy = KeepAlive(g1.http_port)
    idle = KeepAlive(g1.http_port)
    assert busy.request()[0] == 200 and idle.request()[0] == 200
    tunnel = Tunnel(g1.http_port)
    assert tunnel.echo(b"before") == b"before"

    t_term = time.monotonic()
    g1.signal(signal.SIGTERM)
    wait_for(lambda: "draining" in g1.stderr_text(), 5, what="g1 to log that it drains")
    assert g1.admin("/readyz", timeout=2).status == 503

    # A keep-alive connection used during the drain: answered, told to close, closed.
    status, head = busy.request()
    assert status == 200 and "connection: close" in head, head
    assert busy.wait_end(5) == "fin"
    # One that stays idle: closed with a FIN once idle long enough, well before the drain ends.
    end = idle.wait_end(IDLE_LIMIT + 2.0)
    assert end == "fin", end
    assert time.monotonic() - t_term < DRAIN - 1.0
    # The tunnel still works.
    assert tunnel.echo(b"during the drain") == b"during the drain"

    # ---- the replacement, then the second gateway
    g3 = start_gateway(path, tmp_path, ups, "g3", env, g3_ports)
    gws.append(g3)
    wait_for(lambda: "g3 is UP" in lb_log(tmp_path), 10, 0.05,
             what="the balancer to mark g3 up")
    g2.signal(signal.SIGTERM)
    g4 = start_gateway(path, tmp_path, ups, "g4", env, g4_ports)
    gws.append(g4)

    for t in slow:
        t.join(15)
    assert len(results) == 3 and all(not isinstance(r, Exception) and r[0] == 200
                                      for r in results), results

    # g2 had no long-lived connection: it exits as soon as its connections are answered.
    assert g2.proc.wait(DRAIN + 5) == 0, g2.stderr_text()[-3000:]
    # g1 keeps the tunnel until the drain time ends, then closes it with a FIN.
    assert tunnel.wait_end(DRAIN + 5) == "fin"
    assert g1.proc.wait(10) == 0, g1.stderr_text()[-3000:]
    assert time.monotonic() - t_term < DRAIN + 5.0

    load.join(LOAD_SECONDS + 70)
    text = wrk_out[0]
    requests, errors, non2xx = wrk_failures(text)
    print(text)
    print("rolling update: %d requests through the balancer, socket errors %s, non-2xx %d"
          % (requests, errors, non2xx))
    for gw in gws:
        assert not sanitizer_report(gw), gw.stderr_text()[-6000:]
    assert requests > LOAD_SECONDS * 200, text
    assert non2xx == 0, text
    assert sum(errors.values()) == 0, text
    # The keep-alive load moved to the replacements.
    assert (g3.metric("switchyard_requests_total") or 0) > 0
    busy.close()
    idle.close()

