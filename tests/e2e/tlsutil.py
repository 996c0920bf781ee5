"""HTTPS clients and gateway configs for the TLS tests (standard library, openssl CLI)."""

import os
import re
import socket
import ssl
import subprocess
import time

from certs import cert_info, der_to_pem
from helpers import RawClient, build_request, make_config, wait_for


def tls_config(http_port, https_port, admin_port, upstreams, sites, certs, redirect=False,
               hsts="max-age=31536000", redirect_port=None, **kw):
    """make_config plus listen.https and a tls section. certs: [Leaf or (cert, key)]."""
    cfg = make_config(http_port, admin_port, upstreams, sites, **kw)
    cfg["listen"]["https"] = "127.0.0.1:%d" % https_port
    tls = {"redirect": redirect}
    if redirect_port is not None:
        tls["redirect_port"] = redirect_port
    if hsts:
        tls["hsts"] = hsts
    tls["certificates"] = [
        {"cert": c.cert, "key": c.key} if hasattr(c, "cert") else {"cert": c[0], "key": c[1]}
        for c in certs]
    cfg["tls"] = tls
    return cfg


def client_ctx(ca=None, minimum=None, maximum=None, ciphers=None, alpn=("http/1.1",)):
    """A client context; without `ca`, nothing is verified (to look at what is served)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if ca:
        ctx.load_verify_locations(ca)
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if minimum:
        ctx.minimum_version = minimum
    if maximum:
        ctx.maximum_version = maximum
    if ciphers:
        ctx.set_ciphers(ciphers)
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    return ctx


class TlsClient(RawClient):
    """RawClient over TLS. `sni` None sends no server name."""

    def __init__(self, port, sni, ctx, timeout=10.0):
        raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        if sni is None:
            ctx.check_hostname = False
        self.sock = ctx.wrap_socket(raw, server_hostname=sni)
        self.sock.settimeout(timeout)
        self.buf = b""
        self.eof = False

    def _fill(self):
        try:
            return super()._fill()
        except ssl.SSLError:
            self.eof = True
            return False


def served(port, sni, ctx=None):
    """(DER of the served leaf, negotiated protocol version, ALPN) for one handshake."""
    c = TlsClient(port, sni, ctx or client_ctx())
    try:
        return (c.sock.getpeercert(binary_form=True), c.sock.version(),
                c.sock.selected_alpn_protocol())
    finally:
        c.close()


def served_serial(port, sni, ctx=None):
    return cert_info(served(port, sni, ctx)[0])["serial"]


def https_request(port, method, path, host, sni=None, ctx=None, headers=(), body=None,
                  timeout=10.0):
    c = TlsClient(port, sni if sni is not None else host.split(":")[0], ctx or client_ctx(),
                  timeout)
    try:
        c.send(build_request(method, path, host, list(headers) + [("Connection", "close")],
                             body))
        return c.read_response(method)
    finally:
        c.close()


def wait_served(port, sni, der, timeout=12.0, what=None):
    """Polls new handshakes until the served leaf is `der`."""
    def check():
        try:
            return served(port, sni)[0] == der
        except (OSError, ssl.SSLError):
            return False
    wait_for(check, timeout, 0.1, what or "the new certificate to be served for %s" % sni)


def s_client(port, *args, data=b"", timeout=15):
    """Runs openssl s_client; returns (returncode, combined output)."""
    p = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % port] + list(args),
                       input=data, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=timeout)
    return p.returncode, p.stdout.decode("utf-8", "replace")


def first_pem(text):
    m = re.search(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", text, re.S)
    assert m, "no certificate in s_client output:\n%s" % text[-2000:]
    return m.group(0) + "\n"


def atomic_write(path, data):
    tmp = "%s.tmp%d" % (path, os.getpid())
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def pem_of(leaf):
    return der_to_pem(leaf.der).encode()


def wait_metric(gw, name, value, timeout=5.0, **labels):
    def check():
        v = gw.metric(name, **labels)
        return v is not None and v >= value
    wait_for(check, timeout, 0.05, "%s%r >= %s (now %s)" % (name, labels, value,
                                                            gw.metric(name, **labels)))


def monotonic_ms():
    return int(time.monotonic() * 1000)
