/*
 * test_config.c: the YAML loader, its defaults and its FILE:LINE errors.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "config/config.h"
#include "core/alloc.h"
#include "core/log.h"

static struct sy_config *load(const char *yaml, char **err)
{
    return sy_config_load_string("t.yaml", yaml, strlen(yaml), err);
}

static struct sy_config *load_ok(const char *yaml)
{
    char *err = NULL;
    struct sy_config *cfg = load(yaml, &err);
    cr_assert_not_null(cfg, "unexpected error: %s", err ? err : "(none)");
    cr_assert_null(err);
    return cfg;
}

/* Asserts that loading fails with "t.yaml:LINE: ...needle...". */
static void expect_err(const char *yaml, int line, const char *needle)
{
    char *err = NULL;
    char prefix[32];
    struct sy_config *cfg = load(yaml, &err);

    cr_assert_null(cfg, "loaded, expected an error at line %d (%s)", line, needle);
    cr_assert_not_null(err);
    snprintf(prefix, sizeof(prefix), "t.yaml:%d: ", line);
    cr_assert(strncmp(err, prefix, strlen(prefix)) == 0, "want line %d, got: %s", line, err);
    cr_assert(strstr(err, needle) != NULL, "want \"%s\" in: %s", needle, err);
    sy_free(err);
}

#define MIN_UPSTREAMS                                                                            \
    "upstreams:\n"                                                                               \
    "  app:\n"                                                                                   \
    "    servers: [127.0.0.1:3000]\n"
#define MIN_SITES                                                                                \
    "sites:\n"                                                                                   \
    "  - hosts: [a.example.org]\n"                                                               \
    "    upstream: app\n"
/* listen + upstreams + sites take lines 1..8 */
#define MIN "listen:\n  http: \":8080\"\n" MIN_UPSTREAMS MIN_SITES

static const char *postfacto =
    "workers: auto\n"
    "listen:\n"
    "  http: 0.0.0.0:80\n"
    "  https: 0.0.0.0:443\n"
    "  admin: 127.0.0.1:9901\n"
    "upstreams:\n"
    "  postfacto-4.1.0:\n"
    "    servers: [postfacto-v1.postfacto.svc.cluster.local:80]\n"
    "  postfacto-4.2.0:\n"
    "    servers: [10.0.1.7:3000, 10.0.1.8:3000]\n"
    "    balance: round_robin\n"
    "sites:\n"
    "  - hosts: [Retro.Example.org]\n"
    "    version:\n"
    "      header: X-Postfacto-Version\n"
    "      query: postfacto_version\n"
    "      cookie: postfacto_version\n"
    "      routes:\n"
    "        \"4.1.0\": postfacto-4.1.0\n"
    "        \"4.2.0\": postfacto-4.2.0\n"
    "      default: \"4.2.0\"\n"
    "tls:\n"
    "  redirect: true\n"
    "  hsts: max-age=31536000\n"
    "  certificates:\n"
    "    - {cert: /etc/switchyard/site.crt, key: /etc/switchyard/site.key}\n"
    "  acme:\n"
    "    directory: https://acme-v02.api.letsencrypt.org/directory\n"
    "    email: ops@example.org\n"
    "    domains: [retro.example.org]\n"
    "    storage: /var/lib/switchyard\n"
    "    ca: /path/to/extra-ca.pem\n";

/* ---- valid configurations ---------------------------------------------------------------- */

Test(config, design_example_loads)
{
    struct sy_config *cfg = load_ok(postfacto);

    cr_assert_str_eq(cfg->file, "t.yaml");
    cr_assert_eq(cfg->workers, 0);
    cr_assert(cfg->listen_http.set && cfg->listen_https.set && cfg->listen_admin.set);
    cr_assert_str_eq(cfg->listen_admin.text, "127.0.0.1:9901");
    cr_assert_eq(cfg->listen_admin.line, 5);
    cr_assert_eq(cfg->nupstreams, 2);
    cr_assert_str_eq(cfg->upstreams[0].name, "postfacto-4.1.0");
    cr_assert_eq(cfg->upstreams[0].line, 7);
    cr_assert_str_eq(cfg->upstreams[0].servers[0].host, "postfacto-v1.postfacto.svc.cluster.local");
    cr_assert_eq(cfg->upstreams[0].servers[0].port, 80);
    cr_assert_eq(cfg->upstreams[1].nservers, 2);
    cr_assert_str_eq(cfg->upstreams[1].servers[1].name, "10.0.1.8:3000");
    cr_assert_eq(cfg->upstreams[1].balance, SY_BALANCE_ROUND_ROBIN);
    cr_assert_eq(cfg->upstreams[0].balance, SY_BALANCE_LEAST_CONN);

    cr_assert_eq(cfg->nsites, 1);
    const struct sy_site_conf *s = &cfg->sites[0];
    cr_assert_eq(s->line, 13);
    cr_assert_str_eq(s->hosts[0], "retro.example.org");
    cr_assert(s->has_version);
    cr_assert_str_eq(s->version.header, "X-Postfacto-Version");
    cr_assert_str_eq(s->version.query, "postfacto_version");
    cr_assert_str_eq(s->version.cookie, "postfacto_version");
    cr_assert_eq(s->version.nroutes, 2);
    cr_assert_str_eq(s->version.routes[0].version, "4.1.0");
    cr_assert_eq(s->version.routes[0].upstream, 0);
    cr_assert_eq(s->version.routes[1].upstream, 1);
    cr_assert_eq(s->version.default_route, 1);

    cr_assert(cfg->tls.redirect);
    cr_assert_str_eq(cfg->tls.hsts, "max-age=31536000");
    cr_assert_eq(cfg->tls.ncerts, 1);
    cr_assert_str_eq(cfg->tls.certs[0].key, "/etc/switchyard/site.key");
    cr_assert_eq(cfg->tls.certs[0].line, 26);
    cr_assert(cfg->tls.acme.enabled);
    cr_assert_str_eq(cfg->tls.acme.storage, "/var/lib/switchyard");
    cr_assert_str_eq(cfg->tls.acme.ca, "/path/to/extra-ca.pem");
    cr_assert_eq(cfg->tls.acme.ndomains, 1);
    cr_assert_eq(cfg->tls.acme.renew_before_ms, 0);
    sy_config_free(cfg);
}

Test(config, example_file_loads)
{
    char *err = NULL;
    struct sy_config *cfg = sy_config_load("examples/postfacto.yaml", &err);

    cr_assert_not_null(cfg, "examples/postfacto.yaml: %s", err ? err : "");
    cr_assert(cfg->listen_http.set);
    cr_assert(cfg->listen_admin.set);
    cr_assert_geq(cfg->nsites, 1);
    sy_config_free(cfg);
}

Test(config, defaults)
{
    struct sy_config *cfg = load_ok(MIN);

    cr_assert_eq(cfg->workers, 0);
    cr_assert_eq(cfg->limits.max_connections, 10000);
    cr_assert_eq(cfg->limits.max_request_head, 16384);
    cr_assert_eq(cfg->limits.max_headers, 100);
    cr_assert_eq(cfg->limits.max_uri, 8192);
    cr_assert_eq(cfg->limits.max_body, 0);
    cr_assert_eq(cfg->timeouts.client_header_ms, 10000);
    cr_assert_eq(cfg->timeouts.client_body_ms, 60000);
    cr_assert_eq(cfg->timeouts.keepalive_ms, 75000);
    cr_assert_eq(cfg->timeouts.upstream_connect_ms, 3000);
    cr_assert_eq(cfg->timeouts.upstream_response_ms, 60000);
    cr_assert_eq(cfg->timeouts.tunnel_idle_ms, 3600000);
    cr_assert_eq(cfg->timeouts.drain_ms, 30000);
    cr_assert_eq(cfg->log.access, 1);
    cr_assert_eq(cfg->log.level, SY_LOG_INFO);
    cr_assert_eq(cfg->upstreams[0].keepalive, 64);
    cr_assert_eq(cfg->upstreams[0].down_time_ms, 10000);
    cr_assert_eq(cfg->upstreams[0].resolve_interval_ms, 30000);
    cr_assert_not(cfg->listen_https.set);
    cr_assert_not(cfg->listen_admin.set);
    cr_assert_not(cfg->tls.redirect);
    cr_assert_eq(cfg->tls.redirect_port, 443);
    cr_assert_null(cfg->tls.hsts);
    cr_assert_not(cfg->tls.acme.enabled);
    cr_assert_not(cfg->sites[0].has_version);
    cr_assert_eq(cfg->sites[0].upstream, 0);
    sy_config_free(cfg);
}

Test(config, all_optional_sections)
{
    struct sy_config *cfg = load_ok(MIN "workers: 4\n"
                                        "limits: {max_connections: 500, max_request_head: 32k,"
                                        " max_headers: 50, max_uri: 4k, max_body: 10m}\n"
                                        "timeouts: {client_header: 5s, client_body: 1m,"
                                        " keepalive: 0, upstream_connect: 250ms,"
                                        " upstream_response: 2m, tunnel_idle: 2h, drain: 1m30s}\n"
                                        "log: {access: off, level: debug}\n");

    cr_assert_eq(cfg->workers, 4);
    cr_assert_eq(cfg->limits.max_connections, 500);
    cr_assert_eq(cfg->limits.max_request_head, 32768);
    cr_assert_eq(cfg->limits.max_headers, 50);
    cr_assert_eq(cfg->limits.max_uri, 4096);
    cr_assert_eq(cfg->limits.max_body, 10u << 20);
    cr_assert_eq(cfg->timeouts.client_header_ms, 5000);
    cr_assert_eq(cfg->timeouts.client_body_ms, 60000);
    cr_assert_eq(cfg->timeouts.keepalive_ms, 0);
    cr_assert_eq(cfg->timeouts.upstream_connect_ms, 250);
    cr_assert_eq(cfg->timeouts.upstream_response_ms, 120000);
    cr_assert_eq(cfg->timeouts.tunnel_idle_ms, 7200000);
    cr_assert_eq(cfg->timeouts.drain_ms, 90000);
    cr_assert_eq(cfg->log.access, 0);
    cr_assert_eq(cfg->log.level, SY_LOG_DEBUG);
    sy_config_free(cfg);
}

Test(config, http2)
{
    struct sy_config *cfg = load_ok(MIN);
    cr_assert_eq(cfg->http2.enabled, 1);
    cr_assert_eq(cfg->http2.max_concurrent_streams, 100);
    cr_assert_eq(cfg->http2.max_header_list_size, 16384);
    cr_assert_eq(cfg->http2.max_resets, 200);
    cr_assert_eq(cfg->http2.cleartext, 0);
    cr_assert_eq(cfg->http2.settings_timeout_ms, 10000);
    sy_config_free(cfg);

    cfg = load_ok(MIN "http2: {enabled: false, max_concurrent_streams: 8,"
                      " max_header_list_size: 64k, max_resets: 50, cleartext: true,"
                      " settings_timeout: 2s}\n");
    cr_assert_eq(cfg->http2.cleartext, 1);
    cr_assert_eq(cfg->http2.settings_timeout_ms, 2000);
    cr_assert_eq(cfg->http2.enabled, 0);
    cr_assert_eq(cfg->http2.max_concurrent_streams, 8);
    cr_assert_eq(cfg->http2.max_header_list_size, 65536);
    cr_assert_eq(cfg->http2.max_resets, 50);
    sy_config_free(cfg);

    expect_err(MIN "http2:\n  enabled: maybe\n", 10, "http2.enabled");
    expect_err(MIN "http2:\n  max_concurrent_streams: 0\n", 10,
               "http2.max_concurrent_streams: 0 out of range 1..10000");
    expect_err(MIN "http2:\n  enabled: true\n  max_header_list_size: 100\n", 11,
               "http2.max_header_list_size");
    expect_err(MIN "http2:\n  max_resets: lots\n", 10, "http2.max_resets: invalid number");
    expect_err(MIN "http2:\n  cleartext: sometimes\n", 10, "http2.cleartext");
    expect_err(MIN "http2:\n  settings_timeout: soon\n", 10,
               "http2.settings_timeout: invalid duration");
    expect_err(MIN "http2:\n  enabled: true\n  settings_timeout: 10ms\n", 11,
               "http2.settings_timeout: must be at least 100ms");
    expect_err(MIN "http2:\n  streams: 5\n", 10, "http2: unknown key \"streams\"");
    expect_err(MIN "http2: [1]\n", 9, "http2");
}

Test(config, upstream_options)
{
    struct sy_config *cfg = load_ok("listen: {http: \":80\"}\n"
                                    "upstreams:\n"
                                    "  a_b.C-1:\n"
                                    "    servers: [\"[::1]:8080\", App.Local:81]\n"
                                    "    balance: least_conn\n"
                                    "    keepalive: 0\n"
                                    "    down_time: 0\n"
                                    "    resolve_interval: 5m\n"
                                    "sites: [{hosts: [x.org], upstream: a_b.C-1}]\n");
    const struct sy_upstream_conf *u = &cfg->upstreams[0];

    cr_assert_str_eq(u->name, "a_b.C-1");
    cr_assert_str_eq(u->servers[0].host, "::1");
    cr_assert_eq(u->servers[0].port, 8080);
    cr_assert_eq(u->servers[0].line, 4);
    cr_assert_str_eq(u->servers[1].host, "app.local");
    cr_assert_str_eq(u->servers[1].name, "app.local:81");
    cr_assert_eq(u->keepalive, 0);
    cr_assert_eq(u->down_time_ms, 0);
    cr_assert_eq(u->resolve_interval_ms, 300000);
    sy_config_free(cfg);
}

Test(config, booleans_all_spellings)
{
    static const char *yes[] = {"true", "yes", "on", "True", "ON"};
    static const char *no[] = {"false", "no", "off", "FALSE", "Off"};
    char yaml[512];

    for (size_t i = 0; i < 5; i++) {
        snprintf(yaml, sizeof(yaml), MIN "tls: {redirect: %s}\nlog: {access: %s}\n", yes[i], no[i]);
        struct sy_config *cfg = load_ok(yaml);
        cr_assert_eq(cfg->tls.redirect, 1, "%s", yes[i]);
        cr_assert_eq(cfg->log.access, 0, "%s", no[i]);
        sy_config_free(cfg);
    }
}

Test(config, hosts_lowercased_and_indexed)
{
    struct sy_config *cfg = load_ok("listen: {http: \":80\"}\n" MIN_UPSTREAMS
                                    "sites:\n"
                                    "  - hosts: [B.Example.ORG, \"*.Example.org\"]\n"
                                    "    upstream: app\n"
                                    "  - hosts: [\"*\"]\n"
                                    "    upstream: app\n");

    cr_assert_str_eq(cfg->sites[0].hosts[0], "b.example.org");
    cr_assert_str_eq(cfg->sites[0].hosts[1], "*.example.org");
    cr_assert_eq(cfg->hostidx.nexact, 1);
    cr_assert_eq(cfg->hostidx.nwild, 1);
    cr_assert_eq(cfg->hostidx.wild[0].len, strlen(".example.org"));
    cr_assert(cfg->hostidx.has_catchall);
    cr_assert_eq(cfg->hostidx.catchall, 1);
    sy_config_free(cfg);
}

Test(config, many_sites_and_hosts)
{
    size_t cap = 1 << 17, off = 0;
    char *yaml = sy_malloc(cap);

    off += (size_t)snprintf(yaml + off, cap - off, "listen: {http: \":80\"}\n" MIN_UPSTREAMS
                                                   "sites:\n");
    for (int i = 0; i < 1000; i++)
        off += (size_t)snprintf(yaml + off, cap - off,
                                "  - {hosts: [h%d.example.org, \"*.w%d.example.org\"],"
                                " upstream: app}\n",
                                i, i);
    struct sy_config *cfg = load_ok(yaml);
    cr_assert_eq(cfg->nsites, 1000);
    cr_assert_eq(cfg->hostidx.nexact, 1000);
    cr_assert_eq(cfg->hostidx.nwild, 1000);
    sy_config_free(cfg);
    sy_free(yaml);
}

Test(config, load_from_file_and_missing_file)
{
    char path[] = "/tmp/sy-config-XXXXXX";
    int fd = mkstemp(path);
    char *err = NULL;

    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, MIN, strlen(MIN)), (ssize_t)strlen(MIN));
    close(fd);
    struct sy_config *cfg = sy_config_load(path, &err);
    cr_assert_not_null(cfg, "%s", err ? err : "");
    cr_assert_str_eq(cfg->file, path);
    sy_config_free(cfg);
    unlink(path);

    cfg = sy_config_load(path, &err);
    cr_assert_null(cfg);
    cr_assert_not_null(err);
    cr_assert(strstr(err, "cannot open") && strstr(err, path), "%s", err);
    sy_free(err);
}

/* ---- scalar parsers ---------------------------------------------------------------------- */

Test(config, parse_duration)
{
    uint32_t ms;

    cr_assert_eq(sy_config_parse_duration("250ms", &ms), 0);
    cr_assert_eq(ms, 250);
    cr_assert_eq(sy_config_parse_duration("10s", &ms), 0);
    cr_assert_eq(ms, 10000);
    cr_assert_eq(sy_config_parse_duration("5m", &ms), 0);
    cr_assert_eq(ms, 300000);
    cr_assert_eq(sy_config_parse_duration("1h", &ms), 0);
    cr_assert_eq(ms, 3600000);
    cr_assert_eq(sy_config_parse_duration("2d", &ms), 0);
    cr_assert_eq(ms, 172800000);
    cr_assert_eq(sy_config_parse_duration("30", &ms), 0);
    cr_assert_eq(ms, 30000);
    cr_assert_eq(sy_config_parse_duration("1h30m", &ms), 0);
    cr_assert_eq(ms, 5400000);
    cr_assert_eq(sy_config_parse_duration("0", &ms), 0);
    cr_assert_eq(ms, 0);
    cr_assert_eq(sy_config_parse_duration("49d", &ms), 0);
}

Test(config, parse_duration_rejects)
{
    static const char *bad[] = {"",    "s",     "10x", "-1s", "1.5s", " 10s", "10s ",
                                "10S", "50d",   "10sm", "ms",  "4294968s", "99999999999"};
    uint32_t ms = 7;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_eq(sy_config_parse_duration(bad[i], &ms), -1, "accepted \"%s\"", bad[i]);
    cr_assert_eq(ms, 7);
}

Test(config, parse_size)
{
    uint64_t b;

    cr_assert_eq(sy_config_parse_size("512", &b), 0);
    cr_assert_eq(b, 512);
    cr_assert_eq(sy_config_parse_size("16k", &b), 0);
    cr_assert_eq(b, 16384);
    cr_assert_eq(sy_config_parse_size("16K", &b), 0);
    cr_assert_eq(b, 16384);
    cr_assert_eq(sy_config_parse_size("1m", &b), 0);
    cr_assert_eq(b, 1048576);
    cr_assert_eq(sy_config_parse_size("2g", &b), 0);
    cr_assert_eq(b, 2147483648ull);
    cr_assert_eq(sy_config_parse_size("0", &b), 0);
    cr_assert_eq(b, 0);
}

Test(config, parse_size_rejects)
{
    static const char *bad[] = {"", "k", "1kb", "1.5m", "-1", " 1", "1 ", "1t",
                                "18446744073709551616", "17179869184g"};
    uint64_t b;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_eq(sy_config_parse_size(bad[i], &b), -1, "accepted \"%s\"", bad[i]);
}

Test(config, parse_listen_forms)
{
    struct sockaddr_storage ss;
    socklen_t len;
    const char *why = NULL;
    char buf[64];

    cr_assert_eq(sy_config_parse_listen("0.0.0.0:80", &ss, &len, &why), 0);
    cr_assert_eq(ss.ss_family, AF_INET);
    cr_assert_eq(len, sizeof(struct sockaddr_in));
    cr_assert_eq(ntohs(((struct sockaddr_in *)&ss)->sin_port), 80);

    cr_assert_eq(sy_config_parse_listen("127.0.0.1:9901", &ss, &len, &why), 0);
    inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, buf, sizeof(buf));
    cr_assert_str_eq(buf, "127.0.0.1");

    cr_assert_eq(sy_config_parse_listen(":8443", &ss, &len, &why), 0);
    cr_assert_eq(ss.ss_family, AF_INET);
    cr_assert_eq(((struct sockaddr_in *)&ss)->sin_addr.s_addr, htonl(INADDR_ANY));
    cr_assert_eq(ntohs(((struct sockaddr_in *)&ss)->sin_port), 8443);

    cr_assert_eq(sy_config_parse_listen("[::1]:443", &ss, &len, &why), 0);
    cr_assert_eq(ss.ss_family, AF_INET6);
    cr_assert_eq(len, sizeof(struct sockaddr_in6));
    cr_assert_eq(ntohs(((struct sockaddr_in6 *)&ss)->sin6_port), 443);
    inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, buf, sizeof(buf));
    cr_assert_str_eq(buf, "::1");

    cr_assert_eq(sy_config_parse_listen("[::]:65535", &ss, &len, &why), 0);
}

Test(config, parse_listen_rejects)
{
    static const char *bad[] = {"0.0.0.0",     "0.0.0.0:0", "0.0.0.0:65536", "0.0.0.0:http",
                                "localhost:80", "::1:80",   "[::1]80",      "[::1:80",
                                "[1.2.3.4]:80", "1.2.3:80", "300.1.1.1:80", ":",
                                "0.0.0.0:-1",  "0.0.0.0:080000"};
    struct sockaddr_storage ss;
    socklen_t len;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *why = NULL;
        cr_assert_eq(sy_config_parse_listen(bad[i], &ss, &len, &why), -1, "accepted %s", bad[i]);
        cr_assert_not_null(why);
    }
}

/* ---- errors ------------------------------------------------------------------------------ */

Test(config, err_yaml_syntax)
{
    expect_err("listen:\n  http: \":80\"\nupstreams: [a, b\n", 4, "YAML syntax error");
    expect_err("listen:\n  http: \":80\n", 3, "YAML syntax error");
    expect_err("a: b\n c: d\n", 2, "YAML syntax error");
}

Test(config, err_empty)
{
    expect_err("", 1, "empty configuration");
    expect_err("# only a comment\n\n", 1, "empty configuration");
}

Test(config, err_root_not_mapping)
{
    expect_err("- a\n- b\n", 1, "configuration: expected a mapping, got a list");
    expect_err("hello\n", 1, "expected a mapping, got a scalar");
}

Test(config, err_two_documents)
{
    expect_err(MIN "---\n" MIN, 10, "only one YAML document");
}

Test(config, err_unknown_root_key)
{
    expect_err(MIN "colour: blue\n", 9, "unknown key \"colour\"");
}

Test(config, err_unknown_nested_keys)
{
    expect_err("listen:\n  http: \":80\"\n  ftp: \":21\"\n" MIN_UPSTREAMS MIN_SITES, 3,
               "listen: unknown key \"ftp\"");
    expect_err(MIN "limits:\n  max_things: 3\n", 10, "unknown key \"max_things\"");
    expect_err(MIN "timeouts: {idle: 3s}\n", 9, "unknown key \"idle\"");
    expect_err(MIN "log: {format: json}\n", 9, "unknown key \"format\"");
    expect_err("listen: {http: \":80\"}\nupstreams:\n  app:\n    servers: [1.2.3.4:80]\n"
               "    weight: 3\n" MIN_SITES,
               5, "upstreams.app: unknown key \"weight\"");
    expect_err("listen: {http: \":80\"}\n" MIN_UPSTREAMS
               "sites:\n  - hosts: [a.org]\n    upstream: app\n    path: /x\n",
               8, "sites[0]: unknown key \"path\"");
    expect_err(MIN "tls:\n  acme:\n    directory: https://x/d\n    domains: [a.org]\n"
                   "    storage: /s\n    contact: me\n",
               14, "tls.acme: unknown key \"contact\"");
    expect_err(MIN "tls:\n  certificates:\n    - {cert: /a, key: /b, chain: /c}\n", 11,
               "unknown key \"chain\"");
}

Test(config, err_unknown_version_key)
{
    expect_err("listen: {http: \":80\"}\n" MIN_UPSTREAMS
               "sites:\n"
               "  - hosts: [a.org]\n"
               "    version:\n"
               "      header: X-V\n"
               "      sticky: {a: 1}\n"
               "      routes: {\"1\": app}\n"
               "      default: \"1\"\n",
               9, "sites[0].version: unknown key \"sticky\"");
}

Test(config, err_duplicate_keys)
{
    expect_err("listen:\n  http: \":80\"\n  http: \":81\"\n" MIN_UPSTREAMS MIN_SITES, 3,
               "duplicate key \"http\" (first at line 2)");
    expect_err(MIN "workers: 2\nworkers: 3\n", 10, "duplicate key \"workers\" (first at line 9)");
    expect_err("listen: {http: \":80\"}\n"
               "upstreams:\n"
               "  app:\n    servers: [1.2.3.4:80]\n"
               "  app:\n    servers: [1.2.3.4:81]\n" MIN_SITES,
               5, "upstreams: duplicate key \"app\"");
}

Test(config, err_duplicate_route_version)
{
    expect_err("listen: {http: \":80\"}\n" MIN_UPSTREAMS
               "sites:\n"
               "  - hosts: [a.org]\n"
               "    version:\n"
               "      header: X-V\n"
               "      routes:\n"
               "        \"1\": app\n"
               "        \"1\": app\n"
               "      default: \"1\"\n",
               11, "duplicate key \"1\" (first at line 10)");
}

Test(config, err_wrong_node_types)
{
    expect_err("listen: \":80\"\n" MIN_UPSTREAMS MIN_SITES, 1,
               "listen: expected a mapping, got a scalar");
    expect_err("listen: {http: [\":80\"]}\n" MIN_UPSTREAMS MIN_SITES, 1,
               "listen.http: expected a scalar value, got a list");
    expect_err("listen: {http: \":80\"}\nupstreams:\n  app:\n    servers: 1.2.3.4:80\n" MIN_SITES,
               4, "upstreams.app.servers: expected a list, got a scalar");
    expect_err("listen: {http: \":80\"}\n" MIN_UPSTREAMS "sites: {hosts: [a.org]}\n", 5,
               "sites: expected a list, got a mapping");
    expect_err("listen: {http: \":80\"}\n" MIN_UPSTREAMS
               "sites:\n  - hosts: a.org\n    upstream: app\n",
               6, "sites[0].hosts: expected a list");
    expect_err(MIN "tls:\n  certificates: {cert: /a, key: /b}\n", 10,
               "tls.certificates: expected a list");
    expect_err("listen: {http: \":80\"}\nupstreams:\n  app:\n    servers: [[1.2.3.4:80]]\n"
               MIN_SITES,
               4, "expected a scalar value, got a list");
    expect_err(MIN "?  [a, b]\n: c\n", 9, "keys must be scalars");
}

Test(config, err_missing_required)
{
    expect_err(MIN_UPSTREAMS MIN_SITES, 1, "missing required key \"listen\"");
    expect_err("listen: {http: \":80\"}\n" MIN_SITES, 1, "missing required key \"upstreams\"");
    expect_err("listen: {http: \":80\"}\n" MIN_UPSTREAMS, 1, "missing required key \"sites\"");
    expect_err("listen:\n  admin: 127.0.0.1:9901\n" MIN_UPSTREAMS MIN_SITES, 1,
               "at least one of \"http\" and \"https\"");
    expect_err("listen: {http: \":80\"}\nupstreams:\n  app:\n    balance: round_robin\n" MIN_SITES,
               3, "upstreams.app: missing required key \"servers\"");
    expect_err("listen: {http: \":80\"}\n" MIN_UPSTREAMS "sites:\n  - upstream: app\n", 6,
               "sites[0]: missing required key \"hosts\"");
    expect_err(MIN "tls:\n  certificates:\n    - cert: /a\n", 11, "missing required key \"key\"");
}

Test(config, err_acme_required_keys)
{
    expect_err(MIN "tls:\n  acme:\n    domains: [a.org]\n    storage: /s\n", 10,
               "tls.acme: missing required key \"directory\"");
    expect_err(MIN "tls:\n  acme:\n    directory: https://x/d\n    storage: /s\n", 10,
               "missing required key \"domains\"");
    expect_err(MIN "tls:\n  acme:\n    directory: https://x/d\n    domains: [a.org]\n", 10,
               "missing required key \"storage\"");
    expect_err(MIN "tls:\n  acme:\n    directory: ftp://x/d\n    domains: [a.org]\n"
                   "    storage: /s\n",
               11, "not an http(s) URL");
    expect_err(MIN "tls:\n  acme:\n    directory: https://x/d\n    domains: [\"*.a.org\"]\n"
                   "    storage: /s\n",
               12, "invalid domain");
}

Test(config, err_bad_numbers)
{
    expect_err(MIN "workers: 0\n", 9, "workers: 0 out of range 1..256");
    expect_err(MIN "workers: 257\n", 9, "out of range");
    expect_err(MIN "workers: two\n", 9, "workers: invalid number \"two\"");
    expect_err(MIN "workers: -1\n", 9, "invalid number");
    expect_err(MIN "limits: {max_headers: 99999999999999999999999}\n", 9, "invalid number");
    expect_err("listen: {http: \":80\"}\nupstreams:\n  app:\n    servers: [1.2.3.4:80]\n"
               "    keepalive: 10001\n" MIN_SITES,
               5, "upstreams.app.keepalive: 10001 out of range 0..10000");
}

Test(config, err_bad_durations_and_sizes)
{
    expect_err(MIN "timeouts:\n  client_header: 10 s\n", 10,
               "timeouts.client_header: invalid duration \"10 s\"");
    expect_err(MIN "timeouts: {client_header: 0}\n", 9, "must be at least 1ms");
    expect_err(MIN "limits:\n  max_request_head: 16q\n", 10,
               "limits.max_request_head: invalid size \"16q\"");
    expect_err(MIN "limits:\n  max_request_head: 100\n", 10, "out of range 1024..1048576");
    expect_err(MIN "limits:\n  max_request_head: 2k\n  max_uri: 4k\n", 11,
               "must not exceed limits.max_request_head");
    expect_err(MIN "tls:\n  acme: {directory: https://x, domains: [a.org], storage: /s,"
                   " renew_before: soon}\n",
               10, "tls.acme.renew_before: invalid duration");
}

Test(config, redirect_port)
{
    struct sy_config *cfg = load_ok(MIN "tls: {redirect: true, redirect_port: 8443}\n");

    cr_assert_eq(cfg->tls.redirect_port, 8443);
    sy_config_free(cfg);
    cfg = load_ok(MIN "tls:\n  redirect: true\n  redirect_port: 65535\n");
    cr_assert_eq(cfg->tls.redirect_port, 65535);
    sy_config_free(cfg);
    /* no redirect: accepted and unused */
    cfg = load_ok(MIN "tls: {redirect_port: 1}\n");
    cr_assert_eq(cfg->tls.redirect_port, 1);
    sy_config_free(cfg);
}

Test(config, err_bad_redirect_port)
{
    expect_err(MIN "tls:\n  redirect: true\n  redirect_port: 0\n", 11,
               "tls.redirect_port: 0 out of range 1..65535");
    expect_err(MIN "tls:\n  redirect_port: 65536\n", 10,
               "tls.redirect_port: 65536 out of range 1..65535");
    expect_err(MIN "tls:\n  redirect_port: https\n", 10,
               "tls.redirect_port: invalid number \"https\"");
    expect_err(MIN "tls:\n  redirect_port: \"443\"\n  redirect_port: 8443\n", 11,
               "duplicate");
    expect_err(MIN "tls:\n  redirect_port: [443]\n", 10, "tls.redirect_port");
}

Test(config, err_bad_booleans_and_enums)
{
    expect_err(MIN "tls:\n  redirect: maybe\n", 10, "tls.redirect: invalid boolean \"maybe\"");
    expect_err(MIN "log: {access: 1}\n", 9, "invalid boolean");
    expect_err(MIN "log:\n  level: verbose\n", 10, "log.level: unknown level \"verbose\"");
    expect_err("listen: {http: \":80\"}\nupstreams:\n  app:\n    servers: [1.2.3.4:80]\n"
               "    balance: random\n" MIN_SITES,
               5, "unknown method \"random\"");
}

Test(config, err_bad_listen_addresses)
{
    expect_err("listen:\n  http: localhost:80\n" MIN_UPSTREAMS MIN_SITES, 2,
               "listen.http: bad address \"localhost:80\": host must be an IP address");
    expect_err("listen:\n  http: \":80\"\n  https: 0.0.0.0:99999\n" MIN_UPSTREAMS MIN_SITES, 3,
               "port must be a number 1..65535");
    expect_err("listen:\n  http: \"::1:80\"\n" MIN_UPSTREAMS MIN_SITES, 2, "brackets");
}

Test(config, err_admin_on_public_listener)
{
    expect_err("listen:\n  http: 0.0.0.0:80\n  admin: 0.0.0.0:80\n" MIN_UPSTREAMS MIN_SITES, 3,
               "listen.admin: 0.0.0.0:80 overlaps the public listener listen.http");
    /* a wildcard covers every address of the same port */
    expect_err("listen:\n  http: \":9901\"\n  admin: 127.0.0.1:9901\n" MIN_UPSTREAMS MIN_SITES, 3,
               "overlaps the public listener listen.http");
    expect_err("listen:\n  http: \":80\"\n  https: \"[::]:443\"\n  admin: 127.0.0.1:443\n"
               MIN_UPSTREAMS MIN_SITES "tls: {certificates: [{cert: /c, key: /k}]}\n",
               4, "overlaps the public listener listen.https");
    expect_err("listen:\n  http: \":80\"\n  https: 10.0.0.1:80\n" MIN_UPSTREAMS MIN_SITES, 3,
               "listen.https: 10.0.0.1:80 overlaps listen.http");
    /* same port on two distinct specific addresses is fine */
    struct sy_config *cfg =
        load_ok("listen:\n  http: 10.0.0.1:80\n  admin: 127.0.0.1:80\n" MIN_UPSTREAMS MIN_SITES);
    sy_config_free(cfg);
}

Test(config, err_https_without_certificates)
{
    expect_err("listen:\n  http: \":80\"\n  https: \":443\"\n" MIN_UPSTREAMS MIN_SITES, 3,
               "listen.https: needs tls.certificates or tls.acme");
}

Test(config, err_bad_servers)
{
    expect_err("listen: {http: \":80\"}\nupstreams:\n  app:\n    servers: [app.local]\n" MIN_SITES,
               4, "bad server \"app.local\": missing :port");
    expect_err("listen: {http: \":80\"}\nupstreams:\n  app:\n    servers:\n      - 1.2.3.4:80\n"
               "      - bad_host!:80\n" MIN_SITES,
               6, "invalid host name");
    expect_err("listen: {http: \":80\"}\nupstreams:\n  app:\n    servers: [999.1.1.1:80]\n"
               MIN_SITES,
               4, "invalid IPv4 address");
    expect_err("listen: {http: \":80\"}\nupstreams:\n  app:\n    servers: [\"[zz::1]:80\"]\n"
               MIN_SITES, 4, "invalid IPv6 address");
    expect_err("listen: {http: \":80\"}\nupstreams:\n  app:\n    servers: [a.b:0]\n" MIN_SITES,
               4, "port must be a number 1..65535");
    expect_err("listen: {http: \":80\"}\nupstreams:\n  app:\n    servers: [a.b:80, A.B:80]\n"
               MIN_SITES, 4, "duplicate server \"a.b:80\"");
    expect_err("listen: {http: \":80\"}\nupstreams:\n  app:\n    servers: []\n" MIN_SITES, 4,
               "at least one server");
    expect_err("listen: {http: \":80\"}\nupstreams:\n  bad name:\n    servers: [a.b:80]\n"
               MIN_SITES, 3, "upstreams: invalid name \"bad name\"");
}

Test(config, err_unknown_upstream)
{
    expect_err("listen: {http: \":80\"}\n" MIN_UPSTREAMS
               "sites:\n  - hosts: [a.org]\n    upstream: nope\n",
               7, "sites[0].upstream: unknown upstream \"nope\"");
    expect_err("listen: {http: \":80\"}\n" MIN_UPSTREAMS
               "sites:\n"
               "  - hosts: [a.org]\n"
               "    version:\n"
               "      cookie: v\n"
               "      routes:\n"
               "        \"1\": app\n"
               "        \"2\": app2\n"
               "      default: \"1\"\n",
               11, "unknown upstream \"app2\"");
}

Test(config, err_default_not_in_routes)
{
    expect_err("listen: {http: \":80\"}\n" MIN_UPSTREAMS
               "sites:\n"
               "  - hosts: [a.org]\n"
               "    version:\n"
               "      query: v\n"
               "      routes: {\"1\": app}\n"
               "      default: \"2\"\n",
               10, "sites[0].version.default: \"2\" is not one of the routes");
    expect_err("listen: {http: \":80\"}\n" MIN_UPSTREAMS
               "sites:\n"
               "  - hosts: [a.org]\n"
               "    version:\n"
               "      query: v\n"
               "      routes: {\"1\": app}\n",
               7, "missing required key \"default\"");
}

Test(config, err_version_syntax)
{
    const char *head = "listen: {http: \":80\"}\n" MIN_UPSTREAMS
                       "sites:\n  - hosts: [a.org]\n    version:\n";
    char yaml[1024];

    snprintf(yaml, sizeof(yaml), "%s      header: \"X Version\"\n      routes: {\"1\": app}\n"
             "      default: \"1\"\n", head);
    expect_err(yaml, 8, "not a valid header name");
    snprintf(yaml, sizeof(yaml), "%s      query: \"a&b\"\n      routes: {\"1\": app}\n"
             "      default: \"1\"\n", head);
    expect_err(yaml, 8, "not a valid query parameter name");
    snprintf(yaml, sizeof(yaml), "%s      cookie: \"a=b\"\n      routes: {\"1\": app}\n"
             "      default: \"1\"\n", head);
    expect_err(yaml, 8, "not a valid cookie name");
    snprintf(yaml, sizeof(yaml), "%s      cookie: v\n      routes:\n        \"4 1\": app\n"
             "      default: \"4 1\"\n", head);
    expect_err(yaml, 10, "not allowed in a cookie value");
    snprintf(yaml, sizeof(yaml), "%s      cookie: v\n      routes:\n        \"a;b\": app\n"
             "      default: \"a;b\"\n", head);
    expect_err(yaml, 10, "not allowed in a cookie value");
    snprintf(yaml, sizeof(yaml), "%s      cookie: v\n      routes:\n        \"\": app\n"
             "      default: \"\"\n", head);
    expect_err(yaml, 10, "empty version value");
    snprintf(yaml, sizeof(yaml), "%s      routes: {\"1\": app}\n      default: \"1\"\n", head);
    expect_err(yaml, 7, "at least one of \"header\", \"query\" and \"cookie\"");
    snprintf(yaml, sizeof(yaml), "%s      cookie: v\n      routes: {}\n      default: \"1\"\n",
             head);
    expect_err(yaml, 9, "at least one route");
}

#define WEIGHTED_HEAD                                                                            \
    "listen: {http: \":80\"}\n"                                                                   \
    "upstreams:\n"                                                                               \
    "  a: {servers: [127.0.0.1:3001]}\n"                                                         \
    "  b: {servers: [127.0.0.1:3002]}\n"                                                         \
    "sites:\n"                                                                                   \
    "  - hosts: [a.org]\n"                                                                       \
    "    version:\n"                                                                             \
    "      cookie: v\n"                                                                          \
    "      routes: {\"1\": a, \"2\": b, \"3\": a}\n"                                              \
    "      default: \"1\"\n"
/* WEIGHTED_HEAD takes lines 1..10 */

Test(config, weights_load)
{
    struct sy_config *cfg = load_ok(WEIGHTED_HEAD "      weights:\n"
                                                  "        \"2\": 1000000\n"
                                                  "        \"1\": \"0\"\n");
    const struct sy_site_conf *s = &cfg->sites[0];

    cr_assert_eq(s->version.routes[0].weight, 0);
    cr_assert_eq(s->version.routes[1].weight, 1000000);
    cr_assert_eq(s->version.routes[2].weight, 0); /* not listed: weight 0 */
    cr_assert_eq(s->version.total_weight, 1000000);
    sy_config_free(cfg);

    cfg = load_ok(WEIGHTED_HEAD "      weights: {\"1\": 90, \"2\": 10, \"3\": 1}\n");
    cr_assert_eq(cfg->sites[0].version.total_weight, 101);
    sy_config_free(cfg);

    cfg = load_ok(WEIGHTED_HEAD);
    cr_assert_eq(cfg->sites[0].version.total_weight, 0);
    cr_assert_eq(cfg->sites[0].version.routes[0].weight, 0);
    sy_config_free(cfg);
}

Test(config, err_weights)
{
    expect_err(WEIGHTED_HEAD "      weights: [1, 2]\n", 11,
               "sites[0].version.weights: expected a mapping, got a list");
    expect_err(WEIGHTED_HEAD "      weights: 90\n", 11, "expected a mapping, got a scalar");
    expect_err(WEIGHTED_HEAD "      weights:\n        \"1\": 5\n        \"4\": 5\n", 13,
               "sites[0].version.weights: \"4\" is not one of the routes");
    expect_err(WEIGHTED_HEAD "      weights:\n        \"1\": 5\n        \"1\": 6\n", 13,
               "duplicate key \"1\" (first at line 12)");
    expect_err(WEIGHTED_HEAD "      weights:\n        \"1\": 5\n        \"2\": 1000001\n", 13,
               "sites[0].version.weights[\"2\"]: 1000001 out of range 0..1000000");
    expect_err(WEIGHTED_HEAD "      weights:\n        \"1\": -1\n", 12,
               "sites[0].version.weights[\"1\"]: invalid number \"-1\"");
    expect_err(WEIGHTED_HEAD "      weights:\n        \"1\": 0.5\n", 12, "invalid number \"0.5\"");
    expect_err(WEIGHTED_HEAD "      weights:\n        \"1\": ten\n", 12, "invalid number \"ten\"");
    expect_err(WEIGHTED_HEAD "      weights:\n        \"1\": \"\"\n", 12, "invalid number \"\"");
    expect_err(WEIGHTED_HEAD "      weights:\n        \"1\": {x: 1}\n", 12,
               "expected a scalar value, got a mapping");
    expect_err(WEIGHTED_HEAD "      weights:\n        \"1\": 0\n        \"2\": 0\n", 11,
               "sites[0].version.weights: at least one weight must be above 0");
    expect_err(WEIGHTED_HEAD "      weights: {}\n", 11, "at least one weight must be above 0");
    expect_err("listen: {http: \":80\"}\n" MIN_UPSTREAMS
               "sites:\n"
               "  - hosts: [a.org]\n"
               "    version:\n"
               "      header: X-V\n"
               "      query: v\n"
               "      routes: {\"1\": app}\n"
               "      weights: {\"1\": 1}\n"
               "      default: \"1\"\n",
               11, "sites[0].version.weights: requires \"cookie\"");
}

Test(config, err_site_upstream_and_version)
{
    expect_err("listen: {http: \":80\"}\n" MIN_UPSTREAMS
               "sites:\n"
               "  - hosts: [a.org]\n"
               "    upstream: app\n"
               "    version: {cookie: v, routes: {\"1\": app}, default: \"1\"}\n",
               8, "either \"upstream\" or \"version\", not both");
    expect_err("listen: {http: \":80\"}\n" MIN_UPSTREAMS "sites:\n  - hosts: [a.org]\n", 6,
               "one of \"upstream\" or \"version\" is required");
}

Test(config, err_duplicate_hosts)
{
    expect_err("listen: {http: \":80\"}\n" MIN_UPSTREAMS
               "sites:\n"
               "  - hosts: [a.org, b.org]\n"
               "    upstream: app\n"
               "  - hosts:\n"
               "      - c.org\n"
               "      - B.ORG\n"
               "    upstream: app\n",
               10, "duplicate host \"b.org\" (first at line 6)");
    expect_err("listen: {http: \":80\"}\n" MIN_UPSTREAMS
               "sites:\n"
               "  - hosts:\n"
               "      - \"*.a.org\"\n"
               "      - \"*.A.org\"\n"
               "    upstream: app\n",
               8, "duplicate host \"*.a.org\" (first at line 7)");
    expect_err("listen: {http: \":80\"}\n" MIN_UPSTREAMS
               "sites:\n"
               "  - {hosts: [\"*\"], upstream: app}\n"
               "  - {hosts: [\"*\"], upstream: app}\n",
               7, "duplicate host \"*\" (first at line 6)");
}

Test(config, err_bad_site_hosts)
{
    static const char *bad[] = {"\"a b.org\"", "\"-a.org\"", "\"a..org\"", "\"*a.org\"",
                                "\"a.*.org\"", "\"a.org.\"", "\"\"", "\"**\""};
    char yaml[512];

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(yaml, sizeof(yaml),
                 "listen: {http: \":80\"}\n" MIN_UPSTREAMS "sites:\n  - upstream: app\n"
                 "    hosts: [%s]\n",
                 bad[i]);
        expect_err(yaml, 7, "sites[0].hosts:");
    }
    expect_err("listen: {http: \":80\"}\n" MIN_UPSTREAMS "sites:\n  - upstream: app\n"
               "    hosts: []\n",
               7, "at least one host");
}

Test(config, err_empty_values)
{
    expect_err(MIN "tls:\n  hsts: \"\"\n", 10, "tls.hsts: empty value");
    expect_err(MIN "tls:\n  certificates: [{cert: \"\", key: /k}]\n", 10, "empty value");
    expect_err("listen:\n  http:\n" MIN_UPSTREAMS MIN_SITES, 2, "listen.http: bad address");
}

Test(config, err_nul_byte_in_scalar)
{
    expect_err(MIN "tls: {hsts: \"max\\0age\"}\n", 9, "contains a NUL byte");
}

Test(config, err_invalid_utf8_line)
{
    static const char yaml[] = "listen: {http: \":80\"}\n# ok\nworkers: \xff\xfe\n";
    char *err = NULL;

    cr_assert_null(sy_config_load_string("t.yaml", yaml, sizeof(yaml) - 1, &err));
    cr_assert(strncmp(err, "t.yaml:3: YAML syntax error", 27) == 0, "%s", err);
    sy_free(err);
}

Test(config, aliases_resolve)
{
    struct sy_config *cfg = load_ok("listen: {http: \":80\"}\n"
                                    "upstreams:\n"
                                    "  a: {servers: &s [1.2.3.4:80, 1.2.3.5:80]}\n"
                                    "  b: {servers: *s}\n"
                                    "sites: [{hosts: [x.org], upstream: b}]\n");
    cr_assert_eq(cfg->upstreams[1].nservers, 2);
    sy_config_free(cfg);
    /* an alias cycle is rejected by the schema, not walked forever */
    expect_err("listen: {http: \":80\"}\n" MIN_UPSTREAMS "sites: &x [*x]\n", 5,
               "expected a mapping, got a list");
}

Test(config, error_mentions_file_name)
{
    char *err = NULL;

    cr_assert_null(sy_config_load_string("/etc/switchyard/sy.yaml", "x: 1\n", 5, &err));
    cr_assert(strncmp(err, "/etc/switchyard/sy.yaml:1: ", 27) == 0, "%s", err);
    sy_free(err);
}

Test(config, free_null_is_safe)
{
    sy_config_free(NULL);
}

Test(config, failure_after_partial_build_frees_cleanly)
{
    /* Fails at the very end (tls), after sites, upstreams, hosts and the index exist:
     * run under ASan/LeakSanitizer this proves the partial snapshot is freed. */
    expect_err("workers: 2\n"
               "listen: {http: \":80\", admin: 127.0.0.1:9901}\n"
               "upstreams:\n"
               "  a: {servers: [a.b:1, c.d:2]}\n"
               "  b: {servers: [e.f:3]}\n"
               "sites:\n"
               "  - hosts: [a.org, \"*.a.org\", \"*\"]\n"
               "    version: {header: X-V, routes: {\"1\": a, \"2\": b}, default: \"2\"}\n"
               "tls:\n"
               "  hsts: max-age=1\n"
               "  certificates: [{cert: /c, key: /k}]\n"
               "  acme: {directory: https://x, email: e, domains: [a.org], storage: /s,"
               " ca: /ca, renew_before: nope}\n",
               12, "renew_before");
}

/* ---- sites[].mirror ---------------------------------------------------------------------- */

/* listen + two upstreams + a version site take lines 1..9; mirror keys start at line 11 */
#define MIRROR_BASE                                                                              \
    "listen: {http: \":80\"}\n"                                                                  \
    "upstreams:\n"                                                                               \
    "  v1: {servers: [127.0.0.1:1]}\n"                                                           \
    "  v2: {servers: [127.0.0.1:2]}\n"                                                           \
    "sites:\n"                                                                                   \
    "  - hosts: [retro.example.org]\n"                                                           \
    "    version:\n"                                                                             \
    "      header: X-Postfacto-Version\n"                                                        \
    "      routes: {\"4.1.0\": v1, \"4.2.0\": v2}\n"                                             \
    "      default: \"4.2.0\"\n"                                                                 \
    "    mirror:\n"

Test(config, mirror_defaults)
{
    struct sy_config *cfg = load_ok(MIRROR_BASE "      to: \"4.1.0\"\n");
    const struct sy_mirror_conf *m = cfg->sites[0].mirror;
    cr_assert_not_null(m);
    cr_assert_eq(m->line, 11);
    cr_assert_eq(m->to, 0);
    cr_assert_eq(m->percent, 100);
    cr_assert_eq(m->nmethods, 2);
    cr_assert_str_eq(m->methods[0], "GET");
    cr_assert_str_eq(m->methods[1], "HEAD");
    cr_assert_eq(m->compare, 0);
    cr_assert_eq(m->noise_percent, 0);
    cr_assert_eq(m->timeout_ms, 0);
    cr_assert_eq(m->max_body, 64 * 1024);
    cr_assert_eq(m->max_response, 256 * 1024);
    cr_assert_eq(m->nheaders, 1);
    cr_assert_str_eq(m->headers[0], "content-type");
    cr_assert_eq(m->nignore_paths, 0);
    cr_assert_eq(m->max_inflight, 64);
    cr_assert_eq(m->max_buffered, 16 * 1024 * 1024);
    sy_config_free(cfg);
    /* no mirror block, no mirror */
    cfg = load_ok(MIN);
    cr_assert_null(cfg->sites[0].mirror);
    sy_config_free(cfg);
}

Test(config, mirror_every_key)
{
    struct sy_config *cfg = load_ok(MIRROR_BASE
                                    "      to: \"4.1.0\"\n"
                                    "      percent: 25\n"
                                    "      methods: [GET, POST]\n"
                                    "      compare: true\n"
                                    "      timeout: 750ms\n"
                                    "      max_body: 8k\n"
                                    "      max_response: 1m\n"
                                    "      headers: [Content-Type, ETag]\n"
                                    "      ignore_paths: [$.updated_at, \"$.items[*].id\", $.a.*]\n"
                                    "      noise_percent: 10\n"
                                    "      max_inflight: 8\n"
                                    "      max_buffered: 2m\n");
    const struct sy_mirror_conf *m = cfg->sites[0].mirror;
    cr_assert_eq(m->percent, 25);
    cr_assert_str_eq(m->methods[1], "POST");
    cr_assert(m->compare);
    cr_assert_eq(m->timeout_ms, 750);
    cr_assert_eq(m->max_body, 8192);
    cr_assert_eq(m->max_response, 1024 * 1024);
    cr_assert_eq(m->nheaders, 2);
    cr_assert_str_eq(m->headers[1], "etag");
    cr_assert_eq(m->nignore_paths, 3);
    cr_assert_str_eq(m->ignore_paths[1], "$.items[*].id");
    cr_assert_eq(m->noise_percent, 10);
    cr_assert_eq(m->max_inflight, 8);
    cr_assert_eq(m->max_buffered, 2 * 1024 * 1024);
    sy_config_free(cfg);
    /* compare alone learns noise from 5 % of the copies */
    cfg = load_ok(MIRROR_BASE "      to: \"4.1.0\"\n      compare: yes\n");
    cr_assert_eq(cfg->sites[0].mirror->noise_percent, 5);
    sy_config_free(cfg);
}

Test(config, mirror_errors)
{
    expect_err(MIRROR_BASE "      percent: 5\n", 11, "missing required key \"to\"");
    expect_err(MIRROR_BASE "      to: \"9.9\"\n", 12, "\"9.9\" is not one of the routes");
    expect_err(MIRROR_BASE "      to: \"4.1.0\"\n      percent: 101\n", 13, "out of range 0..100");
    expect_err(MIRROR_BASE "      to: \"4.1.0\"\n      methods: [get]\n", 13, "is not a method");
    expect_err(MIRROR_BASE "      to: \"4.1.0\"\n      methods: []\n", 13,
               "at least one method");
    expect_err(MIRROR_BASE "      to: \"4.1.0\"\n      timeout: soon\n", 13, "invalid duration");
    expect_err(MIRROR_BASE "      to: \"4.1.0\"\n      max_body: 2m\n", 13, "out of range");
    expect_err(MIRROR_BASE "      to: \"4.1.0\"\n      compare: true\n      headers: [\"a b\"]\n",
               14, "is not a valid header name");
    expect_err(MIRROR_BASE "      to: \"4.1.0\"\n      compare: true\n"
                           "      ignore_paths: [$.ok, \"items[0]\"]\n",
               14, "is not a JSON path");
    expect_err(MIRROR_BASE "      to: \"4.1.0\"\n      compare: true\n"
                           "      ignore_paths: [\"$.a[x]\"]\n",
               14, "is not a JSON path");
    expect_err(MIRROR_BASE "      to: \"4.1.0\"\n      noise_percent: 5\n", 13,
               "needs \"compare: true\"");
    expect_err(MIRROR_BASE "      to: \"4.1.0\"\n      ignore_paths: [$.a]\n", 13,
               "\"ignore_paths\" needs \"compare: true\"");
    expect_err(MIRROR_BASE "      to: \"4.1.0\"\n      max_inflight: 0\n", 13, "out of range");
    expect_err(MIRROR_BASE "      to: \"4.1.0\"\n      max_buffered: 1k\n", 13, "out of range");
    expect_err(MIRROR_BASE "      to: \"4.1.0\"\n      copies: 2\n", 13, "unknown key \"copies\"");
    expect_err(MIRROR_BASE "      [to, \"4.1.0\"]\n", 12, "expected a mapping");
    expect_err("listen: {http: \":80\"}\n" MIN_UPSTREAMS
               "sites:\n"
               "  - hosts: [a.example.org]\n"
               "    upstream: app\n"
               "    mirror: {to: \"1\"}\n",
               8, "needs a \"version\" block");
}
