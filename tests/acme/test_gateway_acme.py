"""ACME through the real gateway (build/switchyard) against pebble.

Each test runs its own pebble (so its HTTP-01 port points at the chosen gateway)
and shares one pebble-challtestsrv that resolves every name to 127.0.0.1. Pebble
keeps its default 5 % random badNonce rejections. The gateways listen on
127.0.0.1 only: plain (the HTTP-01 port), HTTPS and admin, with one site for
the ACME domain routing to a small upstream in this process.

Run: make && /usr/bin/python3 -m pytest -q tests/acme/test_gateway_acme.py
(SWITCHYARD_BIN overrides the binary.)
"""
import http.server
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from acme_env import (CA_READY, DOMAIN, free_port, run, thumbprint, wait_port,
                      wait_port_released, wait_until)
from factory import made_until_teardown  # tests/lib, put on the path by acme_env

HERE = Path(__file__).resolve().parent
TOP = HERE.parent.parent
BINARY = Path(os.environ.get("SWITCHYARD_BIN", TOP / "build" / "switchyard"))
ORDER_RE = re.compile(r"\] acme: order created ")
PLACEHOLDER_ORG = "Switchyard ACME placeholder"

pytestmark = pytest.mark.skipif(not CA_READY, reason="pebble or pebble-challtestsrv not installed")


@pytest.fixture(scope="module", autouse=True)
def binary():
    if not BINARY.exists():
        subprocess.run(["make", "-s", "-C", str(TOP), "all"], check=True)
    assert BINARY.exists(), f"{BINARY} missing"


class _Upstream(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        body = f"upstream saw {self.path} proto={self.headers.get('X-Forwarded-Proto')}\n"
        body = body.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def upstream_port():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv.server_address[1]
    srv.shutdown()
    srv.server_close()


class Gateway:
    """One switchyard process with a tls.acme configuration."""

    def __init__(self, tmp, name, pebble, storage, upstream, http_port=None, redirect=False,
                 renew_before=None, env=None):
        self.name = name
        self.http_port = http_port or free_port()
        self.https_port, self.admin_port = free_port(), free_port()
        self.storage = Path(storage)
        extra = f"    renew_before: {renew_before}\n" if renew_before else ""
        self.conf = tmp / f"{name}.yaml"
        self.conf.write_text(f"""workers: 1
listen:
  http: 127.0.0.1:{self.http_port}
  https: 127.0.0.1:{self.https_port}
  admin: 127.0.0.1:{self.admin_port}
log: {{access: false, level: info}}
upstreams:
  app:
    servers: ["127.0.0.1:{upstream}"]
sites:
  - hosts: [{DOMAIN}]
    upstream: app
tls:
  redirect: {"true" if redirect else "false"}
  acme:
    directory: {pebble.directory}
    email: ops@example.org
    domains: [{DOMAIN}]
    storage: {self.storage}
    ca: {pebble.ca}
{extra}""")
        self.env = dict(os.environ, SWITCHYARD_ACME_BACKOFF_SCALE="0.02",
                        SWITCHYARD_ACME_LOCK_STALE_MS="6000")
        self.env.update(env or {})
        self.log_path = tmp / f"{name}.log"
        self.proc = None
        self.start()

    def start(self):
        self.err = open(self.log_path, "a")
        self.proc = subprocess.Popen([str(BINARY), "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=self.err, env=self.env)
        for p in (self.http_port, self.https_port, self.admin_port):
            wait_port(p, proc=self.proc)

    def stop(self, sig=signal.SIGTERM):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.err.close()
        self.released()

    def released(self):
        for p in (self.http_port, self.https_port, self.admin_port):
            wait_port_released(p)

    def alive(self):
        return self.proc.poll() is None

    def log(self):
        return self.log_path.read_text()

    def orders(self):
        return len(ORDER_RE.findall(self.log()))

    def metrics(self):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}/metrics",
                                    timeout=5) as r:
            return r.read().decode()

    def metric(self, name):
        m = re.search(r"^" + re.escape(name) + r" (\d+)$", self.metrics(), re.M)
        return int(m.group(1)) if m else None

    def served(self, verify_root=None):
        """(serial hex, subject text) of the leaf served for SNI DOMAIN."""
        return served_cert(self.https_port, verify_root)


@pytest.fixture
def gateways(tmp_path, upstream_port):
    """Factory: gateways(name, pebble, storage, **kw) starts a Gateway; all are stopped
    at teardown."""
    def start(name, pebble, storage, **kw):
        return Gateway(tmp_path, name, pebble, storage, upstream_port, **kw)

    yield from made_until_teardown(start, Gateway.stop)


def served_cert(port, verify_root=None):
    if verify_root:
        ctx = ssl.create_default_context(cadata=verify_root)
    else:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        with ctx.wrap_socket(s, server_hostname=DOMAIN) as t:
            der = t.getpeercert(binary_form=True)
    p = subprocess.run(["openssl", "x509", "-inform", "DER", "-noout", "-serial", "-subject"],
                       input=der, check=True, capture_output=True)
    lines = p.stdout.decode().splitlines()
    return lines[0].split("=", 1)[1].upper(), lines[1]


def stored_serial(storage):
    crt = Path(storage) / "certificates" / f"{DOMAIN}.crt"
    if not crt.exists():
        return None
    return run("openssl", "x509", "-in", str(crt), "-noout", "-serial").strip().split("=")[1].upper()


def https_get(port, path, root):
    ctx = ssl.create_default_context(cadata=root)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        with ctx.wrap_socket(s, server_hostname=DOMAIN) as t:
            t.sendall(f"GET {path} HTTP/1.1\r\nHost: {DOMAIN}\r\nConnection: close\r\n\r\n".encode())
            return read_response(t)


def http_get(port, path, host=DOMAIN):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        return read_response(s)


def read_response(s):
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return int(lines[0].split()[1]), headers, body.decode()


def wait_issued(g, root, timeout=60):
    """Waits until g serves a certificate that verifies against root; returns its serial."""
    def ok():
        try:
            return g.served(root)[0]
        except (ssl.SSLError, OSError):
            assert g.alive(), g.log()
            return None
    return wait_until(ok, timeout, f"{g.name} never served a verified certificate:\n" + "{log}",
                      log=g.log)


# ---------------------------------------------------------------------------------------------


def test_issuance_through_gateway_then_restart(tmp_path, pebble_factory, gateways):
    http_port = free_port()
    pebble = pebble_factory(http_port)
    root = pebble.root()
    storage = tmp_path / "storage"
    # The short start delay makes "placeholder first" deterministic.
    g = gateways("gw", pebble, storage, http_port=http_port,
                 env={"SWITCHYARD_ACME_START_DELAY_MS": "1500"})
    pid = g.proc.pid

    serial0, subject0 = g.served()
    assert PLACEHOLDER_ORG in subject0
    with pytest.raises(ssl.SSLCertVerificationError):
        g.served(root)

    serial = wait_issued(g, root)
    assert serial != serial0
    assert g.alive() and g.proc.pid == pid, "the certificate must arrive without a restart"
    assert serial == stored_serial(storage)
    assert "configuration reloaded (certificate files changed)" in g.log()

    status, _, body = https_get(g.https_port, "/hello", root)
    assert status == 200 and body == "upstream saw /hello proto=https\n"

    metrics = g.metrics()
    assert re.search(r'^switchyard_acme_orders_total\{result="valid"\} 1$', metrics, re.M), metrics
    assert re.search(r'^switchyard_acme_orders_total\{result="error"\} 0$', metrics, re.M), metrics
    expiry = g.metric("switchyard_acme_certificate_expiry_timestamp_seconds")
    assert expiry and expiry > time.time(), metrics
    assert f'serial="{serial}"' in metrics  # the TLS certificate gauge shows the served one
    assert g.orders() == 1
    assert pebble.orders() == 1

    # Restart on the same storage: the stored certificate from the first handshake on,
    # and no new order.
    g.stop()
    g.start()
    assert g.served(root)[0] == serial
    time.sleep(2)  # the ACME thread has looked at storage by now
    assert g.served(root)[0] == serial
    assert g.orders() == 1, g.log()
    assert pebble.orders() == 1
    assert g.metric('switchyard_acme_orders_total{result="valid"}') == 0
    assert g.metric("switchyard_acme_certificate_expiry_timestamp_seconds") == expiry
    assert "SELF-SIGNED PLACEHOLDER" not in g.log().split("acme: started")[-1]


def test_renewal_without_restart(tmp_path, pebble_factory, gateways):
    http_port = free_port()
    pebble = pebble_factory(http_port, validity=30)  # renewal is due after 20 s
    root = pebble.root()
    storage = tmp_path / "storage"
    g = gateways("gw", pebble, storage, http_port=http_port)
    pid = g.proc.pid
    first = wait_issued(g, root)

    samples = []  # (stored serial, served serial) while waiting for the renewal

    def renewed():
        stored = stored_serial(storage)
        served = g.served()[0]  # no verification: an expired certificate would still count
        samples.append((stored, served))
        return served if served != first else None

    second = wait_until(renewed, 45, "no renewed certificate served:\n{log}", log=g.log,
                        interval=0.25)
    assert g.alive() and g.proc.pid == pid
    assert second == stored_serial(storage)
    assert wait_issued(g, root) == second
    # Until the new pair was in storage, the old certificate was served.
    for stored, served in samples:
        if stored == first:
            assert served == first, samples
        assert served in (first, second), samples
    assert g.orders() == 2
    assert "is due for renewal" in g.log()
    assert g.metric('switchyard_acme_orders_total{result="valid"}') == 2


def test_two_gateways_share_storage(tmp_path, pebble_factory, gateways):
    port_a, port_b = free_port(), free_port()
    pebble = pebble_factory(port_b)  # pebble validates against B, which does not order
    root = pebble.root()
    storage = tmp_path / "storage"
    b = gateways("b", pebble, storage, http_port=port_b,
                 env={"SWITCHYARD_ACME_START_DELAY_MS": "60000"})
    a = gateways("a", pebble, storage, http_port=port_a)
    serial_a = wait_issued(a, root)
    serial_b = wait_issued(b, root)
    assert serial_a == serial_b == stored_serial(storage)
    assert a.orders() == 1 and b.orders() == 0
    assert pebble.orders() == 1
    # B answered pebble's validation requests from the account key A created.
    assert pebble.validations_on(port_b) >= 1
    assert b.metric("switchyard_acme_certificate_expiry_timestamp_seconds") is not None
    assert a.metric('switchyard_acme_orders_total{result="valid"}') == 1
    assert b.metric('switchyard_acme_orders_total{result="valid"}') == 0


def test_kill9_during_issuance_then_recovery(tmp_path, pebble_factory, gateways, validation_gate):
    http_port = free_port()
    gate = validation_gate(http_port)
    pebble = pebble_factory(gate.port)  # pebble validates through the gate
    root = pebble.root()
    storage = tmp_path / "storage"
    g = gateways("gw", pebble, storage, http_port=http_port)
    # Killed while pebble's validation is held: the order is certainly unfinished.
    wait_until(lambda: g.orders() >= 1 and gate.held >= 1, 30,
               "no order waiting for validation:\n{log}", log=g.log, interval=0.01)
    g.proc.send_signal(signal.SIGKILL)
    g.proc.wait(timeout=10)
    g.err.close()
    g.released()
    assert (storage / "lock").exists(), "the killed holder's lock should remain"
    assert stored_serial(storage) is None

    gate.open()
    g.start()
    assert PLACEHOLDER_ORG in g.served()[1]
    serial = wait_issued(g, root, timeout=60)
    log = g.log().split("acme: started")[-1]
    assert "taking over stale lock" in log
    assert g.orders() == 2 and pebble.orders() == 2
    assert "created account key" not in log  # the stored account key is reused
    assert serial == stored_serial(storage)
    wait_until(lambda: not (storage / "lock").exists(), 10, "lock not released")
    assert not list(storage.rglob("*.tmp.*")), "temporary files left behind"


def test_kill9_between_key_and_certificate(tmp_path, pebble_factory, gateways):
    """A crash after the new .key was renamed in but before the .crt: the stored pair
    does not match. The gateway must still start (placeholder) and repair it."""
    http_port = free_port()
    pebble = pebble_factory(http_port)
    root = pebble.root()
    storage = tmp_path / "storage"
    g = gateways("gw", pebble, storage, http_port=http_port)
    first = wait_issued(g, root)
    g.stop(signal.SIGKILL)
    key = storage / "certificates" / f"{DOMAIN}.key"
    run("openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
        "-out", str(key))
    os.chmod(key, 0o600)

    g.start()
    serial = wait_issued(g, root)
    assert serial != first and serial == stored_serial(storage)
    assert g.orders() == 2


def test_challenge_path_with_redirect(tmp_path, pebble_factory, gateways):
    http_port = free_port()
    pebble = pebble_factory(http_port)
    storage = tmp_path / "storage"
    g = gateways("gw", pebble, storage, http_port=http_port, redirect=True,
                 env={"SWITCHYARD_ACME_START_DELAY_MS": "2000"})
    # No account key yet: the answer cannot be computed.
    status, headers, _ = http_get(http_port, "/.well-known/acme-challenge/early_token")
    assert status == 503 and "retry-after" in headers

    key = storage / "account.key"
    wait_until(key.exists, 30, "no account key:\n{log}", log=g.log)
    tp = thumbprint(key)
    token = "Zx9_-aB3cD4eF5gH6iJ7kL8mN9oP0qR1sT2uV3wX4yZ"

    def answer():
        r = http_get(http_port, f"/.well-known/acme-challenge/{token}")
        return r if r[0] == 200 else None
    status, headers, body = wait_until(answer, 10, "no challenge answer")
    assert body == f"{token}.{tp}"
    assert "location" not in headers
    assert headers.get("connection") == "close"  # asked for by the request (read to EOF)
    # HTTP/1.0 without keep-alive: answered, then closed.
    with socket.create_connection(("127.0.0.1", http_port), timeout=5) as s:
        s.sendall(f"GET /.well-known/acme-challenge/{token} HTTP/1.0\r\n\r\n".encode())
        assert read_response(s)[2] == f"{token}.{tp}"
    # Keep-alive: two answers on one connection.
    with socket.create_connection(("127.0.0.1", http_port), timeout=5) as s:
        req = f"GET /.well-known/acme-challenge/{token} HTTP/1.1\r\nHost: {DOMAIN}\r\n"
        s.sendall((req + "\r\n" + req + "Connection: close\r\n\r\n").encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
        assert data.count(f"\r\n\r\n{token}.{tp}".encode()) == 2, data
    # Any Host: pebble sends the domain, but a replica must not care.
    assert http_get(http_port, f"/.well-known/acme-challenge/{token}", host="other.test")[2] == \
        f"{token}.{tp}"
    for bogus in ("a.b", "tok%2Fen", "with$dollar", "x" * 300):
        assert http_get(http_port, f"/.well-known/acme-challenge/{bogus}")[0] == 404, bogus
    assert http_get(http_port, f"/.well-known/acme-challenge/{token}/extra")[0] == 404
    # Everything else on the plain listener is redirected.
    status, headers, _ = http_get(http_port, "/.well-known/acme-challengeX")
    assert status == 308
    status, headers, _ = http_get(http_port, "/x?y=1")
    # listen.https is on a random port: the redirect names the public one, 443 (left out).
    assert status == 308 and headers["location"] == f"https://{DOMAIN}/x?y=1"
    # The issuance through this listener works too.
    wait_issued(g, pebble.root())


def _make_unwritable(certdir):
    """Makes writes into certdir fail even for root. Returns an undo function and a note."""
    if os.geteuid() != 0:
        os.chmod(certdir, 0o555)
        return (lambda: os.chmod(certdir, 0o755)), "chmod 0555"
    if shutil.which("chattr") and subprocess.run(["chattr", "+i", str(certdir)],
                                                 capture_output=True).returncode == 0:
        return (lambda: run("chattr", "-i", str(certdir))), "chattr +i"
    # No immutable attribute here: replace the directory by a file (ENOTDIR for everything).
    aside = certdir.with_name("certificates.aside")
    certdir.rename(aside)
    certdir.write_text("not a directory\n")

    def undo():
        certdir.unlink()
        aside.rename(certdir)
    return undo, "certificates/ replaced by a file"


def test_storage_unwritable(tmp_path, pebble_factory, gateways):
    """The certificate directory stops accepting writes while the gateway runs and a
    renewal is due. Root ignores mode bits, so chmod 0555 proves nothing when the tests
    run as root: the directory gets the immutable attribute (chattr +i: no file can be
    created or renamed in it, even by root), or where that is not supported it is
    replaced by a file (every path under it fails with ENOTDIR). A probe write checks
    that writes really fail. The gateway must keep serving the old certificate and
    plain traffic, log the failure, count it and back off; writable again, it renews."""
    http_port = free_port()
    pebble = pebble_factory(http_port, validity=40)
    root = pebble.root()
    storage = tmp_path / "storage"
    # renew_before 28 s: due about 10 s after issuance, time enough to make the storage
    # unwritable first. Back-off: 60 s * 0.1 with jitter -> 3..6 s.
    g = gateways("gw", pebble, storage, http_port=http_port, renew_before="28s",
                 env={"SWITCHYARD_ACME_BACKOFF_SCALE": "0.1"})
    first = wait_issued(g, root)
    certdir = storage / "certificates"
    undo, how = _make_unwritable(certdir)
    try:
        probe = certdir / "probe"
        with pytest.raises(OSError):
            probe.write_text("x")
        wait_until(lambda: g.metric('switchyard_acme_orders_total{result="error"}') or None, 40,
                   f"no failed attempt with {how}:\n" + "{log}", log=g.log)
        log = g.log()
        assert re.search(r"\[error\] acme: .*certificates/", log), log
        m = re.search(r"attempt 1 failed \(error\); next attempt in (\d+) ms", log)
        assert m, log
        backoff = int(m.group(1))
        assert 3000 <= backoff <= 6000, backoff
        state = json.loads((storage / "state.json").read_text())
        assert state["failures"] == 1 and state["retry_at_ms"] > 0
        t_fail = time.time()
        # Still serving the old certificate and plain traffic.
        assert g.alive()
        assert g.served()[0] == first
        assert https_get(g.https_port, "/during", root)[0] == 200
        assert http_get(g.http_port, "/plain")[:1] == (200,)
        assert g.metric('switchyard_acme_orders_total{result="valid"}') == 1
        # No retry before the back-off ends.
        time.sleep(max(0.0, backoff / 1000 - 1.0 - (time.time() - t_fail)))
        assert g.metric('switchyard_acme_orders_total{result="error"}') == 1
    finally:
        undo()
    # Writable again: the next attempt after the back-off renews.
    second = wait_until(lambda: (lambda s: s if s != first else None)(g.served()[0]), 60,
                        "no renewal after storage became writable:\n{log}", log=g.log)
    assert second == stored_serial(storage)
    assert g.metric('switchyard_acme_orders_total{result="valid"}') >= 2


def test_lego_validated_through_gateway(tmp_path, pebble_factory, gateways):
    """Cross-check with an independent client: lego (Go) orders with an account key that
    is also the gateway's; lego only writes its challenge files into a directory nobody
    serves, pebble validates against the gateway, so the certificate is issued only if
    the gateway's answers equal lego's own key authorizations."""
    lego = shutil.which("lego")
    assert lego, "lego (Debian package lego, see scripts/install-deps.sh) is not installed"
    http_port = free_port()
    pebble = pebble_factory(http_port)
    storage = tmp_path / "storage"
    storage.mkdir()
    run("openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
        "-out", str(storage / "account.key"))
    os.chmod(storage / "account.key", 0o600)
    email = "lego@example.org"
    lego_path = tmp_path / "lego"
    keys = lego_path / "accounts" / f"127.0.0.1_{pebble.port}" / email / "keys"
    keys.mkdir(parents=True)
    run("openssl", "ec", "-in", str(storage / "account.key"), "-out", str(keys / f"{email}.key"))
    unserved = tmp_path / "unserved-webroot"
    unserved.mkdir()
    # The gateway's own ACME thread stays asleep: only lego orders.
    g = gateways("gw", pebble, storage, http_port=http_port, redirect=True,
                 env={"SWITCHYARD_ACME_START_DELAY_MS": "600000"})
    p = subprocess.run([lego, "--server", pebble.directory, "--accept-tos", "--email", email,
                        "--domains", DOMAIN, "--path", str(lego_path), "--http",
                        "--http.webroot", str(unserved), "run"],
                       env=dict(os.environ, LEGO_CA_CERTIFICATES=str(pebble.ca)),
                       capture_output=True, text=True, timeout=90)
    assert p.returncode == 0, p.stdout + p.stderr + g.log()
    crt = lego_path / "certificates" / f"{DOMAIN}.crt"
    assert f"DNS:{DOMAIN}" in run("openssl", "x509", "-in", str(crt), "-noout", "-ext",
                                  "subjectAltName")
    assert pebble.validations_on(http_port) >= 1
    assert g.orders() == 0
    # The account lego used is the one whose key the gateway holds.
    assert not list(keys.glob("*.key.*")) and len(list(keys.iterdir())) == 1
