"""Mirrored traffic: eligible requests copied to another version, and the copy's answer
compared with the client's (sites[].mirror). Real upstream processes on both sides."""

import json
import random
import socket
import threading
import time

import pytest

from helpers import (
    Upstream,
    dead_port,
    free_port,
    header,
    make_config,
    version_block,
    wait_for,
)

HOST = "retro.example.org"


class JsonUpstream(Upstream):
    """An upstream whose /api/* answers come from make(rec) -> (status, headers, body);
    everything else behaves as Upstream. `hang` makes /api/* read the request and never
    answer."""

    def __init__(self, name, make=None, hang=False):
        super().__init__(name)
        self.make = make
        self.hang = hang

    def _respond(self, s, rec, query, keep):
        if rec["path"].startswith("/api/"):
            if self.hang:
                while not self.stopping.is_set():
                    if not self._recv(s, {}):
                        return False
                return False
            status, headers, body = self.make(rec)
            if isinstance(body, (dict, list)):
                body = json.dumps(body).encode()
            self._send(s, status, headers, body, keep)
            return keep
        return super()._respond(s, rec, query, keep)


@pytest.fixture
def json_upstream():
    made = []

    def make(name, fn=None, hang=False):
        u = JsonUpstream(name, fn, hang)
        u.start()
        made.append(u)
        return u

    yield make
    for u in made:
        u.stop()


def site(host, mirror):
    s = {"hosts": [host],
         "version": version_block({"4.1.0": "v1", "4.2.0": "v2"}, "4.2.0")}
    if mirror is not None:
        s["mirror"] = mirror
    return s


def start(gateway, v1, v2, mirror, sites=None, timeouts=None):
    http_port, admin_port = free_port(), free_port()
    cfg = make_config(http_port, admin_port,
                      upstreams={"v1": [v1 if isinstance(v1, str) else v1.addr],
                                 "v2": [v2.addr]},
                      sites=sites or [site(HOST, mirror)], timeouts=timeouts)
    return gateway(cfg)


def outcome(gw, outcome, to="4.1.0", site=HOST):
    return gw.metric("switchyard_mirror_requests_total", site=site, to=to,
                     outcome=outcome) or 0


def differences(gw, kind, site=HOST, to="4.1.0"):
    return gw.metric("switchyard_mirror_differences_total", site=site, to=to, kind=kind) or 0


def mirrored(up):
    with up.lock:
        return [r for r in up.requests if header(r["headers"], "X-Switchyard-Mirror") == "1"]


def diffs(gw):
    r = gw.admin("/diffs")
    assert r.status == 200, r
    assert r.header("Content-Type").startswith("application/json")
    return r.json()


def doc(version):
    return lambda rec: (200, [("Content-Type", "application/json")],
                        {"version": "same", "path": rec["path"]})


# ---------------------------------------------------------------- copying


def test_get_is_copied_and_the_client_gets_the_primary_answer(gateway, upstream):
    v1, v2 = upstream("4.1.0"), upstream("4.2.0")
    gw = start(gateway, v1, v2, {"to": "4.1.0"})
    r = gw.get("/api/retros/7?x=1", host=HOST, headers=[("X-Request-Id", "abc123")])
    assert r.status == 200
    assert r.header("X-Upstream") == "4.2.0"
    assert r.json()["upstream"] == "4.2.0"
    copies = wait_for(lambda: mirrored(v1), what="the copy at 4.1.0")
    assert len(copies) == 1
    c = copies[0]
    assert c["method"] == "GET" and c["target"] == "/api/retros/7?x=1"
    assert header(c["headers"], "Host") == HOST
    assert header(c["headers"], "X-Request-Id") == "abc123"
    # the client's own request reached 4.2.0 without the marker
    assert [header(q["headers"], "X-Switchyard-Mirror") for q in v2.requests] == [None]
    wait_for(lambda: outcome(gw, "compared") == 1, what="outcome compared")
    # a request served by the mirror's own version is not copied
    r = gw.get("/api/one", host=HOST, headers=[("X-Postfacto-Version", "4.1.0")])
    assert r.header("X-Upstream") == "4.1.0"
    time.sleep(0.2)
    assert len(mirrored(v1)) == 1
    # and no copy is logged as a request of its own
    log = gw.wait_access_log(2)
    assert len(log) == 2


def test_methods_post_not_copied_by_default_and_bodies_when_listed(gateway, upstream):
    v1, v2 = upstream("4.1.0"), upstream("4.2.0")
    gw = start(gateway, v1, v2, {"to": "4.1.0"})
    r = gw.request("POST", "/api/retros", host=HOST, body=b'{"name":"x"}')
    assert r.status == 200 and r.header("X-Upstream") == "4.2.0"
    gw.get("/api/after", host=HOST)
    wait_for(lambda: mirrored(v1), what="the GET's copy")
    time.sleep(0.2)
    assert [c["method"] for c in mirrored(v1)] == ["GET"]
    v1.stop()

    v1b, v2b = upstream("4.1.0"), upstream("4.2.0")
    gw2 = start(gateway, v1b, v2b, {"to": "4.1.0", "methods": ["GET", "POST"], "max_body": "1k"})
    body = b'{"name":"retro","items":[1,2,3]}'
    r = gw2.request("POST", "/api/retros", host=HOST, body=body)
    assert r.status == 200 and r.json()["upstream"] == "4.2.0"
    c = wait_for(lambda: mirrored(v1b), what="the POST's copy")[0]
    assert c["method"] == "POST" and c["body"] == body
    # a body that comes after its head, in pieces, is copied whole once it is all there
    raw = gw2.raw()
    raw.send("POST /api/late HTTP/1.1\r\nHost: %s\r\nContent-Length: 20\r\n\r\n" % HOST)
    time.sleep(0.2)
    raw.send(b"0123456789")
    time.sleep(0.2)
    assert len(mirrored(v1b)) == 1  # not before the body is whole
    raw.send(b"abcdefghij")
    assert raw.read_response().status == 200
    raw.close()
    c = wait_for(lambda: mirrored(v1b)[1:], what="the late body's copy")[0]
    assert c["path"] == "/api/late" and c["body"] == b"0123456789abcdefghij"
    # a client that leaves in the middle of its body: no copy, counted as dropped
    raw = gw2.raw()
    raw.send("POST /api/cut HTTP/1.1\r\nHost: %s\r\nContent-Length: 20\r\n\r\n012" % HOST)
    time.sleep(0.1)
    raw.close()
    wait_for(lambda: outcome(gw2, "dropped") == 1, what="the cut request's copy dropped")
    # over max_body: not copied, counted as dropped; the client is served all the same
    r = gw2.request("POST", "/api/retros", host=HOST, body=b"x" * 2000)
    assert r.status == 200 and r.json()["body_len"] == 2000
    wait_for(lambda: outcome(gw2, "dropped") == 2, what="outcome dropped")
    assert len(mirrored(v1b)) == 2


def test_websocket_upgrade_is_not_copied(gateway, upstream):
    v1, v2 = upstream("4.1.0"), upstream("4.2.0")
    gw = start(gateway, v1, v2, {"to": "4.1.0"})
    c = gw.raw()
    c.send("GET /cable HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
           "\r\n" % HOST)
    version, status, reason, headers = c.read_head()
    assert status == 101
    c.send(b"ping-through-tunnel")
    assert c.read_exact(len(b"ping-through-tunnel")) == b"ping-through-tunnel"
    c.close()
    gw.get("/api/after", host=HOST)
    wait_for(lambda: mirrored(v1), what="the GET's copy")
    time.sleep(0.2)
    assert [r["path"] for r in v1.requests] == ["/api/after"]


def test_percent_is_respected_roughly(gateway, upstream):
    v1, v2 = upstream("4.1.0"), upstream("4.2.0")
    gw = start(gateway, v1, v2, {"to": "4.1.0", "percent": 30})
    n = 300
    for i in range(n):
        assert gw.get("/api/p/%d" % i, host=HOST).status == 200
    time.sleep(0.3)
    got = len(mirrored(v1))
    assert 40 <= got <= 160, got  # expected 90
    assert outcome(gw, "compared") == got


# ---------------------------------------------------------------- failures cost the client nothing


def timed_gets(gw, host, n):
    out = []
    for i in range(n):
        t0 = time.monotonic()
        r = gw.get("/api/t/%d" % i, host=host)
        out.append(time.monotonic() - t0)
        assert r.status == 200 and r.header("X-Upstream") == "4.2.0"
    return out


def p99(xs):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * 0.99))]


def test_dead_and_hanging_mirror_cost_the_client_nothing(gateway, json_upstream):
    v2 = json_upstream("4.2.0", doc("4.2.0"))
    hanging = json_upstream("4.1.0", hang=True)
    http_port, admin_port = free_port(), free_port()
    cfg = make_config(http_port, admin_port,
                      upstreams={"v1": [hanging.addr], "v2": [v2.addr],
                                 "dead": ["127.0.0.1:%d" % dead_port()]},
                      sites=[site("hang.test", {"to": "4.1.0", "timeout": "300ms",
                                                "max_inflight": 1000}),
                             {"hosts": ["dead.test"],
                              "version": version_block({"4.1.0": "dead", "4.2.0": "v2"}, "4.2.0"),
                              "mirror": {"to": "4.1.0"}},
                             site("plain.test", None)],
                      timeouts={"upstream_connect": "1s"})
    gw = gateway(cfg)
    base, hang, dead = [], [], []
    for _ in range(4):  # interleaved, so that the machine's noise hits all three alike
        base += timed_gets(gw, "plain.test", 30)
        hang += timed_gets(gw, "hang.test", 30)
        dead += timed_gets(gw, "dead.test", 30)
    ref = p99(base)
    assert p99(hang) < 3 * ref + 0.05, (p99(hang), ref)
    assert p99(dead) < 3 * ref + 0.05, (p99(dead), ref)
    wait_for(lambda: outcome(gw, "timeout", site="hang.test") == 120, timeout=10,
             what="120 copies timed out (have %s)" % outcome(gw, "timeout", site="hang.test"))
    assert len(hanging.started) == 120
    wait_for(lambda: outcome(gw, "failed", site="dead.test") == 120, timeout=10,
             what="120 copies failed (have %s)" % outcome(gw, "failed", site="dead.test"))
    assert outcome(gw, "compared", site="hang.test") == 0


def test_bounds_drop_copies_never_queue_them(gateway, json_upstream):
    v2 = json_upstream("4.2.0", doc("4.2.0"))
    hanging = json_upstream("4.1.0", hang=True)
    gw = start(gateway, hanging, v2, {"to": "4.1.0", "timeout": "3s", "max_inflight": 2})
    for i in range(6):
        r = gw.get("/api/b/%d" % i, host=HOST)
        assert r.status == 200 and r.header("X-Upstream") == "4.2.0"
    assert outcome(gw, "dropped") == 4
    wait_for(lambda: len(hanging.started) == 2, what="two copies at the hanging upstream")
    time.sleep(0.3)
    assert len(hanging.started) == 2
    wait_for(lambda: outcome(gw, "timeout") == 2, timeout=8, what="two timeouts")
    # room again once they ended
    gw.get("/api/b/after", host=HOST)
    wait_for(lambda: len(hanging.started) == 3, what="a copy after the bound freed up")


# ---------------------------------------------------------------- comparison


def retro_doc(done3):
    return {"retro": {"name": "Sprint 12",
                      "items": [{"id": i, "done": (done3 if i == 3 else False)} for i in range(5)]}}


def test_json_difference_found_at_the_right_path(gateway, json_upstream):
    v1 = json_upstream("4.1.0", lambda rec: (200, [("Content-Type", "application/json")],
                                             retro_doc(True)))
    v2 = json_upstream("4.2.0", lambda rec: (200, [("Content-Type", "application/json; charset=utf-8")],
                                             retro_doc(False)))
    gw = start(gateway, v1, v2, {"to": "4.1.0", "compare": True, "noise_percent": 0})
    for i in (17, 18, 19):
        r = gw.get("/api/retros/%d" % i, host=HOST)
        assert r.status == 200 and r.json() == retro_doc(False)
    wait_for(lambda: differences(gw, "body") == 3, what="3 body differences")
    # content-type differs by its parameter only: a header difference, counted
    assert differences(gw, "header") == 3
    assert differences(gw, "status") == 0
    d = diffs(gw)
    [g] = d["groups"]
    assert (g["site"], g["method"], g["pattern"], g["from"], g["to"]) == (
        HOST, "GET", "/api/retros/:id", "4.2.0", "4.1.0")
    assert g["count"] == 3 and g["kinds"] == {"status": 0, "header": 3, "body": 3}
    assert g["example"]["paths"] == ["$.retro.items[3].done"]
    # the first of a burst stays the example (renewed at most once a second)
    assert g["example"]["request"] == "GET /api/retros/17 HTTP/1.1"
    assert g["example"]["status"] == {"from": 200, "to": 200}
    assert g["example"]["headers"] == [{"name": "content-type",
                                        "from": "application/json; charset=utf-8",
                                        "to": "application/json"}]


def test_identical_answers_and_ignored_paths_are_no_difference(gateway, json_upstream):
    def mk(v):
        return lambda rec: (200, [("Content-Type", "application/json")],
                            {"a": 1, "meta": {"served_by": v, "at": [v]}, "rows": [{"v": v}]})
    v1, v2 = json_upstream("4.1.0", mk("one")), json_upstream("4.2.0", mk("two"))
    gw = start(gateway, v1, v2, {"to": "4.1.0", "compare": True, "noise_percent": 0,
                                 "ignore_paths": ["$.meta", "$.rows[*].v"]})
    gw.get("/api/x", host=HOST)
    wait_for(lambda: outcome(gw, "compared") == 1, what="compared")
    time.sleep(0.1)
    assert differences(gw, "body") == 0 and diffs(gw)["groups"] == []


def test_status_difference_counted(gateway, json_upstream):
    v1 = json_upstream("4.1.0", lambda rec: (500, [("Content-Type", "application/json")],
                                             {"error": "boom"}))
    v2 = json_upstream("4.2.0", lambda rec: (200, [("Content-Type", "application/json")],
                                             {"ok": True}))
    gw = start(gateway, v1, v2, {"to": "4.1.0", "compare": True, "noise_percent": 0})
    r = gw.get("/api/health", host=HOST)
    assert r.status == 200
    wait_for(lambda: differences(gw, "status") == 1, what="a status difference")
    [g] = diffs(gw)["groups"]
    assert g["example"]["status"] == {"from": 200, "to": 500}
    assert sorted(g["example"]["paths"]) == ["$.error", "$.ok"]


def test_non_json_bodies_compared_by_length_and_hash(gateway, json_upstream):
    v1 = json_upstream("4.1.0", lambda rec: (200, [("Content-Type", "text/html")], b"<p>old</p>"))
    v2 = json_upstream("4.2.0", lambda rec: (200, [("Content-Type", "text/html"),
                                                   ("Transfer-Encoding", "chunked")],
                                             b"6\r\n<p>new\r\n4\r\n</p>\r\n0\r\n\r\n"))
    gw = start(gateway, v1, v2, {"to": "4.1.0", "compare": True, "noise_percent": 0})
    r = gw.get("/api/page", host=HOST)
    assert r.body == b"<p>new</p>"
    wait_for(lambda: differences(gw, "body") == 1, what="a body difference")
    [g] = diffs(gw)["groups"]
    body = g["example"]["body"]
    assert body["from_length"] == 10 and body["to_length"] == 10
    assert body["from_hash"] != body["to_hash"]


# ---------------------------------------------------------------- noise


def test_noise_is_learned_and_then_ignored(gateway, json_upstream):
    def mk(real):
        return lambda rec: (200, [("Content-Type", "application/json")],
                            {"now": random.random(), "rows": [{"at": random.random(), "n": 1}],
                             "real": real})
    v1, v2 = json_upstream("4.1.0", mk("old")), json_upstream("4.2.0", mk("new"))
    learn = {"to": "4.1.0", "compare": True, "noise_percent": 100}
    blind = {"to": "4.1.0", "compare": True, "noise_percent": 0}
    gw = start(gateway, v1, v2, None, sites=[site(HOST, learn), site("blind.test", blind)])
    for i in range(5):
        assert gw.get("/api/retros/%d" % i, host=HOST).status == 200
        assert gw.get("/api/retros/%d" % i, host="blind.test").status == 200
    wait_for(lambda: differences(gw, "body") == 5, what="5 differences (learning site)")
    wait_for(lambda: differences(gw, "body", site="blind.test") == 5, what="5 (blind site)")
    # the copies to the client's own version went out too
    assert outcome(gw, "compared", to="4.2.0") == 5
    groups = {g["site"]: g for g in diffs(gw)["groups"]}
    assert groups[HOST]["example"]["paths"] == ["$.real"]
    assert sorted(groups["blind.test"]["example"]["paths"]) == ["$.now", "$.real",
                                                                "$.rows[0].at"]
    [noise] = [n for n in diffs(gw)["noise"] if n["site"] == HOST]
    assert noise["pattern"] == "/api/retros/:id"
    assert sorted(noise["paths"]) == ["$.now", "$.rows[*].at"]


# ---------------------------------------------------------------- /diffs


def test_diffs_redacts_and_stays_on_the_admin_listener(gateway, json_upstream):
    def mk(v):
        return lambda rec: (200, [("Content-Type", "application/json"),
                                  ("Set-Cookie", "session=SECRET-%s; Path=/" % v)],
                            {"v": v})
    v1, v2 = json_upstream("4.1.0", mk("ONE")), json_upstream("4.2.0", mk("TWO"))
    gw = start(gateway, v1, v2, {"to": "4.1.0", "compare": True, "noise_percent": 0,
                                 "headers": ["content-type", "set-cookie"]})
    r = gw.get("/api/me", host=HOST, headers=[("Cookie", "session=COOKIE-VALUE"),
                                              ("Authorization", "Bearer AUTH-VALUE")])
    assert r.status == 200
    wait_for(lambda: differences(gw, "header") == 1, what="a header difference")
    text = gw.admin("/diffs").body.decode()
    for secret in ("SECRET-ONE", "SECRET-TWO", "COOKIE-VALUE", "AUTH-VALUE"):
        assert secret not in text
    [g] = json.loads(text)["groups"]
    assert g["example"]["headers"] == [{"name": "set-cookie", "from": "[redacted]",
                                        "to": "[redacted]"}]
    html = gw.admin("/diffs.html")
    assert html.status == 200 and html.header("Content-Type").startswith("text/html")
    page = html.body.decode()
    assert "/api/me" in page and "$.v" in page
    for secret in ("SECRET-ONE", "SECRET-TWO", "COOKIE-VALUE", "AUTH-VALUE"):
        assert secret not in page
    # the public listener knows no /diffs: it is the site's path like any other
    r = gw.get("/diffs", host=HOST)
    assert r.header("X-Upstream") == "4.2.0"


def test_diffs_page_in_a_browser(gateway, json_upstream, tmp_path):
    """The page a QA person reads, as headless Chromium renders it (Debian's chromium, which
    scripts/install-deps.sh installs)."""
    import shutil
    import subprocess
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    assert browser, "chromium is not installed: run scripts/install-deps.sh"
    v1 = json_upstream("4.1.0", lambda rec: (200, [("Content-Type", "application/json")],
                                             retro_doc(True)))
    v2 = json_upstream("4.2.0", lambda rec: (200, [("Content-Type", "application/json")],
                                             retro_doc(False)))
    gw = start(gateway, v1, v2, {"to": "4.1.0", "compare": True, "noise_percent": 0})
    gw.get("/api/retros/5", host=HOST)
    wait_for(lambda: differences(gw, "body") == 1, what="a body difference")
    out = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                          "--no-first-run", "--disable-background-networking",
                          "--disable-component-update", "--disable-sync",
                          "--user-data-dir=%s" % (tmp_path / "chromium"), "--dump-dom",
                          "http://127.0.0.1:%d/diffs.html" % gw.admin_port],
                         capture_output=True, timeout=120)
    dom = out.stdout.decode()
    assert '<table id="diffs">' in dom, out.stderr.decode()[-2000:]
    row = dom.split('<table id="diffs">')[1].split("</table>")[0]
    assert "GET /api/retros/:id" in row and "4.2.0 → 4.1.0" in row
    assert "GET /api/retros/5 HTTP/1.1" in row and "$.retro.items[3].done" in row
