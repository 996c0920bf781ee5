"""Weighted assignment of new visitors (version.weights): the split, the pin that keeps a browser
on its version across requests and WebSockets, reloads that change the weights, weight 0,
removed versions, and the old behaviour without weights."""

import http.client
import math
import subprocess
import threading

from helpers import (build_request, free_port, header, header_values, make_config, run_async,
                     version_block, wait_for)

import websockets

HOST = "retro.example.org"
PIN = "postfacto_version=%s; Path=/; HttpOnly; SameSite=Lax"
CLEAR = "postfacto_version=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0"
ALL_ROUTES = {"4.1.0": "v1", "4.2.0": "v2", "4.3.0": "v3"}


def config(ups, ports, weights, routes=None, default="4.2.0", workers=1):
    """A versioned site over the upstreams in ups ({"4.1.0": Upstream, ...}); weights None
    leaves the key out."""
    routes = dict(routes or ALL_ROUTES)
    version = version_block(routes, default)
    if weights is not None:
        version["weights"] = dict(weights)
    names = {"4.1.0": "v1", "4.2.0": "v2", "4.3.0": "v3"}
    return make_config(ports[0], ports[1], {names[v]: [u.addr] for v, u in ups.items()},
                       [{"hosts": [HOST, "127.0.0.1"], "version": version}], workers=workers)


def start(gateway, upstream, ports, weights, **kw):
    ups = {v: upstream(v) for v in ("4.1.0", "4.2.0", "4.3.0")}
    return gateway(config(ups, ports, weights, **kw)), ups


def pin_of(r):
    """The version the response pins, None when it sets no pin cookie."""
    pins = [c for c in r.header_values("Set-Cookie") if c.startswith("postfacto_version=")]
    assert len(pins) <= 1, r
    if not pins:
        return None
    assert pins[0] != CLEAR, r
    value = pins[0].split(";", 1)[0].split("=", 1)[1]
    assert pins[0] == PIN % value, r
    return value


def visit(gw, path="/", cookie=None):
    """One request as a browser with (or without) the pin cookie: (served version, pinned)."""
    headers = [("Cookie", "postfacto_version=%s" % cookie)] if cookie else []
    r = gw.get(path, host=HOST, headers=headers)
    assert r.status == 200, r
    served = r.header("X-Upstream")
    assert r.header("X-Postfacto-Version") == served, r
    return served, pin_of(r)


def reload(gw, cfg, applied):
    """Reloads and waits until applied() says the workers serve the new file (they take it up
    between two requests)."""
    gw.reload(cfg)
    wait_for(applied, 5, what="the reloaded configuration to serve")


def probe(gw, headers=()):
    """A request kept out of the checks on the access log (path /probe): the served version."""
    r = gw.get("/probe", host=HOST, headers=list(headers))
    assert r.status == 200, r
    return r.header("X-Upstream")


def logged_sources(gw, n):
    return [e["version_source"] for e in wait_for(
        lambda: (lambda log: len(log) >= n and log)(
            [e for e in gw.access_log() if e["path"] != "/probe"]), 5,
        what="%d access log lines" % n)]


def new_visitor(gw):
    """A first visit: assigned by weight and pinned to what served it."""
    served, pinned = visit(gw)
    assert pinned == served, "a new visitor served by %s was pinned to %s" % (served, pinned)
    return served


def test_new_visitors_split_by_weight(gateway, upstream, ports):
    gw, ups = start(gateway, upstream, ports, {"4.1.0": 90, "4.2.0": 10}, workers=2)
    n, threads = 3000, 4
    counts = {}
    lock = threading.Lock()
    errors = []

    def run(k):
        # keep-alive connections, but every request is a fresh visitor: it carries no cookie
        conn = http.client.HTTPConnection("127.0.0.1", gw.http_port, timeout=30)
        try:
            for _ in range(k, n, threads):
                conn.putrequest("GET", "/", skip_host=True, skip_accept_encoding=True)
                conn.putheader("Host", HOST)
                conn.endheaders()
                r = conn.getresponse()
                r.read()
                served = r.getheader("X-Upstream")
                pins = r.headers.get_all("Set-Cookie") or []
                if r.status != 200 or pins != [PIN % served]:
                    raise AssertionError("status %d, %s pinned by %r" % (r.status, served, pins))
                with lock:
                    counts[served] = counts.get(served, 0) + 1
        except Exception as e:  # noqa: BLE001  (reported by the main thread)
            errors.append(e)
        finally:
            conn.close()

    ts = [threading.Thread(target=run, args=(k,)) for k in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    assert not errors, errors[:3]
    assert sum(counts.values()) == n, counts
    # A version missing from weights has weight 0: it gets no new visitor.
    assert counts.get("4.3.0", 0) == 0, counts
    # 5-sigma binomial bound: for a correct implementation each visitor goes to 4.1.0 with
    # p = 0.9 independently, so the count is Binomial(3000, 0.9): mean 2700, sd 16.4. It
    # leaves [2700 - 82.2, 2700 + 82.2] with probability ~5.7e-7 (normal tail beyond 5 sd;
    # the exact binomial tail, summed term by term, is 7.1e-7), below 1e-6.
    p = 0.9
    mean, sd = n * p, math.sqrt(n * p * (1 - p))
    got = counts.get("4.1.0", 0)
    print("weighted split 90/10 over %d new visitors: %s" % (n, counts))
    assert abs(got - mean) <= 5 * sd, "4.1.0 got %d of %d, expected %.0f +- %.1f" % (
        got, n, mean, 5 * sd)

    # the access log says how each version was chosen, and the metrics count by version
    log = gw.wait_access_log(n, timeout=10)
    assert {e["version_source"] for e in log} == {"weight"}, log[:3]
    assert sum(e["version"] == "4.1.0" for e in log) == got
    wait_for(lambda: gw.metric("switchyard_requests_total", version="4.1.0") == got, 5,
             what="switchyard_requests_total{version=4.1.0} == %d" % got)
    assert gw.metric("switchyard_requests_total", version="4.2.0") == n - got


def test_assigned_version_sticks_across_requests_and_upgrade(gateway, upstream, ports):
    gw, ups = start(gateway, upstream, ports, {"4.1.0": 1, "4.2.0": 1, "4.3.0": 1}, workers=2)
    seen = set()
    for _ in range(15):
        version = new_visitor(gw)
        seen.add(version)
        for path in ("/api/retros", "/retros/1", "/"):
            served, pinned = visit(gw, path, cookie=version)
            assert (served, pinned) == (version, None), (version, served, pinned)
        # the ActionCable socket: a browser sends only its cookies on the handshake
        c = gw.raw()
        try:
            c.send(build_request("GET", "/cable", HOST, [
                ("Connection", "Upgrade"), ("Upgrade", "websocket"),
                ("Cookie", "session=1; postfacto_version=%s" % version)]))
            r = c.read_response()
            assert r.status == 101, r
            assert header(r.headers, "X-Upstream") == version, r
            assert header_values(r.headers, "Set-Cookie") == [], r
            c.send(b"ping " + version.encode())
            assert c.read_exact(5 + len(version)) == b"ping " + version.encode()
        finally:
            c.close()
    # three equal weights: all 15 visitors on one version happens with p = 3^-14 < 1e-6
    assert len(seen) > 1, seen


def test_websocket_first_visit_is_assigned_then_sticks(gateway, ws_upstream, ports):
    ups = {v: ws_upstream(v) for v in ("4.1.0", "4.2.0")}
    gw = gateway(config(ups, ports, {"4.1.0": 1, "4.2.0": 1},
                        routes={"4.1.0": "v1", "4.2.0": "v2"}))
    url = "ws://127.0.0.1:%d/cable" % gw.http_port

    async def session(cookie=None):
        kw = {"extra_headers": {"Cookie": "postfacto_version=%s" % cookie}} if cookie else {}
        async with websockets.connect(url, open_timeout=10, close_timeout=5, **kw) as ws:
            await ws.send("hi")
            assert await ws.recv() == "hi"
            return (ws.response_headers.get("X-Postfacto-Version"),
                    ws.response_headers.get_all("Set-Cookie"))

    assigned = []
    for _ in range(22):
        before = {v: len(u.handshakes) for v, u in ups.items()}
        version, cookies = run_async(session())
        # the handshake itself was assigned and its 101 carries the pin
        assert cookies == [PIN % version], cookies
        again, cookies = run_async(session(cookie=version))
        assert (again, cookies) == (version, []), (version, again, cookies)
        assert len(ups[version].handshakes) == before[version] + 2
        assigned.append(version)
    assert sum(len(u.handshakes) for u in ups.values()) == 44
    # 50/50: all 22 on one version happens with p = 2^-21 < 1e-6
    assert len(set(assigned)) == 2, assigned


def test_reload_changes_weights_and_keeps_pins(gateway, upstream, ports):
    gw, ups = start(gateway, upstream, ports, {"4.1.0": 1, "4.2.0": 0})
    early = [new_visitor(gw) for _ in range(20)]
    assert set(early) == {"4.1.0"}, early

    # 4.2.0 had weight 0: a new visitor there means the new weights are in force
    reload(gw, config(ups, ports, {"4.1.0": 0, "4.2.0": 1}), lambda: probe(gw) == "4.2.0")
    # the visitors pinned before the reload stay where they are ...
    for _ in range(5):
        assert visit(gw, "/api/retros", cookie="4.1.0") == ("4.1.0", None)
    # ... and the new ones follow the new weights
    late = [new_visitor(gw) for _ in range(20)]
    assert set(late) == {"4.2.0"}, late

    # a file with no positive weight is refused: the running weights keep serving
    bad = config(ups, ports, {"4.1.0": 0, "4.2.0": 0})
    gw.reload(bad)
    line = gw.text.splitlines().index("      weights:") + 1
    want = "%s:%d: sites[0].version.weights: at least one weight must be above 0" % (gw.path, line)
    wait_for(lambda: want in gw.stderr_text(), 5, what="the refused reload's FILE:LINE error")
    wait_for(lambda: gw.metric("switchyard_config_reloads_total", result="failed") == 1, 5,
             what="the refused reload to be counted")
    assert {new_visitor(gw) for _ in range(10)} == {"4.2.0"}


def test_weight_zero_gets_no_new_visitors_but_keeps_its_pins(gateway, upstream, ports):
    gw, ups = start(gateway, upstream, ports, {"4.1.0": 0, "4.2.0": 3, "4.3.0": 1})
    got = [new_visitor(gw) for _ in range(300)]
    assert "4.1.0" not in got
    # 4.3.0 has a quarter of the weight: all 300 on 4.2.0 would happen with p = 0.75^300 < 1e-37
    assert set(got) == {"4.2.0", "4.3.0"}, set(got)
    assert visit(gw, cookie="4.1.0") == ("4.1.0", None)
    assert ups["4.1.0"].paths() == ["/"]


def test_removed_version_sends_its_visitors_to_assignment(gateway, upstream, ports):
    gw, ups = start(gateway, upstream, ports, {"4.1.0": 1},
                    routes={"4.1.0": "v1", "4.2.0": "v2"})
    old = new_visitor(gw)
    assert old == "4.1.0"
    assert visit(gw, cookie=old) == ("4.1.0", None)

    # 4.1.0 is retired; only 4.3.0 takes new visitors (4.2.0 stays the default)
    reload(gw, config(ups, ports, {"4.3.0": 1}, routes={"4.2.0": "v2", "4.3.0": "v3"}),
           lambda: probe(gw, [("X-Postfacto-Version", "4.3.0")]) == "4.3.0")
    served, pinned = visit(gw, cookie=old)
    assert (served, pinned) == ("4.3.0", "4.3.0")
    # and from then on the new pin holds
    for _ in range(3):
        assert visit(gw, cookie=pinned) == ("4.3.0", None)
    sources = logged_sources(gw, 6)
    assert sources == ["weight", "cookie", "weight", "cookie", "cookie", "cookie"], sources


def test_empty_query_value_assigns_afresh_and_pins(gateway, upstream, ports):
    gw, ups = start(gateway, upstream, ports, {"4.3.0": 1})
    r = gw.get("/?postfacto_version=", host=HOST, headers=[("Cookie", "postfacto_version=4.1.0")])
    assert r.status == 200, r
    # "clear the pin" with weights: draw now and pin the result, never the Max-Age=0 cookie
    assert r.header("X-Upstream") == "4.3.0"
    assert r.header_values("Set-Cookie") == [PIN % "4.3.0"]
    assert gw.wait_access_log(1)[0]["version_source"] == "weight"


def test_without_weights_the_default_serves_as_before(gateway, upstream, ports):
    gw, ups = start(gateway, upstream, ports, {"4.1.0": 1})
    assert new_visitor(gw) == "4.1.0"
    # weights removed by a reload: back to the default, no pin for new visitors
    reload(gw, config(ups, ports, None), lambda: probe(gw) == "4.2.0")
    for cookie in (None, "7.7.7"):
        assert visit(gw, cookie=cookie) == ("4.2.0", None)
    # the visitors pinned while weights were on stay pinned
    assert visit(gw, cookie="4.1.0") == ("4.1.0", None)
    r = gw.get("/?postfacto_version=", host=HOST, headers=[("Cookie", "postfacto_version=4.1.0")])
    assert r.header("X-Upstream") == "4.2.0"
    assert r.header_values("Set-Cookie") == [CLEAR]
    sources = logged_sources(gw, 5)
    assert sources == ["weight", "default", "default", "cookie", "default"], sources


def test_check_refuses_weights_without_cookie(switchyard_bin, tmp_path):
    path = tmp_path / "w.yaml"
    path.write_text(
        "listen: {http: \"127.0.0.1:%d\"}\n"
        "upstreams: {v1: {servers: [\"127.0.0.1:3001\"]}}\n"
        "sites:\n"
        "  - hosts: [retro.example.org]\n"
        "    version:\n"
        "      header: X-Postfacto-Version\n"
        "      routes: {\"4.1.0\": v1}\n"
        "      default: \"4.1.0\"\n"
        "      weights: {\"4.1.0\": 100}\n" % free_port())
    p = subprocess.run([switchyard_bin, "-t", "-c", str(path)], capture_output=True, text=True,
                       timeout=10)
    assert p.returncode == 1, p
    assert "%s:9: sites[0].version.weights: requires \"cookie\"" % path in p.stdout + p.stderr, p
