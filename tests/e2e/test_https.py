"""HTTPS listener: SNI certificate selection, protocol versions, ALPN, resumption,
server cipher order, redirect, HSTS, X-Forwarded-Proto, secure pin cookie, handshake failure
accounting, certificate metrics, and the config check of certificate files."""

import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import time

import pytest

from certs import TestCA, cert_info, pem_to_der
from helpers import RawClient, build_request, free_port, version_block, wait_for
from tlsutil import (TlsClient, client_ctx, first_pem, https_request, s_client, served,
                     tls_config, wait_metric)

REASONS = ("protocol_version", "no_shared_cipher", "http_request", "bad_record", "peer_alert",
           "closed", "timeout", "other")
HSTS = "max-age=31536000; includeSubDomains"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    ca = TestCA(d)
    return {
        "ca": ca,
        "a": ca.issue("a", ["a.test"], key="ec"),                 # first: the default
        "wild": ca.issue("wild", ["*.wild.test"], key="ec"),
        "b": ca.issue("b", ["b.test", "a.test"], key="rsa"),      # RSA, also covers a.test
    }


class TlsGw:
    def __init__(self, gw, https_port, ups, pki):
        self.gw = gw
        self.https_port = https_port
        self.ups = ups
        self.pki = pki

    def __getattr__(self, name):
        return getattr(self.gw, name)

    def get(self, path, host="a.test", sni=None, headers=(), ctx=None):
        return https_request(self.https_port, "GET", path, host, sni=sni, headers=headers,
                             ctx=ctx or client_ctx(self.pki["ca"].cert))


@pytest.fixture
def start_tls(gateway, upstream, pki):
    def start(redirect=False, hsts=HSTS, workers=1, timeouts=None, log=None, certs=None, env=None,
              redirect_port=None):
        ups = {"4.1.0": upstream("4.1.0"), "4.2.0": upstream("4.2.0")}
        h, s, a = free_port(), free_port(), free_port()
        cfg = tls_config(
            h, s, a, {"v1": [ups["4.1.0"].addr], "v2": [ups["4.2.0"].addr]},
            [{"hosts": ["a.test", "b.test", "x.wild.test", "retro.example.org"],
              "version": version_block({"4.1.0": "v1", "4.2.0": "v2"}, "4.2.0")},
             {"hosts": ["*"], "upstream": "v2"}],
            certs or [pki["a"], pki["wild"], pki["b"]], redirect=redirect, hsts=hsts,
            redirect_port=redirect_port, workers=workers, timeouts=timeouts, log=log)
        return TlsGw(gateway(cfg, env=env), s, ups, pki)
    return start


def tls_failures(gw):
    return {r: gw.metric("switchyard_tls_handshake_failures_total", reason=r) or 0
            for r in REASONS}


# ---------------------------------------------------------------- SNI

def test_sni_selects_the_certificate(start_tls, pki):
    gw = start_tls()
    port = gw.https_port
    expect = [("a.test", "a"), ("A.TEST", "a"), ("b.test", "b"), ("x.wild.test", "wild"),
              ("Deep.Wild.Test", "wild")]
    for sni, name in expect:
        der, _, _ = served(port, sni)
        assert der == pki[name].der, "SNI %s: served serial %s, expected %s (%s)" % (
            sni, cert_info(der)["serial"], pki[name].serial, name)
    # the wildcard covers exactly one label: not the bare domain, not two labels
    for sni in ("wild.test", "a.b.wild.test", "unknown.test"):
        der, _, _ = served(port, sni)
        assert der == pki["a"].der, "SNI %s should get the default (first) certificate, " \
            "got serial %s" % (sni, cert_info(der)["serial"])
    # no SNI at all: the first configured certificate
    der, _, _ = served(port, None)
    assert der == pki["a"].der
    # the same through openssl s_client -showcerts
    rc, out = s_client(port, "-servername", "b.test", "-showcerts")
    assert pem_to_der(first_pem(out)) == pki["b"].der, out[-1500:]
    rc, out = s_client(port, "-noservername", "-showcerts")
    assert pem_to_der(first_pem(out)) == pki["a"].der, out[-1500:]
    # and the chain verifies against the test CA for each configured name
    for sni in ("a.test", "b.test", "x.wild.test"):
        r = gw.get("/", host=sni)
        assert r.status == 200, r


def test_ecdsa_or_rsa_by_client_capability(start_tls, pki):
    gw = start_tls()
    port = gw.https_port
    # a TLS 1.2 client that only offers RSA authentication gets the RSA certificate for a.test,
    # one that offers ECDSA gets the ECDSA one
    rsa_only = client_ctx(maximum=ssl.TLSVersion.TLSv1_2, ciphers="ECDHE-RSA-AES128-GCM-SHA256")
    ec_only = client_ctx(maximum=ssl.TLSVersion.TLSv1_2, ciphers="ECDHE-ECDSA-AES128-GCM-SHA256")
    assert served(port, "a.test", rsa_only)[0] == pki["b"].der
    assert served(port, "a.test", ec_only)[0] == pki["a"].der
    # no SNI: the default plus the RSA certificate that covers its first name
    assert served(port, None, rsa_only)[0] == pki["b"].der
    # TLS 1.3: by signature algorithms
    rc, out = s_client(port, "-tls1_3", "-servername", "a.test", "-sigalgs",
                       "rsa_pss_rsae_sha256:rsa_pss_rsae_sha384", "-showcerts")
    assert pem_to_der(first_pem(out)) == pki["b"].der, out[-1500:]
    rc, out = s_client(port, "-tls1_3", "-servername", "a.test", "-sigalgs",
                       "ecdsa_secp256r1_sha256", "-showcerts")
    assert pem_to_der(first_pem(out)) == pki["a"].der, out[-1500:]
    # an RSA-only client asking for an ECDSA-only name: no handshake, and it is counted
    before = tls_failures(gw)
    with pytest.raises(ssl.SSLError):
        served(port, "x.wild.test", client_ctx(maximum=ssl.TLSVersion.TLSv1_2,
                                              ciphers="ECDHE-RSA-AES128-GCM-SHA256"))
    wait_for(lambda: tls_failures(gw)["no_shared_cipher"] == before["no_shared_cipher"] + 1, 5,
             what="no_shared_cipher to be counted (%r)" % tls_failures(gw))
    assert gw.get("/", host="x.wild.test").status == 200


# ---------------------------------------------------------------- protocol versions, ALPN

def test_tls12_and_13_work_with_alpn_old_versions_refused(start_tls, pki):
    gw = start_tls()
    port = gw.https_port
    for v in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        ctx = client_ctx(pki["ca"].cert, minimum=v, maximum=v)
        c = TlsClient(port, "a.test", ctx)
        try:
            assert c.sock.version() == {ssl.TLSVersion.TLSv1_2: "TLSv1.2",
                                        ssl.TLSVersion.TLSv1_3: "TLSv1.3"}[v]
            assert c.sock.selected_alpn_protocol() == "http/1.1"
            c.send(build_request("GET", "/v", "a.test", [("Connection", "close")]))
            assert c.read_response().status == 200
        finally:
            c.close()
    # a client offering only h2 gets it (http2.enabled is on by default; test_h2.py has more)
    der, version, alpn = served(port, "a.test", client_ctx(alpn=("h2",)))
    assert der == pki["a"].der and alpn == "h2"
    # TLS 1.0 and 1.1 are refused by the server (the client is allowed to offer them)
    before = tls_failures(gw)
    for flag in ("-tls1", "-tls1_1"):
        rc, out = s_client(port, flag, "-cipher", "DEFAULT:@SECLEVEL=0", "-servername", "a.test")
        assert rc != 0, out
        assert "BEGIN CERTIFICATE" not in out, out
        assert "no protocols available" not in out, out  # it was offered
    wait_for(lambda: tls_failures(gw)["protocol_version"] >= before["protocol_version"] + 2, 5,
             what="two protocol_version failures (%r)" % tls_failures(gw))
    assert gw.get("/", host="a.test").status == 200


def negotiated(port, *args):
    rc, out = s_client(port, "-servername", "a.test", *args)
    m = re.search(r"Cipher is (\S+)", out)
    assert rc == 0 and m, out[-2000:]
    return m.group(1)


def test_server_cipher_order(start_tls, pki):
    # the client lists a cipher the server ranks lower first: the server's order wins
    # (testssl.sh: "Has server cipher order?"), for ECDSA and RSA certificates and TLS 1.3
    gw = start_tls()
    port = gw.https_port
    for offered, want in [
            ("ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES128-GCM-SHA256",
             "ECDHE-ECDSA-AES128-GCM-SHA256"),
            ("ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES256-GCM-SHA384",
             "ECDHE-ECDSA-AES256-GCM-SHA384"),
            ("ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-AES128-GCM-SHA256",
             "ECDHE-RSA-AES128-GCM-SHA256")]:
        assert negotiated(port, "-tls1_2", "-cipher", offered) == want, offered
    assert negotiated(port, "-tls1_3", "-ciphersuites",
                      "TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256") == \
        "TLS_AES_128_GCM_SHA256"


def test_session_resumption_across_workers(start_tls, pki, tmp_path):
    gw = start_tls(workers=2)
    port = gw.https_port
    req = b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n"
    for proto in ("-tls1_2", "-tls1_3"):
        sess = str(tmp_path / ("sess%s" % proto))
        rc, out = s_client(port, proto, "-servername", "a.test", "-sess_out", sess, "-ign_eof",
                           data=req)
        assert "HTTP/1.1 200" in out and os.path.getsize(sess) > 0, out[-2000:]
        # several resumptions: with two workers behind SO_REUSEPORT, they land on both
        for i in range(8):
            rc, out = s_client(port, proto, "-servername", "a.test", "-sess_in", sess,
                               "-ign_eof", data=req)
            assert "Reused, TLSv1." in out, "%s resumption %d not reused:\n%s" % (
                proto, i, out[-2500:])
            assert "HTTP/1.1 200" in out, out[-2000:]
    assert gw.metric("switchyard_tls_resumed_handshakes_total") >= 16
    assert gw.metric("switchyard_tls_handshakes_total") >= 18


# ---------------------------------------------------------------- HTTP over TLS

def test_hsts_xfp_and_secure_pin_cookie(start_tls, pki):
    gw = start_tls()
    up = gw.ups["4.1.0"]
    r = gw.get("/pin", headers=[("X-Postfacto-Version", "4.1.0")])
    assert r.status == 200, r
    assert r.header("X-Upstream") == "4.1.0"
    assert r.header_values("Strict-Transport-Security") == [HSTS], r.headers
    cookies = r.header_values("Set-Cookie")
    assert len(cookies) == 1 and cookies[0].startswith("postfacto_version=4.1.0"), cookies
    assert "; Secure" in cookies[0], cookies
    seen = up.requests[-1]["headers"]
    assert [v for k, v in seen if k.lower() == "x-forwarded-proto"] == ["https"], seen
    # the pin routes the next HTTPS request
    r = gw.get("/next", headers=[("Cookie", "postfacto_version=4.1.0")])
    assert r.header("X-Upstream") == "4.1.0"
    # plain HTTP (redirect off): no HSTS, cookie without Secure, X-Forwarded-Proto http
    r = gw.request("GET", "/plain", host="a.test", headers=[("X-Postfacto-Version", "4.1.0")])
    assert r.status == 200, r
    assert r.header("Strict-Transport-Security") is None, r.headers
    cookies = r.header_values("Set-Cookie")
    assert cookies and "Secure" not in cookies[0], cookies
    seen = up.requests[-1]["headers"]
    assert [v for k, v in seen if k.lower() == "x-forwarded-proto"] == ["http"], seen


def test_hsts_on_gateway_generated_responses(start_tls, pki):
    gw = start_tls()
    # a gateway-generated answer over HTTPS (no such site) also carries HSTS
    r = gw.get("/", host="nosuch.example", sni="a.test")
    assert r.header_values("Strict-Transport-Security") == [HSTS], r


def test_keepalive_and_large_bodies_over_tls(start_tls, pki):
    gw = start_tls()
    c = TlsClient(gw.https_port, "a.test", client_ctx(pki["ca"].cert))
    try:
        body = os.urandom(300000)
        for i in range(5):
            c.send(build_request("POST", "/echo", "a.test", body=body))
            r = c.read_response()
            assert r.status == 200 and r.body == body, (i, r.status, len(r.body))
        c.send(build_request("GET", "/big?bytes=2000000", "a.test"))
        r = c.read_response()
        assert r.status == 200 and len(r.body) == 2000000
        # pipelined requests in one TLS record
        c.send(build_request("GET", "/p1", "a.test") + build_request("GET", "/p2", "a.test"))
        assert c.read_response().status == 200 and c.read_response().status == 200
        # 20 pipelined requests, one TLS record each, corked into one TCP segment: the
        # gateway reads them all at once and must answer every one without a new event
        c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
        for i in range(20):
            c.send(build_request("GET", "/r%d" % i, "a.test"))
        c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 0)
        for i in range(20):  # each answer, in order
            r = c.read_response()
            assert r.status == 200 and json.loads(r.body)["target"] == "/r%d" % i, (i, r)
    finally:
        c.close()


# ---------------------------------------------------------------- redirect

def test_redirect_to_https(start_tls, pki):
    # listen.https is on a random port here, as it is on 8443 behind the Kubernetes Service:
    # the redirect names the public port (443, left out), never the listener's
    gw = start_tls(redirect=True)
    for method, target, host, loc in [
            ("GET", "/some/path?q=1&r=two", "a.test", "https://a.test/some/path?q=1&r=two"),
            ("GET", "/", "a.test:8080", "https://a.test/"),
            ("POST", "/form", "retro.example.org", "https://retro.example.org/form"),
            ("HEAD", "/h?x", "b.test", "https://b.test/h?x"),
            ("GET", "/v6", "[::1]:80", "https://[::1]/v6")]:
        r = gw.request(method, target, host=host, body=b"x=1" if method == "POST" else None)
        assert r.status == 308, (method, target, r)
        assert r.header("Location") == loc, (method, target, r.headers)
        assert r.header("Strict-Transport-Security") is None, r.headers
    assert gw.ups["4.2.0"].requests == [] and gw.ups["4.1.0"].requests == []
    # the ACME challenge path is never redirected (no ACME configured: not found)
    r = gw.request("GET", "/.well-known/acme-challenge/x", host="a.test")
    assert r.status != 308 and r.header("Location") is None, r
    assert r.status in (404, 200), r
    # HTTPS itself is served, not redirected
    r = gw.get("/after?x=1", host="a.test")
    assert r.status == 200 and r.header("X-Upstream") == "4.2.0", r


def test_redirect_port_names_the_public_https_port(start_tls, pki):
    # a deployment whose public HTTPS port is not 443 says so with tls.redirect_port
    gw = start_tls(redirect=True, redirect_port=8443)
    assert gw.https_port != 8443
    for target, host, loc in [("/p?q=1", "a.test", "https://a.test:8443/p?q=1"),
                              ("/", "b.test:80", "https://b.test:8443/"),
                              ("/x", "[::1]", "https://[::1]:8443/x")]:
        r = gw.request("GET", target, host=host)
        assert r.status == 308 and r.header("Location") == loc, (target, r)
    # 443 written out is the same as the default: no port in the URL
    gw = start_tls(redirect=True, redirect_port=443)
    r = gw.request("GET", "/y", host="a.test")
    assert r.status == 308 and r.header("Location") == "https://a.test/y", r


# ---------------------------------------------------------------- failed handshakes

def test_failed_handshakes_counted_and_harmless(start_tls, pki):
    gw = start_tls()
    port = gw.https_port
    before = tls_failures(gw)
    lines_before = len(gw.access_log())

    # plain HTTP to the HTTPS port
    c = RawClient(port)
    c.send(build_request("GET", "/", "a.test"))
    assert c.wait_closed(5)
    c.close()
    # garbage bytes
    c = RawClient(port)
    c.send(b"\x16\x03\x01\x00\x10" + b"\xff" * 16 + b"garbage" * 20)
    assert c.wait_closed(5)
    c.close()
    # TLS 1.0 client
    rc, out = s_client(port, "-tls1", "-cipher", "DEFAULT:@SECLEVEL=0", "-servername", "a.test")
    assert rc != 0
    # the client closes mid-handshake
    raw = socket.create_connection(("127.0.0.1", port))
    raw.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
    raw.close()

    def counted():
        now = tls_failures(gw)
        return (now["http_request"] >= before["http_request"] + 1 and
                now["bad_record"] >= before["bad_record"] + 1 and
                now["protocol_version"] >= before["protocol_version"] + 1 and
                now["closed"] >= before["closed"] + 1)
    wait_for(counted, 5, what="each failure counted by reason: %r -> %r" % (
        before, tls_failures(gw)))
    now = tls_failures(gw)
    assert sum(now.values()) - sum(before.values()) == 4, (before, now)
    assert gw.metric("switchyard_tls_handshakes_total") == 0
    # nothing else: still serving, no access log line, no error on stderr
    assert gw.get("/", host="a.test").status == 200
    assert len(gw.wait_access_log(lines_before + 1)) == lines_before + 1
    assert "[error]" not in gw.stderr_text(), gw.stderr_text()[-2000:]


def test_stalled_handshake_times_out(start_tls, pki):
    gw = start_tls(timeouts={"client_header": "1s"})
    port = gw.https_port
    before = tls_failures(gw)
    silent = RawClient(port)                                  # connects, sends nothing
    partial = RawClient(port)
    partial.send(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 20)  # half a hello
    t0 = time.monotonic()
    assert silent.wait_closed(5) and partial.wait_closed(5)
    took = time.monotonic() - t0
    assert 0.7 < took < 4.0, took
    wait_for(lambda: tls_failures(gw)["timeout"] == before["timeout"] + 2, 3,
             what="two handshake timeouts counted (%r)" % tls_failures(gw))
    # a slow but complete client in time is fine
    assert gw.get("/", host="a.test").status == 200


# ---------------------------------------------------------------- metrics

def test_certificate_expiry_metric(start_tls, pki):
    gw = start_tls()
    samples = [(labels, v) for (n, labels, v) in gw.metrics()
               if n == "switchyard_tls_certificate_expiry_timestamp_seconds"]
    by_cert = {labels.get("cert"): (labels, v) for labels, v in samples}
    assert len(samples) == 3, samples
    for name in ("a", "wild", "b"):
        leaf = pki[name]
        labels, v = by_cert[leaf.cert]
        assert v == leaf.not_after, (name, v, leaf.not_after)
        assert labels["serial"].upper().lstrip("0") == leaf.serial, (labels, leaf.serial)
        assert labels["subject"] == leaf.names[0], labels
        # the value is the notAfter of the certificate actually served for that name
        sni = leaf.names[0].replace("*", "x")
        ctx = client_ctx(maximum=ssl.TLSVersion.TLSv1_2, ciphers="ECDHE-RSA-AES128-GCM-SHA256") \
            if leaf.key_type == "rsa" else None
        assert cert_info(served(gw.https_port, sni, ctx)[0])["not_after"] == v


# ---------------------------------------------------------------- config check

def _check(binary, path):
    return subprocess.run([binary, "-t", "-c", path], capture_output=True, text=True,
                          timeout=20, stdin=subprocess.DEVNULL)


def _cert_line(text, needle):
    for i, line in enumerate(text.split("\n"), 1):
        if needle in line:
            return i
    raise AssertionError("%r not in config" % needle)


@pytest.mark.parametrize("case", ["missing_cert", "missing_key", "key_mismatch", "expired"])
def test_config_check_reports_certificate_problems(switchyard_bin, pki, tmp_path, case):
    from helpers import to_yaml
    ca = pki["ca"]
    good = pki["a"]
    if case == "missing_cert":
        bad = (str(tmp_path / "nope.crt"), good.key)
    elif case == "missing_key":
        bad = (good.cert, str(tmp_path / "nope.key"))
    elif case == "key_mismatch":
        bad = (pki["b"].cert, good.key)
    else:
        old = ca.issue("old", ["a.test"], expired=True, out_dir=tmp_path)
        bad = (old.cert, old.key)
    cfg = tls_config(free_port(), free_port(), free_port(), {"u": ["127.0.0.1:9"]},
                     [{"hosts": ["*"], "upstream": "u"}], [pki["wild"], bad])
    text = to_yaml(cfg)
    path = str(tmp_path / "sy.yaml")
    with open(path, "w") as f:
        f.write(text)
    p = _check(switchyard_bin, path)
    assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
    line = _cert_line(text, bad[0])
    out = p.stdout + p.stderr
    assert "%s:%d:" % (path, line) in out or "%s:%d:" % (path, line - 1) in out, \
        "expected %s:%d: in %r" % (path, line, out)
    words = {"missing_cert": "nope.crt", "missing_key": "nope.key", "key_mismatch": "match",
             "expired": "expired"}
    assert words[case] in out.lower(), out
    # and the good file passes
    cfg["tls"]["certificates"] = [{"cert": pki["a"].cert, "key": pki["a"].key}]
    with open(path, "w") as f:
        f.write(to_yaml(cfg))
    p = _check(switchyard_bin, path)
    assert p.returncode == 0, (p.stdout, p.stderr)


# ---------------------------------------------------------------- testssl

def test_testssl_finds_nothing_high_or_critical(start_tls, pki, tmp_path):
    if not shutil.which("testssl"):
        pytest.skip("testssl is not installed (Debian package testssl.sh)")
    gw = start_tls()
    script = os.path.join(os.path.dirname(__file__), "..", "tls", "run-testssl.sh")
    out = str(tmp_path / "testssl.json")
    # the name the certificates are for, at the gateway's address; revocation data is
    # what test certificates cannot have
    p = subprocess.run(
        ["sh", script, "--ca", pki["ca"].cert, "--allow", "cert_revocation", "--out", out,
         "a.test:%d" % gw.https_port, "--ip", "127.0.0.1"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=330,
        env=dict(os.environ, TESTSSL_TIMEOUT="300"))
    text = p.stdout.decode(errors="replace")
    assert p.returncode == 0, text[-4000:]
    assert "none HIGH or CRITICAL" in text, text
    findings = {f["id"]: f for f in json.load(open(out))}
    # it did look at what matters
    for fid in ("SSLv3", "TLS1", "TLS1_1", "TLS1_2", "TLS1_3"):
        assert fid in findings, sorted(findings)
    assert findings["TLS1"]["finding"].startswith("not offered"), findings["TLS1"]
    assert findings["TLS1_1"]["finding"].startswith("not offered"), findings["TLS1_1"]
    assert findings["TLS1_3"]["finding"].startswith("offered"), findings["TLS1_3"]
    # and the gateway kept serving
    assert gw.get("/", host="a.test").status == 200


# ---------------------------------------------------------------- handshake and first request

# Preloaded into the gateway: every read(2) that finds the socket empty takes 50 ms to say so.
SLOW_EAGAIN = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <time.h>
#include <unistd.h>

ssize_t read(int fd, void *buf, size_t n)
{
    static ssize_t (*real)(int, void *, size_t);
    if (!real)
        real = (ssize_t (*)(int, void *, size_t))dlsym(RTLD_NEXT, "read");
    ssize_t r = real(fd, buf, n);
    if (r < 0 && errno == EAGAIN) {
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
        errno = EAGAIN;
    }
    return r;
}
"""


def test_first_request_read_along_with_the_handshake_is_answered(start_tls, tmp_path):
    """The client's Finished and its first request can arrive while the gateway is still in
    the handshake: read-ahead takes both into TLS, and the readiness event harvested later
    says only EPOLLOUT (the socket is empty by then). The request waited for the keep-alive
    timeout. A read(2) slow to report EAGAIN makes the client's bytes arrive in that window
    on every connection."""
    src, so = tmp_path / "slow_eagain.c", tmp_path / "slow_eagain.so"
    src.write_text(SLOW_EAGAIN)
    subprocess.run(["cc", "-shared", "-fPIC", "-O2", "-o", str(so), str(src), "-ldl"], check=True)
    asan = os.environ.get("ASAN_OPTIONS", "")
    gw = start_tls(env={"LD_PRELOAD": str(so),  # the ASan build wants its runtime first
                        "ASAN_OPTIONS": (asan + ":" if asan else "") + "verify_asan_link_order=0"})
    for tls in (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2):
        ctx = client_ctx(gw.pki["ca"].cert, maximum=tls)
        for i in range(4):  # a stalled request ends in the client's 5 s socket timeout
            r = https_request(gw.https_port, "GET", "/first-%d" % i, "a.test", ctx=ctx, timeout=5)
            assert r.status == 200, (tls, i, r)
