/*
 * conn.c: the client connection state machine.
 *
 * One function, pump(), drives a connection: every event on the client
 * socket or on its upstream socket sets readiness flags (edge-triggered
 * epoll: a flag is cleared only on EAGAIN) and calls pump(), which makes all
 * the progress it can in every direction and returns when nothing moves.
 *
 * Buffers: the request head stays at rbuf[roff, roff+head_len) until the
 * request ends (slices of it are used to build the response head); body
 * bytes after it are validated up to bscan and written upstream from bpos.
 * Response bytes live in the upstream connection's buffer. Bodies are never
 * buffered whole: at most one buffer per direction is in flight.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "acme/acme.h"
#include "admin/admin.h"
#include "core/alloc.h"
#include "core/log.h"
#include "proxy/conn.h"
#include "tls/tls.h"

#define LINGER_MS 2000
#define ACME_PREFIX "/.well-known/acme-challenge/"

enum { P_BLOCKED = 0, P_PROGRESS = 1, P_CLOSED = -1 };

static void pump(struct sy_conn *c);
static void conn_close(struct sy_conn *c);
static int finish_request(struct sy_conn *c);
static uint64_t deadline(struct sy_conn *c);

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static inline uint64_t now_ms(struct sy_conn *c)
{
    return sy_loop_now(c->w->loop);
}

static inline const struct sy_config *cfg_of(struct sy_conn *c)
{
    return c->ws->snap->cfg;
}

/* ---- gateway responses ---- */

static void count_response(struct sy_conn *c, int status)
{
    struct sy_req_counter *rc;
    if (c->x->route.site) {
        const struct sy_site_conf *s = c->x->route.site;
        size_t si = (size_t)(s - cfg_of(c)->sites);
        size_t ri = c->x->route.route ? (size_t)(c->x->route.route - s->version.routes) + 1 : 0;
        rc = c->ws->site_counters[si][ri];
    } else {
        rc = c->ws->nosite_counter;
    }
    int cls = status / 100;
    if (cls >= 1 && cls <= 5)
        sy_counter_add(&rc->by_class[cls], 1);
}

/* Ends the request's bookkeeping: metrics and access log. */
static void log_request(struct sy_conn *c)
{
    if (!c->x || !c->x->t_req_start_us)
        return;
    uint64_t dur = now_us() - c->x->t_req_start_us;
    count_response(c, c->x->status);
    sy_metrics_observe(&c->w->metrics, dur);
    if (c->x->status >= 400 && c->x->status < 600 && !c->up)
        sy_metrics_client_error(&c->w->metrics, c->x->status);
    if (cfg_of(c)->log.access)
        sy_accesslog_write(c, dur);
    c->x->t_req_start_us = 0;
    c->x->log_path = SY_STR_NULL;
}

/*
 * Queues a response made by the gateway. close: the connection ends after it
 * (always when a request body was not read).
 */
static int respond(struct sy_conn *c, int status, const char *extra, const char *body, int close)
{
    sy__x_get(c);
    if (c->up) {
        c->up->srv->outstanding--;
        sy_upconn_close(c->up);
        c->up = NULL;
    }
    if (!c->req_done)
        close = 1;
    if (sy_atomic_draining())
        close = 1;
    if (c->close_after) /* this request asked for it (Connection: close, HTTP/1.0) */
        close = 1;
    sy__free_out_buffers(c);
    size_t cap = strlen(body) + (extra ? strlen(extra) : 0) + 256;
    c->hbuf = sy__out_alloc(c, cap, &c->hbuf_pooled);
    c->hlen = sy_build_simple_response(c->hbuf, cap, status, extra, body, close);
    c->hoff = 0;
    c->x->status = status;
    c->close_after = close;
    c->resp_started = 1;
    c->state = SY_ST_RESPOND;
    return P_PROGRESS;
}

static int respond_error(struct sy_conn *c, int status)
{
    char body[128];
    snprintf(body, sizeof(body), "%d %s\n", status, sy_status_reason(status));
    return respond(c, status, NULL, body, status >= 400 && status < 500 && status != 404);
}

/* ---- upstream selection ---- */

static int connect_upstream(struct sy_conn *c);

static void upstream_error(struct sy_conn *c, enum sy_uperr e)
{
    struct sy_uperr_counter *uc = c->x->wup->errs;
    sy_counter_add(&uc->by_reason[e], 1);
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
static int upstream_failed(struct sy_conn *c, enum sy_uperr e, int retry)
{
    struct sy_upconn *u = c->up;
    const struct sy_upstream_conf *uc = c->x->wup->rt->conf;
    const char *name = u ? u->srv->rt->conf->name : "?";
    if (u) {
        u->srv->outstanding--;
        if (retry == RETRY_FRESH)
            c->x->tried &= ~sy_upstream_tried_bit(u->srv);
        sy_upconn_close(u);
        c->up = NULL;
    }
    if (retry == RETRY_FRESH && !c->resp_started) {
        sy_log_debug("proxy", "pooled connection to %s was closed; retrying (request %s)", name,
                     c->x->reqid);
        c->retried_reuse = 1;
        c->ooff = 0;
        return connect_upstream(c);
    }
    upstream_error(c, e);
    sy_log_warn("proxy", "upstream %s server %s: %s (request %s)", uc->name, name,
                sy_uperr_name(e), c->x->reqid);
    if (retry && !c->resp_started) {
        c->ooff = 0;
        return connect_upstream(c);
    }
    if (c->resp_started) {
        conn_close(c);
        return P_CLOSED;
    }
    return respond_error(c, e == SY_UPERR_RESPONSE_TIMEOUT ? 504 : 502);
}

static int fresh_retry_ok(struct sy_conn *c)
{
    return c->up && c->up->reused && !c->retried_reuse && c->x->rf.body == SY_H1_BODY_NONE &&
           !c->resp_started;
}

static int connect_upstream(struct sy_conn *c)
{
    uint64_t now = now_ms(c);
    const struct sy_upstream_conf *uc = c->x->wup->rt->conf;
    for (;;) {
        struct sy_wserver *s = sy_upstream_pick(c, c->x->wup, now);
        if (!s) {
            upstream_error(c, SY_UPERR_NO_SERVER);
            sy_log_warn("proxy", "upstream %s: no server available (request %s)", uc->name,
                        c->x->reqid);
            return respond_error(c, 502);
        }
        struct sy_upconn *u = NULL;
        if (!c->retried_reuse)
            u = sy_upconn_take_idle(s);
        c->x->tried |= sy_upstream_tried_bit(s);
        if (!u) {
            int err = 0;
            u = sy_upconn_connect(c->w, s, &err);
            if (!u) {
                upstream_error(c, err == ECONNREFUSED ? SY_UPERR_CONNECT_REFUSED
                                                      : SY_UPERR_NO_SERVER);
                sy_upstream_mark_down(s, uc, now, now);
                continue;
            }
            c->connecting = 1;
            c->x->t_connect = now;
        } else {
            c->connecting = 0;
            u->readable = 0;
            u->writable = 1;
        }
        u->owner = c;
        s->outstanding++;
        c->up = u;
        c->x->log_upstream = s->rt->conf->name;
        c->t_up = now;
        return P_PROGRESS;
    }
}

/* ---- request start ---- */

static int answer_acme(struct sy_conn *c)
{
    struct sy_str t = c->x->req.target;
    struct sy_str token = sy_str_make(t.p + sizeof(ACME_PREFIX) - 1, t.len - (sizeof(ACME_PREFIX) - 1));
    char out[SY_ACME_HTTP01_MAX];
    ssize_t n = sy_acme_http01_answer(sy_proc.acme, token, out, sizeof(out));
    if (n > 0)
        return respond(c, 200, NULL, out, 0);
    if (n < 0)
        return respond(c, 503, "Retry-After: 5\r\n", "account key not ready\n", 0);
    return respond(c, 404, NULL, "unknown challenge\n", 0);
}

static int redirect_https(struct sy_conn *c)
{
    const struct sy_config *cfg = cfg_of(c);
    struct sy_str host = c->x->rf.host ? c->x->rf.host->value : SY_STR_LIT("");
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
        return respond_error(c, 400);
    unsigned port = cfg->tls.redirect_port;
    char portbuf[16] = "";
    if (port != 443)
        snprintf(portbuf, sizeof(portbuf), ":%u", port);
    size_t cap = hl + c->x->req.target.len + 64;
    char *loc = sy_malloc(cap);
    snprintf(loc, cap, "Location: https://%.*s%s%.*s\r\n", (int)hl, host.p, portbuf,
             (int)c->x->req.target.len, c->x->req.target.p);
    int r = respond(c, 308, loc, "redirecting to https\n", 0);
    sy_free(loc);
    return r;
}

static int target_is_acme(struct sy_str t)
{
    size_t n = sizeof(ACME_PREFIX) - 1;
    return t.len > n && memcmp(t.p, ACME_PREFIX, n) == 0;
}

static int start_request(struct sy_conn *c, size_t head_len)
{
    const struct sy_config *cfg = cfg_of(c);
    int status = 400;
    c->head_len = head_len;
    c->bpos = c->bscan = c->roff + head_len;
    /* c->x is zeroed by sy__x_get; only the connection's own flags need resetting. */
    c->x->t_req_start_us = now_us();
    c->t_client = now_ms(c);
    c->x->bytes_in = head_len;
    c->retried_reuse = 0;
    c->req_done = c->head_sent = c->expect_sent = c->upgrade = 0;
    c->resp_started = c->resp_head_done = c->resp_done = c->resp_close = 0;
    c->resp_chunked_out = c->connecting = 0;
    c->x->log_path = c->x->req.target;

    const struct sy_h1_header *rid =
        sy_h1_find(c->x->req.headers, c->x->req.num_headers, SY_STR_LIT("x-request-id"));
    if (rid && rid->value.len && rid->value.len < sizeof(c->x->reqid)) {
        c->x->reqid_in = rid->value;
        memcpy(c->x->reqid, rid->value.p, rid->value.len);
        c->x->reqid[rid->value.len] = '\0';
    } else {
        sy_request_id(c->w, c->x->reqid);
    }

    if (sy_h1_request_framing(&c->x->req, &c->x->rf, &status) < 0) {
        c->req_done = 0;
        return respond_error(c, status);
    }
    c->x->req.target = c->x->rf.target; /* origin-form: absolute-form is not forwarded as sent */
    c->req_done = c->x->rf.body == SY_H1_BODY_NONE ||
                  (c->x->rf.body == SY_H1_BODY_LENGTH && c->x->rf.length == 0);
    /* Chunked: unknown until the scanner sees the last chunk (1 stands for "more to come"). */
    c->x->req_remaining = c->x->rf.body == SY_H1_BODY_LENGTH    ? c->x->rf.length
                          : c->x->rf.body == SY_H1_BODY_CHUNKED ? 1
                                                                : 0;
    sy_h1_chunked_init(&c->x->req_chunked);
    if (!c->x->rf.keepalive || sy_atomic_draining())
        c->close_after = 1;

    if (!c->https && target_is_acme(c->x->req.target) && sy_proc.acme)
        return answer_acme(c);
    if (!c->https && cfg->tls.redirect && cfg->listen_https.set && !target_is_acme(c->x->req.target))
        return redirect_https(c);

    struct sy_str host = c->x->rf.host ? c->x->rf.host->value : SY_STR_LIT("");
    const struct sy_site_conf *site = sy_route_find_site(cfg, host);
    if (!site)
        return respond(c, 404, NULL, "no site for this host\n", 0);
    sy_route_select(site, c->x->req.target, c->x->req.headers, c->x->req.num_headers, &c->x->route);

    if (cfg->limits.max_body && c->x->rf.body == SY_H1_BODY_LENGTH &&
        c->x->rf.length > cfg->limits.max_body)
        return respond_error(c, 413);
    c->upgrade = c->x->rf.upgrade && c->req_done;
    c->x->wup = &c->ws->ups[c->x->route.upstream];

    /* The upstream request head. */
    size_t cap = SY_BUF_SIZE;
    for (;;) {
        c->obuf = sy__out_alloc(c, cap, &c->obuf_pooled);
        c->olen = sy_build_upstream_head(c, c->obuf, cap);
        if (c->olen)
            break;
        sy__out_free(c, &c->obuf, c->obuf_pooled);
        if (cap > head_len + 65536)
            return respond_error(c, 431);
        cap *= 2;
    }
    c->ooff = 0;
    c->state = SY_ST_PROXY;
    return connect_upstream(c);
}

/* ---- states ---- */

static int do_head(struct sy_conn *c)
{
    const struct sy_config *cfg = cfg_of(c);
    struct sy_h1_limits lim = {
        .max_head = cfg->limits.max_request_head,
        .max_headers = cfg->limits.max_headers < SY_MAX_HEADERS_CAP ? cfg->limits.max_headers
                                                                    : SY_MAX_HEADERS_CAP,
        .max_uri = cfg->limits.max_uri,
    };
    for (;;) {
        if (c->rlen > c->roff) {
            int status = 400;
            sy__x_get(c);
            c->x->req.headers = c->w->hdrs;
            c->x->req.num_headers = 0;
            int r = sy_h1_parse_request(c->rbuf + c->roff, c->rlen - c->roff, &c->x->req, &lim,
                                        &status);
            if (r > 0) {
                /* The header array is the worker's scratch space: nothing may keep a pointer
                 * into it once the request has been started. */
                int res = start_request(c, (size_t)r);
                c->x->req.headers = NULL;
                c->x->req.num_headers = 0;
                c->x->rf.host = NULL;
                return res;
            }
            if (r == SY_H1_INVALID) {
                c->x->t_req_start_us = now_us();
                c->x->route = (struct sy_route_result){0};
                c->x->req.method = SY_STR_NULL;
                c->x->log_upstream = NULL;
                c->x->bytes_in = c->rlen - c->roff;
                sy_request_id(c->w, c->x->reqid);
                c->req_done = 0;
                return respond_error(c, status);
            }
        }
        if (c->rd_eof) {
            conn_close(c);
            return P_CLOSED;
        }
        if (!c->readable)
            return P_BLOCKED;
        sy__rbuf_ensure(c);
        if (sy__rbuf_room_for_head(c) < 0) {
            c->req_done = 0;
            return respond_error(c, 431);
        }
        int was_empty = c->rlen == c->roff;
        ssize_t n = sy__cread(c, c->rbuf + c->rlen, c->rcap - c->rlen);
        if (n > 0) {
            c->rlen += (size_t)n;
            c->t_client = now_ms(c);
            if (was_empty)
                c->t_head_start = c->t_client;
            continue;
        }
        if (n == 0) {
            c->rd_eof = 1;
            continue;
        }
        if (n == -1) {
            sy__rbuf_release_if_empty(c);
            return P_BLOCKED;
        }
        conn_close(c);
        return P_CLOSED;
    }
}

/* Validates newly arrived request body bytes; returns -1 on a framing error. */
static int scan_request_body(struct sy_conn *c)
{
    size_t avail = c->rlen - c->bscan;
    if (!avail)
        return 0;
    if (c->x->rf.body == SY_H1_BODY_LENGTH) {
        size_t n = avail < c->x->req_remaining ? avail : (size_t)c->x->req_remaining;
        c->bscan += n;
        c->x->req_remaining -= n;
        return 0;
    }
    int done = 0;
    ssize_t n = sy_h1_chunked_scan(&c->x->req_chunked, c->rbuf + c->bscan, avail, &done);
    if (n < 0)
        return -1;
    c->bscan += (size_t)n;
    uint64_t max = cfg_of(c)->limits.max_body;
    if (max && c->x->req_chunked.data_bytes > max)
        return -2;
    if (done)
        c->x->req_remaining = 0;
    else
        c->x->req_remaining = 1; /* unknown, more to come */
    return 0;
}

static int body_all_scanned(struct sy_conn *c)
{
    return c->x->req_remaining == 0;
}

/* Client -> upstream: head, then the body. */
static int forward_request(struct sy_conn *c)
{
    struct sy_upconn *u = c->up;
    int progress = 0;
    if (c->ooff < c->olen) {
        if (!u->writable)
            return P_BLOCKED;
        ssize_t n = sy__uwrite(u, c->obuf + c->ooff, c->olen - c->ooff);
        if (n == -1)
            return P_BLOCKED;
        if (n < 0)
            return upstream_failed(c, SY_UPERR_RESET, fresh_retry_ok(c) ? RETRY_FRESH : RETRY_NONE);
        c->ooff += (size_t)n;
        progress = 1;
        if (c->ooff < c->olen)
            return P_PROGRESS;
        c->head_sent = 1;
        if (c->req_done)
            c->t_up = now_ms(c);
    }
    if (c->req_done)
        return progress;
    if (c->x->rf.expect_continue && !c->expect_sent && !c->resp_started && c->hlen == 0 &&
        c->x->req.minor_version == 1 && c->bscan == c->rlen) {
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        c->hbuf = sy__out_alloc(c, sizeof(cont), &c->hbuf_pooled);
        memcpy(c->hbuf, cont, sizeof(cont) - 1);
        c->hlen = sizeof(cont) - 1;
        c->hoff = 0;
        c->expect_sent = 1;
        progress = 1;
    }
    for (;;) {
        int r = scan_request_body(c);
        if (r < 0) {
            if (c->resp_started) {
                conn_close(c);
                return P_CLOSED;
            }
            return respond_error(c, r == -2 ? 413 : 400);
        }
        if (c->bpos < c->bscan) {
            if (!u->writable)
                return progress;
            ssize_t n = sy__uwrite(u, c->rbuf + c->bpos, c->bscan - c->bpos);
            if (n == -1)
                return progress;
            if (n < 0)
                return upstream_failed(c, SY_UPERR_RESET, RETRY_NONE);
            c->bpos += (size_t)n;
            c->x->bytes_in += (uint64_t)n;
            c->t_up = now_ms(c);
            progress = 1;
            if (c->bpos < c->bscan)
                continue;
        }
        if (body_all_scanned(c) && c->bpos == c->bscan) {
            c->req_done = 1;
            c->t_up = now_ms(c);
            return P_PROGRESS;
        }
        /* Need more body bytes from the client. */
        if (c->bpos == c->rlen)
            c->rlen = c->bpos = c->bscan = c->roff + c->head_len;
        if (c->rd_eof) {
            /* The client went away in the middle of its body. */
            conn_close(c);
            return P_CLOSED;
        }
        if (!c->readable || c->rlen == c->rcap)
            return progress;
        ssize_t n = sy__cread(c, c->rbuf + c->rlen, c->rcap - c->rlen);
        if (n > 0) {
            c->rlen += (size_t)n;
            c->t_client = now_ms(c);
            progress = 1;
            continue;
        }
        if (n == 0) {
            c->rd_eof = 1;
            continue;
        }
        if (n == -1)
            return progress;
        conn_close(c);
        return P_CLOSED;
    }
}

/* Validates response body bytes in u->buf from uscan on. -1 on framing error. */
static int scan_response_body(struct sy_conn *c)
{
    struct sy_upconn *u = c->up;
    size_t avail = u->len - c->uscan;
    switch (c->x->sf.body) {
    case SY_H1_BODY_NONE:
        c->x->resp_remaining = 0;
        return 0;
    case SY_H1_BODY_LENGTH: {
        size_t n = avail < c->x->resp_remaining ? avail : (size_t)c->x->resp_remaining;
        c->uscan += n;
        c->x->resp_remaining -= n;
        return 0;
    }
    case SY_H1_BODY_CHUNKED: {
        if (!avail)
            return 0;
        int done = 0;
        ssize_t n = sy_h1_chunked_scan(&c->x->resp_chunked, u->buf + c->uscan, avail, &done);
        if (n < 0)
            return -1;
        c->uscan += (size_t)n;
        if (done)
            c->x->resp_remaining = 0;
        return 0;
    }
    case SY_H1_BODY_EOF:
        c->uscan = u->len;
        if (u->eof)
            c->x->resp_remaining = 0;
        return 0;
    }
    return 0;
}

static int parse_response_head(struct sy_conn *c)
{
    struct sy_upconn *u = c->up;
    struct sy_h1_header hdrs[SY_MAX_HEADERS_CAP];
    struct sy_h1_response resp = {.headers = hdrs};
    struct sy_h1_limits lim = {.max_head = SY_BUF_SIZE, .max_headers = SY_MAX_HEADERS_CAP,
                               .max_uri = SY_BUF_SIZE};
    for (;;) {
        resp.num_headers = 0;
        int r = sy_h1_parse_response(u->buf + u->off, u->len - u->off, &resp, &lim);
        if (r == SY_H1_PARTIAL) {
            if (u->len - u->off >= SY_BUF_SIZE || u->eof) {
                int reset = u->eof && u->len == u->off;
                if (reset && fresh_retry_ok(c))
                    return upstream_failed(c, SY_UPERR_RESET, RETRY_FRESH);
                return upstream_failed(c, reset ? SY_UPERR_RESET : SY_UPERR_BAD_RESPONSE, 0);
            }
            return P_BLOCKED;
        }
        if (r < 0)
            return upstream_failed(c, SY_UPERR_BAD_RESPONSE, 0);
        if (resp.status >= 100 && resp.status < 200 && resp.status != 101) {
            /* Interim responses: 100 is answered by the gateway itself; drop them. */
            u->off += (size_t)r;
            continue;
        }
        if (resp.status == 101 && !c->upgrade)
            return upstream_failed(c, SY_UPERR_BAD_RESPONSE, 0);
        if (sy_h1_response_framing(&resp, c->x->req.method, &c->x->sf) < 0)
            return upstream_failed(c, SY_UPERR_BAD_RESPONSE, 0);
        if (resp.status != 101 && c->x->sf.body == SY_H1_BODY_CHUNKED && c->x->req.minor_version == 0)
            return upstream_failed(c, SY_UPERR_BAD_RESPONSE, 0);
        c->x->status = resp.status;
        c->resp_close = c->close_after || !c->x->sf.keepalive || c->x->sf.body == SY_H1_BODY_EOF ||
                        !c->req_done || sy_atomic_draining();
        if (c->x->sf.body == SY_H1_BODY_EOF)
            c->x->sf.keepalive = 0;
        c->resp_chunked_out = c->x->sf.body == SY_H1_BODY_CHUNKED;
        c->x->resp_remaining = c->x->sf.body == SY_H1_BODY_LENGTH ? c->x->sf.length : 1;
        if (c->x->sf.body == SY_H1_BODY_NONE)
            c->x->resp_remaining = 0;
        sy_h1_chunked_init(&c->x->resp_chunked);
        sy__free_hbuf(c); /* a 100 Continue, already written */
        size_t cap = (size_t)r + 2048;
        if (cap < SY_BUF_SIZE)
            cap = SY_BUF_SIZE;
        c->hbuf = sy__out_alloc(c, cap, &c->hbuf_pooled);
        c->hlen = sy_build_response_head(c, &resp, c->hbuf, cap);
        c->hoff = 0;
        if (!c->hlen)
            return upstream_failed(c, SY_UPERR_BAD_RESPONSE, 0);
        u->off += (size_t)r;
        c->uscan = u->off;
        c->resp_head_done = 1;
        c->resp_started = 1;
        return P_PROGRESS;
    }
}

/* The upstream closed before a complete response head. */
static int head_eof(struct sy_conn *c)
{
    struct sy_upconn *u = c->up;
    if (u->len == u->off && fresh_retry_ok(c))
        return upstream_failed(c, SY_UPERR_RESET, RETRY_FRESH);
    return upstream_failed(c, u->len == u->off ? SY_UPERR_RESET : SY_UPERR_BAD_RESPONSE, 0);
}

/* Upstream -> client. */
static int forward_response(struct sy_conn *c)
{
    struct sy_upconn *u = c->up;
    int progress = 0;
    for (;;) {
        if (!c->resp_head_done && u->buf && u->len > u->off && c->hoff == c->hlen) {
            int r = parse_response_head(c);
            if (r == P_CLOSED)
                return P_CLOSED;
            if (c->state != SY_ST_PROXY || c->up != u)
                return P_PROGRESS;
            if (r == P_PROGRESS) {
                progress = 1;
                if (scan_response_body(c) < 0)
                    goto bad;
            }
        }
        /* Write what is ready: head remainder and validated body bytes. */
        if (c->hoff < c->hlen || (c->resp_head_done && u->off < c->uscan)) {
            if (!c->writable)
                return progress;
            struct iovec iov[2];
            int n = 0;
            if (c->hoff < c->hlen)
                iov[n++] = (struct iovec){c->hbuf + c->hoff, c->hlen - c->hoff};
            if (c->resp_head_done && u->off < c->uscan)
                iov[n++] = (struct iovec){u->buf + u->off, c->uscan - u->off};
            ssize_t w = sy__cwritev(c, iov, n);
            if (w == -1)
                return progress;
            if (w < 0) {
                conn_close(c);
                return P_CLOSED;
            }
            c->t_client = now_ms(c);
            c->x->bytes_out += (uint64_t)w;
            progress = 1;
            size_t left = (size_t)w;
            if (c->hoff < c->hlen) {
                size_t k = left < c->hlen - c->hoff ? left : c->hlen - c->hoff;
                c->hoff += k;
                left -= k;
            }
            u->off += left;
            if (c->resp_head_done && u->off == u->len)
                u->off = u->len = c->uscan = 0;
            continue;
        }
        if (c->resp_head_done && c->x->resp_remaining == 0) {
            c->resp_done = 1;
            return P_PROGRESS;
        }
        /* Read more from the upstream. */
        if (!u->buf) {
            u->buf = sy_worker_buf_get(c->w);
            u->off = u->len = 0;
            c->uscan = 0;
        }
        if (u->eof) {
            if (!c->resp_head_done)
                return head_eof(c);
            if (scan_response_body(c) < 0)
                goto bad;
            if (c->x->resp_remaining && u->off == c->uscan) {
                /* The upstream closed in the middle of the body: cut the client off. */
                upstream_error(c, SY_UPERR_RESET);
                sy_log_warn("proxy", "upstream %s closed mid-response (request %s)", u->addr,
                            c->x->reqid);
                conn_close(c);
                return P_CLOSED;
            }
            if (c->x->resp_remaining == 0)
                continue;
            return progress;
        }
        if (!c->resp_head_done && u->len == SY_BUF_SIZE) {
            if (u->off > 0) {
                memmove(u->buf, u->buf + u->off, u->len - u->off);
                u->len -= u->off;
                u->off = 0;
            } else {
                return upstream_failed(c, SY_UPERR_BAD_RESPONSE, 0); /* head too large */
            }
        }
        if (!u->readable || u->len == SY_BUF_SIZE)
            return progress;
        ssize_t n = sy__uread(u, u->buf + u->len, SY_BUF_SIZE - u->len);
        if (n > 0) {
            u->len += (size_t)n;
            c->t_up = now_ms(c);
            progress = 1;
            if (c->resp_head_done && scan_response_body(c) < 0)
                goto bad;
            continue;
        }
        if (n == 0 || n == -2) {
            u->eof = 1;
            progress = 1;
            continue;
        }
        return progress;
    }
bad:
    upstream_error(c, SY_UPERR_BAD_RESPONSE);
    sy_log_warn("proxy", "upstream %s sent an invalid body (request %s)", u->addr, c->x->reqid);
    conn_close(c);
    return P_CLOSED;
}

static int start_tunnel(struct sy_conn *c)
{
    /* Upgrade requests carry no body: bytes after the head (from bpos) are tunnel data. */
    c->state = SY_ST_TUNNEL;
    sy_counter_add(&c->w->metrics.tunnels_active, 1);
    log_request(c);
    return P_PROGRESS;
}

static int do_proxy(struct sy_conn *c)
{
    struct sy_upconn *u = c->up;
    if (!u)
        return P_BLOCKED;
    if (c->connecting) {
        if (!u->writable && !u->eof)
            return P_BLOCKED;
        int err = 0;
        socklen_t len = sizeof(err);
        getsockopt(u->io.fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err) {
            sy_upstream_mark_down(u->srv, c->x->wup->rt->conf, c->x->t_connect, now_ms(c));
            return upstream_failed(c, err == ECONNREFUSED ? SY_UPERR_CONNECT_REFUSED
                                                           : SY_UPERR_RESET,
                                   RETRY_OTHER);
        }
        sy_upstream_mark_up(u->srv, c->x->wup->rt->conf);
        c->connecting = 0;
        u->eof = 0;
        c->t_up = now_ms(c);
    }
    int p1 = forward_request(c);
    if (p1 == P_CLOSED || c->state != SY_ST_PROXY || c->up != u)
        return p1 == P_CLOSED ? P_CLOSED : P_PROGRESS;
    int p2 = forward_response(c);
    if (p2 == P_CLOSED || c->state != SY_ST_PROXY || c->up != u)
        return p2 == P_CLOSED ? P_CLOSED : P_PROGRESS;
    if (c->resp_done && c->hoff == c->hlen) {
        if (c->x->status == 101)
            return start_tunnel(c);
        if (!c->req_done)
            c->resp_close = 1;
        return finish_request(c);
    }
    return p1 || p2;
}

static int do_tunnel(struct sy_conn *c)
{
    struct sy_upconn *u = c->up;
    int progress = 0;
    /* client -> upstream */
    for (;;) {
        if (c->bpos < c->rlen) {
            if (!u->writable)
                break;
            ssize_t n = sy__uwrite(u, c->rbuf + c->bpos, c->rlen - c->bpos);
            if (n == -1)
                break;
            if (n < 0)
                goto end;
            c->bpos += (size_t)n;
            c->t_up = now_ms(c);
            progress = 1;
            continue;
        }
        c->rlen = c->bpos = c->roff + c->head_len;
        if (c->rd_eof) {
            shutdown(u->io.fd, SHUT_WR);
            break;
        }
        if (!c->readable)
            break;
        ssize_t n = sy__cread(c, c->rbuf + c->rlen, c->rcap - c->rlen);
        if (n > 0) {
            c->rlen += (size_t)n;
            c->t_client = now_ms(c);
            progress = 1;
            continue;
        }
        if (n == 0) {
            c->rd_eof = 1;
            progress = 1;
            continue;
        }
        if (n == -1)
            break;
        goto end;
    }
    /* upstream -> client */
    for (;;) {
        if (u->buf && u->off < u->len) {
            if (!c->writable)
                break;
            struct iovec iov = {u->buf + u->off, u->len - u->off};
            ssize_t n = sy__cwritev(c, &iov, 1);
            if (n == -1)
                break;
            if (n < 0)
                goto end;
            u->off += (size_t)n;
            c->t_client = now_ms(c);
            progress = 1;
            continue;
        }
        if (!u->buf)
            u->buf = sy_worker_buf_get(c->w);
        u->off = u->len = 0;
        if (u->eof)
            goto end;
        if (!u->readable)
            break;
        ssize_t n = sy__uread(u, u->buf, SY_BUF_SIZE);
        if (n > 0) {
            u->len = (size_t)n;
            c->t_up = now_ms(c);
            progress = 1;
            continue;
        }
        if (n == 0 || n == -2) {
            u->eof = 1;
            continue;
        }
        break;
    }
    if (c->rd_eof && u->eof)
        goto end;
    return progress;
end:
    conn_close(c);
    return P_CLOSED;
}

static int do_respond(struct sy_conn *c)
{
    if (c->lingering) {
        /* Read and drop what the client still sends, so closing does not reset the answer. */
        char tmp[4096];
        for (;;) {
            if (!c->readable)
                return P_BLOCKED;
            ssize_t n = sy__cread(c, tmp, sizeof(tmp));
            if (n > 0)
                continue;
            if (n == -1)
                return P_BLOCKED;
            conn_close(c);
            return P_CLOSED;
        }
    }
    while (c->hoff < c->hlen) {
        if (!c->writable)
            return P_BLOCKED;
        struct iovec iov = {c->hbuf + c->hoff, c->hlen - c->hoff};
        ssize_t n = sy__cwritev(c, &iov, 1);
        if (n == -1)
            return P_BLOCKED;
        if (n < 0) {
            log_request(c);
            conn_close(c);
            return P_CLOSED;
        }
        c->hoff += (size_t)n;
        c->x->bytes_out += (uint64_t)n;
        c->t_client = now_ms(c);
    }
    if (c->close_after) {
        log_request(c);
        sy__free_out_buffers(c);
        if (c->tls)
            sy_tls_shutdown(c->tls);
        shutdown(c->io.fd, SHUT_WR);
        c->lingering = 1;
        c->t_client = now_ms(c);
        return P_PROGRESS;
    }
    c->resp_close = 0;
    c->x->sf.keepalive = 1;
    return finish_request(c);
}

/*
 * The handshake reads whenever it runs, whatever `readable` says, and with
 * read-ahead its last read may take the first request along with the client's
 * Finished. That request sits inside TLS, and the event of its arrival may
 * already be harvested (an edge-triggered event reports the readiness of the
 * moment it is read, EPOLLOUT only once the socket is empty). So once done,
 * the head is read at once unless the last read left the socket empty with
 * nothing buffered.
 */
static int do_handshake(struct sy_conn *c)
{
    int r = sy_tls_handshake(c->tls);
    if (r == SY_TLS_DONE) {
        c->state = SY_ST_HEAD;
        c->t_client = now_ms(c);
        c->readable = !sy_tls_drained(c->tls);
        return P_PROGRESS;
    }
    /* OpenSSL only asks to wait after the socket said EAGAIN. */
    if (r == SY_TLS_WANT_READ) {
        c->readable = 0;
        return P_BLOCKED;
    }
    if (r == SY_TLS_WANT_WRITE) {
        c->writable = 0;
        return P_BLOCKED;
    }
    conn_close(c);
    return P_CLOSED;
}

/* ---- request end ---- */

static void switch_snapshot(struct sy_conn *c)
{
    struct sy_wsnap *cur = sy_wsnap_get(c->w);
    if (cur != c->ws) {
        cur->refs++;
        sy_wsnap_unref(c->ws);
        c->ws = cur;
    }
}

static int finish_request(struct sy_conn *c)
{
    log_request(c);
    if (c->up) {
        struct sy_upconn *u = c->up;
        u->srv->outstanding--;
        int reusable = c->x->sf.keepalive && c->req_done && c->resp_done && !u->eof &&
                       c->ws == sy_wsnap_get(c->w) && !sy_atomic_draining();
        sy_upconn_release(u, reusable, c->x->wup->rt->conf->keepalive);
        c->up = NULL;
    }
    sy__x_put(c);
    sy__free_out_buffers(c);
    /* Only when the answer said so: a drain that began while the answer was on its way
     * leaves the connection to the drain's rule for idle ones (sy_conn_drain_start). */
    int close = c->resp_close || c->close_after;
    if (close) {
        conn_close(c);
        return P_CLOSED;
    }
    /* Next request: pipelined bytes may already be there. */
    c->roff = c->bpos;
    if (c->roff == c->rlen)
        sy__rbuf_release_if_empty(c);
    c->head_len = 0;
    c->state = SY_ST_HEAD;
    c->t_client = now_ms(c);
    c->t_head_start = c->t_client;
    switch_snapshot(c);
    return P_PROGRESS;
}

/* ---- timers ---- */

static uint64_t deadline(struct sy_conn *c)
{
    const struct sy_config *cfg = cfg_of(c);
    switch (c->state) {
    case SY_ST_HANDSHAKE:
        return c->t_accept + cfg->timeouts.client_header_ms;
    case SY_ST_HEAD:
        if (c->rlen == c->roff) {
            uint32_t idle = cfg->timeouts.keepalive_ms;
            if (sy_atomic_draining() && idle > SY_DRAIN_IDLE_MS)
                idle = SY_DRAIN_IDLE_MS;
            return c->t_client + idle;
        }
        return c->t_head_start + cfg->timeouts.client_header_ms;
    case SY_ST_PROXY: {
        if (c->connecting)
            return c->x->t_connect + cfg->timeouts.upstream_connect_ms;
        uint64_t d = UINT64_MAX;
        if (!c->req_done && c->bpos == c->bscan)
            d = c->t_client + cfg->timeouts.client_body_ms;
        if (!c->resp_done) {
            uint64_t e = c->t_up + cfg->timeouts.upstream_response_ms;
            d = e < d ? e : d;
        }
        if (c->hoff < c->hlen || (c->up && c->up->off < c->uscan)) {
            uint64_t e = c->t_client + cfg->timeouts.client_body_ms;
            d = e < d ? e : d;
        }
        return d;
    }
    case SY_ST_TUNNEL: {
        uint64_t last = c->t_client > c->t_up ? c->t_client : c->t_up;
        return last + cfg->timeouts.tunnel_idle_ms;
    }
    case SY_ST_RESPOND:
        return c->t_client + (c->lingering ? LINGER_MS : cfg->timeouts.client_body_ms);
    case SY_ST_ADMIN:
        return c->t_accept + 10000;
    case SY_ST_CLOSED:
        break;
    }
    return UINT64_MAX;
}

static void on_timeout(struct sy_conn *c)
{
    const struct sy_config *cfg = cfg_of(c);
    switch (c->state) {
    case SY_ST_HANDSHAKE:
        sy_tls_count_handshake_timeout();
        conn_close(c);
        return;
    case SY_ST_HEAD:
        if (c->rlen == c->roff) {
            conn_close(c);
            return;
        }
        sy__x_get(c);
        c->x->t_req_start_us = now_us();
        c->x->route = (struct sy_route_result){0};
        c->x->req.method = SY_STR_NULL;
        sy_request_id(c->w, c->x->reqid);
        c->req_done = 0;
        respond_error(c, 408);
        pump(c);
        return;
    case SY_ST_PROXY:
        if (c->connecting) {
            sy_upstream_mark_down(c->up->srv, c->x->wup->rt->conf, c->x->t_connect, now_ms(c));
            if (upstream_failed(c, SY_UPERR_CONNECT_TIMEOUT, RETRY_OTHER) != P_CLOSED)
                pump(c);
            return;
        }
        if (!c->req_done && c->bpos == c->bscan &&
            now_ms(c) >= c->t_client + cfg->timeouts.client_body_ms) {
            if (!c->resp_started) {
                respond_error(c, 408);
                pump(c);
            } else {
                conn_close(c);
            }
            return;
        }
        if (!c->resp_done && now_ms(c) >= c->t_up + cfg->timeouts.upstream_response_ms) {
            if (upstream_failed(c, SY_UPERR_RESPONSE_TIMEOUT, RETRY_NONE) != P_CLOSED)
                pump(c);
            return;
        }
        conn_close(c); /* the client stopped reading */
        return;
    default:
        conn_close(c);
        return;
    }
}

static void conn_timer_cb(struct sy_timer *t)
{
    struct sy_conn *c = SY_CONTAINER_OF(t, struct sy_conn, timer);
    if (c->state == SY_ST_CLOSED)
        return;
    uint64_t d = deadline(c);
    if (d > now_ms(c)) {
        sy_timer_set(c->w->loop, &c->timer, d);
        return;
    }
    on_timeout(c);
}

/* ---- the pump ---- */

static void pump(struct sy_conn *c)
{
    for (int guard = 0; guard < 1000; guard++) {
        int r;
        switch (c->state) {
        case SY_ST_HANDSHAKE:
            r = do_handshake(c);
            break;
        case SY_ST_HEAD:
            r = do_head(c);
            break;
        case SY_ST_PROXY:
            r = do_proxy(c);
            break;
        case SY_ST_TUNNEL:
            r = do_tunnel(c);
            break;
        case SY_ST_RESPOND:
            r = do_respond(c);
            break;
        case SY_ST_ADMIN:
            r = sy_admin_pump(c);
            break;
        default:
            return;
        }
        if (r == P_CLOSED || c->state == SY_ST_CLOSED)
            return;
        if (r == P_BLOCKED)
            break;
    }
    sy_timer_arm(c->w->loop, &c->timer, deadline(c));
}

static void conn_event(struct sy_io *io, uint32_t events)
{
    struct sy_conn *c = SY_CONTAINER_OF(io, struct sy_conn, io);
    if (c->state == SY_ST_CLOSED)
        return;
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        c->readable = 1;
    if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        c->rd_hup = 1;
    if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR))
        c->writable = 1;
    pump(c);
}

void sy_conn_upstream_event(struct sy_upconn *u, uint32_t events)
{
    struct sy_conn *c = u->owner;
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        u->readable = 1;
    if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        u->hup = 1;
    if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR))
        u->writable = 1;
    if ((events & (EPOLLHUP | EPOLLERR)) && c->connecting)
        u->eof = 1;
    if (c->state != SY_ST_CLOSED)
        pump(c);
}

/* ---- lifecycle ---- */

static struct sy_conn *conn_new(struct sy_worker *w, int fd, int admin)
{
    struct sy_conn *c = sy_calloc(1, sizeof(*c));
    c->io.fd = fd;
    c->io.cb = conn_event;
    c->w = w;
    c->timer.cb = conn_timer_cb;
    c->t_accept = c->t_client = c->t_head_start = sy_loop_now(w->loop);
    c->ws = sy_wsnap_get(w);
    c->ws->refs++;
    sy_list_insert_tail(&w->conns, &c->link);
    c->is_admin = admin;
    if (!admin) {
        w->nconns++;
        sy_counter_add(&w->metrics.conns_active, 1);
        sy_counter_add(&w->metrics.conns_accepted, 1);
    }
    return c;
}

static void set_peer(struct sy_conn *c, const struct sockaddr_storage *peer)
{
    if (peer->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)peer;
        inet_ntop(AF_INET6, &a->sin6_addr, c->peer_ip, sizeof(c->peer_ip));
        c->peer_port = ntohs(a->sin6_port);
    } else {
        const struct sockaddr_in *a = (const struct sockaddr_in *)peer;
        inet_ntop(AF_INET, &a->sin_addr, c->peer_ip, sizeof(c->peer_ip));
        c->peer_port = ntohs(a->sin_port);
    }
}

void sy_conn_accept(struct sy_worker *w, int fd, const struct sockaddr_storage *peer, int https)
{
    struct sy_conn *c = conn_new(w, fd, 0);
    set_peer(c, peer);
    c->https = https;
    c->state = SY_ST_HEAD;
    if (https) {
        if (!c->ws->snap->tls || !(c->tls = sy_tls_conn_new(c->ws->snap->tls, fd))) {
            conn_close(c);
            return;
        }
        c->state = SY_ST_HANDSHAKE;
    }
    if (sy_loop_add(w->loop, &c->io) < 0) {
        conn_close(c);
        return;
    }
    sy_timer_arm(w->loop, &c->timer, deadline(c));
}

void sy_admin_accept(struct sy_worker *w, int fd)
{
    struct sy_conn *c = conn_new(w, fd, 1);
    c->state = SY_ST_ADMIN;
    if (sy_loop_add(w->loop, &c->io) < 0) {
        conn_close(c);
        return;
    }
    sy_timer_arm(w->loop, &c->timer, deadline(c));
}

static void conn_close(struct sy_conn *c)
{
    if (c->state == SY_ST_CLOSED)
        return;
    if (c->state == SY_ST_TUNNEL)
        sy_counter_add(&c->w->metrics.tunnels_active, (uint64_t)-1);
    if (c->x && c->x->t_req_start_us) {
        /* A request ends with the connection: 499 when the client left first (nginx's code). */
        if (!c->x->status || !c->resp_head_done)
            c->x->status = c->resp_started ? (c->x->status ? c->x->status : 502) : 499;
        log_request(c);
    }
    sy__x_put(c);
    c->state = SY_ST_CLOSED;
    if (c->up) {
        c->up->srv->outstanding--;
        sy_upconn_close(c->up);
        c->up = NULL;
    }
    sy_timer_cancel(c->w->loop, &c->timer);
    sy_loop_del(c->w->loop, &c->io);
    if (c->tls) {
        sy_tls_conn_free(c->tls);
        c->tls = NULL;
    }
    close(c->io.fd);
    sy__free_out_buffers(c);
    c->roff = c->rlen;
    sy__rbuf_release_if_empty(c);
    sy_list_remove(&c->link);
    sy_list_insert_tail(&c->w->closed, &c->link);
    if (!c->is_admin) {
        c->w->nconns--;
        sy_counter_add(&c->w->metrics.conns_active, (uint64_t)-1);
    }
    sy_wsnap_unref(c->ws);
    c->ws = NULL;
}

void sy_conn_reap(struct sy_worker *w)
{
    SY_BUG_ON(sy_loop_dispatching(w->loop));
    while (!sy_list_empty(&w->closed)) {
        struct sy_conn *c = SY_CONTAINER_OF(w->closed.next, struct sy_conn, link);
        sy_list_remove(&c->link);
        sy_free(c);
    }
    sy_upconn_reap(w);
}

static int idle_between_requests(const struct sy_conn *c)
{
    return c->state == SY_ST_HEAD && c->rlen == c->roff;
}

/*
 * The drain's rule for keep-alive connections: one that is between requests
 * is not cut at once, since its client may be sending the next request right
 * now (that request would be lost). Its next request is answered, with
 * Connection: close; a connection that stays idle for SY_DRAIN_IDLE_MS is
 * closed by its timer (see deadline()).
 */
void sy_conn_drain_start(struct sy_worker *w)
{
    struct sy_list *n;
    for (n = w->conns.next; n != &w->conns; n = n->next) {
        struct sy_conn *c = SY_CONTAINER_OF(n, struct sy_conn, link);
        if (idle_between_requests(c))
            sy_timer_arm(w->loop, &c->timer, deadline(c));
    }
}

/* Reads and drops what a socket holds, so that closing it sends a FIN, not a reset. */
static void discard_input(int fd)
{
    char tmp[4096];
    for (int i = 0; i < 64 && recv(fd, tmp, sizeof(tmp), MSG_DONTWAIT) > 0; i++)
        ;
}

void sy_conn_close_all(struct sy_worker *w)
{
    while (!sy_list_empty(&w->conns)) {
        struct sy_conn *c = SY_CONTAINER_OF(w->conns.next, struct sy_conn, link);
        if (c->tls && c->state != SY_ST_HANDSHAKE)
            sy_tls_shutdown(c->tls);
        shutdown(c->io.fd, SHUT_WR);
        discard_input(c->io.fd);
        if (c->up) {
            shutdown(c->up->io.fd, SHUT_WR);
            discard_input(c->up->io.fd);
        }
        conn_close(c); /* moves c to the closed list */
    }
}

/* ---- admin connections (the handler lives in admin/admin.c) ---- */

int sy_admin_pump(struct sy_conn *c)
{
    for (;;) {
        if (c->hbuf) {
            while (c->hoff < c->hlen) {
                if (!c->writable)
                    return P_BLOCKED;
                struct iovec iov = {c->hbuf + c->hoff, c->hlen - c->hoff};
                ssize_t n = sy__cwritev(c, &iov, 1);
                if (n == -1)
                    return P_BLOCKED;
                if (n < 0)
                    break;
                c->hoff += (size_t)n;
            }
            conn_close(c);
            return P_CLOSED;
        }
        sy__rbuf_ensure(c);
        if (c->rlen > 0) {
            sy__x_get(c);
            struct sy_h1_limits lim = {.max_head = 8192, .max_headers = 64, .max_uri = 2048};
            int status = 400;
            c->x->req.headers = c->w->hdrs;
            c->x->req.num_headers = 0;
            int r = sy_h1_parse_request(c->rbuf, c->rlen, &c->x->req, &lim, &status);
            if (r != SY_H1_PARTIAL) {
                size_t len = 0;
                c->hbuf = sy_admin_respond(r > 0 ? &c->x->req : NULL, r > 0 ? 200 : status,
                                          c->ws->snap, &len);
                c->hlen = len;
                c->hoff = 0;
                continue;
            }
        }
        if (!c->readable)
            return P_BLOCKED;
        if (c->rlen == c->rcap) {
            conn_close(c);
            return P_CLOSED;
        }
        ssize_t n = sy__cread(c, c->rbuf + c->rlen, c->rcap - c->rlen);
        if (n > 0) {
            c->rlen += (size_t)n;
            continue;
        }
        if (n == -1)
            return P_BLOCKED;
        conn_close(c);
        return P_CLOSED;
    }
}
