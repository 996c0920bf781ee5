"""Pebble, pebble-challtestsrv and small helpers for the gateway ACME tests."""
import base64
import hashlib
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from forwarder import Forwarder  # noqa: E402
from ports import free_port  # noqa: E402,F401  (shared with tests/e2e)

DOMAIN = "test.example.org"
CA_READY = bool(shutil.which("pebble") and shutil.which("pebble-challtestsrv"))


def wait_port(port, timeout=10.0, proc=None):
    end = time.time() + timeout
    while time.time() < end:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def wait_port_released(port, timeout=5.0):
    """Waits until nothing listens on port any more. A process killed with SIGKILL on io_uring
    keeps its listening sockets a few milliseconds after wait() returned (the kernel tears the
    ring down afterwards): a restart must not take those for the new process's."""
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        except ConnectionRefusedError:
            return
        except OSError:
            pass
        time.sleep(0.01)
    raise RuntimeError(f"something still listens on {port}")


def wait_until(fn, timeout, message, log=None, interval=0.2):
    """Calls fn until it returns a truthy value (returned) or timeout seconds pass (fails)."""
    end = time.time() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.time() >= end:
            raise AssertionError(message.replace("{log}", log() if log else ""))
        time.sleep(interval)


def run(*args):
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout


def make_tls_ca(d):
    """A throw-away CA and a 127.0.0.1 certificate for pebble's own HTTPS listener
    (the Debian package does not ship pebble's test minica)."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    run("openssl", "req", "-x509", *ec, "-keyout", str(d / "ca.key"), "-out", str(d / "ca.pem"),
        "-days", "2", "-subj", "/CN=switchyard gateway acme test CA")
    run("openssl", "req", *ec, "-keyout", str(d / "srv.key"), "-out", str(d / "srv.csr"),
        "-subj", "/CN=localhost")
    (d / "ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    run("openssl", "x509", "-req", "-in", str(d / "srv.csr"), "-CA", str(d / "ca.pem"),
        "-CAkey", str(d / "ca.key"), "-CAcreateserial", "-out", str(d / "srv.pem"), "-days", "2",
        "-extfile", str(d / "ext"))
    return d


class ChallTestSrv:
    """pebble-challtestsrv as the DNS server: every name resolves to 127.0.0.1."""

    def __init__(self, d):
        self.port, self.mgmt = free_port(), free_port()
        self.log = open(d / "challtestsrv.log", "w")
        self.proc = subprocess.Popen(
            ["pebble-challtestsrv", "-defaultIPv4", "127.0.0.1", "-defaultIPv6", "",
             "-dns01", f"127.0.0.1:{self.port}", "-http01", "", "-https01", "",
             "-tlsalpn01", "", "-management", f"127.0.0.1:{self.mgmt}"],
            stdout=self.log, stderr=subprocess.STDOUT)
        wait_port(self.mgmt, proc=self.proc)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)
        self.log.close()


class Pebble:
    def __init__(self, tmp, tls_ca, dns_port, http_port, validity=None):
        self.port, self.mgmt = free_port(), free_port()
        conf = {"listenAddress": f"127.0.0.1:{self.port}",
                "managementListenAddress": f"127.0.0.1:{self.mgmt}",
                "certificate": str(tls_ca / "srv.pem"), "privateKey": str(tls_ca / "srv.key"),
                "httpPort": http_port, "tlsPort": free_port(), "ocspResponderURL": "",
                "externalAccountBindingRequired": False}
        if validity:
            conf["certificateValidityPeriod"] = validity
        cfg = tmp / "pebble.json"
        cfg.write_text(json.dumps({"pebble": conf}))
        env = dict(os.environ, PEBBLE_VA_NOSLEEP="1")
        env.pop("PEBBLE_WFE_NONCEREJECT", None)  # keep the default 5 % badNonce
        self.log_path = tmp / "pebble.log"
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(["pebble", "-config", str(cfg),
                                      "-dnsserver", f"127.0.0.1:{dns_port}"],
                                     stdout=self.log, stderr=subprocess.STDOUT, env=env)
        wait_port(self.port, proc=self.proc)
        wait_port(self.mgmt, proc=self.proc)
        self.directory = f"https://127.0.0.1:{self.port}/dir"
        self.ca = tls_ca / "ca.pem"

    def _get(self, path):
        ctx = ssl.create_default_context(cafile=str(self.ca))
        with urllib.request.urlopen(f"https://127.0.0.1:{self.mgmt}{path}", context=ctx,
                                    timeout=10) as r:
            return r.read().decode()

    def root(self):
        """Pebble's root (the gateway serves the leaf and pebble's intermediate)."""
        return self._get("/roots/0")

    def logtext(self):
        self.log.flush()
        return self.log_path.read_text()

    def orders(self):
        return self.logtext().count("Added order ")

    def validations_on(self, port):
        return self.logtext().count(f":{port}/.well-known/acme-challenge/")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)
        self.log.close()


def thumbprint(account_key):
    """RFC 7638 JWK thumbprint of the EC P-256 account key, computed without the C code:
    openssl gives the SPKI, whose last 64 bytes are x and y of the uncompressed point."""
    der = subprocess.run(["openssl", "pkey", "-in", str(account_key), "-pubout", "-outform",
                          "DER"], check=True, capture_output=True).stdout
    assert len(der) == 91 and der[-65] == 4, "not an uncompressed P-256 SPKI"
    x, y = der[-64:-32], der[-32:]

    def b64(b):
        return base64.urlsafe_b64encode(b).rstrip(b"=").decode()
    jwk = '{"crv":"P-256","kty":"EC","x":"%s","y":"%s"}' % (b64(x), b64(y))
    return b64(hashlib.sha256(jwk.encode()).digest())


class ValidationGate(Forwarder):
    """TCP relay between pebble's HTTP-01 validation and the gateway's HTTP port.
    Connections wait, unanswered, until open() is called; then bytes pass both
    ways. While it is shut, an issuance cannot finish, however fast the machine."""

    def __init__(self, target_port):
        self.opened = threading.Event()
        super().__init__([("127.0.0.1", target_port)])

    @property
    def held(self):
        return self.connections

    def open(self):
        self.opened.set()

    def close(self):
        self.opened.set()
        super().close()

    def _relay(self, c):
        self.opened.wait()
        super()._relay(c)
