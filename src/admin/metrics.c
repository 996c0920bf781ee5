#include "admin/metrics.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/logq.h"

const double sy_hist_bounds[SY_HIST_NBUCKETS] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                 0.1,   0.25,   0.5,   1,    2.5,   10};

static const char *uperr_names[SY_UPERR_MAX] = {
    "connect_refused", "connect_timeout", "response_timeout", "reset", "bad_response", "no_server",
};

static const char *const proto_names[SY_PROTO_MAX] = {"HTTP/1.1", "HTTP/2"};

static const char *const goaway_names[SY_H2_GOAWAY_MAX] = {
    "drain",          "idle",          "protocol_error",    "flow_control_error",
    "settings_timeout", "compression_error", "enhance_your_calm", "other",
};

static const char *const defence_names[SY_H2_DEF_MAX] = {
    "rapid_reset",     "control_flood",    "continuation_flood", "header_list_size",
    "header_timeout",  "settings_timeout", "library_flood",      "stalled_reader",
};

static const int client_error_codes[8] = {400, 408, 413, 414, 417, 431, 501, 505};

const char *sy_uperr_name(enum sy_uperr e)
{
    return e < SY_UPERR_MAX ? uperr_names[e] : "other";
}

struct sy_req_counter *sy_metrics_req(struct sy_metrics *m, const char *site, const char *version)
{
    struct sy_req_counter **pp = &m->reqs;
    for (; *pp; pp = &(*pp)->next)
        if (strcmp((*pp)->site, site) == 0 && strcmp((*pp)->version, version) == 0)
            return *pp;
    struct sy_req_counter *c = sy_calloc(1, sizeof(*c));
    c->site = sy_strdup(site);
    c->version = sy_strdup(version);
    __atomic_store_n(pp, c, __ATOMIC_RELEASE);
    return c;
}

struct sy_uperr_counter *sy_metrics_uperr(struct sy_metrics *m, const char *upstream)
{
    struct sy_uperr_counter **pp = &m->uperrs;
    for (; *pp; pp = &(*pp)->next)
        if (strcmp((*pp)->upstream, upstream) == 0)
            return *pp;
    struct sy_uperr_counter *c = sy_calloc(1, sizeof(*c));
    c->upstream = sy_strdup(upstream);
    __atomic_store_n(pp, c, __ATOMIC_RELEASE);
    return c;
}

struct sy_upsrv_counter *sy_metrics_upsrv(struct sy_metrics *m, const char *upstream,
                                          const char *server, const char *address)
{
    struct sy_upsrv_counter **pp = &m->upsrvs;
    for (; *pp; pp = &(*pp)->next)
        if (strcmp((*pp)->upstream, upstream) == 0 && strcmp((*pp)->server, server) == 0 &&
            strcmp((*pp)->address, address) == 0)
            return *pp;
    struct sy_upsrv_counter *c = sy_calloc(1, sizeof(*c));
    c->upstream = sy_strdup(upstream);
    c->server = sy_strdup(server);
    c->address = sy_strdup(address);
    __atomic_store_n(pp, c, __ATOMIC_RELEASE);
    return c;
}

struct sy_mirror_counter *sy_metrics_mirror(struct sy_metrics *m, const char *site,
                                            const char *from, const char *to)
{
    struct sy_mirror_counter **pp = &m->mirrors;
    for (; *pp; pp = &(*pp)->next)
        if (!strcmp((*pp)->site, site) && !strcmp((*pp)->from, from) && !strcmp((*pp)->to, to))
            return *pp;
    struct sy_mirror_counter *c = sy_calloc(1, sizeof(*c));
    c->site = sy_strdup(site);
    c->from = sy_strdup(from);
    c->to = sy_strdup(to);
    __atomic_store_n(pp, c, __ATOMIC_RELEASE);
    return c;
}

void sy_metrics_observe(struct sy_metrics *m, enum sy_proto proto, uint64_t us)
{
    size_t i = 0;
    double s = (double)us / 1e6;
    while (i < SY_HIST_NBUCKETS && s > sy_hist_bounds[i])
        i++;
    sy_counter_add(&m->hist[proto][i], 1);
    sy_counter_add(&m->hist_count[proto], 1);
    sy_counter_add(&m->hist_sum_us[proto], us);
}

void sy_metrics_client_error(struct sy_metrics *m, int status)
{
    for (size_t i = 0; i < 8; i++)
        if (client_error_codes[i] == status)
            sy_counter_add(&m->client_errors[i], 1);
}

void sy_metrics_free(struct sy_metrics *m)
{
    for (struct sy_req_counter *c = m->reqs, *n; c; c = n) {
        n = c->next;
        sy_free(c->site);
        sy_free(c->version);
        sy_free(c);
    }
    for (struct sy_uperr_counter *c = m->uperrs, *n; c; c = n) {
        n = c->next;
        sy_free(c->upstream);
        sy_free(c);
    }
    for (struct sy_mirror_counter *c = m->mirrors, *n; c; c = n) {
        n = c->next;
        sy_free(c->site);
        sy_free(c->from);
        sy_free(c->to);
        sy_free(c);
    }
    for (struct sy_upsrv_counter *c = m->upsrvs, *n; c; c = n) {
        n = c->next;
        sy_free(c->upstream);
        sy_free(c->server);
        sy_free(c->address);
        sy_free(c);
    }
    memset(m, 0, sizeof(*m));
}

void sy_textbuf_append(struct sy_textbuf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n + 1)
            cap *= 2;
        b->p = sy_realloc(b->p, cap);
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

void sy_textbuf_printf(struct sy_textbuf *b, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n < sizeof(tmp)) {
        sy_textbuf_append(b, tmp, (size_t)n);
        return;
    }
    va_start(ap, fmt);
    char *big = sy_vasprintf(fmt, ap);
    va_end(ap);
    sy_textbuf_append(b, big, strlen(big));
    sy_free(big);
}

void sy_textbuf_free(struct sy_textbuf *b)
{
    sy_free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

/* Label values come from the config (validated names), but escape anyway. */
static void label(struct sy_textbuf *b, const char *v)
{
    for (; *v; v++) {
        if (*v == '"' || *v == '\\')
            sy_textbuf_append(b, "\\", 1);
        if (*v == '\n') {
            sy_textbuf_append(b, "\\n", 2);
            continue;
        }
        sy_textbuf_append(b, v, 1);
    }
}

static void render_requests(struct sy_textbuf *b, struct sy_metrics *const *ms, size_t n)
{
    sy_textbuf_printf(b, "# HELP switchyard_requests_total Requests answered, by site, version, "
                         "status class and the client's protocol.\n"
                         "# TYPE switchyard_requests_total counter\n");
    /* Sum entries with equal labels across workers: first occurrence prints the sum. */
    for (size_t w = 0; w < n; w++) {
        for (struct sy_req_counter *c = __atomic_load_n(&ms[w]->reqs, __ATOMIC_ACQUIRE); c;
             c = __atomic_load_n(&c->next, __ATOMIC_ACQUIRE)) {
            int seen = 0;
            for (size_t v = 0; v < w && !seen; v++)
                for (struct sy_req_counter *d = __atomic_load_n(&ms[v]->reqs, __ATOMIC_ACQUIRE);
                     d; d = __atomic_load_n(&d->next, __ATOMIC_ACQUIRE))
                    if (!strcmp(d->site, c->site) && !strcmp(d->version, c->version)) {
                        seen = 1;
                        break;
                    }
            if (seen)
                continue;
            for (int pr = 0; pr < SY_PROTO_MAX; pr++) {
                for (int cls = 1; cls <= 5; cls++) {
                    uint64_t sum = 0;
                    for (size_t v = w; v < n; v++)
                        for (struct sy_req_counter *d =
                                 __atomic_load_n(&ms[v]->reqs, __ATOMIC_ACQUIRE);
                             d; d = __atomic_load_n(&d->next, __ATOMIC_ACQUIRE))
                            if (!strcmp(d->site, c->site) && !strcmp(d->version, c->version))
                                sum += sy_counter_get(&d->by_class[pr][cls]);
                    if (!sum)
                        continue;
                    sy_textbuf_printf(b, "switchyard_requests_total{site=\"");
                    label(b, c->site);
                    sy_textbuf_printf(b, "\",version=\"");
                    label(b, c->version);
                    sy_textbuf_printf(b, "\",code=\"%dxx\",protocol=\"%s\"} %llu\n", cls,
                                      proto_names[pr], (unsigned long long)sum);
                }
            }
        }
    }
}

static void render_uperrs(struct sy_textbuf *b, struct sy_metrics *const *ms, size_t n)
{
    sy_textbuf_printf(b, "# HELP switchyard_upstream_errors_total Upstream failures by reason.\n"
                         "# TYPE switchyard_upstream_errors_total counter\n");
    for (size_t w = 0; w < n; w++) {
        for (struct sy_uperr_counter *c = __atomic_load_n(&ms[w]->uperrs, __ATOMIC_ACQUIRE); c;
             c = __atomic_load_n(&c->next, __ATOMIC_ACQUIRE)) {
            int seen = 0;
            for (size_t v = 0; v < w && !seen; v++)
                for (struct sy_uperr_counter *d = __atomic_load_n(&ms[v]->uperrs, __ATOMIC_ACQUIRE);
                     d; d = __atomic_load_n(&d->next, __ATOMIC_ACQUIRE))
                    if (!strcmp(d->upstream, c->upstream)) {
                        seen = 1;
                        break;
                    }
            if (seen)
                continue;
            for (int r = 0; r < SY_UPERR_MAX; r++) {
                uint64_t sum = 0;
                for (size_t v = w; v < n; v++)
                    for (struct sy_uperr_counter *d =
                             __atomic_load_n(&ms[v]->uperrs, __ATOMIC_ACQUIRE);
                         d; d = __atomic_load_n(&d->next, __ATOMIC_ACQUIRE))
                        if (!strcmp(d->upstream, c->upstream))
                            sum += sy_counter_get(&d->by_reason[r]);
                sy_textbuf_printf(b, "switchyard_upstream_errors_total{upstream=\"");
                label(b, c->upstream);
                sy_textbuf_printf(b, "\",reason=\"%s\"} %llu\n", uperr_names[r],
                                  (unsigned long long)sum);
            }
        }
    }
}

/* One address of an upstream server across the workers that balance over it. */
struct upsrv_sum {
    const struct sy_upsrv_counter *key;
    uint64_t down, marked_down;
};

static int upsrv_same(const struct sy_upsrv_counter *a, const struct sy_upsrv_counter *b)
{
    return !strcmp(a->upstream, b->upstream) && !strcmp(a->server, b->server) &&
           !strcmp(a->address, b->address);
}

static void upsrv_labels(struct sy_textbuf *b, const char *name, const struct sy_upsrv_counter *c)
{
    sy_textbuf_printf(b, "%s{upstream=\"", name);
    label(b, c->upstream);
    sy_textbuf_printf(b, "\",server=\"");
    label(b, c->server);
    sy_textbuf_printf(b, "\",address=\"");
    label(b, c->address);
    sy_textbuf_printf(b, "\"}");
}

/*
 * An address is up when no worker has it backed off. Each worker keeps its
 * own failure state, so an address can be back on one worker and still
 * backed off on another: it counts as down until every worker has seen it
 * answer.
 */
static void render_upsrvs(struct sy_textbuf *b, struct sy_metrics *const *ms, size_t n)
{
    struct upsrv_sum *sums = NULL;
    size_t nsums = 0, cap = 0;
    for (size_t w = 0; w < n; w++) {
        for (struct sy_upsrv_counter *c = __atomic_load_n(&ms[w]->upsrvs, __ATOMIC_ACQUIRE); c;
             c = __atomic_load_n(&c->next, __ATOMIC_ACQUIRE)) {
            if (!sy_counter_get(&c->refs))
                continue;
            size_t i = 0;
            while (i < nsums && !upsrv_same(sums[i].key, c))
                i++;
            if (i == nsums) {
                if (nsums == cap) {
                    cap = cap ? cap * 2 : 16;
                    sums = sy_realloc(sums, cap * sizeof(*sums));
                }
                sums[nsums++] = (struct upsrv_sum){.key = c};
            }
            sums[i].down |= sy_counter_get(&c->down);
            sums[i].marked_down += sy_counter_get(&c->marked_down);
        }
    }
    sy_textbuf_printf(b, "# HELP switchyard_upstream_server_up 1 when the address is in rotation "
                         "on every worker, 0 while it is backed off after failures.\n"
                         "# TYPE switchyard_upstream_server_up gauge\n");
    for (size_t i = 0; i < nsums; i++) {
        upsrv_labels(b, "switchyard_upstream_server_up", sums[i].key);
        sy_textbuf_printf(b, " %d\n", sums[i].down ? 0 : 1);
    }
    sy_textbuf_printf(b, "# HELP switchyard_upstream_server_marked_down_total Times an address "
                         "was taken out of rotation after a failure.\n"
                         "# TYPE switchyard_upstream_server_marked_down_total counter\n");
    for (size_t i = 0; i < nsums; i++) {
        upsrv_labels(b, "switchyard_upstream_server_marked_down_total", sums[i].key);
        sy_textbuf_printf(b, " %llu\n", (unsigned long long)sums[i].marked_down);
    }
    sy_free(sums);
}

/* One label set of the mirror counters, summed over workers (and over `from` for outcomes). */
struct mirror_sum {
    const struct sy_mirror_counter *key;
    uint64_t v[4]; /* SY_MIRROR_OUTCOME_MAX or SY_DIFF_KIND_MAX values */
};

static void mirror_labels(struct sy_textbuf *b, const char *name, const struct sy_mirror_counter *c,
                          int with_from)
{
    sy_textbuf_printf(b, "%s{site=\"", name);
    label(b, c->site);
    if (with_from) {
        sy_textbuf_printf(b, "\",from=\"");
        label(b, c->from);
    }
    sy_textbuf_printf(b, "\",to=\"");
    label(b, c->to);
}

static void render_mirror_set(struct sy_textbuf *b, struct sy_metrics *const *ms, size_t n,
                              int diffs)
{
    static const char *const outcomes[SY_MIRROR_OUTCOME_MAX] = {"compared", "dropped", "failed",
                                                                "timeout"};
    static const char *const kinds[SY_DIFF_KIND_MAX] = {"status", "header", "body"};
    struct mirror_sum *sums = NULL;
    size_t nsums = 0, cap = 0, nv = diffs ? SY_DIFF_KIND_MAX : SY_MIRROR_OUTCOME_MAX;
    for (size_t w = 0; w < n; w++) {
        for (struct sy_mirror_counter *c = __atomic_load_n(&ms[w]->mirrors, __ATOMIC_ACQUIRE); c;
             c = __atomic_load_n(&c->next, __ATOMIC_ACQUIRE)) {
            size_t i = 0;
            while (i < nsums && !(!strcmp(sums[i].key->site, c->site) &&
                                  !strcmp(sums[i].key->to, c->to) &&
                                  (!diffs || !strcmp(sums[i].key->from, c->from))))
                i++;
            if (i == nsums) {
                if (nsums == cap) {
                    cap = cap ? cap * 2 : 16;
                    sums = sy_realloc(sums, cap * sizeof(*sums));
                }
                sums[nsums++] = (struct mirror_sum){.key = c};
            }
            for (size_t k = 0; k < nv; k++)
                sums[i].v[k] += sy_counter_get(diffs ? &c->by_kind[k] : &c->by_outcome[k]);
        }
    }
    const char *name = diffs ? "switchyard_mirror_differences_total" : "switchyard_mirror_requests_total";
    sy_textbuf_printf(b, "# HELP %s %s\n# TYPE %s counter\n", name,
                      diffs ? "Differences between a mirrored copy's answer and the client's, by kind."
                            : "Requests copied to another version, by outcome.",
                      name);
    for (size_t i = 0; i < nsums; i++) {
        for (size_t k = 0; k < nv; k++) {
            mirror_labels(b, name, sums[i].key, diffs);
            sy_textbuf_printf(b, "\",%s=\"%s\"} %llu\n", diffs ? "kind" : "outcome",
                              diffs ? kinds[k] : outcomes[k], (unsigned long long)sums[i].v[k]);
        }
    }
    sy_free(sums);
}

#define SUM(field)                                                                               \
    ({                                                                                           \
        uint64_t s_ = 0;                                                                         \
        for (size_t i_ = 0; i_ < n; i_++)                                                        \
            s_ += sy_counter_get(&ms[i_]->field);                                                \
        s_;                                                                                      \
    })

static void render_histogram(struct sy_textbuf *b, struct sy_metrics *const *ms, size_t n)
{
    sy_textbuf_printf(b, "# HELP switchyard_request_duration_seconds Time from request head to "
                         "the end of the response.\n"
                         "# TYPE switchyard_request_duration_seconds histogram\n");
    for (int pr = 0; pr < SY_PROTO_MAX; pr++) {
        const char *p = proto_names[pr];
        uint64_t cum = 0;
        for (size_t k = 0; k < SY_HIST_NBUCKETS; k++) {
            cum += SUM(hist[pr][k]);
            sy_textbuf_printf(b, "switchyard_request_duration_seconds_bucket{protocol=\"%s\","
                                 "le=\"%g\"} %llu\n",
                              p, sy_hist_bounds[k], (unsigned long long)cum);
        }
        cum += SUM(hist[pr][SY_HIST_NBUCKETS]);
        sy_textbuf_printf(b, "switchyard_request_duration_seconds_bucket{protocol=\"%s\","
                             "le=\"+Inf\"} %llu\n",
                          p, (unsigned long long)cum);
        sy_textbuf_printf(b, "switchyard_request_duration_seconds_sum{protocol=\"%s\"} %.6f\n", p,
                          (double)SUM(hist_sum_us[pr]) / 1e6);
        sy_textbuf_printf(b, "switchyard_request_duration_seconds_count{protocol=\"%s\"} %llu\n",
                          p, (unsigned long long)SUM(hist_count[pr]));
    }
}

static void render_h2(struct sy_textbuf *b, struct sy_metrics *const *ms, size_t n)
{
    static const struct {
        const char *name, *help;
        size_t off;
    } plain[] = {
        {"connections", "Client connections that negotiated HTTP/2.",
         offsetof(struct sy_metrics, h2_conns)},
        {"streams", "HTTP/2 request streams opened by clients.",
         offsetof(struct sy_metrics, h2_streams)},
        {"client_resets", "RST_STREAM frames received from HTTP/2 clients.",
         offsetof(struct sy_metrics, h2_client_resets)},
    };
    for (size_t k = 0; k < sizeof(plain) / sizeof(plain[0]); k++) {
        uint64_t sum = 0;
        for (size_t i = 0; i < n; i++)
            sum += sy_counter_get((const uint64_t *)((const char *)ms[i] + plain[k].off));
        sy_textbuf_printf(b, "# HELP switchyard_http2_%s_total %s\n"
                             "# TYPE switchyard_http2_%s_total counter\n"
                             "switchyard_http2_%s_total %llu\n",
                          plain[k].name, plain[k].help, plain[k].name, plain[k].name,
                          (unsigned long long)sum);
    }
    sy_textbuf_printf(b, "# HELP switchyard_http2_goaways_sent_total GOAWAY frames sent, by "
                         "reason.\n# TYPE switchyard_http2_goaways_sent_total counter\n");
    for (size_t k = 0; k < SY_H2_GOAWAY_MAX; k++)
        sy_textbuf_printf(b, "switchyard_http2_goaways_sent_total{reason=\"%s\"} %llu\n",
                          goaway_names[k], (unsigned long long)SUM(h2_goaways[k]));
    sy_textbuf_printf(b, "# HELP switchyard_http2_defence_trips_total HTTP/2 connections or "
                         "streams ended by a defence, by defence.\n"
                         "# TYPE switchyard_http2_defence_trips_total counter\n");
    for (size_t k = 0; k < SY_H2_DEF_MAX; k++)
        sy_textbuf_printf(b, "switchyard_http2_defence_trips_total{defence=\"%s\"} %llu\n",
                          defence_names[k], (unsigned long long)SUM(h2_defences[k]));
}

void sy_metrics_render(struct sy_textbuf *b, struct sy_metrics *const *ms, size_t n)
{
    render_requests(b, ms, n);
    render_uperrs(b, ms, n);
    render_upsrvs(b, ms, n);
    render_mirror_set(b, ms, n, 0);
    render_mirror_set(b, ms, n, 1);
    sy_textbuf_printf(b, "# HELP switchyard_connections_active Open client connections.\n"
                         "# TYPE switchyard_connections_active gauge\n"
                         "switchyard_connections_active %llu\n",
                      (unsigned long long)SUM(conns_active));
    sy_textbuf_printf(b, "# HELP switchyard_worker_connections_active Open client connections per "
                         "worker thread.\n# TYPE switchyard_worker_connections_active gauge\n");
    for (size_t i = 0; i < n; i++)
        sy_textbuf_printf(b, "switchyard_worker_connections_active{worker=\"%zu\"} %llu\n", i,
                          (unsigned long long)sy_counter_get(&ms[i]->conns_active));
    sy_textbuf_printf(b, "# HELP switchyard_connections_accepted_total Client connections "
                         "accepted.\n# TYPE switchyard_connections_accepted_total counter\n"
                         "switchyard_connections_accepted_total %llu\n",
                      (unsigned long long)SUM(conns_accepted));
    sy_textbuf_printf(b, "# HELP switchyard_tunnels_active Open Upgrade/WebSocket tunnels.\n"
                         "# TYPE switchyard_tunnels_active gauge\n"
                         "switchyard_tunnels_active %llu\n",
                      (unsigned long long)SUM(tunnels_active));
    sy_textbuf_printf(b, "# HELP switchyard_accept_paused_total Times accepting paused for lack "
                         "of descriptors or the connection limit.\n"
                         "# TYPE switchyard_accept_paused_total counter\n"
                         "switchyard_accept_paused_total %llu\n",
                      (unsigned long long)SUM(accept_paused));
    static const struct {
        const char *name, *help;
        int fd;
    } logs[2] = {
        {"access", "Access log lines dropped because stdout was not keeping up.", STDOUT_FILENO},
        {"error", "Error log lines dropped because stderr was not keeping up.", STDERR_FILENO},
    };
    for (size_t k = 0; k < 2; k++)
        sy_textbuf_printf(b, "# HELP switchyard_%s_log_dropped_total %s\n"
                             "# TYPE switchyard_%s_log_dropped_total counter\n"
                             "switchyard_%s_log_dropped_total %llu\n",
                          logs[k].name, logs[k].help, logs[k].name, logs[k].name,
                          (unsigned long long)sy_logq_dropped(logs[k].fd));
    sy_textbuf_printf(b, "# HELP switchyard_client_errors_total Requests refused for the client's "
                         "fault, by status.\n# TYPE switchyard_client_errors_total counter\n");
    for (size_t k = 0; k < 8; k++)
        sy_textbuf_printf(b, "switchyard_client_errors_total{code=\"%d\"} %llu\n",
                          client_error_codes[k], (unsigned long long)SUM(client_errors[k]));
    render_histogram(b, ms, n);
    render_h2(b, ms, n);
}
