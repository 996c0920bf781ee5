/*
 * mirror.c: copies of requests to another version, as second exchanges with
 * a sink for a client side (see mirror.h).
 *
 * Life of a copy (struct sy_mirror, one per copied request, with one or two
 * legs: the copy to mirror.to, and sometimes one to the client's own version
 * that teaches what differs between two answers of the same version):
 *   offer    the client's exchange starts: eligibility, bounds, the request
 *            head and body copied into the copy's memory, the tee installed
 *            (compare only); queued on `pending`;
 *   idle     end of the loop iteration: each leg's exchange starts, with the
 *            sink as its client side; the copy moves to `active`;
 *   legs end finish (answered), respond (the gateway's own answer: failed,
 *            504 timeout), abort (failed), or the copy's timer (timeout);
 *   done     when every leg ended and the client's exchange is gone, the copy
 *            moves to `done`; at the end of the iteration it is compared and
 *            freed. Nothing is freed inside an event batch: the copy's timer
 *            is cancelled and its exchanges have let go of their upstream
 *            connections before it goes.
 */
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/log.h"
#include "proxy/conn.h"
#include "proxy/mirror.h"
#include "proxy/mirror_int.h"

/* Room for the request line and the headers the copy adds. */
#define HEAD_EXTRA 256

struct sy_mirror_leg {
    struct sy_mirror *m;
    struct sy_exchange *x;
    size_t route;                  /* version index it goes to */
    int noise;                     /* to the client's own version */
    int ended;
    enum sy_mirror_outcome outcome;
    struct sy_mirror_counter *ctr;
    struct sy_mirror_cap cap;
    size_t body_off;               /* request body bytes its exchange took */
};

struct sy_mirror {
    struct sy_list link;           /* on the worker's pending, active or done list */
    struct sy_worker *w;
    struct sy_wsnap *ws;           /* a reference: the site's configuration lives on */
    const struct sy_site_conf *site;
    const struct sy_mirror_conf *conf;
    size_t from;                   /* version index that served the client */
    struct sy_exchange *primary;   /* the client's exchange while it lives (compare only) */
    const struct sy_client_ops *primary_ops;
    struct sy_mirror_cap pcap;     /* the client's answer */
    struct sy_mirror_leg legs[2];
    int nlegs;
    struct sy_timer timer;
    uint64_t t_start;              /* loop ms */
    char *head;                    /* request head, then the body: the copy's own */
    size_t head_len, body_len;
    size_t body_have;              /* body bytes copied so far (the tee copies the rest) */
    struct sy_mirror_bounds *bounds; /* its site's on this worker (in ws) */
    size_t reserved;               /* counted in bounds->buffered */
    char method[24];
    char *target;
    char peer_ip[64];
    uint16_t peer_port;
    unsigned https : 1;
};

static void leg_pump(struct sy_mirror_leg *leg);

static int chance(struct sy_worker *w, uint32_t percent)
{
    if (percent >= 100)
        return 1;
    return percent && sy_worker_random(w) % 100 < percent;
}

struct sy_mirror_worker *sy_mirror_worker_new(void)
{
    struct sy_mirror_worker *mw = sy_calloc(1, sizeof(*mw));
    sy_list_init(&mw->pending);
    sy_list_init(&mw->active);
    sy_list_init(&mw->done);
    sy__mirror_store_init(mw);
    return mw;
}

/* ---- ending ---- */

static int all_ended(const struct sy_mirror *m)
{
    for (int i = 0; i < m->nlegs; i++)
        if (!m->legs[i].ended)
            return 0;
    return 1;
}

/* Every leg ended and the client's exchange let go: compare at the end of the iteration. */
static void maybe_done(struct sy_mirror *m)
{
    if (m->primary || !all_ended(m))
        return;
    sy_timer_cancel(m->w->loop, &m->timer);
    sy_list_remove(&m->link);
    sy_list_insert_tail(&m->w->mirror->done, &m->link);
}

static void leg_end(struct sy_mirror_leg *leg, enum sy_mirror_outcome outcome)
{
    if (leg->ended)
        return;
    leg->ended = 1;
    leg->outcome = outcome;
    leg->m->bounds->inflight--;
    sy_counter_add(&leg->ctr->by_outcome[outcome], 1);
    maybe_done(leg->m);
}

/* ---- the sink: the copy's client side ---- */

static size_t sink_in_peek(struct sy_exchange *x, const char **p)
{
    struct sy_mirror_leg *leg = x->client;
    struct sy_mirror *m = leg->m;
    *p = m->head + m->head_len + leg->body_off;
    return m->body_len - leg->body_off;
}

static void sink_in_consume(struct sy_exchange *x, size_t n)
{
    struct sy_mirror_leg *leg = x->client;
    leg->body_off += n;
}

/* The whole body was copied at the start: there is never more. */
static int sink_in_read(struct sy_exchange *x)
{
    return SY_RD_EOF;
}

static int sink_in_full(struct sy_exchange *x)
{
    return 0;
}

static void sink_send_continue(struct sy_exchange *x)
{
}

static int sink_out_head(struct sy_exchange *x, const struct sy_h1_response *resp)
{
    struct sy_mirror_leg *leg = x->client;
    sy_mirror_cap_head(&leg->cap, leg->m->conf, resp, x->sf.body == SY_H1_BODY_CHUNKED);
    return 0;
}

static ssize_t sink_out_write(struct sy_exchange *x, const char *p, size_t n)
{
    struct sy_mirror_leg *leg = x->client;
    if (n)
        sy_mirror_cap_body(&leg->cap, leg->m->conf, p, n);
    return (ssize_t)n;
}

static int sink_out_pending(struct sy_exchange *x)
{
    return 0;
}

/* The gateway's own answer: the copy's upstream failed (504: it did not answer in time). */
static int sink_respond(struct sy_exchange *x, int status, const char *extra, const char *body,
                        int close)
{
    struct sy_mirror_leg *leg = x->client;
    leg->cap.status = status;
    leg->cap.gateway = 1;
    leg_end(leg, status == 504 ? SY_MIRROR_TIMEOUT : SY_MIRROR_FAILED);
    return SY_P_PROGRESS;
}

static int sink_finish(struct sy_exchange *x)
{
    struct sy_mirror_leg *leg = x->client;
    sy_exchange_release_upstream(x);
    leg->cap.done = 1;
    leg_end(leg, SY_MIRROR_COMPARED);
    return SY_P_PROGRESS;
}

static int sink_abort(struct sy_exchange *x)
{
    struct sy_mirror_leg *leg = x->client;
    sy_exchange_close(x);
    leg_end(leg, SY_MIRROR_FAILED);
    return SY_P_CLOSED;
}

/* Upgrades are never copied; should one answer 101 all the same, the copy ends there. */
static void sink_tunnel(struct sy_exchange *x)
{
    struct sy_mirror_leg *leg = x->client;
    x->tunnel = 0;
    sy_exchange_close(x);
    leg_end(leg, SY_MIRROR_FAILED);
}

static void sink_wake(struct sy_exchange *x)
{
    leg_pump(x->client);
}

static const struct sy_client_ops sink_ops = {
    .in_peek = sink_in_peek,
    .in_consume = sink_in_consume,
    .in_read = sink_in_read,
    .in_full = sink_in_full,
    .send_continue = sink_send_continue,
    .out_head = sink_out_head,
    .out_write = sink_out_write,
    .out_pending = sink_out_pending,
    .respond = sink_respond,
    .finish = sink_finish,
    .abort = sink_abort,
    .tunnel = sink_tunnel,
    .wake = sink_wake,
};

/* ---- the tee: in front of the client's side, keeping a capture of its answer ---- */

static void primary_detach(struct sy_exchange *x)
{
    struct sy_mirror *m = x->mirror;
    if (!m)
        return;
    x->ops = m->primary_ops;
    x->mirror = NULL;
    m->primary = NULL;
    if (m->body_have < m->body_len) {
        /* The client's request ended before its whole body came: nothing to copy. */
        sy_list_remove(&m->link);
        sy_list_insert_tail(&m->w->mirror->active, &m->link);
        for (int i = 0; i < m->nlegs; i++)
            leg_end(&m->legs[i], SY_MIRROR_DROPPED);
    }
    maybe_done(m);
}

void sy_mirror_primary_gone(struct sy_exchange *x)
{
    primary_detach(x);
}

static size_t tee_in_peek(struct sy_exchange *x, const char **p)
{
    return x->mirror->primary_ops->in_peek(x, p);
}

/* Body bytes the client's exchange takes are copied too, up to the body's end. */
static void tee_in_consume(struct sy_exchange *x, size_t n)
{
    struct sy_mirror *m = x->mirror;
    const struct sy_client_ops *ops = m->primary_ops;
    if (m->body_have < m->body_len) {
        const char *p;
        size_t k = ops->in_peek(x, &p);
        k = k < n ? k : n;
        k = k < m->body_len - m->body_have ? k : m->body_len - m->body_have;
        memcpy(m->head + m->head_len + m->body_have, p, k);
        m->body_have += k;
        if (m->body_have == m->body_len) {
            sy_list_remove(&m->link);
            sy_list_insert_tail(&m->w->mirror->pending, &m->link);
            if (!m->conf->compare)
                primary_detach(x);
        }
    }
    ops->in_consume(x, n);
}

static int tee_in_read(struct sy_exchange *x)
{
    return x->mirror->primary_ops->in_read(x);
}

static int tee_in_full(struct sy_exchange *x)
{
    return x->mirror->primary_ops->in_full(x);
}

static void tee_send_continue(struct sy_exchange *x)
{
    x->mirror->primary_ops->send_continue(x);
}

static int tee_out_head(struct sy_exchange *x, const struct sy_h1_response *resp)
{
    struct sy_mirror *m = x->mirror;
    sy_mirror_cap_head(&m->pcap, m->conf, resp, x->sf.body == SY_H1_BODY_CHUNKED);
    return m->primary_ops->out_head(x, resp);
}

/* x may be gone when the client is (-1): only m is touched then, and m lives on. */
static ssize_t tee_out_write(struct sy_exchange *x, const char *p, size_t n)
{
    struct sy_mirror *m = x->mirror;
    ssize_t w = m->primary_ops->out_write(x, p, n);
    if (w > 0)
        sy_mirror_cap_body(&m->pcap, m->conf, p, (size_t)w);
    return w;
}

static int tee_out_pending(struct sy_exchange *x)
{
    return x->mirror->primary_ops->out_pending(x);
}

static int tee_respond(struct sy_exchange *x, int status, const char *extra, const char *body,
                       int close)
{
    struct sy_mirror *m = x->mirror;
    const struct sy_client_ops *ops = m->primary_ops;
    m->pcap.status = status;
    m->pcap.gateway = 1;
    m->pcap.done = 1;
    primary_detach(x);
    return ops->respond(x, status, extra, body, close);
}

static int tee_finish(struct sy_exchange *x)
{
    struct sy_mirror *m = x->mirror;
    const struct sy_client_ops *ops = m->primary_ops;
    m->pcap.done = 1;
    primary_detach(x);
    return ops->finish(x);
}

static int tee_abort(struct sy_exchange *x)
{
    const struct sy_client_ops *ops = x->mirror->primary_ops;
    primary_detach(x);
    return ops->abort(x);
}

static void tee_tunnel(struct sy_exchange *x)
{
    const struct sy_client_ops *ops = x->mirror->primary_ops;
    primary_detach(x);
    ops->tunnel(x);
}

static void tee_wake(struct sy_exchange *x)
{
    x->mirror->primary_ops->wake(x);
}

static const struct sy_client_ops tee_ops = {
    .in_peek = tee_in_peek,
    .in_consume = tee_in_consume,
    .in_read = tee_in_read,
    .in_full = tee_in_full,
    .send_continue = tee_send_continue,
    .out_head = tee_out_head,
    .out_write = tee_out_write,
    .out_pending = tee_out_pending,
    .respond = tee_respond,
    .finish = tee_finish,
    .abort = tee_abort,
    .tunnel = tee_tunnel,
    .wake = tee_wake,
};

/* ---- driving a leg ---- */

static uint64_t mirror_deadline(struct sy_mirror *m)
{
    uint64_t d = UINT64_MAX;
    for (int i = 0; i < m->nlegs; i++) {
        if (m->legs[i].ended || !m->legs[i].x)
            continue;
        uint64_t e = sy_exchange_deadline(m->legs[i].x);
        d = e < d ? e : d;
    }
    if (d != UINT64_MAX && m->conf->timeout_ms && m->t_start + m->conf->timeout_ms < d)
        d = m->t_start + m->conf->timeout_ms;
    return d;
}

static void leg_pump(struct sy_mirror_leg *leg)
{
    struct sy_mirror *m = leg->m;
    for (int guard = 0; guard < 1000 && !leg->ended; guard++) {
        int r = sy_exchange_pump(leg->x);
        if (leg->ended || r == SY_P_CLOSED || r == SY_P_BLOCKED)
            break;
    }
    uint64_t d = mirror_deadline(m);
    if (d != UINT64_MAX)
        sy_timer_arm(m->w->loop, &m->timer, d);
}

static void mirror_timer(struct sy_timer *t)
{
    struct sy_mirror *m = SY_CONTAINER_OF(t, struct sy_mirror, timer);
    uint64_t now = sy_loop_now(m->w->loop);
    uint64_t hard = m->conf->timeout_ms ? m->t_start + m->conf->timeout_ms : UINT64_MAX;
    for (int i = 0; i < m->nlegs; i++) {
        struct sy_mirror_leg *leg = &m->legs[i];
        if (leg->ended)
            continue;
        if (sy_exchange_deadline(leg->x) <= now || hard <= now) {
            sy_exchange_close(leg->x);
            leg_end(leg, SY_MIRROR_TIMEOUT);
        }
    }
    uint64_t d = mirror_deadline(m);
    if (d != UINT64_MAX)
        sy_timer_set(m->w->loop, &m->timer, d);
}

static void leg_start(struct sy_mirror_leg *leg)
{
    struct sy_mirror *m = leg->m;
    struct sy_worker *w = m->w;
    struct sy_exchange *x = sy_exchange_get(w);
    leg->x = x;
    x->ws = m->ws;
    x->ops = &sink_ops;
    x->client = leg;
    x->peer_ip = m->peer_ip;
    x->peer_port = m->peer_port;
    x->https = m->https;
    /* The head was written by offer() from a parsed head: it parses again. */
    struct sy_h1_limits lim = {.max_head = m->head_len, .max_headers = SY_MAX_HEADERS_CAP,
                               .max_uri = m->head_len};
    int status = 400;
    x->req.headers = w->hdrs; /* the worker's scratch: no request is being started now */
    if (sy_h1_parse_request(m->head, m->head_len, &x->req, &lim, &status) != (int)m->head_len) {
        x->req.headers = NULL;
        leg_end(leg, SY_MIRROR_FAILED);
        return;
    }
    int r = sy_exchange_start_to(x, m->head_len, m->site, leg->route);
    x->t_req_start_us = 0; /* a copy is neither logged nor counted as a request */
    if (r != SY_P_CLOSED && !leg->ended)
        leg_pump(leg);
}

/* ---- offer: is this request copied? ---- */

static int method_listed(const struct sy_mirror_conf *mc, struct sy_str method)
{
    for (size_t i = 0; i < mc->nmethods; i++)
        if (sy_str_eq(method, sy_str_cstr(mc->methods[i])))
            return 1;
    return 0;
}

static void put_str(char *out, size_t *len, struct sy_str s)
{
    memcpy(out + *len, s.p, s.len);
    *len += s.len;
}

/*
 * The copy's request head: the client's as parsed (hop-by-hop fields go
 * when the exchange builds its upstream head), without Expect and any
 * X-Switchyard-Mirror it sent, with X-Request-Id (the client's request's)
 * and X-Switchyard-Mirror: 1. Always HTTP/1.1 with a Host.
 */
static size_t head_size(const struct sy_exchange *x)
{
    size_t n = x->req.method.len + x->req.target.len + HEAD_EXTRA + 128;
    for (size_t i = 0; i < x->req.num_headers; i++)
        n += x->req.headers[i].name.len + x->req.headers[i].value.len + 4;
    return n;
}

static size_t write_head(const struct sy_exchange *x, const char *host, char *out)
{
    size_t len = 0;
    const struct sy_h1_request *r = &x->req;
    put_str(out, &len, r->method);
    put_str(out, &len, SY_STR_LIT(" "));
    put_str(out, &len, r->target);
    put_str(out, &len, SY_STR_LIT(" HTTP/1.1\r\n"));
    int has_host = 0;
    for (size_t i = 0; i < r->num_headers; i++) {
        const struct sy_h1_header *h = &r->headers[i];
        if (sy_str_caseeq_cstr(h->name, "expect") ||
            sy_str_caseeq_cstr(h->name, "x-switchyard-mirror") ||
            sy_str_caseeq_cstr(h->name, "x-request-id"))
            continue;
        if (sy_str_caseeq_cstr(h->name, "host")) {
            if (has_host)
                continue;
            has_host = 1;
        }
        put_str(out, &len, h->name);
        put_str(out, &len, SY_STR_LIT(": "));
        put_str(out, &len, h->value);
        put_str(out, &len, SY_STR_LIT("\r\n"));
    }
    if (!has_host) {
        put_str(out, &len, SY_STR_LIT("Host: "));
        put_str(out, &len, sy_str_cstr(host));
        put_str(out, &len, SY_STR_LIT("\r\n"));
    }
    put_str(out, &len, SY_STR_LIT("X-Request-Id: "));
    put_str(out, &len, sy_str_cstr(x->reqid));
    put_str(out, &len, SY_STR_LIT("\r\nX-Switchyard-Mirror: 1\r\n\r\n"));
    return len;
}

void sy_mirror_offer(struct sy_exchange *x)
{
    const struct sy_site_conf *site = x->route.site;
    const struct sy_mirror_conf *mc = site->mirror;
    struct sy_worker *w = x->w;
    struct sy_mirror_worker *mw = w->mirror;
    if (!x->route.route || x->upgrade || x->rf.upgrade || !method_listed(mc, x->req.method))
        return;
    size_t from = (size_t)(x->route.route - site->version.routes);
    if (from == mc->to)
        return;
    size_t routes[2];
    int noise[2], nlegs = 0;
    if (chance(w, mc->percent)) {
        routes[nlegs] = mc->to;
        noise[nlegs++] = 0;
    }
    if (mc->compare && chance(w, mc->noise_percent)) {
        routes[nlegs] = from;
        noise[nlegs++] = 1;
    }
    if (!nlegs)
        return;
    const char *sname = site->hosts[0], *fname = site->version.routes[from].version;
    struct sy_mirror_counter *ctr[2];
    for (int i = 0; i < nlegs; i++)
        ctr[i] = sy_metrics_mirror(&w->metrics, sname, fname,
                                   site->version.routes[routes[i]].version);

    /* A Content-Length body up to max_body comes along: what is here now, the rest as the
     * client's exchange takes it (the tee). */
    const char *body = NULL;
    size_t body_len = 0, have = 0;
    int ok = x->rf.body != SY_H1_BODY_CHUNKED && x->req.num_headers + 3 <= SY_MAX_HEADERS_CAP;
    if (ok && x->rf.body == SY_H1_BODY_LENGTH) {
        body_len = (size_t)x->rf.length;
        ok = x->rf.length <= mc->max_body;
        if (ok)
            have = x->ops->in_peek(x, &body);
        have = have < body_len ? have : body_len;
    }
    size_t hcap = head_size(x);
    size_t reserve = sizeof(struct sy_mirror) + hcap + body_len +
                     (mc->compare ? (size_t)(nlegs + 1) * mc->max_response : 0);
    if (!x->ws->mirror_bounds)
        x->ws->mirror_bounds = sy_calloc(x->ws->snap->cfg->nsites, sizeof(*x->ws->mirror_bounds));
    struct sy_mirror_bounds *b = &x->ws->mirror_bounds[site - x->ws->snap->cfg->sites];
    if (!ok || b->inflight + (uint32_t)nlegs > mc->max_inflight ||
        b->buffered + reserve > mc->max_buffered) {
        for (int i = 0; i < nlegs; i++)
            sy_counter_add(&ctr[i]->by_outcome[SY_MIRROR_DROPPED], 1);
        return;
    }

    struct sy_mirror *m = sy_calloc(1, sizeof(*m));
    m->w = w;
    m->ws = x->ws;
    m->ws->refs++;
    m->site = site;
    m->conf = mc;
    m->from = from;
    m->timer.cb = mirror_timer;
    m->t_start = sy_loop_now(w->loop);
    m->head = sy_malloc(hcap + body_len);
    m->head_len = write_head(x, sname, m->head);
    if (have)
        memcpy(m->head + m->head_len, body, have);
    m->body_len = body_len;
    m->body_have = have;
    m->reserved = reserve;
    snprintf(m->method, sizeof(m->method), "%.*s", (int)x->req.method.len, x->req.method.p);
    m->target = sy_strndup(x->req.target.p, x->req.target.len);
    snprintf(m->peer_ip, sizeof(m->peer_ip), "%s", x->peer_ip ? x->peer_ip : "");
    m->peer_port = x->peer_port;
    m->https = x->https;
    m->nlegs = nlegs;
    for (int i = 0; i < nlegs; i++) {
        m->legs[i].m = m;
        m->legs[i].route = routes[i];
        m->legs[i].noise = noise[i];
        m->legs[i].ctr = ctr[i];
    }
    m->bounds = b;
    b->inflight += (uint32_t)nlegs;
    b->buffered += reserve;
    if (mc->compare || have < body_len) {
        m->primary = x;
        m->primary_ops = x->ops;
        x->ops = &tee_ops;
        x->mirror = m;
    }
    sy_list_insert_tail(have < body_len ? &mw->active : &mw->pending, &m->link);
}

/* ---- the end of the iteration: start, compare, free ---- */

static int ignore_path(void *arg, const char *path)
{
    const void **a = arg;
    const struct sy_mirror_conf *mc = a[0];
    const struct sy_mirror_noise *n = a[1];
    for (size_t i = 0; i < mc->nignore_paths; i++)
        if (sy_mirror_path_match(mc->ignore_paths[i], path))
            return 1;
    return n && sy__mirror_noise_has(n, path);
}

static void compare(struct sy_mirror *m)
{
    struct sy_mirror_worker *mw = m->w->mirror;
    const struct sy_site_conf *site = m->site;
    char pattern[256], request[600];
    sy_mirror_pattern(m->target, strlen(m->target), pattern, sizeof(pattern));
    snprintf(request, sizeof(request), "%s %.*s HTTP/1.1", m->method, 500, m->target);
    struct sy_mirror_subject s = {.site = site->hosts[0],
                                  .from = site->version.routes[m->from].version,
                                  .method = m->method,
                                  .pattern = pattern,
                                  .request = request,
                                  .conf = m->conf,
                                  .a = &m->pcap};
    /* Noise first: what differs between two answers of the same version. */
    for (int k = 0; k < 2; k++) {
        for (int i = 0; i < m->nlegs; i++) {
            struct sy_mirror_leg *leg = &m->legs[i];
            if (leg->noise != !k || leg->outcome != SY_MIRROR_COMPARED)
                continue;
            struct sy_mirror_diff d;
            s.to = site->version.routes[leg->route].version;
            s.b = &leg->cap;
            if (leg->noise) {
                sy_mirror_compare(m->conf, &m->pcap, &leg->cap, NULL, NULL, &d);
                sy__mirror_learn(mw, &s, &d);
            } else {
                struct sy_mirror_noise *n =
                    sy__mirror_noise_find(mw, s.site, s.method, s.pattern);
                const void *arg[2] = {m->conf, n};
                sy_mirror_compare(m->conf, &m->pcap, &leg->cap, ignore_path, arg, &d);
                for (size_t h = 0; h < m->conf->nheaders; h++)
                    if ((d.headers & (1u << h)) && n &&
                        sy__mirror_noise_header(n, m->conf->headers[h]))
                        d.headers &= ~(1u << h);
                if (d.status)
                    sy_counter_add(&leg->ctr->by_kind[SY_DIFF_STATUS], 1);
                if (d.headers)
                    sy_counter_add(&leg->ctr->by_kind[SY_DIFF_HEADER], 1);
                if (d.body)
                    sy_counter_add(&leg->ctr->by_kind[SY_DIFF_BODY], 1);
                if (d.status || d.headers || d.body)
                    sy__mirror_record(mw, &s, &d);
            }
            sy_mirror_diff_free(&d);
        }
    }
}

static void mirror_free(struct sy_mirror *m)
{
    for (int i = 0; i < m->nlegs; i++) {
        if (m->legs[i].x)
            sy_exchange_put(m->legs[i].x);
        sy_mirror_cap_free(&m->legs[i].cap);
    }
    sy_mirror_cap_free(&m->pcap);
    m->bounds->buffered -= m->reserved;
    sy_wsnap_unref(m->ws);
    sy_free(m->head);
    sy_free(m->target);
    sy_free(m);
}

void sy_mirror_idle(struct sy_worker *w)
{
    struct sy_mirror_worker *mw = w->mirror;
    while (!sy_list_empty(&mw->pending)) {
        struct sy_mirror *m = SY_CONTAINER_OF(mw->pending.next, struct sy_mirror, link);
        sy_list_remove(&m->link);
        sy_list_insert_tail(&mw->active, &m->link);
        m->t_start = sy_loop_now(w->loop);
        for (int i = 0; i < m->nlegs; i++)
            if (!m->legs[i].ended)
                leg_start(&m->legs[i]);
        maybe_done(m);
    }
    while (!sy_list_empty(&mw->done)) {
        struct sy_mirror *m = SY_CONTAINER_OF(mw->done.next, struct sy_mirror, link);
        sy_list_remove(&m->link);
        if (m->conf->compare && m->pcap.done)
            compare(m);
        mirror_free(m);
    }
}
