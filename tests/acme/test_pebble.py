"""ACME client against pebble (the Debian package), through tests/acme/acme_driver.

Every scenario runs on 127.0.0.1 with its own pebble (so the HTTP-01 port can
point at a chosen driver) and a shared pebble-challtestsrv answering DNS with
127.0.0.1. Pebble keeps its default 5 % random badNonce rejections.

Run: make -C tests/acme && /usr/bin/python3 -m pytest -q tests/acme
"""
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from acme_env import free_port, run, thumbprint, wait_port

HERE = Path(__file__).resolve().parent
TOP = HERE.parent.parent
DRIVER = Path(os.environ.get("ACME_DRIVER", TOP / "build" / "acme" / "acme_driver"))
DOMAINS = ["test.example.org", "www.example.org"]
ORDER_RE = re.compile(r"acme: order created ")


@pytest.fixture(scope="module", autouse=True)
def driver_built():
    if not Path("/usr/bin/pebble").exists():
        pytest.skip("pebble is not installed")
    subprocess.run(["make", "-s", "-C", str(HERE)], check=True)


class Driver:
    def __init__(self, pebble, storage, http_port, log, until="cert", timeout=60,
                 extra=(), env=None):
        args = [str(DRIVER), "--directory", pebble.directory, "--storage", str(storage),
                "--ca", str(pebble.ca), "--email", "ops@example.org",
                "--http-port", str(http_port), "--until", until, "--timeout", str(timeout)]
        for d in DOMAINS:
            args += ["--domain", d]
        args += list(extra)
        e = dict(os.environ, SWITCHYARD_ACME_BACKOFF_SCALE="0.02",
                 SWITCHYARD_ACME_LOCK_STALE_MS="6000")
        e.update(env or {})
        self.log_path = log
        self.err = open(log, "w")
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self.err, text=True,
                                     env=e)
        self.timeout = timeout

    def wait(self):
        out, _ = self.proc.communicate(timeout=self.timeout + 30)
        self.err.close()
        self.out = out
        return self.proc.returncode

    def logtext(self):
        return Path(self.log_path).read_text()

    def orders(self):
        return len(ORDER_RE.findall(self.logtext()))

    def metric(self, name):
        m = re.search(r"^" + re.escape(name) + r" (\d+)$", self.out, re.M)
        return int(m.group(1)) if m else None


def cert_files(storage):
    base = Path(storage) / "certificates" / DOMAINS[0]
    return Path(str(base) + ".crt"), Path(str(base) + ".key")


def split_pem(text):
    return re.findall(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----\n?", text, re.S)


def verify_chain(tmp, crt, root_pem):
    certs = split_pem(crt.read_text())
    assert len(certs) >= 2, "chain must carry the leaf and an intermediate"
    (tmp / "root.pem").write_text(root_pem)
    (tmp / "leaf.pem").write_text(certs[0])
    (tmp / "inter.pem").write_text("".join(certs[1:]))
    out = run("openssl", "verify", "-CAfile", str(tmp / "root.pem"), "-untrusted",
              str(tmp / "inter.pem"), str(tmp / "leaf.pem"))
    assert out.strip().endswith(": OK")
    text = run("openssl", "x509", "-in", str(tmp / "leaf.pem"), "-noout", "-ext",
               "subjectAltName")
    for d in DOMAINS:
        assert f"DNS:{d}" in text


def key_matches(crt, key):
    a = run("openssl", "x509", "-in", str(crt), "-noout", "-pubkey")
    b = run("openssl", "pkey", "-in", str(key), "-pubout")
    return a == b


def serial(crt):
    return run("openssl", "x509", "-in", str(crt), "-noout", "-serial").strip()


def http_get(port, path):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    data = b""
    while True:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode()


def test_issue_then_restart_reuses(tmp_path, pebble_factory):
    port = free_port()
    pebble = pebble_factory(port)
    storage = tmp_path / "storage"
    d = Driver(pebble, storage, port, tmp_path / "first.log")
    assert d.wait() == 0, d.logtext()
    crt, key = cert_files(storage)
    verify_chain(tmp_path, crt, pebble.root())
    assert key_matches(crt, key)
    assert (key.stat().st_mode & 0o777) == 0o600
    assert ((storage / "account.key").stat().st_mode & 0o777) == 0o600
    assert d.orders() == 1
    assert d.metric('switchyard_acme_orders_total{result="valid"}') == 1
    assert d.metric("switchyard_acme_certificate_expiry_timestamp_seconds") > time.time()
    log = d.logtext()
    assert "driver: challenge " in log and "-> 200" in log
    tp = thumbprint(storage / "account.key")
    assert f"account key thumbprint {tp}" in log
    assert not list(storage.rglob(".*.tmp.*")), "temporary files left behind"

    # Restart on the same storage: no new order, same certificate; the listener answers
    # any well-formed token from the stored key alone.
    before = crt.read_bytes()
    d2 = Driver(pebble, storage, port, tmp_path / "second.log", until="time", timeout=4)
    wait_port(port)
    assert http_get(port, "/.well-known/acme-challenge/abc_DEF-123") == \
        (200, f"abc_DEF-123.{tp}")
    assert http_get(port, "/.well-known/acme-challenge/a.b")[0] == 404
    assert d2.wait() == 0, d2.logtext()
    assert d2.orders() == 0
    assert d2.metric('switchyard_acme_orders_total{result="valid"}') == 0
    assert d2.metric("switchyard_acme_certificate_expiry_timestamp_seconds") > time.time()
    assert crt.read_bytes() == before


def test_renewal_with_short_validity(tmp_path, pebble_factory):
    port = free_port()
    pebble = pebble_factory(port, validity=24)
    storage = tmp_path / "storage"
    d = Driver(pebble, storage, port, tmp_path / "renew.log", until="orders=2", timeout=60)
    crt, key = cert_files(storage)
    first = None
    end = time.time() + 30
    while first is None and time.time() < end:
        if crt.exists():
            first = serial(crt)
        time.sleep(0.2)
    assert first, "no first certificate"
    assert d.wait() == 0, d.logtext()
    log = d.logtext()
    assert d.orders() == 2
    assert "is due for renewal" in log
    assert serial(crt) != first
    verify_chain(tmp_path, crt, pebble.root())
    assert key_matches(crt, key)
    # The first certificate stayed in place until the second one was written.
    i_due = log.index("is due for renewal")
    assert log.count("certificate for test.example.org written") == 2
    assert log.index("certificate for test.example.org written") < i_due


def test_two_replicas_one_order(tmp_path, pebble_factory):
    port_a, port_b = free_port(), free_port()
    pebble = pebble_factory(port_b)  # pebble validates against B only
    storage = tmp_path / "storage"
    a = Driver(pebble, storage, port_a, tmp_path / "a.log")
    # B answers challenges at once but its ACME thread starts later, so A places the order.
    b = Driver(pebble, storage, port_b, tmp_path / "b.log", extra=["--start-delay-ms", "3000"])
    assert a.wait() == 0, a.logtext()
    assert b.wait() == 0, b.logtext()
    la, lb = a.logtext(), b.logtext()
    assert a.orders() == 1 and b.orders() == 0
    assert "driver: challenge " not in la
    assert len(re.findall(r"driver: challenge \S+ -> 200", lb)) >= 2
    assert b.metric("switchyard_acme_certificate_expiry_timestamp_seconds") > time.time()
    crt, key = cert_files(storage)
    verify_chain(tmp_path, crt, pebble.root())
    assert key_matches(crt, key)


def test_kill9_during_issuance_then_recovery(tmp_path, pebble_factory, validation_gate):
    port = free_port()
    gate = validation_gate(port)
    pebble = pebble_factory(gate.port)  # pebble validates through the gate
    storage = tmp_path / "storage"
    d = Driver(pebble, storage, port, tmp_path / "killed.log")
    # Killed while pebble's validation is held: the order is certainly unfinished.
    end = time.time() + 30
    while time.time() < end and not ("order created" in d.logtext() and gate.held >= 1):
        time.sleep(0.01)
    assert "order created" in d.logtext() and gate.held >= 1, d.logtext()
    d.proc.send_signal(signal.SIGKILL)
    d.proc.wait(timeout=10)
    d.err.close()
    crt, _ = cert_files(storage)
    assert (storage / "lock").exists(), "the killed holder's lock should remain"
    assert not crt.exists()

    gate.open()
    d2 = Driver(pebble, storage, port, tmp_path / "next.log", timeout=60)
    assert d2.wait() == 0, d2.logtext()
    log = d2.logtext()
    assert "taking over stale lock" in log
    assert d2.orders() == 1
    assert "created account key" not in log  # the stored key is reused
    verify_chain(tmp_path, crt, pebble.root())
    assert not (storage / "lock").exists()
