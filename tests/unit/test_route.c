/*
 * test_route.c: site lookup by Host, version selection, weighted assignment,
 * query and cookie parsing, pin cookie output.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "config/config.h"
#include "core/alloc.h"
#include "route/route.h"

static const char *yaml =
    "listen: {http: \":80\"}\n"
    "upstreams:\n"
    "  v1: {servers: [v1.local:80]}\n"
    "  v2: {servers: [v2.local:80]}\n"
    "  other: {servers: [other.local:80]}\n"
    "  wild: {servers: [wild.local:80]}\n"
    "  deep: {servers: [deep.local:80]}\n"
    "  any: {servers: [any.local:80]}\n"
    "sites:\n"
    "  - hosts: [retro.example.org]\n"
    "    version:\n"
    "      header: X-Postfacto-Version\n"
    "      query: postfacto_version\n"
    "      cookie: postfacto_version\n"
    "      routes: {\"4.1.0\": v1, \"4.2.0\": v2}\n"
    "      default: \"4.2.0\"\n"
    "  - hosts: [Other.Example.org, \"[::1]\"]\n"
    "    upstream: other\n"
    "  - hosts: [\"*.example.org\"]\n"
    "    upstream: wild\n"
    "  - hosts: [\"*.deep.example.org\"]\n"
    "    upstream: deep\n"
    "  - hosts: [\"*\"]\n"
    "    upstream: any\n"
    "  - hosts: [nocookie.example.org]\n"
    "    version: {header: X-V, query: v, routes: {\"1\": v1, \"2\": v2}, default: \"1\"}\n"
    "  - hosts: [weighted.example.org]\n"
    "    version:\n"
    "      header: X-Postfacto-Version\n"
    "      query: postfacto_version\n"
    "      cookie: postfacto_version\n"
    "      routes: {\"4.1.0\": v1, \"4.2.0\": v2, \"4.3.0\": other}\n"
    "      default: \"4.2.0\"\n"
    "      weights: {\"4.1.0\": 90, \"4.2.0\": 10}\n";

static struct sy_config *cfg;

static void setup(void)
{
    char *err = NULL;

    cfg = sy_config_load_string("route.yaml", yaml, strlen(yaml), &err);
    cr_assert_not_null(cfg, "%s", err ? err : "");
}

static void teardown(void)
{
    sy_config_free(cfg);
    cfg = NULL;
}

/* The upstream name of the site found for a Host value, or "(none)". */
static const char *site_for(const char *host)
{
    const struct sy_site_conf *s = sy_route_find_site(cfg, sy_str_cstr(host));
    struct sy_route_result r;

    if (!s)
        return "(none)";
    sy_route_select(s, SY_STR_LIT("/"), NULL, 0, &r);
    return cfg->upstreams[r.upstream].name;
}

static struct sy_h1_header hdr(const char *name, const char *value)
{
    struct sy_h1_header h = {sy_str_cstr(name), sy_str_cstr(value)};
    return h;
}

/* Selects on the versioned site; returns the chosen version string. */
static const char *pick(const char *target, const struct sy_h1_header *h, size_t n,
                        struct sy_route_result *r)
{
    sy_route_select(&cfg->sites[0], sy_str_cstr(target), h, n, r);
    cr_assert_eq(r->site, &cfg->sites[0]);
    cr_assert_not_null(r->route);
    cr_assert_eq(r->upstream, r->route->upstream);
    return r->route->version;
}

TestSuite(route, .init = setup, .fini = teardown);

/* ---- host matching ----------------------------------------------------------------------- */

Test(route, host_exact)
{
    cr_assert_str_eq(site_for("retro.example.org"), "v2");
    cr_assert_str_eq(site_for("other.example.org"), "other");
}

Test(route, host_case_insensitive)
{
    cr_assert_str_eq(site_for("RETRO.Example.ORG"), "v2");
    cr_assert_str_eq(site_for("OTHER.EXAMPLE.ORG"), "other");
}

Test(route, host_with_port)
{
    cr_assert_str_eq(site_for("retro.example.org:443"), "v2");
    cr_assert_str_eq(site_for("retro.example.org:"), "v2");
    cr_assert_str_eq(site_for("x.example.org:8080"), "wild");
}

Test(route, host_trailing_dot)
{
    cr_assert_str_eq(site_for("retro.example.org."), "v2");
    cr_assert_str_eq(site_for("retro.example.org.:80"), "v2");
}

Test(route, host_ipv6_literal)
{
    cr_assert_str_eq(site_for("[::1]:8443"), "other");
    cr_assert_str_eq(site_for("[::1]"), "other");
    cr_assert_str_eq(site_for("[::2]:80"), "any");
}

Test(route, exact_beats_wildcard)
{
    /* retro.example.org also matches *.example.org */
    cr_assert_str_eq(site_for("retro.example.org"), "v2");
}

Test(route, wildcard_one_or_more_labels)
{
    cr_assert_str_eq(site_for("a.example.org"), "wild");
    cr_assert_str_eq(site_for("a.b.c.example.org"), "wild");
    /* the bare domain is not covered by its wildcard */
    cr_assert_str_eq(site_for("example.org"), "any");
}

Test(route, longer_wildcard_wins)
{
    cr_assert_str_eq(site_for("x.deep.example.org"), "deep");
    cr_assert_str_eq(site_for("y.x.deep.example.org"), "deep");
    cr_assert_str_eq(site_for("deep.example.org"), "wild");
}

Test(route, catch_all_last)
{
    cr_assert_str_eq(site_for("unknown.test"), "any");
    cr_assert_str_eq(site_for(""), "any");
    cr_assert_str_eq(site_for("notexample.org"), "any");
}

Test(route, no_catch_all_gives_null)
{
    static const char y[] = "listen: {http: \":80\"}\n"
                            "upstreams: {a: {servers: [a.b:1]}}\n"
                            "sites: [{hosts: [a.org, \"*.b.org\"], upstream: a}]\n";
    char *err = NULL;
    struct sy_config *c = sy_config_load_string("y", y, sizeof(y) - 1, &err);

    cr_assert_not_null(c);
    cr_assert_not_null(sy_route_find_site(c, SY_STR_LIT("a.org")));
    cr_assert_not_null(sy_route_find_site(c, SY_STR_LIT("x.B.org:1")));
    cr_assert_null(sy_route_find_site(c, SY_STR_LIT("b.org")));
    cr_assert_null(sy_route_find_site(c, SY_STR_LIT("c.org")));
    cr_assert_null(sy_route_find_site(c, SY_STR_LIT("")));
    sy_config_free(c);
}

Test(route, overlong_host_goes_to_catch_all)
{
    char big[400];

    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    cr_assert_str_eq(site_for(big), "any");
}

Test(route, thousand_hosts)
{
    size_t cap = 1 << 17, off = 0;
    char *y = sy_malloc(cap), *err = NULL;
    char name[64];

    off += (size_t)snprintf(y + off, cap - off,
                            "listen: {http: \":80\"}\nupstreams:\n");
    for (int i = 0; i < 1000; i++)
        off += (size_t)snprintf(y + off, cap - off, "  u%d: {servers: [h.local:%d]}\n", i,
                                i + 1);
    off += (size_t)snprintf(y + off, cap - off, "sites:\n");
    for (int i = 0; i < 1000; i++)
        off += (size_t)snprintf(y + off, cap - off,
                                "  - {hosts: [s%d.example.org, \"*.w%d.example.org\"], "
                                "upstream: u%d}\n",
                                i, i, i);
    struct sy_config *c = sy_config_load_string("big", y, off, &err);
    cr_assert_not_null(c, "%s", err ? err : "");
    for (int i = 0; i < 1000; i++) {
        snprintf(name, sizeof(name), "S%d.example.org:443", i);
        const struct sy_site_conf *s = sy_route_find_site(c, sy_str_cstr(name));
        cr_assert_eq(s, &c->sites[i], "%s", name);
        snprintf(name, sizeof(name), "a.b.w%d.example.org", i);
        s = sy_route_find_site(c, sy_str_cstr(name));
        cr_assert_eq(s, &c->sites[i], "%s", name);
    }
    cr_assert_null(sy_route_find_site(c, SY_STR_LIT("s1000.example.org")));
    sy_config_free(c);
    sy_free(y);
}

/* ---- version selection ------------------------------------------------------------------- */

Test(route, plain_site)
{
    struct sy_route_result r;

    sy_route_select(&cfg->sites[1], SY_STR_LIT("/?postfacto_version=4.1.0"), NULL, 0, &r);
    cr_assert_eq(r.site, &cfg->sites[1]);
    cr_assert_null(r.route);
    cr_assert_eq(r.source, SY_VSRC_NONE);
    cr_assert_eq(r.pin, SY_PIN_KEEP);
    cr_assert_str_eq(cfg->upstreams[r.upstream].name, "other");
}

Test(route, default_when_nothing)
{
    struct sy_route_result r;

    cr_assert_str_eq(pick("/api/retros", NULL, 0, &r), "4.2.0");
    cr_assert_eq(r.source, SY_VSRC_DEFAULT);
    cr_assert_eq(r.pin, SY_PIN_KEEP);
    cr_assert_str_eq(cfg->upstreams[r.upstream].name, "v2");
}

Test(route, header_selects_and_pins)
{
    struct sy_route_result r;
    struct sy_h1_header h[] = {hdr("Host", "retro.example.org"),
                               hdr("X-Postfacto-Version", "4.1.0")};

    cr_assert_str_eq(pick("/", h, 2, &r), "4.1.0");
    cr_assert_eq(r.source, SY_VSRC_HEADER);
    cr_assert_eq(r.pin, SY_PIN_SET);
    cr_assert_str_eq(cfg->upstreams[r.upstream].name, "v1");
}

Test(route, header_name_case_insensitive)
{
    struct sy_route_result r;
    struct sy_h1_header h[] = {hdr("x-postfacto-version", "4.1.0")};

    cr_assert_str_eq(pick("/", h, 1, &r), "4.1.0");
    cr_assert_eq(r.source, SY_VSRC_HEADER);
}

Test(route, header_value_is_exact)
{
    struct sy_route_result r;
    struct sy_h1_header h[] = {hdr("X-Postfacto-Version", "4.1")};

    cr_assert_str_eq(pick("/", h, 1, &r), "4.2.0");
    cr_assert_eq(r.source, SY_VSRC_DEFAULT);
}

Test(route, header_beats_query_and_cookie)
{
    struct sy_route_result r;
    struct sy_h1_header h[] = {hdr("Cookie", "postfacto_version=4.2.0"),
                               hdr("X-Postfacto-Version", "4.1.0")};

    cr_assert_str_eq(pick("/?postfacto_version=4.2.0", h, 2, &r), "4.1.0");
    cr_assert_eq(r.source, SY_VSRC_HEADER);
    cr_assert_eq(r.pin, SY_PIN_SET);
}

Test(route, unknown_header_falls_to_query)
{
    struct sy_route_result r;
    struct sy_h1_header h[] = {hdr("X-Postfacto-Version", "9.9.9")};

    cr_assert_str_eq(pick("/?postfacto_version=4.1.0", h, 1, &r), "4.1.0");
    cr_assert_eq(r.source, SY_VSRC_QUERY);
    cr_assert_eq(r.pin, SY_PIN_SET);
}

Test(route, unknown_header_falls_to_cookie)
{
    struct sy_route_result r;
    struct sy_h1_header h[] = {hdr("X-Postfacto-Version", ""),
                               hdr("Cookie", "postfacto_version=4.1.0")};

    cr_assert_str_eq(pick("/", h, 2, &r), "4.1.0");
    cr_assert_eq(r.source, SY_VSRC_COOKIE);
    cr_assert_eq(r.pin, SY_PIN_KEEP);
}

Test(route, second_header_occurrence_with_known_value)
{
    struct sy_route_result r;
    struct sy_h1_header h[] = {hdr("X-Postfacto-Version", "bogus"),
                               hdr("X-Postfacto-Version", "4.1.0")};

    cr_assert_str_eq(pick("/", h, 2, &r), "4.1.0");
    cr_assert_eq(r.source, SY_VSRC_HEADER);
}

Test(route, query_beats_cookie)
{
    struct sy_route_result r;
    struct sy_h1_header h[] = {hdr("Cookie", "postfacto_version=4.2.0")};

    cr_assert_str_eq(pick("/retros/1?x=1&postfacto_version=4.1.0", h, 1, &r), "4.1.0");
    cr_assert_eq(r.source, SY_VSRC_QUERY);
    cr_assert_eq(r.pin, SY_PIN_SET);
}

Test(route, unknown_query_falls_to_cookie)
{
    struct sy_route_result r;
    struct sy_h1_header h[] = {hdr("Cookie", "postfacto_version=4.1.0")};

    cr_assert_str_eq(pick("/?postfacto_version=5", h, 1, &r), "4.1.0");
    cr_assert_eq(r.source, SY_VSRC_COOKIE);
    cr_assert_eq(r.pin, SY_PIN_KEEP);
}

Test(route, malformed_query_counts_as_absent)
{
    struct sy_route_result r;
    struct sy_h1_header h[] = {hdr("Cookie", "postfacto_version=4.1.0")};

    cr_assert_str_eq(pick("/?postfacto_version=4.%zz", h, 1, &r), "4.1.0");
    cr_assert_eq(r.source, SY_VSRC_COOKIE);
}

Test(route, empty_query_clears_pin_and_skips_cookie)
{
    struct sy_route_result r;
    struct sy_h1_header h[] = {hdr("Cookie", "postfacto_version=4.1.0")};

    cr_assert_str_eq(pick("/?postfacto_version=", h, 1, &r), "4.2.0");
    cr_assert_eq(r.source, SY_VSRC_DEFAULT);
    cr_assert_eq(r.pin, SY_PIN_CLEAR);
    cr_assert_str_eq(pick("/?a=b&postfacto_version", h, 1, &r), "4.2.0");
    cr_assert_eq(r.pin, SY_PIN_CLEAR);
}

Test(route, empty_query_does_not_override_header)
{
    struct sy_route_result r;
    struct sy_h1_header h[] = {hdr("X-Postfacto-Version", "4.1.0")};

    cr_assert_str_eq(pick("/?postfacto_version=", h, 1, &r), "4.1.0");
    cr_assert_eq(r.source, SY_VSRC_HEADER);
    cr_assert_eq(r.pin, SY_PIN_SET);
}

Test(route, percent_encoded_query_value)
{
    struct sy_route_result r;

    cr_assert_str_eq(pick("/?postfacto%5Fversion=4%2e1%2E0", NULL, 0, &r), "4.1.0");
    cr_assert_eq(r.source, SY_VSRC_QUERY);
}

Test(route, query_after_fragment_ignored)
{
    struct sy_route_result r;

    cr_assert_str_eq(pick("/#?postfacto_version=4.1.0", NULL, 0, &r), "4.2.0");
    cr_assert_eq(r.source, SY_VSRC_DEFAULT);
}

Test(route, unknown_cookie_falls_to_default)
{
    struct sy_route_result r;
    struct sy_h1_header h[] = {hdr("Cookie", "postfacto_version=3.0.0")};

    cr_assert_str_eq(pick("/", h, 1, &r), "4.2.0");
    cr_assert_eq(r.source, SY_VSRC_DEFAULT);
    cr_assert_eq(r.pin, SY_PIN_KEEP);
}

Test(route, cookie_among_several_and_headers)
{
    struct sy_route_result r;
    struct sy_h1_header h[] = {hdr("cookie", "a=1; b=2"), hdr("Accept", "*/*"),
                               hdr("COOKIE", "session=xyz;postfacto_version=4.1.0; z=9")};

    cr_assert_str_eq(pick("/cable", h, 3, &r), "4.1.0");
    cr_assert_eq(r.source, SY_VSRC_COOKIE);
}

Test(route, site_without_cookie_never_pins)
{
    struct sy_route_result r;
    const struct sy_site_conf *s = &cfg->sites[5];
    struct sy_h1_header h[] = {hdr("x-v", "2")};

    sy_route_select(s, SY_STR_LIT("/"), h, 1, &r);
    cr_assert_str_eq(r.route->version, "2");
    cr_assert_eq(r.source, SY_VSRC_HEADER);
    cr_assert_eq(r.pin, SY_PIN_KEEP);
    sy_route_select(s, SY_STR_LIT("/?v="), NULL, 0, &r);
    cr_assert_str_eq(r.route->version, "1");
    cr_assert_eq(r.source, SY_VSRC_DEFAULT);
    cr_assert_eq(r.pin, SY_PIN_KEEP);
    sy_route_select(s, SY_STR_LIT("/?v=2"), NULL, 0, &r);
    cr_assert_eq(r.source, SY_VSRC_QUERY);
    cr_assert_str_eq(cfg->upstreams[r.upstream].name, "v2");
}

/* ---- weighted assignment ----------------------------------------------------------------- */

#define WEIGHTED (&cfg->sites[6])

/*
 * Asserts that `hits` out of `n` Bernoulli trials of probability p lie within
 * 5 standard deviations of n * p: a correct draw fails this with probability
 * below 1e-6 (for the seeded generator the outcome is fixed anyway).
 */
static void assert_binomial(size_t hits, size_t n, double p, const char *what)
{
    double mean = (double)n * p, var = (double)n * p * (1.0 - p), d = (double)hits - mean;

    cr_assert(d * d <= 25.0 * var, "%s: %zu of %zu, expected %.1f, variance %.1f", what, hits, n,
              mean, var);
}

Test(route, weights_loaded_with_absent_route_at_zero)
{
    const struct sy_site_conf *s = WEIGHTED;

    cr_assert_eq(s->version.total_weight, 100);
    cr_assert_eq(s->version.routes[0].weight, 90);
    cr_assert_eq(s->version.routes[1].weight, 10);
    cr_assert_eq(s->version.routes[2].weight, 0);
    cr_assert_eq(cfg->sites[0].version.total_weight, 0);
}

Test(route, weighted_tickets_map_to_runs_in_file_order)
{
    static const char y[] = "listen: {http: \":80\"}\n"
                            "upstreams: {u: {servers: [u.local:1]}}\n"
                            "sites:\n"
                            "  - hosts: [a.org]\n"
                            "    version:\n"
                            "      cookie: v\n"
                            "      routes: {a: u, b: u, c: u, d: u}\n"
                            "      default: a\n"
                            "      weights: {d: 3, b: 5, a: 0}\n";
    char *err = NULL;
    struct sy_config *c = sy_config_load_string("y", y, sizeof(y) - 1, &err);

    cr_assert_not_null(c, "%s", err ? err : "");
    const struct sy_site_conf *s = &c->sites[0];
    cr_assert_eq(s->version.total_weight, 8);
    for (uint64_t t = 0; t < 5; t++)
        cr_assert_eq(sy_route_weighted(s, t), 1, "ticket %llu", (unsigned long long)t);
    for (uint64_t t = 5; t < 8; t++)
        cr_assert_eq(sy_route_weighted(s, t), 3, "ticket %llu", (unsigned long long)t);
    /* out of range: the last route with a weight, never a weight-0 route */
    cr_assert_eq(sy_route_weighted(s, 8), 3);
    cr_assert_eq(sy_route_weighted(s, UINT64_MAX), 3);
    cr_assert_eq(sy_route_weighted(WEIGHTED, 0), 0);
    cr_assert_eq(sy_route_weighted(WEIGHTED, 89), 0);
    cr_assert_eq(sy_route_weighted(WEIGHTED, 90), 1);
    cr_assert_eq(sy_route_weighted(WEIGHTED, 99), 1);
    sy_config_free(c);
}

Test(route, draw_is_reproducible_and_in_range)
{
    uint64_t a[16];

    sy_route_seed(42);
    for (int i = 0; i < 16; i++)
        a[i] = sy_route_draw(1000000);
    sy_route_seed(42);
    for (int i = 0; i < 16; i++) {
        cr_assert_eq(sy_route_draw(1000000), a[i]);
        cr_assert_lt(a[i], 1000000);
    }
    for (int i = 0; i < 1000; i++) {
        cr_assert_eq(sy_route_draw(1), 0);
        /* a bound just above 2^63 rejects almost half of the raw values */
        cr_assert_lt(sy_route_draw((1ULL << 63) + 1), (1ULL << 63) + 1);
    }
}

Test(route, draw_is_uniform)
{
    enum { BOUND = 7, N = 70000 };
    size_t count[BOUND] = {0};

    sy_route_seed(0x5eed);
    for (int i = 0; i < N; i++)
        count[sy_route_draw(BOUND)]++;
    for (int k = 0; k < BOUND; k++)
        assert_binomial(count[k], N, 1.0 / BOUND, "draw(7)");
}

/* Selects on the weighted site, checks the source and the pin; returns the chosen version. */
static const char *pick_weighted(const char *target, const struct sy_h1_header *h, size_t n,
                                 enum sy_vsrc source, enum sy_pin pin)
{
    struct sy_route_result r;

    sy_route_select(WEIGHTED, sy_str_cstr(target), h, n, &r);
    cr_assert_eq(r.source, source, "%s: source %s", target, sy_vsrc_name(r.source));
    cr_assert_eq(r.pin, pin, "%s: pin %d", target, (int)r.pin);
    cr_assert_eq(r.upstream, r.route->upstream);
    return r.route->version;
}

Test(route, new_visitors_split_by_weight_and_pinned)
{
    enum { N = 20000 };
    size_t n41 = 0, n42 = 0;

    sy_route_seed(7);
    for (int i = 0; i < N; i++) {
        const char *v = pick_weighted("/", NULL, 0, SY_VSRC_WEIGHT, SY_PIN_SET);
        if (strcmp(v, "4.1.0") == 0)
            n41++;
        else if (strcmp(v, "4.2.0") == 0)
            n42++;
        else
            cr_assert_fail("weight 0 version %s was assigned", v);
    }
    assert_binomial(n41, N, 0.9, "4.1.0 at 90/100");
    cr_assert_eq(n41 + n42, N);
}

Test(route, known_pin_beats_weights_even_at_weight_zero)
{
    struct sy_h1_header h[] = {hdr("Cookie", "postfacto_version=4.3.0")};

    for (int i = 0; i < 100; i++)
        cr_assert_str_eq(pick_weighted("/cable", h, 1, SY_VSRC_COOKIE, SY_PIN_KEEP), "4.3.0");
}

Test(route, unknown_pin_is_assigned_again)
{
    struct sy_h1_header h[] = {hdr("Cookie", "postfacto_version=3.0.0")};

    sy_route_seed(1);
    for (int i = 0; i < 100; i++)
        cr_assert_str_neq(pick_weighted("/", h, 1, SY_VSRC_WEIGHT, SY_PIN_SET), "4.3.0");
}

Test(route, header_and_query_beat_weights)
{
    struct sy_h1_header h[] = {hdr("X-Postfacto-Version", "4.3.0")};

    cr_assert_str_eq(pick_weighted("/", h, 1, SY_VSRC_HEADER, SY_PIN_SET), "4.3.0");
    cr_assert_str_eq(pick_weighted("/?postfacto_version=4.3.0", NULL, 0, SY_VSRC_QUERY, SY_PIN_SET),
                     "4.3.0");
}

Test(route, empty_query_with_weights_assigns_afresh)
{
    struct sy_h1_header h[] = {hdr("Cookie", "postfacto_version=4.3.0")};
    size_t n41 = 0;

    sy_route_seed(3);
    for (int i = 0; i < 1000; i++) {
        const char *v = pick_weighted("/?postfacto_version=", h, 1, SY_VSRC_WEIGHT, SY_PIN_SET);
        cr_assert_str_neq(v, "4.3.0");
        n41 += strcmp(v, "4.1.0") == 0;
    }
    assert_binomial(n41, 1000, 0.9, "4.1.0 after clearing");
}

/* ---- query parameters -------------------------------------------------------------------- */

static int q(const char *target, const char *name, char *out, size_t cap, size_t *len)
{
    return sy_route_query_param(sy_str_cstr(target), sy_str_cstr(name), out, cap, len);
}

Test(route, query_found_absent_empty)
{
    char out[32];
    size_t len;

    cr_assert_eq(q("/p?a=1&b=22&c", "b", out, sizeof(out), &len), 1);
    cr_assert_eq(len, 2);
    cr_assert_eq(memcmp(out, "22", 2), 0);
    cr_assert_eq(q("/p?a=1&b=22&c", "c", out, sizeof(out), &len), 1);
    cr_assert_eq(len, 0);
    cr_assert_eq(q("/p?a=1&b=22&c", "d", out, sizeof(out), &len), 0);
    cr_assert_eq(q("/p", "a", out, sizeof(out), &len), 0);
    cr_assert_eq(q("/p?", "a", out, sizeof(out), &len), 0);
    cr_assert_eq(q("/p?&&a=&", "a", out, sizeof(out), &len), 1);
    cr_assert_eq(len, 0);
    cr_assert_eq(q("/p?ab=1", "a", out, sizeof(out), &len), 0);
    cr_assert_eq(q("/p?A=1", "a", out, sizeof(out), &len), 0);
}

Test(route, query_first_match_wins)
{
    char out[32];
    size_t len;

    cr_assert_eq(q("/?v=1&v=2", "v", out, sizeof(out), &len), 1);
    cr_assert_eq(len, 1);
    cr_assert_eq(out[0], '1');
}

Test(route, query_decoding)
{
    char out[32];
    size_t len;

    cr_assert_eq(q("/?v=a%20b+c%2Bd%3d", "v", out, sizeof(out), &len), 1);
    cr_assert_eq(len, 8);
    cr_assert_eq(memcmp(out, "a b c+d=", 8), 0);
    cr_assert_eq(q("/?v=x=y", "v", out, sizeof(out), &len), 1);
    cr_assert_eq(len, 3);
    cr_assert_eq(memcmp(out, "x=y", 3), 0);
    cr_assert_eq(q("/?v=%00", "v", out, sizeof(out), &len), 1);
    cr_assert_eq(len, 1);
    cr_assert_eq(out[0], '\0');
}

Test(route, query_malformed)
{
    char out[32];
    size_t len;

    cr_assert_eq(q("/?v=%", "v", out, sizeof(out), &len), -1);
    cr_assert_eq(q("/?v=%4", "v", out, sizeof(out), &len), -1);
    cr_assert_eq(q("/?v=%4g", "v", out, sizeof(out), &len), -1);
    cr_assert_eq(q("/?v=%4&w=1", "v", out, sizeof(out), &len), -1);
    /* a bad escape in another parameter's name does not matter */
    cr_assert_eq(q("/?%zz=1&v=ok", "v", out, sizeof(out), &len), 1);
    cr_assert_eq(len, 2);
}

Test(route, query_too_long)
{
    char out[4];
    size_t len;

    cr_assert_eq(q("/?v=abcd", "v", out, sizeof(out), &len), 1);
    cr_assert_eq(len, 4);
    cr_assert_eq(q("/?v=abcde", "v", out, sizeof(out), &len), -1);
    cr_assert_eq(q("/?v=%41%42%43%44", "v", out, sizeof(out), &len), 1);
    cr_assert_eq(memcmp(out, "ABCD", 4), 0);
}

/* ---- cookies ----------------------------------------------------------------------------- */

static int ck(const struct sy_h1_header *h, size_t n, const char *name, const char *want)
{
    struct sy_str v;
    int rc = sy_route_cookie(h, n, sy_str_cstr(name), &v);

    if (rc == 1 && want)
        cr_assert(sy_str_eq(v, sy_str_cstr(want)), "cookie %s: got \"%.*s\", want \"%s\"", name,
                  (int)v.len, v.p, want);
    return rc;
}

Test(route, cookie_parsing)
{
    struct sy_h1_header h[] = {hdr("Cookie", "a=1;b=2;  c = 3 ;d=\"4\";e=;f"),
                               hdr("Cookie", "a=second; g=7")};

    cr_assert_eq(ck(h, 2, "a", "1"), 1);
    cr_assert_eq(ck(h, 2, "b", "2"), 1);
    cr_assert_eq(ck(h, 2, "c", "3"), 1);
    cr_assert_eq(ck(h, 2, "d", "4"), 1);
    cr_assert_eq(ck(h, 2, "e", ""), 1);
    cr_assert_eq(ck(h, 2, "f", NULL), 0);
    cr_assert_eq(ck(h, 2, "g", "7"), 1);
    cr_assert_eq(ck(h, 2, "A", NULL), 0);
    cr_assert_eq(ck(h, 2, "x", NULL), 0);
    cr_assert_eq(ck(h, 0, "a", NULL), 0);
}

Test(route, cookie_only_in_cookie_headers)
{
    struct sy_h1_header h[] = {hdr("Set-Cookie", "a=1"), hdr("X-Cookie", "a=2"),
                               hdr("cOoKiE", "a=3")};

    cr_assert_eq(ck(h, 3, "a", "3"), 1);
}

Test(route, cookie_name_must_match_whole)
{
    struct sy_h1_header h[] = {hdr("Cookie", "xpostfacto_version=4.1.0; postfacto_version2=1")};

    cr_assert_eq(ck(h, 1, "postfacto_version", NULL), 0);
}

/* ---- Set-Cookie output ------------------------------------------------------------------- */

Test(route, pin_cookie_set)
{
    char buf[256];
    const char *want = "Set-Cookie: postfacto_version=4.1.0; Path=/; HttpOnly; SameSite=Lax\r\n";
    size_t n = sy_route_pin_cookie(buf, sizeof(buf), "postfacto_version", "4.1.0", 0, 0);

    cr_assert_eq(n, strlen(want));
    cr_assert_str_eq(buf, want);
}

Test(route, pin_cookie_secure)
{
    char buf[256];
    const char *want =
        "Set-Cookie: postfacto_version=4.2.0; Path=/; HttpOnly; SameSite=Lax; Secure\r\n";
    size_t n = sy_route_pin_cookie(buf, sizeof(buf), "postfacto_version", "4.2.0", 1, 0);

    cr_assert_eq(n, strlen(want));
    cr_assert_str_eq(buf, want);
}

Test(route, pin_cookie_clear)
{
    char buf[256];
    const char *want = "Set-Cookie: v=; Path=/; HttpOnly; SameSite=Lax; Secure; Max-Age=0\r\n";
    size_t n = sy_route_pin_cookie(buf, sizeof(buf), "v", "ignored", 1, 1);

    cr_assert_eq(n, strlen(want));
    cr_assert_str_eq(buf, want);
    n = sy_route_pin_cookie(buf, sizeof(buf), "v", NULL, 0, 1);
    cr_assert_str_eq(buf, "Set-Cookie: v=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0\r\n");
}

Test(route, pin_cookie_capacity)
{
    const char *want = "Set-Cookie: v=1; Path=/; HttpOnly; SameSite=Lax\r\n";
    size_t len = strlen(want);
    char buf[128];

    memset(buf, 'x', sizeof(buf));
    cr_assert_eq(sy_route_pin_cookie(buf, len, "v", "1", 0, 0), len);
    cr_assert_eq(memcmp(buf, want, len), 0);
    cr_assert_eq(buf[len], 'x');
    cr_assert_eq(sy_route_pin_cookie(buf, len - 1, "v", "1", 0, 0), 0);
    cr_assert_eq(sy_route_pin_cookie(buf, 0, "v", "1", 0, 0), 0);
}

Test(route, vsrc_names)
{
    cr_assert_str_eq(sy_vsrc_name(SY_VSRC_HEADER), "header");
    cr_assert_str_eq(sy_vsrc_name(SY_VSRC_QUERY), "query");
    cr_assert_str_eq(sy_vsrc_name(SY_VSRC_COOKIE), "cookie");
    cr_assert_str_eq(sy_vsrc_name(SY_VSRC_DEFAULT), "default");
    cr_assert_str_eq(sy_vsrc_name(SY_VSRC_WEIGHT), "weight");
    cr_assert_str_eq(sy_vsrc_name(SY_VSRC_NONE), "none");
}
