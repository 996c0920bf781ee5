"""HTTP/2 with prior knowledge on the plain listener (http2.cleartext): off by default, and when
on, the same exchange as over TLS with X-Forwarded-Proto http; HTTP/1.1 on the same listener is
unchanged."""

import json
import subprocess

from test_h2 import hdr, pki, start_h2  # noqa: F401 (fixtures)


def curl_h2c(gw, path, *args):
    port = gw.cfg["listen"]["http"].rsplit(":", 1)[1]
    out = subprocess.run(["curl", "-s", "--http2-prior-knowledge", "-D", "-", *args,
                          "--resolve", "a.test:%s:127.0.0.1" % port,
                          "http://a.test:%s%s" % (port, path)], capture_output=True, timeout=30)
    head, _, body = out.stdout.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    hdrs = [tuple(x.strip() for x in l.split(":", 1)) for l in lines[1:] if ":" in l]
    return out.returncode, lines[0], hdrs, body


def test_prior_knowledge_is_off_by_default(start_h2):
    gw = start_h2()
    rc, status, _, _ = curl_h2c(gw, "/h2c")
    assert not status.startswith("HTTP/2"), status
    assert gw.started() == 0


def test_prior_knowledge_when_enabled(start_h2):
    gw = start_h2(http2={"cleartext": True})
    rc, status, hdrs, body = curl_h2c(gw, "/h2c", "-H", "X-Postfacto-Version: 4.1.0")
    assert rc == 0 and status.startswith("HTTP/2 200"), (rc, status)
    assert hdr(hdrs, "x-upstream") == "4.1.0"
    # a pin set over cleartext is not Secure, and no HSTS over plain HTTP
    assert hdr(hdrs, "set-cookie") == "postfacto_version=4.1.0; Path=/; HttpOnly; SameSite=Lax"
    assert hdr(hdrs, "strict-transport-security") is None
    fwd = {k.lower(): v for k, v in json.loads(body)["headers"]}
    assert fwd["x-forwarded-proto"] == "http"
    # many streams on one connection
    port = gw.cfg["listen"]["http"].rsplit(":", 1)[1]
    out = subprocess.run(["h2load", "-n", "200", "-c", "2", "-m", "10",
                          "-H", ":authority: a.test", "http://127.0.0.1:%s/load" % port],
                         capture_output=True, text=True, timeout=60)
    assert "200 succeeded" in out.stdout and "h2c" in out.stdout, out.stdout
    # HTTP/1.1 on the same listener is as before
    r = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_version} %{http_code}",
                        "-H", "Host: a.test", "http://127.0.0.1:%s/h1" % port],
                       capture_output=True, text=True, timeout=30)
    assert r.stdout == "1.1 200", r.stdout
    log = gw.wait_access_log(202)
    assert [e["protocol"] for e in log].count("HTTP/2") == 201


def test_prior_knowledge_only_at_the_start_of_a_connection(start_h2):
    """After an HTTP/1.1 request the preface is just a bad request line."""
    import socket
    gw = start_h2(http2={"cleartext": True})
    port = int(gw.cfg["listen"]["http"].rsplit(":", 1)[1])
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(b"GET /first HTTP/1.1\r\nHost: a.test\r\n\r\n")
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(65536)
    assert head.startswith(b"HTTP/1.1 200"), head
    s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    assert data[data.find(b"HTTP/1.1"):].startswith(b"HTTP/1.1 4") or b"HTTP/1.1 505" in data, data
    s.close()
