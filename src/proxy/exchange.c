/*
 * exchange.c: one request's life, protocol-neutral (see exchange.h).
 *
 * Request direction: the client side holds the request body bytes; the
 * exchange validates them (Content-Length count or the chunked scanner) as
 * far as in_scanned, writes validated bytes to the upstream and consumes
 * them. Response direction: response bytes are read into the upstream
 * connection's buffer, validated up to uscan, and handed to the client side,
 * which takes what it can. Neither direction holds more than one buffer.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "acme/acme.h"
#include "core/alloc.h"
#include "core/log.h"
#include "proxy/conn.h"
#include "proxy/mirror.h"

#define ACME_PREFIX "/.well-known/acme-challenge/"

static int connect_upstream(struct sy_exchange *x);

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static inline uint64_t now_ms(struct sy_exchange *x)
{
    return sy_loop_now(x->w->loop);
}

static inline const struct sy_config *cfg_of(struct sy_exchange *x)
{
    return x->ws->snap->cfg;
}

/* ---- free list ---- */

struct sy_exchange *sy_exchange_get(struct sy_worker *w)
{
    struct sy_exchange *x = w->x_free;
    if (x) {
        w->x_free = x->next_free;
        w->nx_free--;
    } else {
        x = sy_malloc(sizeof(*x));
    }
    memset(x, 0, sizeof(*x));
    x->w = w;
    return x;
}

void sy_exchange_put(struct sy_exchange *x)
{
    struct sy_worker *w = x->w;
    sy__out_free(w, &x->obuf, x->obuf_pooled);
    if (w->nx_free >= 64) {
        sy_free(x);
        return;
    }
    x->next_free = w->x_free;
    w->x_free = x;
    w->nx_free++;
}

/* ---- bookkeeping ---- */

static void count_response(struct sy_exchange *x, int status)
{
    struct sy_req_counter *rc;
    if (x->route.site) {
        const struct sy_site_conf *s = x->route.site;
        size_t si = (size_t)(s - cfg_of(x)->sites);
        size_t ri = x->route.route ? (size_t)(x->route.route - s->version.routes) + 1 : 0;
        rc = x->ws->site_counters[si][ri];
    } else {
        rc = x->ws->nosite_counter;
    }
    int cls = status / 100;
    if (cls >= 1 && cls <= 5)
        sy_counter_add(&rc->by_class[x->h2 ? SY_PROTO_H2 : SY_PROTO_H1][cls], 1);
}

void sy_exchange_log(struct sy_exchange *x)
{
    if (!x->t_req_start_us)
        return;
    uint64_t dur = now_us() - x->t_req_start_us;
    count_response(x, x->status);
    sy_metrics_observe(&x->w->metrics, x->h2 ? SY_PROTO_H2 : SY_PROTO_H1, dur);
    if (x->status >= 400 && x->status < 600 && !x->up)
        sy_metrics_client_error(&x->w->metrics, x->status);
    if (cfg_of(x)->log.access)
        sy_accesslog_write(x, dur);
    x->t_req_start_us = 0;
    x->log_path = SY_STR_NULL;
}

static void close_upstream(struct sy_exchange *x)
{
    if (x->up) {
        x->up->srv->outstanding--;
        sy_upconn_close(x->up);
        x->up = NULL;
    }
}

void sy_exchange_close(struct sy_exchange *x)
{
    if (x->mirror)
        sy_mirror_primary_gone(x);
    if (x->tunnel) {
        sy_counter_add(&x->w->metrics.tunnels_active, (uint64_t)-1);
        x->tunnel = 0;
    }
    if (x->t_req_start_us) {
        /* A request ends with the connection: 499 when the client left first (nginx's code). */
        if (!x->status || !x->resp_head_done)
            x->status = x->resp_started ? (x->status ? x->status : 502) : 499;
        sy_exchange_log(x);
    }
    close_upstream(x);
}

void sy_exchange_release_upstream(struct sy_exchange *x)
{
    struct sy_upconn *u = x->up;
    if (!u)
        return;
    u->srv->outstanding--;
    int reusable = x->sf.keepalive && x->req_done && x->resp_done && !u->eof &&
                   x->ws == sy_wsnap_get(x->w) && !sy_atomic_draining();
    sy_upconn_release(u, reusable, x->wup->rt->conf->keepalive);
    x->up = NULL;
}

/* ---- the gateway's own answers ---- */

static int answer(struct sy_exchange *x, int status, const char *extra, const char *body,
                  int close)
{
    close_upstream(x);
    x->status = status;
    x->resp_started = 1;
    return x->ops->respond(x, status, extra, body, close);
}

int sy_exchange_answer_error(struct sy_exchange *x, int status)
{
    char body[128];
    snprintf(body, sizeof(body), "%d %s\n", status, sy_status_reason(status));
    return answer(x, status, NULL, body, status >= 400 && status < 500 && status != 404);
}

int sy_exchange_reject(struct sy_exchange *x, int status, size_t bytes_in)
{
    x->t_req_start_us = now_us();
    x->route = (struct sy_route_result){0};
    x->req.method = SY_STR_NULL;
    x->log_upstream = NULL;
    x->bytes_in = bytes_in;
    sy_request_id(x->w, x->reqid);
    x->req_done = 0;
    return sy_exchange_answer_error(x, status);
}

/* ---- upstream selection ---- */

static void upstream_error(struct sy_exchange *x, enum sy_uperr e)
{
    sy_counter_add(&x->wup->errs->by_reason[e], 1);
}

enum { RETRY_NONE = 0, RETRY_OTHER, RETRY_FRESH };

/*
 * The upstream failed. Before any response byte the request may be retried:
 * RETRY_OTHER on another server (nothing was sent: connect failed),
 * RETRY_FRESH on a new connection to the same server (a pooled connection
 * that the server had closed; only for requests without a body). Otherwise
 * the client gets 502 (504 for a response timeout), or is cut off when the
 * response had started.
 */
static int upstream_failed(struct sy_exchange *x, enum sy_uperr e, int retry)
{
    struct sy_upconn *u = x->up;
    const struct sy_upstream_conf *uc = x->wup->rt->conf;
    const char *name = u ? u->srv->rt->conf->name : "?";
    if (u) {
        if (retry == RETRY_FRESH)
            x->tried &= ~sy_upstream_tried_bit(u->srv);
        close_upstream(x);
    }
    if (retry == RETRY_FRESH && !x->resp_started) {
        sy_log_debug("proxy", "pooled connection to %s was closed; retrying (request %s)", name,
                     x->reqid);
        x->retried_reuse = 1;
        x->ooff = 0;
        return connect_upstream(x);
    }
    upstream_error(x, e);
    sy_log_warn("proxy", "upstream %s server %s: %s (request %s)", uc->name, name,
                sy_uperr_name(e), x->reqid);
    if (retry && !x->resp_started) {
        x->ooff = 0;
        return connect_upstream(x);
    }
    if (x->resp_started)
        return x->ops->abort(x);
    return sy_exchange_answer_error(x, e == SY_UPERR_RESPONSE_TIMEOUT ? 504 : 502);
}

static int fresh_retry_ok(struct sy_exchange *x)
{
    return x->up && x->up->reused && !x->retried_reuse && x->rf.body == SY_H1_BODY_NONE &&
           !x->resp_started;
}

/*
 * The upstream closed or reset a fresh connection before answering: a server
 * going away resets what waited in its accept queue. A request that may be
 * sent again without a second effect (no body, GET, HEAD or OPTIONS, no
 * Upgrade) goes to another server, as nginx's proxy_next_upstream does;
 * anything else gets 502, since the server may have acted on it.
 */
static int resend_ok(struct sy_exchange *x)
{
    struct sy_str m = x->req.method;
    return !x->resp_started && x->rf.body == SY_H1_BODY_NONE && !x->upgrade &&
           (sy_str_eq(m, SY_STR_LIT("GET")) || sy_str_eq(m, SY_STR_LIT("HEAD")) ||
            sy_str_eq(m, SY_STR_LIT("OPTIONS")));
}

static int upstream_reset(struct sy_exchange *x)
{
    if (fresh_retry_ok(x))
        return upstream_failed(x, SY_UPERR_RESET, RETRY_FRESH);
    return upstream_failed(x, SY_UPERR_RESET, resend_ok(x) ? RETRY_OTHER : RETRY_NONE);
}

static int connect_upstream(struct sy_exchange *x)
{
    uint64_t now = now_ms(x);
    const struct sy_upstream_conf *uc = x->wup->rt->conf;
    for (;;) {
        struct sy_wserver *s = sy_upstream_pick(x, x->wup, now);
        if (!s) {
            upstream_error(x, SY_UPERR_NO_SERVER);
            sy_log_warn("proxy", "upstream %s: no server available (request %s)", uc->name,
                        x->reqid);
            return sy_exchange_answer_error(x, 502);
        }
        struct sy_upconn *u = NULL;
        if (!x->retried_reuse)
            u = sy_upconn_take_idle(s);
        x->tried |= sy_upstream_tried_bit(s);
        if (!u) {
            int err = 0;
            u = sy_upconn_connect(x->w, s, &err);
            if (!u) {
                upstream_error(x, err == ECONNREFUSED ? SY_UPERR_CONNECT_REFUSED
                                                      : SY_UPERR_NO_SERVER);
                sy_upstream_mark_down(s, uc, now, now);
                continue;
            }
            x->connecting = 1;
            x->t_connect = now;
        } else {
            x->connecting = 0;
            u->readable = 0;
            u->writable = 1;
        }
        u->owner = x;
        s->outstanding++;
        x->up = u;
        x->log_upstream = s->rt->conf->name;
        x->t_up = now;
        return SY_P_PROGRESS;
    }
}

/* ---- request start ---- */

static int answer_acme(struct sy_exchange *x)
{
    struct sy_str t = x->req.target;
    struct sy_str token = sy_str_make(t.p + sizeof(ACME_PREFIX) - 1, t.len - (sizeof(ACME_PREFIX) - 1));
    char out[SY_ACME_HTTP01_MAX];
    ssize_t n = sy_acme_http01_answer(sy_proc.acme, token, out, sizeof(out));
    if (n > 0)
        return answer(x, 200, NULL, out, 0);
    if (n < 0)
        return answer(x, 503, "Retry-After: 5\r\n", "account key not ready\n", 0);
    return answer(x, 404, NULL, "unknown challenge\n", 0);
}

static int redirect_https(struct sy_exchange *x)
{
    const struct sy_config *cfg = cfg_of(x);
    struct sy_str host = x->rf.host ? x->rf.host->value : SY_STR_LIT("");
    /* Strip the port of the Host header: it names the plain port the client used. The HTTPS
     * port is the public one (tls.redirect_port), never listen.https's: behind a load balancer
     * or a Kubernetes Service that maps 443 to an unprivileged port, that one is unreachable. */
    size_t hl = host.len;
    if (hl && host.p[0] == '[') {
        const char *e = memchr(host.p, ']', hl);
        hl = e ? (size_t)(e - host.p) + 1 : hl;
    } else {
        const char *colon = memchr(host.p, ':', hl);
        if (colon)
            hl = (size_t)(colon - host.p);
    }
    if (!hl)
        return sy_exchange_answer_error(x, 400);
    unsigned port = cfg->tls.redirect_port;
    char portbuf[16] = "";
    if (port != 443)
        snprintf(portbuf, sizeof(portbuf), ":%u", port);
    size_t cap = hl + x->req.target.len + 64;
    char *loc = sy_malloc(cap);
    snprintf(loc, cap, "Location: https://%.*s%s%.*s\r\n", (int)hl, host.p, portbuf,
             (int)x->req.target.len, x->req.target.p);
    int r = answer(x, 308, loc, "redirecting to https\n", 0);
    sy_free(loc);
    return r;
}

static int target_is_acme(struct sy_str t)
{
    size_t n = sizeof(ACME_PREFIX) - 1;
    return t.len > n && memcmp(t.p, ACME_PREFIX, n) == 0;
}

/* What every request starts with: request id, framing. 0, or -1 when answered (*r set). */
static int begin(struct sy_exchange *x, size_t head_len, int *r)
{
    int status = 400;
    x->t_req_start_us = now_us();
    x->bytes_in = head_len;
    x->log_path = x->req.target;

    const struct sy_h1_header *rid =
        sy_h1_find(x->req.headers, x->req.num_headers, SY_STR_LIT("x-request-id"));
    if (rid && rid->value.len && rid->value.len < sizeof(x->reqid)) {
        x->reqid_in = rid->value;
        memcpy(x->reqid, rid->value.p, rid->value.len);
        x->reqid[rid->value.len] = '\0';
    } else {
        sy_request_id(x->w, x->reqid);
    }

    if (sy_h1_request_framing(&x->req, &x->rf, &status) < 0) {
        *r = sy_exchange_answer_error(x, status);
        return -1;
    }
    x->req.target = x->rf.target; /* origin-form: absolute-form is not forwarded as sent */
    x->req_done = x->rf.body == SY_H1_BODY_NONE ||
                  (x->rf.body == SY_H1_BODY_LENGTH && x->rf.length == 0);
    /* Chunked: unknown until the scanner sees the last chunk (1 stands for "more to come"). */
    x->req_remaining = x->rf.body == SY_H1_BODY_LENGTH    ? x->rf.length
                       : x->rf.body == SY_H1_BODY_CHUNKED ? 1
                                                          : 0;
    sy_h1_chunked_init(&x->req_chunked);
    if (!x->rf.keepalive || sy_atomic_draining())
        x->client_close = 1;
    return 0;
}

/* The route is chosen: body limit, upstream, its request head. 0, or -1 when answered (*r). */
static int prepare(struct sy_exchange *x, size_t head_len, int *r)
{
    const struct sy_config *cfg = cfg_of(x);
    if (cfg->limits.max_body && x->rf.body == SY_H1_BODY_LENGTH && x->rf.length > cfg->limits.max_body) {
        *r = sy_exchange_answer_error(x, 413);
        return -1;
    }
    x->upgrade = x->rf.upgrade && x->req_done;
    x->wup = &x->ws->ups[x->route.upstream];

    /* The upstream request head. */
    size_t cap = SY_BUF_SIZE;
    for (;;) {
        x->obuf = sy__out_alloc(x->w, cap, &x->obuf_pooled);
        x->olen = sy_build_upstream_head(x, x->obuf, cap);
        if (x->olen)
            break;
        sy__out_free(x->w, &x->obuf, x->obuf_pooled);
        if (cap > head_len + 65536) {
            *r = sy_exchange_answer_error(x, 431);
            return -1;
        }
        cap *= 2;
    }
    x->ooff = 0;
    return 0;
}

static int start(struct sy_exchange *x, size_t head_len)
{
    const struct sy_config *cfg = cfg_of(x);
    int r;
    if (begin(x, head_len, &r) < 0)
        return r;

    if (!x->https && target_is_acme(x->req.target) && sy_proc.acme)
        return answer_acme(x);
    if (!x->https && cfg->tls.redirect && cfg->listen_https.set && !target_is_acme(x->req.target))
        return redirect_https(x);

    struct sy_str host = x->rf.host ? x->rf.host->value : SY_STR_LIT("");
    const struct sy_site_conf *site = sy_route_find_site(cfg, host);
    if (!site)
        return answer(x, 404, NULL, "no site for this host\n", 0);
    sy_route_select(site, x->req.target, x->req.headers, x->req.num_headers, &x->route);
    if (prepare(x, head_len, &r) < 0)
        return r;
    if (site->mirror)
        sy_mirror_offer(x); /* copies what it needs now: the header array is scratch */
    return connect_upstream(x);
}

static void forget_head(struct sy_exchange *x)
{
    /* The header array is the caller's scratch space: nothing keeps a pointer into it. */
    x->req.headers = NULL;
    x->req.num_headers = 0;
    x->rf.host = NULL;
}

int sy_exchange_start_to(struct sy_exchange *x, size_t head_len, const struct sy_site_conf *site,
                         size_t route)
{
    int r;
    if (begin(x, head_len, &r) == 0) {
        x->route = (struct sy_route_result){.site = site,
                                            .upstream = site->version.routes[route].upstream,
                                            .route = &site->version.routes[route],
                                            .source = SY_VSRC_DEFAULT};
        if (prepare(x, head_len, &r) == 0)
            r = connect_upstream(x);
    }
    forget_head(x);
    return r;
}

int sy_exchange_start(struct sy_exchange *x, size_t head_len)
{
    int r = start(x, head_len);
    forget_head(x);
    return r;
}

/* ---- request direction ---- */

/* Validates newly received body bytes. 0, -1 on a framing error, -2 over limits.max_body. */
static int scan_request_body(struct sy_exchange *x, const char *p, size_t len)
{
    size_t avail = len - x->in_scanned;
    if (!avail)
        return 0;
    if (x->rf.body == SY_H1_BODY_LENGTH) {
        size_t n = avail < x->req_remaining ? avail : (size_t)x->req_remaining;
        x->in_scanned += n;
        x->req_remaining -= n;
        return 0;
    }
    int done = 0;
    ssize_t n = sy_h1_chunked_scan(&x->req_chunked, p + x->in_scanned, avail, &done);
    if (n < 0)
        return -1;
    x->in_scanned += (size_t)n;
    uint64_t max = cfg_of(x)->limits.max_body;
    if (max && x->req_chunked.data_bytes > max)
        return -2;
    x->req_remaining = done ? 0 : 1; /* chunked: 1 stands for "more to come" */
    return 0;
}

/* Client -> upstream: head, then the body. */
static int forward_request(struct sy_exchange *x)
{
    struct sy_upconn *u = x->up;
    int progress = 0;
    if (x->ooff < x->olen) {
        if (!u->writable)
            return SY_P_BLOCKED;
        ssize_t n = sy__uwrite(u, x->obuf + x->ooff, x->olen - x->ooff);
        if (n == -1)
            return SY_P_BLOCKED;
        if (n < 0)
            return upstream_reset(x);
        x->ooff += (size_t)n;
        progress = 1;
        if (x->ooff < x->olen)
            return SY_P_PROGRESS;
        x->head_sent = 1;
        if (x->req_done)
            x->t_up = now_ms(x);
    }
    if (x->req_done)
        return progress;
    if (x->rf.expect_continue && !x->expect_sent && !x->resp_started && x->req.minor_version == 1) {
        const char *p;
        if (x->ops->in_peek(x, &p) == 0 && !x->ops->out_pending(x)) {
            x->ops->send_continue(x);
            x->expect_sent = 1;
            progress = 1;
        }
    }
    for (;;) {
        const char *p;
        size_t len = x->ops->in_peek(x, &p);
        int r = scan_request_body(x, p, len);
        if (r < 0) {
            if (x->resp_started)
                return x->ops->abort(x);
            return sy_exchange_answer_error(x, r == -2 ? 413 : 400);
        }
        if (x->in_scanned) {
            if (!u->writable)
                return progress;
            ssize_t n = sy__uwrite(u, p, x->in_scanned);
            if (n == -1)
                return progress;
            if (n < 0)
                return upstream_failed(x, SY_UPERR_RESET, RETRY_NONE);
            x->ops->in_consume(x, (size_t)n);
            x->in_scanned -= (size_t)n;
            x->bytes_in += (uint64_t)n;
            x->t_up = now_ms(x);
            progress = 1;
            if (x->in_scanned)
                continue;
        }
        if (x->req_remaining == 0) {
            x->req_done = 1;
            x->t_up = now_ms(x);
            return SY_P_PROGRESS;
        }
        /* Need more body bytes from the client. */
        if (x->ops->in_full(x))
            return progress;
        int rd = x->ops->in_read(x);
        if (rd == SY_RD_BYTES) {
            progress = 1;
            continue;
        }
        if (rd == SY_RD_BLOCKED)
            return progress;
        /* The client went away in the middle of its body. */
        return x->ops->abort(x);
    }
}

/* ---- response direction ---- */

/* Validates response body bytes in u->buf from uscan on. -1 on a framing error. */
static int scan_response_body(struct sy_exchange *x)
{
    struct sy_upconn *u = x->up;
    size_t avail = u->len - x->uscan;
    switch (x->sf.body) {
    case SY_H1_BODY_NONE:
        x->resp_remaining = 0;
        return 0;
    case SY_H1_BODY_LENGTH: {
        size_t n = avail < x->resp_remaining ? avail : (size_t)x->resp_remaining;
        x->uscan += n;
        x->resp_remaining -= n;
        return 0;
    }
    case SY_H1_BODY_CHUNKED: {
        if (!avail)
            return 0;
        int done = 0;
        ssize_t n = sy_h1_chunked_scan(&x->resp_chunked, u->buf + x->uscan, avail, &done);
        if (n < 0)
            return -1;
        x->uscan += (size_t)n;
        if (done)
            x->resp_remaining = 0;
        return 0;
    }
    case SY_H1_BODY_EOF:
        x->uscan = u->len;
        if (u->eof)
            x->resp_remaining = 0;
        return 0;
    }
    return 0;
}

static int parse_response_head(struct sy_exchange *x)
{
    struct sy_upconn *u = x->up;
    struct sy_h1_header hdrs[SY_MAX_HEADERS_CAP];
    struct sy_h1_response resp = {.headers = hdrs};
    struct sy_h1_limits lim = {.max_head = SY_BUF_SIZE, .max_headers = SY_MAX_HEADERS_CAP,
                               .max_uri = SY_BUF_SIZE};
    for (;;) {
        resp.num_headers = 0;
        int r = sy_h1_parse_response(u->buf + u->off, u->len - u->off, &resp, &lim);
        if (r == SY_H1_PARTIAL) {
            if (u->len - u->off >= SY_BUF_SIZE || u->eof) {
                if (u->eof && u->len == u->off)
                    return upstream_reset(x);
                return upstream_failed(x, SY_UPERR_BAD_RESPONSE, RETRY_NONE);
            }
            return SY_P_BLOCKED;
        }
        if (r < 0)
            return upstream_failed(x, SY_UPERR_BAD_RESPONSE, 0);
        if (resp.status >= 100 && resp.status < 200 && resp.status != 101) {
            /* Interim responses: 100 is answered by the gateway itself; drop them. */
            u->off += (size_t)r;
            continue;
        }
        if (resp.status == 101 && !x->upgrade)
            return upstream_failed(x, SY_UPERR_BAD_RESPONSE, 0);
        if (sy_h1_response_framing(&resp, x->req.method, &x->sf) < 0)
            return upstream_failed(x, SY_UPERR_BAD_RESPONSE, 0);
        if (resp.status != 101 && x->sf.body == SY_H1_BODY_CHUNKED && x->req.minor_version == 0)
            return upstream_failed(x, SY_UPERR_BAD_RESPONSE, 0);
        x->status = resp.status;
        if (x->sf.body == SY_H1_BODY_EOF)
            x->sf.keepalive = 0;
        x->resp_remaining = x->sf.body == SY_H1_BODY_LENGTH ? x->sf.length : 1;
        if (x->sf.body == SY_H1_BODY_NONE)
            x->resp_remaining = 0;
        sy_h1_chunked_init(&x->resp_chunked);
        if (x->ops->out_head(x, &resp) < 0)
            return upstream_failed(x, SY_UPERR_BAD_RESPONSE, 0);
        u->off += (size_t)r;
        x->uscan = u->off;
        x->resp_head_done = 1;
        x->resp_started = 1;
        return SY_P_PROGRESS;
    }
}

/* The upstream closed before a complete response head. */
static int head_eof(struct sy_exchange *x)
{
    struct sy_upconn *u = x->up;
    if (u->len == u->off)
        return upstream_reset(x);
    return upstream_failed(x, SY_UPERR_BAD_RESPONSE, RETRY_NONE);
}

static int bad_body(struct sy_exchange *x)
{
    upstream_error(x, SY_UPERR_BAD_RESPONSE);
    sy_log_warn("proxy", "upstream %s sent an invalid body (request %s)", x->up->addr, x->reqid);
    return x->ops->abort(x);
}

/* Upstream -> client. */
static int forward_response(struct sy_exchange *x)
{
    struct sy_upconn *u = x->up;
    int progress = 0;
    for (;;) {
        if (!x->resp_head_done && u->buf && u->len > u->off && !x->ops->out_pending(x)) {
            int r = parse_response_head(x);
            if (r == SY_P_CLOSED)
                return SY_P_CLOSED;
            if (x->up != u)
                return SY_P_PROGRESS; /* answered by the gateway, or retried elsewhere */
            if (x->resp_head_done) {
                progress = 1;
                if (scan_response_body(x) < 0)
                    return bad_body(x);
            }
        }
        /* Write what is ready: head remainder and validated body bytes. */
        size_t ready = x->resp_head_done ? x->uscan - u->off : 0;
        int pending = x->ops->out_pending(x);
        if (pending || ready) {
            ssize_t w = x->ops->out_write(x, u->buf ? u->buf + u->off : NULL, ready);
            if (w < 0)
                return SY_P_CLOSED;
            if (w == 0 && (!pending || x->ops->out_pending(x)))
                return progress; /* nothing went out */
            x->bytes_out += (uint64_t)w;
            progress = 1;
            u->off += (size_t)w;
            if (x->resp_head_done && u->off == u->len)
                u->off = u->len = x->uscan = 0;
            continue;
        }
        if (x->resp_head_done && x->resp_remaining == 0) {
            x->resp_done = 1;
            return SY_P_PROGRESS;
        }
        /* Read more from the upstream. */
        if (!u->buf) {
            u->buf = sy_worker_buf_get(x->w);
            u->off = u->len = 0;
            x->uscan = 0;
        }
        if (u->eof) {
            if (!x->resp_head_done)
                return head_eof(x);
            if (scan_response_body(x) < 0)
                return bad_body(x);
            if (x->resp_remaining && u->off == x->uscan) {
                /* The upstream closed in the middle of the body: cut the client off. */
                upstream_error(x, SY_UPERR_RESET);
                sy_log_warn("proxy", "upstream %s closed mid-response (request %s)", u->addr,
                            x->reqid);
                return x->ops->abort(x);
            }
            if (x->resp_remaining == 0)
                continue;
            return progress;
        }
        if (!x->resp_head_done && u->len == SY_BUF_SIZE) {
            if (u->off > 0) {
                memmove(u->buf, u->buf + u->off, u->len - u->off);
                u->len -= u->off;
                u->off = 0;
            } else {
                return upstream_failed(x, SY_UPERR_BAD_RESPONSE, 0); /* head too large */
            }
        }
        if (!u->readable || u->len == SY_BUF_SIZE)
            return progress;
        ssize_t n = sy__uread(u, u->buf + u->len, SY_BUF_SIZE - u->len);
        if (n > 0) {
            u->len += (size_t)n;
            x->t_up = now_ms(x);
            progress = 1;
            if (x->resp_head_done && scan_response_body(x) < 0)
                return bad_body(x);
            continue;
        }
        if (n == 0 || n == -2) {
            u->eof = 1;
            progress = 1;
            continue;
        }
        return progress;
    }
}

/* ---- the tunnel (after a 101) ---- */

static int pump_tunnel(struct sy_exchange *x)
{
    struct sy_upconn *u = x->up;
    int progress = 0;
    /* client -> upstream */
    for (;;) {
        const char *p;
        size_t len = x->ops->in_peek(x, &p);
        if (len) {
            if (!u->writable)
                break;
            ssize_t n = sy__uwrite(u, p, len);
            if (n == -1)
                break;
            if (n < 0)
                return x->ops->abort(x);
            x->ops->in_consume(x, (size_t)n);
            x->t_up = now_ms(x);
            progress = 1;
            continue;
        }
        int rd = x->ops->in_read(x);
        if (rd == SY_RD_BYTES) {
            progress = 1;
            continue;
        }
        if (rd == SY_RD_BLOCKED)
            break;
        if (rd == SY_RD_ERROR)
            return x->ops->abort(x);
        if (!x->up_shut) { /* EOF: half-close towards the upstream, once */
            sy_loop_shutdown_wr(x->w->loop, &u->io);
            x->up_shut = 1;
            progress = 1;
        }
        break;
    }
    /* upstream -> client */
    for (;;) {
        if (u->buf && u->off < u->len) {
            ssize_t n = x->ops->out_write(x, u->buf + u->off, u->len - u->off);
            if (n < 0)
                return SY_P_CLOSED;
            if (n == 0)
                break;
            u->off += (size_t)n;
            progress = 1;
            continue;
        }
        if (!u->buf)
            u->buf = sy_worker_buf_get(x->w);
        u->off = u->len = 0;
        if (u->eof)
            return x->ops->finish(x); /* the upstream closed, all its bytes taken: so does the client */
        if (!u->readable)
            break;
        ssize_t n = sy__uread(u, u->buf, SY_BUF_SIZE);
        if (n > 0) {
            u->len = (size_t)n;
            x->t_up = now_ms(x);
            progress = 1;
            continue;
        }
        if (n == 0 || n == -2) {
            u->eof = 1;
            continue;
        }
        break;
    }
    return progress;
}

/* ---- driving ---- */

int sy_exchange_pump(struct sy_exchange *x)
{
    struct sy_upconn *u = x->up;
    if (!u)
        return SY_P_BLOCKED;
    if (x->tunnel)
        return pump_tunnel(x);
    if (x->connecting) {
        if (!u->writable && !u->eof)
            return SY_P_BLOCKED;
        int err = 0;
        socklen_t len = sizeof(err);
        getsockopt(u->io.fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err) {
            sy_upstream_mark_down(u->srv, x->wup->rt->conf, x->t_connect, now_ms(x));
            return upstream_failed(x, err == ECONNREFUSED ? SY_UPERR_CONNECT_REFUSED
                                                           : SY_UPERR_RESET,
                                   RETRY_OTHER);
        }
        sy_upstream_mark_up(u->srv, x->wup->rt->conf);
        sy_loop_cio_start(x->w->loop, &u->io); /* io_uring: receives and sends by completion */
        x->connecting = 0;
        u->eof = 0;
        x->t_up = now_ms(x);
    }
    int p1 = forward_request(x);
    if (p1 == SY_P_CLOSED || x->up != u)
        return p1 == SY_P_CLOSED ? SY_P_CLOSED : SY_P_PROGRESS;
    int p2 = forward_response(x);
    if (p2 == SY_P_CLOSED || x->up != u)
        return p2 == SY_P_CLOSED ? SY_P_CLOSED : SY_P_PROGRESS;
    if (x->resp_done && !x->ops->out_pending(x)) {
        if (x->status == 101) {
            /* Upgrade requests carry no body: bytes after the head are tunnel data. */
            x->tunnel = 1;
            sy_counter_add(&x->w->metrics.tunnels_active, 1);
            sy_exchange_log(x);
            x->ops->tunnel(x);
            return SY_P_PROGRESS;
        }
        return x->ops->finish(x);
    }
    return p1 || p2;
}

uint64_t sy_exchange_deadline(struct sy_exchange *x)
{
    const struct sy_config *cfg = cfg_of(x);
    if (!x->up)
        return UINT64_MAX;
    if (x->tunnel)
        return UINT64_MAX; /* the client side knows both directions' idle time */
    if (x->connecting)
        return x->t_connect + cfg->timeouts.upstream_connect_ms;
    if (!x->resp_done)
        return x->t_up + cfg->timeouts.upstream_response_ms;
    return UINT64_MAX;
}

int sy_exchange_timeout(struct sy_exchange *x)
{
    if (x->connecting) {
        sy_upstream_mark_down(x->up->srv, x->wup->rt->conf, x->t_connect, now_ms(x));
        return upstream_failed(x, SY_UPERR_CONNECT_TIMEOUT, RETRY_OTHER);
    }
    return upstream_failed(x, SY_UPERR_RESPONSE_TIMEOUT, RETRY_NONE);
}

int sy_exchange_has_output(const struct sy_exchange *x)
{
    return x->up && x->resp_head_done && x->up->off < x->uscan;
}

void sy_exchange_upstream_event(struct sy_upconn *u, uint32_t events)
{
    struct sy_exchange *x = u->owner;
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        u->readable = 1;
    if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        u->hup = 1;
    if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR))
        u->writable = 1;
    if ((events & (EPOLLHUP | EPOLLERR)) && x->connecting)
        u->eof = 1;
    x->ops->wake(x);
}
