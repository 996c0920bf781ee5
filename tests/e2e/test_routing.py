"""Sites by Host, version selection (header -> query -> cookie -> default), pin cookie."""

import pytest

from helpers import free_port, make_config

PIN = "postfacto_version=%s; Path=/; HttpOnly; SameSite=Lax"
CLEAR = "postfacto_version=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0"
VERSIONS = ["4.1.0", "4.2.0", "4.3.0"]


def served(r):
    assert r.status == 200, r
    return r.header("X-Upstream")


def test_plain_site_by_host(retro):
    r = retro.get("/hello", host="plain.test")
    assert served(r) == "plain"
    assert r.json()["target"] == "/hello"


def test_host_is_case_insensitive_and_port_ignored(retro):
    assert served(retro.get("/", host="PLAIN.Test")) == "plain"
    assert served(retro.get("/", host="plain.test:8080")) == "plain"
    assert served(retro.get("/", host="Retro.Example.ORG:443")) == "4.2.0"


def test_exact_host_beats_wildcard(retro):
    assert served(retro.get("/", host="exact.example.org")) == "plain"
    assert served(retro.get("/", host="other.example.org")) == "4.2.0"
    assert served(retro.get("/", host="deep.sub.example.org")) in ("4.2.0",)


def test_wildcard_does_not_match_apex_of_other_domain(retro):
    r = retro.get("/", host="example.org.evil.test")
    assert r.status == 404, r


def test_unknown_host_is_404_and_not_forwarded(retro):
    r = retro.get("/anything", host="nope.invalid")
    assert r.status == 404, r
    assert 0 < len(r.body) < 1024, r
    r = retro.get("/anything", host="example.org")   # "*.example.org" is not the apex
    assert r.status == 404, r
    for u in retro.ups.values():
        assert u.started == [], "%s saw a request for an unknown host" % u.name


def test_catch_all_site(gateway, upstream):
    u, p = upstream("any"), upstream("p")
    h, a = free_port(), free_port()
    gw = gateway(make_config(h, a, {"any": [u.addr], "p": [p.addr]},
                             [{"hosts": ["plain.test"], "upstream": "p"},
                              {"hosts": ["*"], "upstream": "any"}]))
    assert served(gw.get("/", host="whatever.example")) == "any"
    assert served(gw.get("/", host="10.1.2.3")) == "any"
    assert served(gw.get("/", host="plain.test")) == "p"


@pytest.mark.parametrize("version", VERSIONS)
def test_header_selects_version_and_pins(retro, version):
    r = retro.get("/api/retros", host="retro.example.org",
                  headers=[("X-Postfacto-Version", version)])
    assert served(r) == version
    assert r.header("X-Postfacto-Version") == version
    assert r.header_values("Set-Cookie") == [PIN % version]
    assert retro.ups[version].paths() == ["/api/retros"]


def test_header_name_is_case_insensitive(retro):
    r = retro.get("/", host="retro.example.org", headers=[("x-postfacto-VERSION", "4.1.0")])
    assert served(r) == "4.1.0"
    assert r.header_values("Set-Cookie") == [PIN % "4.1.0"]


def test_default_version_sets_no_cookie(retro):
    r = retro.get("/", host="retro.example.org")
    assert served(r) == "4.2.0"
    assert r.header("X-Postfacto-Version") == "4.2.0"
    assert r.header_values("Set-Cookie") == []


def test_unknown_header_value_counts_as_absent(retro):
    r = retro.get("/", host="retro.example.org", headers=[("X-Postfacto-Version", "9.9.9")])
    assert served(r) == "4.2.0"
    assert r.header("X-Postfacto-Version") == "4.2.0"
    assert r.header_values("Set-Cookie") == []
    # ... so the next source decides
    r = retro.get("/", host="retro.example.org", headers=[
        ("X-Postfacto-Version", "9.9.9"), ("Cookie", "postfacto_version=4.1.0")])
    assert served(r) == "4.1.0"
    assert r.header_values("Set-Cookie") == []
    r = retro.get("/?postfacto_version=4.3.0", host="retro.example.org",
                  headers=[("X-Postfacto-Version", "")])
    assert served(r) == "4.3.0"


@pytest.mark.parametrize("version", VERSIONS)
def test_query_selects_version_and_pins(retro, version):
    r = retro.get("/?postfacto_version=%s" % version, host="retro.example.org")
    assert served(r) == version
    assert r.header("X-Postfacto-Version") == version
    assert r.header_values("Set-Cookie") == [PIN % version]


def test_query_among_other_parameters(retro):
    r = retro.get("/x?a=1&postfacto_version=4.1.0&b=2", host="retro.example.org")
    assert served(r) == "4.1.0"
    assert r.header_values("Set-Cookie") == [PIN % "4.1.0"]
    # a parameter whose name only ends with the configured name does not count
    r = retro.get("/x?my_postfacto_version=4.1.0", host="retro.example.org")
    assert served(r) == "4.2.0"


def test_header_beats_query_beats_cookie(retro):
    r = retro.get("/?postfacto_version=4.3.0", host="retro.example.org", headers=[
        ("X-Postfacto-Version", "4.1.0"), ("Cookie", "postfacto_version=4.2.0")])
    assert served(r) == "4.1.0"
    assert r.header_values("Set-Cookie") == [PIN % "4.1.0"]
    r = retro.get("/?postfacto_version=4.3.0", host="retro.example.org",
                  headers=[("Cookie", "postfacto_version=4.1.0")])
    assert served(r) == "4.3.0"
    assert r.header_values("Set-Cookie") == [PIN % "4.3.0"]


def test_unknown_query_value_counts_as_absent(retro):
    r = retro.get("/?postfacto_version=0.0.1", host="retro.example.org",
                  headers=[("Cookie", "postfacto_version=4.1.0")])
    assert served(r) == "4.1.0"
    assert r.header_values("Set-Cookie") == []


@pytest.mark.parametrize("cookie", [
    "postfacto_version=4.1.0",
    "a=b; postfacto_version=4.1.0; c=d",
    "xpostfacto_version=4.3.0; postfacto_version=4.1.0",
])
def test_cookie_selects_version_without_setting_cookie(retro, cookie):
    r = retro.get("/", host="retro.example.org", headers=[("Cookie", cookie)])
    assert served(r) == "4.1.0"
    assert r.header("X-Postfacto-Version") == "4.1.0"
    assert r.header_values("Set-Cookie") == []


def test_unknown_cookie_value_falls_back_to_default(retro):
    r = retro.get("/", host="retro.example.org", headers=[("Cookie", "postfacto_version=7.7.7")])
    assert served(r) == "4.2.0"
    assert r.header_values("Set-Cookie") == []


def test_empty_query_value_clears_pin_and_serves_default(retro):
    r = retro.get("/?postfacto_version=", host="retro.example.org",
                  headers=[("Cookie", "postfacto_version=4.1.0")])
    assert served(r) == "4.2.0"
    assert r.header("X-Postfacto-Version") == "4.2.0"
    assert r.header_values("Set-Cookie") == [CLEAR]


def test_version_header_on_non_200_responses(retro):
    r = retro.get("/status?code=404", host="retro.example.org",
                  headers=[("X-Postfacto-Version", "4.3.0")])
    assert r.status == 404, r
    assert r.header("X-Upstream") == "4.3.0"
    assert r.header("X-Postfacto-Version") == "4.3.0"
    assert r.header_values("Set-Cookie") == [PIN % "4.3.0"]


def test_upstream_cookies_are_kept_next_to_the_pin(retro):
    r = retro.get("/set-cookie", host="retro.example.org",
                  headers=[("X-Postfacto-Version", "4.1.0")])
    assert served(r) == "4.1.0"
    assert sorted(r.header_values("Set-Cookie")) == sorted(
        ["session=abc; Path=/", "theme=dark; Path=/", PIN % "4.1.0"])


def test_version_site_without_query_or_cookie(gateway, upstream):
    a, b = upstream("a"), upstream("b")
    h, ad = free_port(), free_port()
    gw = gateway(make_config(h, ad, {"a": [a.addr], "b": [b.addr]}, [
        {"hosts": ["*"], "version": {"header": "X-App-Version",
                                     "routes": {"1": "a", "2": "b"}, "default": "2"}}]))
    r = gw.get("/?postfacto_version=1", host="x.test", headers=[("Cookie", "postfacto_version=1")])
    assert served(r) == "b"
    assert r.header("X-App-Version") == "2"
    r = gw.get("/", host="x.test", headers=[("X-App-Version", "1")])
    assert served(r) == "a"
    assert r.header("X-App-Version") == "1"
    # no cookie name configured: nothing to pin
    assert r.header_values("Set-Cookie") == []
