"""Admin listener: /healthz, /readyz, /metrics; the public listener does not serve them."""

import math

from helpers import RawClient, parse_metrics, wait_for


def test_healthz(retro):
    r = retro.admin("/healthz")
    assert r.status == 200, r
    assert r.body.strip() == b"ok"


def test_readyz(retro):
    assert retro.admin("/readyz").status == 200


def test_admin_unknown_path_is_404(retro):
    assert retro.admin("/nope").status == 404


def test_metrics_request_counters(retro):
    for _ in range(2):
        assert retro.get("/", host="retro.example.org",
                         headers=[("X-Postfacto-Version", "4.1.0")]).status == 200
    assert retro.get("/status?code=503", host="retro.example.org").status == 503
    r = retro.admin("/metrics")
    assert r.status == 200
    assert (r.header("Content-Type") or "").startswith("text/plain"), r.headers
    samples = parse_metrics(r.body.decode())

    def val(name, **labels):
        vs = [v for (n, l, v) in samples if n == name and l == labels]
        assert len(vs) == 1, "%s%r not found exactly once in:\n%s" % (name, labels, r.body.decode())
        return vs[0]

    assert val("switchyard_requests_total", site="retro.example.org", version="4.1.0",
               code="2xx", protocol="HTTP/1.1") == 2
    assert val("switchyard_requests_total", site="retro.example.org", version="4.2.0",
               code="5xx", protocol="HTTP/1.1") == 1


def test_metrics_gauges_and_histogram(retro):
    for i in range(5):
        assert retro.get("/h%d" % i, host="plain.test").status == 200
    samples = parse_metrics(retro.admin("/metrics").body.decode())
    names = {n for (n, l, v) in samples}
    assert "switchyard_connections_active" in names, sorted(names)
    buckets = sorted(((float(l["le"]), v) for (n, l, v) in samples
                      if n == "switchyard_request_duration_seconds_bucket"
                      and l["protocol"] == "HTTP/1.1"), key=lambda x: x[0])
    assert buckets, sorted(names)
    counts = [v for _, v in buckets]
    assert counts == sorted(counts), "buckets must be cumulative: %r" % buckets
    assert math.isinf(buckets[-1][0]), "missing le=\"+Inf\" bucket"
    count = sum(v for (n, l, v) in samples if n == "switchyard_request_duration_seconds_count"
                and l["protocol"] == "HTTP/1.1")
    total = sum(v for (n, l, v) in samples if n == "switchyard_request_duration_seconds_sum"
                and l["protocol"] == "HTTP/1.1")
    assert count >= 5 and buckets[-1][1] == count, (count, buckets)
    assert total >= 0


def test_upstream_error_metric(retro):
    retro.ups["4.3.0"].stop()   # now refuses connections
    r = retro.get("/", host="retro.example.org", headers=[("X-Postfacto-Version", "4.3.0")])
    assert r.status == 502, r
    samples = parse_metrics(retro.admin("/metrics").body.decode())
    errs = [(l, v) for (n, l, v) in samples if n == "switchyard_upstream_errors_total"
            and l.get("upstream") == "v3" and v >= 1]
    assert errs, [s for s in samples if s[0] == "switchyard_upstream_errors_total"]
    allowed = {"connect_refused", "connect_timeout", "response_timeout", "reset",
               "bad_response", "no_server"}
    assert all(l.get("reason") in allowed for l, v in errs), errs


def test_public_listener_forwards_metrics_path(retro):
    r = retro.get("/metrics", host="plain.test")
    assert r.status == 200, r
    assert r.header("X-Upstream") == "plain"
    assert retro.ups["plain"].paths() == ["/metrics"]
    for path in ("/metrics", "/healthz", "/readyz"):
        r = retro.get(path, host="unknown.invalid")
        assert r.status == 404, r
        assert b"switchyard_" not in r.body


def test_admin_does_not_proxy(retro):
    r = retro.admin("/api/retros")
    assert r.status == 404, r
    for u in retro.ups.values():
        assert u.started == []


def test_metrics_connections_per_worker(start_retro):
    """Each worker reports its own open connections; they add up to the total."""
    gw = start_retro(workers=2)
    clients = [RawClient(gw.http_port) for _ in range(12)]
    try:
        for c in clients:  # one request each, so every connection is accepted and counted
            c.send("GET / HTTP/1.1\r\nHost: plain.test\r\n\r\n")
            assert c.read_response().status == 200

        def counts():
            samples = parse_metrics(gw.admin("/metrics").body.decode())
            per = {l["worker"]: v for (n, l, v) in samples
                   if n == "switchyard_worker_connections_active"}
            total = [v for (n, l, v) in samples if n == "switchyard_connections_active"]
            return per, total[0]

        per, total = counts()
        assert sorted(per) == ["0", "1"], per
        assert sum(per.values()) == total, (per, total)
        assert total >= 12, (per, total)
    finally:
        for c in clients:
            c.close()
    wait_for(lambda: counts()[1] <= 1, 10, 0.1, "connections to close")
