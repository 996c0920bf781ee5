"""Access log: one JSON object per request on stdout."""

import pytest

from helpers import free_port, make_config

KEYS = {"time", "client", "method", "path", "status", "bytes_in", "bytes_out", "duration_ms",
        "site", "version", "version_source", "upstream", "request_id"}


def only(entries, **match):
    found = [e for e in entries if all(e.get(k) == v for k, v in match.items())]
    assert len(found) == 1, (match, entries)
    return found[0]


def test_one_line_per_request_with_all_keys(retro):
    for i in range(5):
        retro.get("/n%d" % i, host="plain.test")
    log = retro.wait_access_log(5)
    assert len(log) == 5, log
    for e in log:
        assert KEYS <= set(e), KEYS - set(e)


def test_version_site_entry(retro):
    body = b"0123456789"
    r = retro.request("POST", "/api/x?y=1", "retro.example.org",
                      headers=[("X-Postfacto-Version", "4.1.0")], body=body)
    assert r.status == 200
    rid = [v for k, v in r.json()["headers"] if k.lower() == "x-request-id"][0]
    e = retro.wait_access_log(1)[0]
    assert e["method"] == "POST"
    assert e["path"].startswith("/api/x")
    assert e["status"] == 200
    assert e["site"] == "retro.example.org"
    assert e["version"] == "4.1.0"
    assert e["version_source"] == "header"
    assert e["upstream"] == retro.ups["4.1.0"].addr
    assert e["request_id"] == rid
    assert str(e["client"]).startswith("127.0.0.1")
    assert isinstance(e["time"], str) and e["time"]
    assert isinstance(e["bytes_in"], int) and e["bytes_in"] >= len(body)
    assert isinstance(e["bytes_out"], int) and e["bytes_out"] >= len(r.body)
    assert isinstance(e["duration_ms"], (int, float)) and e["duration_ms"] >= 0


@pytest.mark.parametrize("source,kw,version", [
    ("query", {"path": "/?postfacto_version=4.3.0"}, "4.3.0"),
    ("cookie", {"headers": [("Cookie", "postfacto_version=4.1.0")]}, "4.1.0"),
    ("default", {}, "4.2.0"),
])
def test_version_source(retro, source, kw, version):
    r = retro.get(kw.get("path", "/"), host="retro.example.org", headers=kw.get("headers", ()))
    assert r.status == 200
    e = retro.wait_access_log(1)[0]
    assert (e["version"], e["version_source"]) == (version, source)


def test_plain_site_and_unknown_host(retro):
    retro.get("/p", host="plain.test")
    retro.get("/u", host="nowhere.invalid")
    log = retro.wait_access_log(2)
    p = only(log, path="/p")
    assert p["version"] is None and p["version_source"] is None
    assert p["upstream"] == retro.ups["plain"].addr
    assert p["site"] == "plain.test"
    u = only(log, path="/u")
    assert u["status"] == 404
    assert u["upstream"] is None


def test_kept_request_id_is_logged(retro):
    retro.get("/rid", host="plain.test", headers=[("X-Request-Id", "trace-42")])
    assert retro.wait_access_log(1)[0]["request_id"] == "trace-42"


def test_bad_request_is_logged(retro):
    c = retro.raw()
    try:
        c.send(b"GET / HTTP/1.1\r\nHost: plain.test\r\nX-A : b\r\n\r\n")
        assert c.read_response().status == 400
    finally:
        c.close()
    e = retro.wait_access_log(1)[0]
    assert e["status"] == 400 and e["upstream"] is None


def test_access_log_off(gateway, upstream):
    u = upstream("u")
    h, a = free_port(), free_port()
    gw = gateway(make_config(h, a, {"u": [u.addr]}, [{"hosts": ["*"], "upstream": "u"}],
                             log={"access": False, "level": "info"}))
    for i in range(3):
        assert gw.get("/q", host="x.test").status == 200
    import time
    time.sleep(0.5)
    assert gw.access_log() == []
