/*
 * config.c: YAML (libyaml document API) to struct sy_config, with
 * "FILE:LINE: reason" errors pointing at the offending node.
 *
 * The walk is driven by the schema (docs/configuration.md), never generic:
 * each level knows its keys, so aliases cannot make it loop or blow up.
 * Every allocation is attached to the snapshot as soon as it is made, so a
 * failure anywhere only has to call sy_config_free().
 */
#include "config/config.h"
#include "config/config_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "core/alloc.h"
#include "core/log.h"
#include "core/str.h"
#include "event/loop.h"

#define MAX_FILE_BYTES (4u << 20)
#define MAX_SERVERS 1024

struct ctx {
    yaml_document_t *doc;
    const char *file;
    char **err;
    struct sy_config *cfg;
    /* every site host with its line, for the duplicate check and the index */
    struct host_rec {
        const char *name;
        size_t len;
        size_t site;
        int line;
    } *hosts;
    size_t nhosts, hostcap;
};

/* One expected key of a mapping; `val` and `key` are filled by get_fields(). */
struct field {
    const char *name;
    yaml_node_t *key;
    yaml_node_t *val;
};

static int line_of(const yaml_node_t *n)
{
    return n ? (int)n->start_mark.line + 1 : 1;
}

static int fail_line(struct ctx *c, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail_line(struct ctx *c, int line, const char *fmt, ...)
{
    va_list ap;
    char *msg;

    if (*c->err)
        return -1;
    va_start(ap, fmt);
    msg = sy_vasprintf(fmt, ap);
    va_end(ap);
    *c->err = sy_asprintf("%s:%d: %s", c->file, line, msg);
    sy_free(msg);
    return -1;
}

#define fail(c, node, ...) fail_line((c), line_of(node), __VA_ARGS__)

static yaml_node_t *node_at(struct ctx *c, int index)
{
    return yaml_document_get_node(c->doc, index);
}

static const char *type_name(const yaml_node_t *n)
{
    switch (n->type) {
    case YAML_SCALAR_NODE:
        return "a scalar";
    case YAML_SEQUENCE_NODE:
        return "a list";
    case YAML_MAPPING_NODE:
        return "a mapping";
    default:
        return "nothing";
    }
}

static int expect_type(struct ctx *c, yaml_node_t *n, yaml_node_type_t t, const char *what)
{
    static const char *const want[] = {"", "a scalar value", "a list", "a mapping"};

    if (n->type == t)
        return 0;
    return fail(c, n, "%s: expected %s, got %s", what, want[t], type_name(n));
}

/* A scalar as a C string: rejects other node types and embedded NUL bytes. */
static int scalar(struct ctx *c, yaml_node_t *n, const char *what, const char **out)
{
    if (expect_type(c, n, YAML_SCALAR_NODE, what) < 0)
        return -1;
    const char *s = (const char *)n->data.scalar.value;
    if (strlen(s) != n->data.scalar.length)
        return fail(c, n, "%s: contains a NUL byte", what);
    *out = s;
    return 0;
}

/* A non-empty string value, copied into *out (which must be NULL). */
static int string_value(struct ctx *c, yaml_node_t *n, const char *what, char **out)
{
    const char *s;

    if (scalar(c, n, what, &s) < 0)
        return -1;
    if (!*s)
        return fail(c, n, "%s: empty value", what);
    *out = sy_strdup(s);
    return 0;
}

static int bool_value(struct ctx *c, yaml_node_t *n, const char *what, int *out)
{
    const char *s;

    if (scalar(c, n, what, &s) < 0)
        return -1;
    if (sy__conf_parse_bool(s, out) < 0)
        return fail(c, n, "%s: invalid boolean \"%s\" (use true/false, yes/no, on/off)", what, s);
    return 0;
}

static int uint_value(struct ctx *c, yaml_node_t *n, const char *what, uint64_t min,
                      uint64_t max, uint32_t *out)
{
    const char *s;
    uint64_t v;

    if (scalar(c, n, what, &s) < 0)
        return -1;
    if (sy__conf_parse_uint(s, UINT64_MAX, &v) < 0)
        return fail(c, n, "%s: invalid number \"%s\"", what, s);
    if (v < min || v > max)
        return fail(c, n, "%s: %s out of range %llu..%llu", what, s, (unsigned long long)min,
                    (unsigned long long)max);
    *out = (uint32_t)v;
    return 0;
}

static int duration_value(struct ctx *c, yaml_node_t *n, const char *what, uint32_t min_ms,
                          uint32_t *out)
{
    const char *s;
    uint32_t ms;

    if (scalar(c, n, what, &s) < 0)
        return -1;
    if (sy_config_parse_duration(s, &ms) < 0)
        return fail(c, n, "%s: invalid duration \"%s\" (e.g. 250ms, 10s, 5m, 1h, 2d)", what, s);
    if (ms < min_ms)
        return fail(c, n, "%s: must be at least %ums", what, min_ms);
    *out = ms;
    return 0;
}

static int size_value(struct ctx *c, yaml_node_t *n, const char *what, uint64_t min, uint64_t max,
                      uint64_t *out)
{
    const char *s;
    uint64_t v;

    if (scalar(c, n, what, &s) < 0)
        return -1;
    if (sy_config_parse_size(s, &v) < 0)
        return fail(c, n, "%s: invalid size \"%s\" (e.g. 512, 16k, 1m, 2g)", what, s);
    if (v < min || v > max)
        return fail(c, n, "%s: %s out of range %llu..%llu bytes", what, s,
                    (unsigned long long)min, (unsigned long long)max);
    *out = v;
    return 0;
}

/* Duplicate-key check by sorting the keys: keeps huge mappings O(n log n). */
struct keyref {
    const char *s;
    size_t len;
    size_t pos;
    yaml_node_t *node;
};

static int keyref_cmp(const void *a, const void *b)
{
    const struct keyref *x = a, *y = b;

    if (x->len != y->len)
        return x->len < y->len ? -1 : 1;
    int r = memcmp(x->s, y->s, x->len);
    if (r)
        return r;
    return x->pos < y->pos ? -1 : (x->pos > y->pos);
}

static int check_keys(struct ctx *c, yaml_node_t *map, const char *what)
{
    yaml_node_pair_t *start = map->data.mapping.pairs.start;
    size_t n = (size_t)(map->data.mapping.pairs.top - start);
    struct keyref *refs;
    const struct keyref *dup = NULL, *first = NULL;

    if (n < 2) {
        if (n == 1) {
            yaml_node_t *k = node_at(c, start[0].key);
            if (k->type != YAML_SCALAR_NODE)
                return fail(c, k, "%s: keys must be scalars", what);
        }
        return 0;
    }
    refs = sy_calloc(n, sizeof(*refs));
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *k = node_at(c, start[i].key);
        if (k->type != YAML_SCALAR_NODE) {
            sy_free(refs);
            return fail(c, k, "%s: keys must be scalars", what);
        }
        refs[i].s = (const char *)k->data.scalar.value;
        refs[i].len = k->data.scalar.length;
        refs[i].pos = i;
        refs[i].node = k;
    }
    qsort(refs, n, sizeof(*refs), keyref_cmp);
    for (size_t i = 1; i < n; i++) {
        if (refs[i].len == refs[i - 1].len && memcmp(refs[i].s, refs[i - 1].s, refs[i].len) == 0 &&
            (!dup || refs[i].pos < dup->pos)) {
            dup = &refs[i];
            first = &refs[i - 1];
            while (first > refs && first[-1].len == first->len &&
                   memcmp(first[-1].s, first->s, first->len) == 0)
                first--;
        }
    }
    int rc = 0;
    if (dup)
        rc = fail(c, dup->node, "%s: duplicate key \"%.*s\" (first at line %d)", what,
                  (int)dup->len, dup->s, line_of(first->node));
    sy_free(refs);
    return rc;
}

/*
 * Checks that `map` is a mapping whose keys are unique and all listed in
 * `f`, and fills f[i].key / f[i].val (NULL when absent).
 */
static int get_fields(struct ctx *c, yaml_node_t *map, const char *what, struct field *f,
                      size_t nf)
{
    if (expect_type(c, map, YAML_MAPPING_NODE, what) < 0 || check_keys(c, map, what) < 0)
        return -1;
    for (size_t i = 0; i < nf; i++)
        f[i].key = f[i].val = NULL;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = node_at(c, p->key);
        size_t i;
        for (i = 0; i < nf; i++)
            if (k->data.scalar.length == strlen(f[i].name) &&
                strcmp((const char *)k->data.scalar.value, f[i].name) == 0)
                break;
        if (i == nf)
            return fail(c, k, "%s: unknown key \"%s\"", what, (const char *)k->data.scalar.value);
        f[i].key = k;
        f[i].val = node_at(c, p->value);
    }
    return 0;
}

/* Missing required key: reported at `where` (the parent's key when there is one). */
static int missing(struct ctx *c, yaml_node_t *where, const char *what, const char *key)
{
    return fail(c, where, "%s: missing required key \"%s\"", what, key);
}

static size_t seq_len(const yaml_node_t *n)
{
    return (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
}

/* ---- workers, limits, timeouts, log ------------------------------------------------------ */

static int load_workers(struct ctx *c, yaml_node_t *n)
{
    const char *s;

    if (scalar(c, n, "workers", &s) < 0)
        return -1;
    if (strcmp(s, "auto") == 0) {
        c->cfg->workers = 0;
        return 0;
    }
    return uint_value(c, n, "workers", 1, 256, &c->cfg->workers);
}

static int load_io_backend(struct ctx *c, yaml_node_t *n)
{
    const char *s;
    enum sy_loop_backend b;

    if (scalar(c, n, "io_backend", &s) < 0)
        return -1;
    if (sy_loop_backend_parse(s, &b) < 0)
        return fail(c, n, "io_backend: unknown backend \"%s\" (auto, epoll, io_uring)", s);
    c->cfg->io_backend = (int)b;
    return 0;
}

static int load_limits(struct ctx *c, yaml_node_t *n)
{
    struct field f[] = {{"max_connections", 0, 0}, {"max_request_head", 0, 0},
                        {"max_headers", 0, 0},     {"max_uri", 0, 0},
                        {"max_body", 0, 0}};
    uint64_t v;

    if (get_fields(c, n, "limits", f, 5) < 0)
        return -1;
    if (f[0].val && uint_value(c, f[0].val, "limits.max_connections", 1, 10000000,
                               &c->cfg->limits.max_connections) < 0)
        return -1;
    if (f[1].val) {
        if (size_value(c, f[1].val, "limits.max_request_head", 1024, 1024 * 1024, &v) < 0)
            return -1;
        c->cfg->limits.max_request_head = (uint32_t)v;
    }
    if (f[2].val &&
        uint_value(c, f[2].val, "limits.max_headers", 1, 10000, &c->cfg->limits.max_headers) < 0)
        return -1;
    if (f[3].val) {
        if (size_value(c, f[3].val, "limits.max_uri", 16, 1024 * 1024, &v) < 0)
            return -1;
        c->cfg->limits.max_uri = (uint32_t)v;
    }
    if (f[4].val && size_value(c, f[4].val, "limits.max_body", 0, UINT64_MAX,
                               &c->cfg->limits.max_body) < 0)
        return -1;
    if (c->cfg->limits.max_uri > c->cfg->limits.max_request_head)
        return fail(c, f[3].val ? f[3].val : f[1].val,
                    "limits.max_uri (%u) must not exceed limits.max_request_head (%u)",
                    c->cfg->limits.max_uri, c->cfg->limits.max_request_head);
    return 0;
}

static int load_timeouts(struct ctx *c, yaml_node_t *n)
{
    struct field f[] = {{"client_header", 0, 0},     {"client_body", 0, 0},
                        {"keepalive", 0, 0},         {"upstream_connect", 0, 0},
                        {"upstream_response", 0, 0}, {"tunnel_idle", 0, 0},
                        {"drain", 0, 0},             {"drain_grace", 0, 0}};
    uint32_t *dst[] = {&c->cfg->timeouts.client_header_ms,   &c->cfg->timeouts.client_body_ms,
                       &c->cfg->timeouts.keepalive_ms,       &c->cfg->timeouts.upstream_connect_ms,
                       &c->cfg->timeouts.upstream_response_ms, &c->cfg->timeouts.tunnel_idle_ms,
                       &c->cfg->timeouts.drain_ms,       &c->cfg->timeouts.drain_grace_ms};
    /* keepalive 0 turns client keep-alive off; drain 0 exits at once. */
    static const uint32_t min_ms[] = {1, 1, 0, 1, 1, 1, 0, 0};
    enum { NFIELDS = sizeof(f) / sizeof(f[0]) };

    if (get_fields(c, n, "timeouts", f, NFIELDS) < 0)
        return -1;
    for (size_t i = 0; i < NFIELDS; i++) {
        char what[64];
        if (!f[i].val)
            continue;
        snprintf(what, sizeof(what), "timeouts.%s", f[i].name);
        if (duration_value(c, f[i].val, what, min_ms[i], dst[i]) < 0)
            return -1;
    }
    return 0;
}

static int load_log(struct ctx *c, yaml_node_t *n)
{
    static const char *const levels[] = {"error", "warn", "info", "debug"};
    struct field f[] = {{"access", 0, 0}, {"level", 0, 0}};
    const char *s;

    if (get_fields(c, n, "log", f, 2) < 0)
        return -1;
    if (f[0].val && bool_value(c, f[0].val, "log.access", &c->cfg->log.access) < 0)
        return -1;
    if (f[1].val) {
        if (scalar(c, f[1].val, "log.level", &s) < 0)
            return -1;
        for (int i = 0; i < 4; i++) {
            if (strcmp(s, levels[i]) == 0) {
                c->cfg->log.level = SY_LOG_ERROR + i;
                return 0;
            }
        }
        return fail(c, f[1].val, "log.level: unknown level \"%s\" (error, warn, info, debug)", s);
    }
    return 0;
}

/* ---- http2 -------------------------------------------------------------------------------- */

static int load_http2(struct ctx *c, yaml_node_t *n)
{
    struct field f[] = {{"enabled", 0, 0},              {"max_concurrent_streams", 0, 0},
                        {"max_header_list_size", 0, 0}, {"max_resets", 0, 0},
                        {"cleartext", 0, 0},            {"settings_timeout", 0, 0}};
    uint64_t v;

    if (get_fields(c, n, "http2", f, 6) < 0)
        return -1;
    if (f[0].val && bool_value(c, f[0].val, "http2.enabled", &c->cfg->http2.enabled) < 0)
        return -1;
    if (f[1].val && uint_value(c, f[1].val, "http2.max_concurrent_streams", 1, 10000,
                               &c->cfg->http2.max_concurrent_streams) < 0)
        return -1;
    if (f[2].val) {
        if (size_value(c, f[2].val, "http2.max_header_list_size", 1024, 1024 * 1024, &v) < 0)
            return -1;
        c->cfg->http2.max_header_list_size = (uint32_t)v;
    }
    if (f[3].val && uint_value(c, f[3].val, "http2.max_resets", 1, 1000000,
                               &c->cfg->http2.max_resets) < 0)
        return -1;
    if (f[4].val && bool_value(c, f[4].val, "http2.cleartext", &c->cfg->http2.cleartext) < 0)
        return -1;
    if (f[5].val && duration_value(c, f[5].val, "http2.settings_timeout", 100,
                                   &c->cfg->http2.settings_timeout_ms) < 0)
        return -1;
    return 0;
}

/* ---- listen ------------------------------------------------------------------------------ */

static int load_addr(struct ctx *c, yaml_node_t *n, const char *what, struct sy_listen_addr *a)
{
    const char *s, *why;

    if (scalar(c, n, what, &s) < 0)
        return -1;
    if (sy_config_parse_listen(s, &a->ss, &a->len, &why) < 0)
        return fail(c, n, "%s: bad address \"%s\": %s", what, s, why);
    a->set = 1;
    a->text = sy_strdup(s);
    a->line = line_of(n);
    return 0;
}

static int addr_port(const struct sy_listen_addr *a)
{
    if (a->ss.ss_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)&a->ss)->sin6_port);
    return ntohs(((const struct sockaddr_in *)&a->ss)->sin_port);
}

static int addr_any(const struct sy_listen_addr *a)
{
    if (a->ss.ss_family == AF_INET6)
        return IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)&a->ss)->sin6_addr);
    return ((const struct sockaddr_in *)&a->ss)->sin_addr.s_addr == htonl(INADDR_ANY);
}

/*
 * Two listeners collide when they share a port and one address covers the
 * other (equal, or either is a wildcard): with SO_REUSEPORT both would bind
 * and split the traffic.
 */
static int addr_overlap(const struct sy_listen_addr *a, const struct sy_listen_addr *b)
{
    if (!a->set || !b->set || addr_port(a) != addr_port(b))
        return 0;
    if (addr_any(a) || addr_any(b))
        return 1;
    if (a->ss.ss_family != b->ss.ss_family)
        return 0;
    if (a->ss.ss_family == AF_INET6)
        return memcmp(&((const struct sockaddr_in6 *)&a->ss)->sin6_addr,
                      &((const struct sockaddr_in6 *)&b->ss)->sin6_addr,
                      sizeof(struct in6_addr)) == 0;
    return ((const struct sockaddr_in *)&a->ss)->sin_addr.s_addr ==
           ((const struct sockaddr_in *)&b->ss)->sin_addr.s_addr;
}

static int load_listen(struct ctx *c, yaml_node_t *key, yaml_node_t *n)
{
    struct sy_config *cfg = c->cfg;
    struct field f[] = {{"http", 0, 0}, {"https", 0, 0}, {"admin", 0, 0}};

    if (get_fields(c, n, "listen", f, 3) < 0)
        return -1;
    if (f[0].val && load_addr(c, f[0].val, "listen.http", &cfg->listen_http) < 0)
        return -1;
    if (f[1].val && load_addr(c, f[1].val, "listen.https", &cfg->listen_https) < 0)
        return -1;
    if (f[2].val && load_addr(c, f[2].val, "listen.admin", &cfg->listen_admin) < 0)
        return -1;
    if (!f[0].val && !f[1].val)
        return fail(c, key, "listen: at least one of \"http\" and \"https\" is required");
    if (addr_overlap(&cfg->listen_http, &cfg->listen_https))
        return fail_line(c, cfg->listen_https.line,
                         "listen.https: %s overlaps listen.http %s", cfg->listen_https.text,
                         cfg->listen_http.text);
    if (addr_overlap(&cfg->listen_admin, &cfg->listen_http))
        return fail_line(c, cfg->listen_admin.line,
                         "listen.admin: %s overlaps the public listener listen.http %s",
                         cfg->listen_admin.text, cfg->listen_http.text);
    if (addr_overlap(&cfg->listen_admin, &cfg->listen_https))
        return fail_line(c, cfg->listen_admin.line,
                         "listen.admin: %s overlaps the public listener listen.https %s",
                         cfg->listen_admin.text, cfg->listen_https.text);
    return 0;
}

/* ---- upstreams --------------------------------------------------------------------------- */

static int upstream_name_ok(const char *s)
{
    if (!*s)
        return 0;
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '.' || ch == '_' || ch == '-'))
            return 0;
    }
    return 1;
}

static int load_servers(struct ctx *c, yaml_node_t *key, yaml_node_t *n,
                        struct sy_upstream_conf *u)
{
    char what[300];
    size_t count;

    snprintf(what, sizeof(what), "upstreams.%s.servers", u->name);
    if (expect_type(c, n, YAML_SEQUENCE_NODE, what) < 0)
        return -1;
    count = seq_len(n);
    if (count == 0)
        return fail(c, key, "%s: at least one server is required", what);
    if (count > MAX_SERVERS)
        return fail(c, n, "%s: at most %u servers", what, MAX_SERVERS);
    u->servers = sy_calloc(count, sizeof(*u->servers));
    for (size_t i = 0; i < count; i++) {
        yaml_node_t *item = node_at(c, n->data.sequence.items.start[i]);
        struct sy_server_conf *sv = &u->servers[i];
        const char *s, *why;
        if (scalar(c, item, what, &s) < 0)
            return -1;
        if (sy__conf_parse_server(s, &sv->host, &sv->port, &why) < 0)
            return fail(c, item, "%s: bad server \"%s\": %s", what, s, why);
        u->nservers++;
        sv->line = line_of(item);
        sv->name = sy_strdup(s);
        for (char *p = sv->name; *p; p++)
            *p = (char)sy_lower((unsigned char)*p);
        for (size_t j = 0; j < i; j++)
            if (strcmp(u->servers[j].name, sv->name) == 0)
                return fail(c, item, "%s: duplicate server \"%s\" (first at line %d)", what,
                            sv->name, u->servers[j].line);
    }
    return 0;
}

static int load_upstream(struct ctx *c, yaml_node_t *key, yaml_node_t *n,
                         struct sy_upstream_conf *u)
{
    struct field f[] = {{"servers", 0, 0},   {"balance", 0, 0},          {"keepalive", 0, 0},
                        {"down_time", 0, 0}, {"resolve_interval", 0, 0}};
    char what[300];
    const char *s;

    snprintf(what, sizeof(what), "upstreams.%s", u->name);
    if (get_fields(c, n, what, f, 5) < 0)
        return -1;
    if (!f[0].val)
        return missing(c, key, what, "servers");
    if (load_servers(c, f[0].key, f[0].val, u) < 0)
        return -1;
    if (f[1].val) {
        snprintf(what, sizeof(what), "upstreams.%s.balance", u->name);
        if (scalar(c, f[1].val, what, &s) < 0)
            return -1;
        if (strcmp(s, "least_conn") == 0)
            u->balance = SY_BALANCE_LEAST_CONN;
        else if (strcmp(s, "round_robin") == 0)
            u->balance = SY_BALANCE_ROUND_ROBIN;
        else
            return fail(c, f[1].val, "%s: unknown method \"%s\" (least_conn, round_robin)", what,
                        s);
    }
    snprintf(what, sizeof(what), "upstreams.%s.keepalive", u->name);
    if (f[2].val && uint_value(c, f[2].val, what, 0, 10000, &u->keepalive) < 0)
        return -1;
    snprintf(what, sizeof(what), "upstreams.%s.down_time", u->name);
    if (f[3].val && duration_value(c, f[3].val, what, 0, &u->down_time_ms) < 0)
        return -1;
    snprintf(what, sizeof(what), "upstreams.%s.resolve_interval", u->name);
    if (f[4].val && duration_value(c, f[4].val, what, 1000, &u->resolve_interval_ms) < 0)
        return -1;
    return 0;
}

static int load_upstreams(struct ctx *c, yaml_node_t *key, yaml_node_t *n)
{
    struct sy_config *cfg = c->cfg;
    yaml_node_pair_t *p;
    size_t count;

    if (expect_type(c, n, YAML_MAPPING_NODE, "upstreams") < 0 ||
        check_keys(c, n, "upstreams") < 0)
        return -1;
    count = (size_t)(n->data.mapping.pairs.top - n->data.mapping.pairs.start);
    if (count == 0)
        return fail(c, key, "upstreams: at least one upstream is required");
    cfg->upstreams = sy_calloc(count, sizeof(*cfg->upstreams));
    for (p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *k = node_at(c, p->key);
        const char *name = (const char *)k->data.scalar.value;
        struct sy_upstream_conf *u = &cfg->upstreams[cfg->nupstreams];
        if (strlen(name) != k->data.scalar.length || !upstream_name_ok(name) ||
            k->data.scalar.length > 255)
            return fail(c, k, "upstreams: invalid name \"%s\" (use letters, digits, '.', '_', '-')",
                        name);
        cfg->nupstreams++;
        u->name = sy_strdup(name);
        u->line = line_of(k);
        u->balance = SY_BALANCE_LEAST_CONN;
        u->keepalive = 64;
        u->down_time_ms = 10 * 1000;
        u->resolve_interval_ms = 30 * 1000;
        if (load_upstream(c, k, node_at(c, p->value), u) < 0)
            return -1;
    }
    return 0;
}

static int find_upstream(struct ctx *c, yaml_node_t *n, const char *what, size_t *out)
{
    const char *s;

    if (scalar(c, n, what, &s) < 0)
        return -1;
    for (size_t i = 0; i < c->cfg->nupstreams; i++) {
        if (strcmp(c->cfg->upstreams[i].name, s) == 0) {
            *out = i;
            return 0;
        }
    }
    return fail(c, n, "%s: unknown upstream \"%s\"", what, s);
}

/* ---- sites ------------------------------------------------------------------------------- */

static int add_host(struct ctx *c, const char *name, size_t site, int line)
{
    if (c->nhosts == c->hostcap) {
        c->hostcap = c->hostcap ? c->hostcap * 2 : 16;
        c->hosts = sy_realloc(c->hosts, c->hostcap * sizeof(*c->hosts));
    }
    c->hosts[c->nhosts].name = name;
    c->hosts[c->nhosts].len = strlen(name);
    c->hosts[c->nhosts].site = site;
    c->hosts[c->nhosts].line = line;
    c->nhosts++;
    return 0;
}

static int load_hosts(struct ctx *c, yaml_node_t *key, yaml_node_t *n, size_t si,
                      struct sy_site_conf *site)
{
    char what[64];
    size_t count;

    snprintf(what, sizeof(what), "sites[%zu].hosts", si);
    if (expect_type(c, n, YAML_SEQUENCE_NODE, what) < 0)
        return -1;
    count = seq_len(n);
    if (count == 0)
        return fail(c, key, "%s: at least one host is required", what);
    site->hosts = sy_calloc(count, sizeof(*site->hosts));
    for (size_t i = 0; i < count; i++) {
        yaml_node_t *item = node_at(c, n->data.sequence.items.start[i]);
        const char *s;
        char *h;
        if (scalar(c, item, what, &s) < 0)
            return -1;
        h = sy_strdup(s);
        site->hosts[site->nhosts++] = h;
        for (char *p = h; *p; p++)
            *p = (char)sy_lower((unsigned char)*p);
        if (h[0] == '[') {
            /* "[v6]": an IPv6 literal as it appears in a Host header */
            char lit[INET6_ADDRSTRLEN + 1];
            unsigned char addr[sizeof(struct in6_addr)];
            size_t hl = strlen(h);
            if (hl < 3 || hl - 2 >= sizeof(lit) || h[hl - 1] != ']')
                return fail(c, item, "%s: invalid host name \"%s\"", what, s);
            memcpy(lit, h + 1, hl - 2);
            lit[hl - 2] = '\0';
            if (inet_pton(AF_INET6, lit, addr) != 1)
                return fail(c, item, "%s: invalid IPv6 address \"%s\"", what, s);
        } else if (strcmp(h, "*") != 0) {
            const char *name = h;
            if (h[0] == '*') {
                if (h[1] != '.')
                    return fail(c, item, "%s: bad wildcard \"%s\" (use \"*.example.org\")", what,
                                s);
                name = h + 2;
            }
            if (!sy__conf_hostname_ok(name, strlen(name)))
                return fail(c, item, "%s: invalid host name \"%s\"", what, s);
        }
        add_host(c, h, si, line_of(item));
    }
    return 0;
}

/* 1 and the index in *out when `version` is a key of the site's routes. */
static int find_route(const struct sy_site_conf *site, const char *version, size_t *out)
{
    for (size_t i = 0; i < site->version.nroutes; i++) {
        if (strcmp(site->version.routes[i].version, version) == 0) {
            *out = i;
            return 1;
        }
    }
    return 0;
}

/*
 * version.weights: a mapping from keys of routes to integers 0..SY_WEIGHT_MAX.
 * A route left out has weight 0; at least one weight must be above 0.
 */
static int load_weights(struct ctx *c, yaml_node_t *key, yaml_node_t *n, const char *what,
                        struct sy_site_conf *site)
{
    char item[SY_VERSION_MAX + 64];
    uint64_t total = 0;

    if (expect_type(c, n, YAML_MAPPING_NODE, what) < 0 || check_keys(c, n, what) < 0)
        return -1;
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *k = node_at(c, p->key);
        const char *v = (const char *)k->data.scalar.value;
        size_t ri;
        if (strlen(v) != k->data.scalar.length || !find_route(site, v, &ri))
            return fail(c, k, "%s: \"%s\" is not one of the routes", what, v);
        snprintf(item, sizeof(item), "%s[\"%s\"]", what, v);
        if (uint_value(c, node_at(c, p->value), item, 0, SY_WEIGHT_MAX,
                       &site->version.routes[ri].weight) < 0)
            return -1;
        total += site->version.routes[ri].weight;
    }
    if (total == 0)
        return fail(c, key, "%s: at least one weight must be above 0", what);
    site->version.total_weight = total;
    return 0;
}

static int load_version(struct ctx *c, yaml_node_t *key, yaml_node_t *n, size_t si,
                        struct sy_site_conf *site)
{
    struct field f[] = {{"header", 0, 0}, {"query", 0, 0},   {"cookie", 0, 0},
                        {"routes", 0, 0}, {"default", 0, 0}, {"weights", 0, 0}};
    char what[64];
    const char *s;
    yaml_node_t *routes;
    size_t count;

    snprintf(what, sizeof(what), "sites[%zu].version", si);
    if (get_fields(c, n, what, f, 6) < 0)
        return -1;
    site->has_version = 1;
    if (!f[0].val && !f[1].val && !f[2].val)
        return fail(c, key, "%s: at least one of \"header\", \"query\" and \"cookie\" is required",
                    what);
    if (!f[3].val)
        return missing(c, key, what, "routes");
    if (!f[4].val)
        return missing(c, key, what, "default");
    if (f[0].val) {
        snprintf(what, sizeof(what), "sites[%zu].version.header", si);
        if (string_value(c, f[0].val, what, &site->version.header) < 0)
            return -1;
        for (const char *p = site->version.header; *p; p++)
            if (!sy__conf_is_tchar((unsigned char)*p))
                return fail(c, f[0].val, "%s: \"%s\" is not a valid header name", what,
                            site->version.header);
    }
    if (f[1].val) {
        snprintf(what, sizeof(what), "sites[%zu].version.query", si);
        if (string_value(c, f[1].val, what, &site->version.query) < 0)
            return -1;
        for (const char *p = site->version.query; *p; p++)
            if (!sy__conf_is_unreserved((unsigned char)*p))
                return fail(c, f[1].val,
                            "%s: \"%s\" is not a valid query parameter name "
                            "(letters, digits, '-', '.', '_', '~')",
                            what, site->version.query);
    }
    if (f[2].val) {
        snprintf(what, sizeof(what), "sites[%zu].version.cookie", si);
        if (string_value(c, f[2].val, what, &site->version.cookie) < 0)
            return -1;
        for (const char *p = site->version.cookie; *p; p++)
            if (!sy__conf_is_tchar((unsigned char)*p))
                return fail(c, f[2].val, "%s: \"%s\" is not a valid cookie name", what,
                            site->version.cookie);
    }
    routes = f[3].val;
    snprintf(what, sizeof(what), "sites[%zu].version.routes", si);
    if (expect_type(c, routes, YAML_MAPPING_NODE, what) < 0 || check_keys(c, routes, what) < 0)
        return -1;
    count = (size_t)(routes->data.mapping.pairs.top - routes->data.mapping.pairs.start);
    if (count == 0)
        return fail(c, f[3].key, "%s: at least one route is required", what);
    site->version.routes = sy_calloc(count, sizeof(*site->version.routes));
    for (size_t i = 0; i < count; i++) {
        yaml_node_pair_t *p = &routes->data.mapping.pairs.start[i];
        yaml_node_t *k = node_at(c, p->key);
        struct sy_version_route *r = &site->version.routes[i];
        const char *v = (const char *)k->data.scalar.value;
        size_t vlen = k->data.scalar.length;
        if (vlen == 0)
            return fail(c, k, "%s: empty version value", what);
        if (vlen > SY_VERSION_MAX)
            return fail(c, k, "%s: version value longer than %d bytes", what, SY_VERSION_MAX);
        for (size_t j = 0; j < vlen; j++)
            if (!sy__conf_is_cookie_octet((unsigned char)v[j]))
                return fail(c, k,
                            "%s: version \"%s\" has a character not allowed in a cookie value "
                            "(space, '\"', ',', ';', '\\' or a control character)",
                            what, v);
        r->version = sy_strdup(v);
        site->version.nroutes++;
        if (find_upstream(c, node_at(c, p->value), what, &r->upstream) < 0)
            return -1;
    }
    snprintf(what, sizeof(what), "sites[%zu].version.default", si);
    if (scalar(c, f[4].val, what, &s) < 0)
        return -1;
    if (!find_route(site, s, &site->version.default_route))
        return fail(c, f[4].val, "%s: \"%s\" is not one of the routes", what, s);
    if (!f[5].val)
        return 0;
    snprintf(what, sizeof(what), "sites[%zu].version.weights", si);
    if (!site->version.cookie)
        return fail(c, f[5].key,
                    "%s: requires \"cookie\": a visitor assigned by weight is pinned by it", what);
    return load_weights(c, f[5].key, f[5].val, what, site);
}

/* ---- sites[].mirror ---------------------------------------------------------------------- */

/*
 * A list of non-empty scalars, each checked by ok() (NULL: any) and
 * lower-cased when `lower`; *out gets a NULL-terminated copy.
 */
static int string_list(struct ctx *c, yaml_node_t *n, const char *what, int lower,
                       int (*ok)(const char *), const char *bad, char ***out, size_t *count)
{
    if (expect_type(c, n, YAML_SEQUENCE_NODE, what) < 0)
        return -1;
    size_t len = seq_len(n);
    if (len > 64)
        return fail(c, n, "%s: at most 64 entries", what);
    *out = sy_calloc(len + 1, sizeof(**out));
    for (size_t i = 0; i < len; i++) {
        yaml_node_t *item = node_at(c, n->data.sequence.items.start[i]);
        char *v = NULL;
        if (string_value(c, item, what, &v) < 0)
            return -1;
        (*out)[(*count)++] = v;
        if (lower)
            for (char *p = v; *p; p++)
                *p = (char)sy_lower((unsigned char)*p);
        if (ok && !ok(v))
            return fail(c, item, "%s: \"%s\" %s", what, v, bad);
    }
    return 0;
}

static void free_list(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        sy_free(v[i]);
    sy_free(v);
}

static int token_ok(const char *s)
{
    for (; *s; s++)
        if (!sy__conf_is_tchar((unsigned char)*s))
            return 0;
    return 1;
}

static int method_ok(const char *s)
{
    for (; *s; s++)
        if (!(*s >= 'A' && *s <= 'Z'))
            return 0;
    return 1;
}

/*
 * A JSON path as the comparison reports them: "$", then ".name" (letters,
 * digits, '_', '-'), ".*", "[N]" or "[*]" steps.
 */
static int json_path_ok(const char *s)
{
    if (*s++ != '$')
        return 0;
    while (*s) {
        if (*s == '.') {
            s++;
            if (*s == '*') {
                s++;
                continue;
            }
            const char *b = s;
            while ((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
                   (*s >= '0' && *s <= '9') || *s == '_' || *s == '-')
                s++;
            if (s == b)
                return 0;
        } else if (*s == '[') {
            s++;
            if (*s == '*') {
                s++;
            } else {
                const char *b = s;
                while (*s >= '0' && *s <= '9')
                    s++;
                if (s == b)
                    return 0;
            }
            if (*s++ != ']')
                return 0;
        } else {
            return 0;
        }
    }
    return 1;
}

static int load_mirror(struct ctx *c, yaml_node_t *key, yaml_node_t *n, size_t si,
                       struct sy_site_conf *site)
{
    struct field f[] = {{"to", 0, 0},           {"percent", 0, 0},       {"methods", 0, 0},
                        {"compare", 0, 0},      {"timeout", 0, 0},       {"max_body", 0, 0},
                        {"max_response", 0, 0}, {"headers", 0, 0},       {"ignore_paths", 0, 0},
                        {"noise_percent", 0, 0}, {"max_inflight", 0, 0}, {"max_buffered", 0, 0}};
    enum { NFIELDS = sizeof(f) / sizeof(f[0]) };
    char what[64];
    const char *s;
    struct sy_mirror_conf *m;

    snprintf(what, sizeof(what), "sites[%zu].mirror", si);
    if (get_fields(c, n, what, f, NFIELDS) < 0)
        return -1;
    if (!site->has_version)
        return fail(c, key, "%s: needs a \"version\" block (it copies to a version)", what);
    m = site->mirror = sy_calloc(1, sizeof(*m));
    m->line = line_of(key);
    m->percent = 100;
    m->max_body = 64 * 1024;
    m->max_response = 256 * 1024;
    m->max_inflight = 64;
    m->max_buffered = 16 * 1024 * 1024;
    if (!f[0].val)
        return missing(c, key, what, "to");
    snprintf(what, sizeof(what), "sites[%zu].mirror.to", si);
    if (scalar(c, f[0].val, what, &s) < 0)
        return -1;
    size_t r;
    for (r = 0; r < site->version.nroutes; r++)
        if (strcmp(site->version.routes[r].version, s) == 0)
            break;
    if (r == site->version.nroutes)
        return fail(c, f[0].val, "%s: \"%s\" is not one of the routes", what, s);
    m->to = r;
    snprintf(what, sizeof(what), "sites[%zu].mirror.percent", si);
    if (f[1].val && uint_value(c, f[1].val, what, 0, 100, &m->percent) < 0)
        return -1;
    snprintf(what, sizeof(what), "sites[%zu].mirror.methods", si);
    if (f[2].val) {
        if (string_list(c, f[2].val, what, 0, method_ok, "is not a method (upper-case letters)",
                        &m->methods, &m->nmethods) < 0)
            return -1;
        if (!m->nmethods)
            return fail(c, f[2].key, "%s: at least one method is required", what);
    } else {
        m->methods = sy_calloc(3, sizeof(*m->methods));
        m->methods[m->nmethods++] = sy_strdup("GET");
        m->methods[m->nmethods++] = sy_strdup("HEAD");
    }
    snprintf(what, sizeof(what), "sites[%zu].mirror.compare", si);
    if (f[3].val && bool_value(c, f[3].val, what, &m->compare) < 0)
        return -1;
    m->noise_percent = m->compare ? 5 : 0;
    snprintf(what, sizeof(what), "sites[%zu].mirror.timeout", si);
    if (f[4].val && duration_value(c, f[4].val, what, 1, &m->timeout_ms) < 0)
        return -1;
    snprintf(what, sizeof(what), "sites[%zu].mirror.max_body", si);
    if (f[5].val && size_value(c, f[5].val, what, 0, 1024 * 1024, &m->max_body) < 0)
        return -1;
    snprintf(what, sizeof(what), "sites[%zu].mirror.max_response", si);
    if (f[6].val && size_value(c, f[6].val, what, 0, 16 * 1024 * 1024, &m->max_response) < 0)
        return -1;
    snprintf(what, sizeof(what), "sites[%zu].mirror.headers", si);
    if (f[7].val) {
        if (string_list(c, f[7].val, what, 1, token_ok, "is not a valid header name",
                        &m->headers, &m->nheaders) < 0)
            return -1;
    } else {
        m->headers = sy_calloc(2, sizeof(*m->headers));
        m->headers[m->nheaders++] = sy_strdup("content-type");
    }
    if (m->nheaders > 16)
        return fail(c, f[7].val, "%s: at most 16 headers", what);
    snprintf(what, sizeof(what), "sites[%zu].mirror.ignore_paths", si);
    if (f[8].val &&
        string_list(c, f[8].val, what, 0, json_path_ok,
                    "is not a JSON path (e.g. $.updated_at, $.items[*].id)", &m->ignore_paths,
                    &m->nignore_paths) < 0)
        return -1;
    snprintf(what, sizeof(what), "sites[%zu].mirror.noise_percent", si);
    if (f[9].val && uint_value(c, f[9].val, what, 0, 100, &m->noise_percent) < 0)
        return -1;
    if (f[9].val && m->noise_percent && !m->compare)
        return fail(c, f[9].val, "%s: learning noise needs \"compare: true\"", what);
    snprintf(what, sizeof(what), "sites[%zu].mirror.max_inflight", si);
    if (f[10].val && uint_value(c, f[10].val, what, 1, 100000, &m->max_inflight) < 0)
        return -1;
    snprintf(what, sizeof(what), "sites[%zu].mirror.max_buffered", si);
    if (f[11].val && size_value(c, f[11].val, what, 4096, (uint64_t)1 << 32, &m->max_buffered) < 0)
        return -1;
    if (!m->compare && (f[6].val || f[7].val || f[8].val))
        return fail(c, f[6].val ? f[6].key : f[7].val ? f[7].key : f[8].key,
                    "sites[%zu].mirror: \"%s\" needs \"compare: true\"", si,
                    f[6].val ? "max_response" : f[7].val ? "headers" : "ignore_paths");
    return 0;
}

static int load_site(struct ctx *c, yaml_node_t *n, size_t si, struct sy_site_conf *site)
{
    struct field f[] = {{"hosts", 0, 0}, {"upstream", 0, 0}, {"version", 0, 0}, {"mirror", 0, 0}};
    char what[64];

    snprintf(what, sizeof(what), "sites[%zu]", si);
    site->line = line_of(n);
    if (get_fields(c, n, what, f, 4) < 0)
        return -1;
    if (!f[0].val)
        return missing(c, n, what, "hosts");
    if (load_hosts(c, f[0].key, f[0].val, si, site) < 0)
        return -1;
    if (f[1].val && f[2].val)
        return fail(c, f[2].key, "%s: use either \"upstream\" or \"version\", not both", what);
    if (!f[1].val && !f[2].val)
        return fail(c, n, "%s: one of \"upstream\" or \"version\" is required", what);
    if (f[1].val) {
        snprintf(what, sizeof(what), "sites[%zu].upstream", si);
        if (find_upstream(c, f[1].val, what, &site->upstream) < 0)
            return -1;
    } else if (load_version(c, f[2].key, f[2].val, si, site) < 0) {
        return -1;
    }
    if (f[3].val)
        return load_mirror(c, f[3].key, f[3].val, si, site);
    return 0;
}

static int load_sites(struct ctx *c, yaml_node_t *key, yaml_node_t *n)
{
    struct sy_config *cfg = c->cfg;
    size_t count;

    if (expect_type(c, n, YAML_SEQUENCE_NODE, "sites") < 0)
        return -1;
    count = seq_len(n);
    if (count == 0)
        return fail(c, key, "sites: at least one site is required");
    cfg->sites = sy_calloc(count, sizeof(*cfg->sites));
    for (size_t i = 0; i < count; i++) {
        cfg->nsites++;
        if (load_site(c, node_at(c, n->data.sequence.items.start[i]), i, &cfg->sites[i]) < 0)
            return -1;
    }
    return 0;
}

/* ---- host index -------------------------------------------------------------------------- */

static int host_rec_cmp(const void *a, const void *b)
{
    const struct host_rec *x = a, *y = b;

    if (x->len != y->len)
        return x->len < y->len ? -1 : 1;
    int r = memcmp(x->name, y->name, x->len);
    if (r)
        return r;
    return (x->line > y->line) - (x->line < y->line);
}

static int entry_cmp(const void *a, const void *b)
{
    const struct sy_host_entry *x = a, *y = b;

    if (x->len != y->len)
        return x->len < y->len ? -1 : 1;
    return memcmp(x->name, y->name, x->len);
}

/* Sorts all hosts, reports the earliest repeated one, then fills cfg->hostidx. */
static int build_host_index(struct ctx *c)
{
    struct sy_host_index *idx = &c->cfg->hostidx;
    const struct host_rec *dup = NULL, *first = NULL;
    size_t nwild = 0, nexact = 0;

    if (c->nhosts == 0)
        return 0;
    qsort(c->hosts, c->nhosts, sizeof(*c->hosts), host_rec_cmp);
    for (size_t i = 1; i < c->nhosts; i++) {
        const struct host_rec *a = &c->hosts[i - 1], *b = &c->hosts[i];
        if (a->len == b->len && memcmp(a->name, b->name, a->len) == 0 &&
            (!dup || b->line < dup->line)) {
            dup = b;
            first = a;
            while (first > c->hosts && first[-1].len == first->len &&
                   memcmp(first[-1].name, first->name, first->len) == 0)
                first--;
        }
    }
    if (dup)
        return fail_line(c, dup->line, "sites: duplicate host \"%s\" (first at line %d)",
                         dup->name, first->line);
    for (size_t i = 0; i < c->nhosts; i++) {
        if (c->hosts[i].name[0] != '*')
            nexact++;
        else if (c->hosts[i].len > 1)
            nwild++;
    }
    idx->exact = sy_calloc(nexact, sizeof(*idx->exact));
    idx->wild = sy_calloc(nwild, sizeof(*idx->wild));
    for (size_t i = 0; i < c->nhosts; i++) {
        const struct host_rec *h = &c->hosts[i];
        if (h->name[0] != '*') {
            idx->exact[idx->nexact++] = (struct sy_host_entry){h->name, h->len, h->site};
        } else if (h->len > 1) {
            /* "*.example.org" is stored as ".example.org" */
            idx->wild[idx->nwild++] = (struct sy_host_entry){h->name + 1, h->len - 1, h->site};
        } else {
            idx->has_catchall = 1;
            idx->catchall = h->site;
        }
    }
    qsort(idx->exact, idx->nexact, sizeof(*idx->exact), entry_cmp);
    qsort(idx->wild, idx->nwild, sizeof(*idx->wild), entry_cmp);
    return 0;
}

/* ---- tls --------------------------------------------------------------------------------- */

static int load_certs(struct ctx *c, yaml_node_t *n)
{
    struct sy_tls_conf *tls = &c->cfg->tls;
    size_t count;

    if (expect_type(c, n, YAML_SEQUENCE_NODE, "tls.certificates") < 0)
        return -1;
    count = seq_len(n);
    tls->certs = sy_calloc(count, sizeof(*tls->certs));
    for (size_t i = 0; i < count; i++) {
        yaml_node_t *item = node_at(c, n->data.sequence.items.start[i]);
        struct sy_tls_cert_conf *cc = &tls->certs[i];
        struct field f[] = {{"cert", 0, 0}, {"key", 0, 0}};
        char what[64];
        snprintf(what, sizeof(what), "tls.certificates[%zu]", i);
        if (get_fields(c, item, what, f, 2) < 0)
            return -1;
        tls->ncerts++;
        cc->line = line_of(item);
        if (!f[0].val)
            return missing(c, item, what, "cert");
        if (!f[1].val)
            return missing(c, item, what, "key");
        snprintf(what, sizeof(what), "tls.certificates[%zu].cert", i);
        if (string_value(c, f[0].val, what, &cc->cert) < 0)
            return -1;
        snprintf(what, sizeof(what), "tls.certificates[%zu].key", i);
        if (string_value(c, f[1].val, what, &cc->key) < 0)
            return -1;
    }
    return 0;
}

static int load_acme(struct ctx *c, yaml_node_t *key, yaml_node_t *n)
{
    struct sy_acme_conf *a = &c->cfg->tls.acme;
    struct field f[] = {{"directory", 0, 0}, {"email", 0, 0}, {"domains", 0, 0},
                        {"storage", 0, 0},   {"ca", 0, 0},    {"renew_before", 0, 0}};
    size_t count;

    if (get_fields(c, n, "tls.acme", f, 6) < 0)
        return -1;
    a->enabled = 1;
    a->line = line_of(key);
    if (!f[0].val)
        return missing(c, key, "tls.acme", "directory");
    if (!f[2].val)
        return missing(c, key, "tls.acme", "domains");
    if (!f[3].val)
        return missing(c, key, "tls.acme", "storage");
    if (string_value(c, f[0].val, "tls.acme.directory", &a->directory) < 0)
        return -1;
    if (strncmp(a->directory, "https://", 8) != 0 && strncmp(a->directory, "http://", 7) != 0)
        return fail(c, f[0].val, "tls.acme.directory: \"%s\" is not an http(s) URL", a->directory);
    if (f[1].val && string_value(c, f[1].val, "tls.acme.email", &a->email) < 0)
        return -1;
    if (expect_type(c, f[2].val, YAML_SEQUENCE_NODE, "tls.acme.domains") < 0)
        return -1;
    count = seq_len(f[2].val);
    if (count == 0)
        return fail(c, f[2].key, "tls.acme.domains: at least one domain is required");
    a->domains = sy_calloc(count, sizeof(*a->domains));
    for (size_t i = 0; i < count; i++) {
        yaml_node_t *item = node_at(c, f[2].val->data.sequence.items.start[i]);
        char *d;
        if (string_value(c, item, "tls.acme.domains", &d) < 0)
            return -1;
        a->domains[a->ndomains++] = d;
        for (char *p = d; *p; p++)
            *p = (char)sy_lower((unsigned char)*p);
        if (!sy__conf_hostname_ok(d, strlen(d)))
            return fail(c, item, "tls.acme.domains: invalid domain \"%s\" "
                        "(HTTP-01 cannot issue wildcards)", d);
    }
    if (string_value(c, f[3].val, "tls.acme.storage", &a->storage) < 0)
        return -1;
    if (f[4].val && string_value(c, f[4].val, "tls.acme.ca", &a->ca) < 0)
        return -1;
    if (f[5].val &&
        duration_value(c, f[5].val, "tls.acme.renew_before", 0, &a->renew_before_ms) < 0)
        return -1;
    return 0;
}

static int load_tls(struct ctx *c, yaml_node_t *n)
{
    struct field f[] = {{"redirect", 0, 0},     {"redirect_port", 0, 0}, {"hsts", 0, 0},
                        {"certificates", 0, 0}, {"acme", 0, 0}};
    uint32_t port;

    if (get_fields(c, n, "tls", f, 5) < 0)
        return -1;
    if (f[0].val && bool_value(c, f[0].val, "tls.redirect", &c->cfg->tls.redirect) < 0)
        return -1;
    if (f[1].val) {
        if (uint_value(c, f[1].val, "tls.redirect_port", 1, 65535, &port) < 0)
            return -1;
        c->cfg->tls.redirect_port = (uint16_t)port;
    }
    if (f[2].val && string_value(c, f[2].val, "tls.hsts", &c->cfg->tls.hsts) < 0)
        return -1;
    if (f[3].val && load_certs(c, f[3].val) < 0)
        return -1;
    if (f[4].val && load_acme(c, f[4].key, f[4].val) < 0)
        return -1;
    return 0;
}

/* ---- root -------------------------------------------------------------------------------- */

static void set_defaults(struct sy_config *cfg)
{
    cfg->workers = 0;
    /* io_uring where the kernel and the sandbox allow it (bench/README.md, "Event loop backends"). */
    cfg->io_backend = SY_LOOP_AUTO;
    cfg->limits.max_connections = 10000;
    cfg->limits.max_request_head = 16384;
    cfg->limits.max_headers = 100;
    cfg->limits.max_uri = 8192;
    cfg->limits.max_body = 0;
    cfg->timeouts.client_header_ms = 10 * 1000;
    cfg->timeouts.client_body_ms = 60 * 1000;
    cfg->timeouts.keepalive_ms = 75 * 1000;
    cfg->timeouts.upstream_connect_ms = 3 * 1000;
    cfg->timeouts.upstream_response_ms = 60 * 1000;
    cfg->timeouts.tunnel_idle_ms = 3600 * 1000;
    cfg->timeouts.drain_ms = 30 * 1000;
    cfg->http2.enabled = 1;
    cfg->http2.max_concurrent_streams = 100;
    cfg->http2.max_header_list_size = 16384;
    cfg->http2.max_resets = 200;
    cfg->http2.settings_timeout_ms = 10 * 1000;
    cfg->log.access = 1;
    cfg->log.level = SY_LOG_INFO;
    cfg->tls.redirect_port = 443;
}

static int load_root(struct ctx *c, yaml_node_t *root)
{
    struct field f[] = {{"workers", 0, 0}, {"listen", 0, 0},    {"limits", 0, 0},
                        {"timeouts", 0, 0}, {"log", 0, 0},      {"upstreams", 0, 0},
                        {"sites", 0, 0},    {"tls", 0, 0},      {"http2", 0, 0},
                        {"io_backend", 0, 0}};
    struct sy_config *cfg = c->cfg;

    if (get_fields(c, root, "configuration", f, 10) < 0)
        return -1;
    if (f[0].val && load_workers(c, f[0].val) < 0)
        return -1;
    if (f[9].val && load_io_backend(c, f[9].val) < 0)
        return -1;
    if (!f[1].val)
        return missing(c, root, "configuration", "listen");
    if (load_listen(c, f[1].key, f[1].val) < 0)
        return -1;
    if (f[2].val && load_limits(c, f[2].val) < 0)
        return -1;
    if (f[3].val && load_timeouts(c, f[3].val) < 0)
        return -1;
    if (f[4].val && load_log(c, f[4].val) < 0)
        return -1;
    if (!f[5].val)
        return missing(c, root, "configuration", "upstreams");
    if (load_upstreams(c, f[5].key, f[5].val) < 0)
        return -1;
    if (!f[6].val)
        return missing(c, root, "configuration", "sites");
    if (load_sites(c, f[6].key, f[6].val) < 0 || build_host_index(c) < 0)
        return -1;
    if (f[7].val && load_tls(c, f[7].val) < 0)
        return -1;
    if (f[8].val && load_http2(c, f[8].val) < 0)
        return -1;
    if (cfg->listen_https.set && cfg->tls.ncerts == 0 && !cfg->tls.acme.enabled)
        return fail_line(c, cfg->listen_https.line,
                         "listen.https: needs tls.certificates or tls.acme");
    return 0;
}

/* 1-based line of a byte offset (reader errors carry only an offset). */
static int line_at_offset(const char *buf, size_t len, size_t off)
{
    int line = 1;

    for (size_t i = 0; i < off && i < len; i++)
        if (buf[i] == '\n')
            line++;
    return line;
}

static void syntax_error(struct ctx *c, yaml_parser_t *p, const char *yaml, size_t len)
{
    int line;
    const char *problem = p->problem ? p->problem : "unknown error";

    switch (p->error) {
    case YAML_MEMORY_ERROR:
        fail_line(c, 1, "YAML: out of memory");
        return;
    case YAML_READER_ERROR:
        line = line_at_offset(yaml, len, p->problem_offset);
        break;
    default:
        line = (int)p->problem_mark.line + 1;
        break;
    }
    if (p->context)
        fail_line(c, line, "YAML syntax error: %s %s", problem, p->context);
    else
        fail_line(c, line, "YAML syntax error: %s", problem);
}

struct sy_config *sy_config_load_string(const char *name, const char *yaml, size_t len, char **err)
{
    yaml_parser_t parser;
    yaml_document_t doc, extra;
    struct ctx c;
    int ok = 0;

    *err = NULL;
    memset(&c, 0, sizeof(c));
    c.file = name;
    c.err = err;
    c.doc = &doc;
    c.cfg = sy_calloc(1, sizeof(*c.cfg));
    c.cfg->file = sy_strdup(name);
    set_defaults(c.cfg);

    if (!yaml_parser_initialize(&parser)) {
        fail_line(&c, 1, "YAML: cannot initialise the parser");
        goto out;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)yaml, len);
    if (!yaml_parser_load(&parser, &doc)) {
        syntax_error(&c, &parser, yaml, len);
        yaml_parser_delete(&parser);
        goto out;
    }
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (!root) {
        fail_line(&c, 1, "empty configuration");
    } else if (load_root(&c, root) == 0) {
        /* A second document would be silently ignored: refuse it. */
        if (!yaml_parser_load(&parser, &extra)) {
            syntax_error(&c, &parser, yaml, len);
        } else {
            yaml_node_t *r2 = yaml_document_get_root_node(&extra);
            if (r2)
                fail_line(&c, line_of(r2), "only one YAML document is allowed");
            else
                ok = 1;
            yaml_document_delete(&extra);
        }
    }
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
out:
    sy_free(c.hosts);
    if (!ok) {
        if (!*err)
            *err = sy_asprintf("%s:1: invalid configuration", name);
        sy_config_free(c.cfg);
        return NULL;
    }
    return c.cfg;
}

struct sy_config *sy_config_load(const char *path, char **err)
{
    FILE *f = fopen(path, "rb");
    char *buf;
    size_t len = 0;
    struct sy_config *cfg;

    *err = NULL;
    if (!f) {
        *err = sy_asprintf("%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    buf = sy_malloc(MAX_FILE_BYTES + 1);
    len = fread(buf, 1, MAX_FILE_BYTES + 1, f);
    if (ferror(f)) {
        *err = sy_asprintf("%s: cannot read: %s", path, strerror(errno));
        fclose(f);
        sy_free(buf);
        return NULL;
    }
    fclose(f);
    if (len > MAX_FILE_BYTES) {
        *err = sy_asprintf("%s: file larger than %u bytes", path, MAX_FILE_BYTES);
        sy_free(buf);
        return NULL;
    }
    cfg = sy_config_load_string(path, buf, len, err);
    sy_free(buf);
    return cfg;
}

static void free_addr(struct sy_listen_addr *a)
{
    sy_free(a->text);
}

void sy_config_free(struct sy_config *cfg)
{
    if (!cfg)
        return;
    sy_free(cfg->file);
    free_addr(&cfg->listen_http);
    free_addr(&cfg->listen_https);
    free_addr(&cfg->listen_admin);
    for (size_t i = 0; i < cfg->nupstreams; i++) {
        struct sy_upstream_conf *u = &cfg->upstreams[i];
        for (size_t j = 0; j < u->nservers; j++) {
            sy_free(u->servers[j].name);
            sy_free(u->servers[j].host);
        }
        sy_free(u->servers);
        sy_free(u->name);
    }
    sy_free(cfg->upstreams);
    for (size_t i = 0; i < cfg->nsites; i++) {
        struct sy_site_conf *s = &cfg->sites[i];
        for (size_t j = 0; j < s->nhosts; j++)
            sy_free(s->hosts[j]);
        sy_free(s->hosts);
        sy_free(s->version.header);
        sy_free(s->version.query);
        sy_free(s->version.cookie);
        for (size_t j = 0; j < s->version.nroutes; j++)
            sy_free(s->version.routes[j].version);
        sy_free(s->version.routes);
        if (s->mirror) {
            free_list(s->mirror->methods, s->mirror->nmethods);
            free_list(s->mirror->headers, s->mirror->nheaders);
            free_list(s->mirror->ignore_paths, s->mirror->nignore_paths);
            sy_free(s->mirror);
        }
    }
    sy_free(cfg->sites);
    for (size_t i = 0; i < cfg->tls.ncerts; i++) {
        sy_free(cfg->tls.certs[i].cert);
        sy_free(cfg->tls.certs[i].key);
    }
    sy_free(cfg->tls.certs);
    sy_free(cfg->tls.hsts);
    sy_free(cfg->tls.acme.directory);
    sy_free(cfg->tls.acme.email);
    for (size_t i = 0; i < cfg->tls.acme.ndomains; i++)
        sy_free(cfg->tls.acme.domains[i]);
    sy_free(cfg->tls.acme.domains);
    sy_free(cfg->tls.acme.storage);
    sy_free(cfg->tls.acme.ca);
    sy_free(cfg->hostidx.exact);
    sy_free(cfg->hostidx.wild);
    sy_free(cfg);
}
