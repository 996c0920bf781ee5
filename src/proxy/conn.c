/*
 * conn.c: the HTTP/1.1 client side: one state machine per client connection.
 *
 * A connection reads and parses request heads (strictly, in place), hands
 * each request to an exchange (exchange.c) and implements the exchange's
 * client interface (struct sy_client_ops): request body bytes come from the
 * read buffer, response heads are translated into HTTP/1.1 and written with
 * the body bytes in one writev. It also owns keep-alive, pipelining, the
 * gateway's own answers on the wire, TLS handshakes, client timeouts and the
 * drain rules.
 *
 * One function, pump(), drives a connection: every event on the client
 * socket (or on its exchange's upstream socket, through ops->wake) sets
 * readiness flags (edge-triggered epoll: a flag is cleared only on EAGAIN)
 * and calls pump(), which makes all the progress it can in every direction
 * and returns when nothing moves.
 *
 * Buffers: the request head stays at rbuf[roff, roff+head_len) until the
 * request ends (the exchange keeps slices of it); body bytes after it, from
 * bpos, are what in_peek() offers the exchange.
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

#include "admin/admin.h"
#include "core/alloc.h"
#include "core/log.h"
#include "proxy/conn.h"
#include "proxy/h2conn.h"
#include "tls/tls.h"

#define LINGER_MS 2000

enum { P_BLOCKED = SY_P_BLOCKED, P_PROGRESS = SY_P_PROGRESS, P_CLOSED = SY_P_CLOSED };

static void pump(struct sy_conn *c);
static void conn_close(struct sy_conn *c);
static int finish_request(struct sy_conn *c);
static uint64_t deadline(struct sy_conn *c);
static const struct sy_client_ops h1_ops;

static inline uint64_t now_ms(struct sy_conn *c)
{
    return sy_loop_now(c->w->loop);
}

static inline const struct sy_config *cfg_of(struct sy_conn *c)
{
    return c->ws->snap->cfg;
}

/* The exchange of the request being read or served; made when its first byte arrives. */
static struct sy_exchange *x_get(struct sy_conn *c)
{
    if (c->x)
        return c->x;
    struct sy_exchange *x = sy_exchange_get(c->w);
    x->ws = c->ws;
    x->ops = &h1_ops;
    x->client = c;
    x->peer_ip = c->peer_ip;
    x->peer_port = c->peer_port;
    x->https = c->https;
    c->x = x;
    return x;
}

static void x_put(struct sy_conn *c)
{
    if (c->x) {
        sy_exchange_put(c->x);
        c->x = NULL;
    }
}

static int closing_after(struct sy_conn *c)
{
    return c->close_after || (c->x && c->x->client_close);
}

/* ---- the client interface of the exchange ---- */

static size_t h1_in_peek(struct sy_exchange *x, const char **p)
{
    struct sy_conn *c = x->client;
    *p = c->rbuf + c->bpos;
    return c->rlen - c->bpos;
}

static void h1_in_consume(struct sy_exchange *x, size_t n)
{
    struct sy_conn *c = x->client;
    c->bpos += (uint32_t)n;
    if (c->bpos == c->rlen) /* all taken: the space after the head is free again */
        c->rlen = c->bpos = c->roff + c->head_len;
}

static int h1_in_full(struct sy_exchange *x)
{
    struct sy_conn *c = x->client;
    return c->rlen == c->rcap;
}

static int h1_in_read(struct sy_exchange *x)
{
    struct sy_conn *c = x->client;
    if (c->rd_eof)
        return SY_RD_EOF;
    if (!c->readable || c->rlen == c->rcap)
        return SY_RD_BLOCKED;
    ssize_t n = sy__cread(c, c->rbuf + c->rlen, c->rcap - c->rlen);
    if (n > 0) {
        c->rlen += (uint32_t)n;
        c->t_client = now_ms(c);
        return SY_RD_BYTES;
    }
    if (n == 0) {
        c->rd_eof = 1;
        return SY_RD_EOF;
    }
    return n == -1 ? SY_RD_BLOCKED : SY_RD_ERROR;
}

static void h1_send_continue(struct sy_exchange *x)
{
    struct sy_conn *c = x->client;
    static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
    c->hbuf = sy__out_alloc(c->w, sizeof(cont), &c->hbuf_pooled);
    memcpy(c->hbuf, cont, sizeof(cont) - 1);
    c->hlen = sizeof(cont) - 1;
    c->hoff = 0;
}

static int h1_out_head(struct sy_exchange *x, const struct sy_h1_response *resp)
{
    struct sy_conn *c = x->client;
    c->resp_close = closing_after(c) || !x->sf.keepalive || x->sf.body == SY_H1_BODY_EOF ||
                    !x->req_done || sy_atomic_draining();
    c->resp_chunked_out = x->sf.body == SY_H1_BODY_CHUNKED;
    sy__free_hbuf(c); /* a 100 Continue, already written */
    size_t cap = resp->reason.len + 2048;
    for (size_t i = 0; i < resp->num_headers; i++)
        cap += resp->headers[i].name.len + resp->headers[i].value.len + 4;
    if (cap < SY_BUF_SIZE)
        cap = SY_BUF_SIZE;
    c->hbuf = sy__out_alloc(c->w, cap, &c->hbuf_pooled);
    c->hlen = sy_build_response_head(c, resp, c->hbuf, cap);
    c->hoff = 0;
    return c->hlen ? 0 : -1;
}

static int h1_out_pending(struct sy_exchange *x)
{
    struct sy_conn *c = x->client;
    return c->hoff < c->hlen;
}

/* The queued head and the body bytes in one writev. */
static ssize_t h1_out_write(struct sy_exchange *x, const char *p, size_t n)
{
    struct sy_conn *c = x->client;
    struct iovec iov[2];
    int k = 0;
    if (c->hoff < c->hlen)
        iov[k++] = (struct iovec){c->hbuf + c->hoff, c->hlen - c->hoff};
    if (n)
        iov[k++] = (struct iovec){(void *)p, n};
    if (!k || !c->writable)
        return 0;
    ssize_t w = sy__cwritev(c, iov, k);
    if (w == -1)
        return 0;
    if (w < 0) {
        conn_close(c);
        return -1;
    }
    c->t_client = now_ms(c);
    size_t left = (size_t)w;
    if (c->hoff < c->hlen) {
        size_t h = left < c->hlen - c->hoff ? left : c->hlen - c->hoff;
        c->hoff += (uint32_t)h;
        x->bytes_out += h;
        left -= h;
    }
    return (ssize_t)left;
}

/*
 * The gateway's own answer. close: the connection ends after it (always when
 * a request body was not read, and while draining).
 */
static int h1_respond(struct sy_exchange *x, int status, const char *extra, const char *body,
                      int close)
{
    struct sy_conn *c = x->client;
    if (!x->req_done || sy_atomic_draining() || closing_after(c))
        close = 1;
    sy__free_hbuf(c);
    size_t cap = strlen(body) + (extra ? strlen(extra) : 0) + 256;
    c->hbuf = sy__out_alloc(c->w, cap, &c->hbuf_pooled);
    c->hlen = sy_build_simple_response(c->hbuf, cap, status, extra, body, close);
    c->hoff = 0;
    c->close_after = close;
    c->state = SY_ST_RESPOND;
    return P_PROGRESS;
}

static int h1_finish(struct sy_exchange *x)
{
    struct sy_conn *c = x->client;
    if (x->tunnel) { /* the upstream ended the tunnel: the connection ends with it */
        conn_close(c);
        return P_CLOSED;
    }
    if (!x->req_done)
        c->resp_close = 1;
    return finish_request(c);
}

static int h1_abort(struct sy_exchange *x)
{
    conn_close(x->client);
    return P_CLOSED;
}

static void h1_tunnel(struct sy_exchange *x)
{
    struct sy_conn *c = x->client;
    c->state = SY_ST_TUNNEL;
}

static void h1_wake(struct sy_exchange *x)
{
    struct sy_conn *c = x->client;
    if (c->state != SY_ST_CLOSED)
        pump(c);
}

static const struct sy_client_ops h1_ops = {
    .in_peek = h1_in_peek,
    .in_consume = h1_in_consume,
    .in_read = h1_in_read,
    .in_full = h1_in_full,
    .send_continue = h1_send_continue,
    .out_head = h1_out_head,
    .out_write = h1_out_write,
    .out_pending = h1_out_pending,
    .respond = h1_respond,
    .finish = h1_finish,
    .abort = h1_abort,
    .tunnel = h1_tunnel,
    .wake = h1_wake,
};

/* ---- request start ---- */

static int start_request(struct sy_conn *c, size_t head_len)
{
    c->head_len = (uint32_t)head_len;
    c->bpos = c->roff + (uint32_t)head_len;
    c->t_client = now_ms(c);
    c->resp_close = c->resp_chunked_out = 0;
    c->had_request = 1;
    c->state = SY_ST_PROXY;
    return sy_exchange_start(c->x, head_len);
}

/* ---- states ---- */

/*
 * HTTP/2 with prior knowledge (http2.cleartext): the connection's first bytes
 * are the client preface. 1 when they are, 0 while they may still become it,
 * -1 when they are not.
 */
static int h2c_preface(struct sy_conn *c)
{
    static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    size_t have = c->rlen - c->roff, want = sizeof(preface) - 1;
    if (c->tls || c->had_request || !cfg_of(c)->http2.cleartext || c->is_admin)
        return -1;
    if (memcmp(c->rbuf + c->roff, preface, have < want ? have : want) != 0)
        return -1;
    return have >= want;
}

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
        int pri = c->rlen > c->roff ? h2c_preface(c) : -1;
        if (pri > 0)
            return sy_h2_start(c);
        if (pri < 0 && c->rlen > c->roff) {
            int status = 400;
            struct sy_exchange *x = x_get(c);
            x->req.headers = c->w->hdrs;
            x->req.num_headers = 0;
            int r = sy_h1_parse_request(c->rbuf + c->roff, c->rlen - c->roff, &x->req, &lim,
                                        &status);
            if (r > 0)
                return start_request(c, (size_t)r);
            if (r == SY_H1_INVALID)
                return sy_exchange_reject(x, status, c->rlen - c->roff);
        }
        if (c->rd_eof) {
            conn_close(c);
            return P_CLOSED;
        }
        if (!c->readable)
            return P_BLOCKED;
        sy__rbuf_ensure(c);
        if (sy__rbuf_room_for_head(c) < 0)
            return sy_exchange_reject(x_get(c), 431, c->rlen - c->roff);
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

/* Reads and drops what the client still sends, so that closing does not reset the answer. */
int sy_conn_linger(struct sy_conn *c)
{
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

static int do_respond(struct sy_conn *c)
{
    if (c->lingering)
        return sy_conn_linger(c);
    while (c->hoff < c->hlen) {
        if (!c->writable)
            return P_BLOCKED;
        struct iovec iov = {c->hbuf + c->hoff, c->hlen - c->hoff};
        ssize_t n = sy__cwritev(c, &iov, 1);
        if (n == -1)
            return P_BLOCKED;
        if (n < 0) {
            conn_close(c);
            return P_CLOSED;
        }
        c->hoff += (size_t)n;
        c->x->bytes_out += (uint64_t)n;
        c->t_client = now_ms(c);
    }
    if (c->close_after) {
        sy_exchange_log(c->x);
        sy__free_hbuf(c);
        if (c->tls)
            sy_tls_shutdown(c->tls);
        sy_loop_shutdown_wr(c->w->loop, &c->io);
        c->lingering = 1;
        c->t_client = now_ms(c);
        return P_PROGRESS;
    }
    c->resp_close = 0;
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
        if (sy_tls_conn_h2(c->tls))
            return sy_h2_start(c);
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
    struct sy_exchange *x = c->x;
    sy_exchange_log(x);
    sy_exchange_release_upstream(x);
    /* Only when the answer said so: a drain that began while the answer was on its way
     * leaves the connection to the drain's rule for idle ones (sy_conn_drain_start). */
    int close = c->resp_close || closing_after(c);
    x_put(c);
    sy__free_hbuf(c);
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
        struct sy_exchange *x = c->x;
        uint64_t d = sy_exchange_deadline(x);
        if (x->connecting)
            return d;
        if (!x->req_done && x->in_scanned == 0) { /* waiting for the client's body */
            uint64_t e = c->t_client + cfg->timeouts.client_body_ms;
            d = e < d ? e : d;
        }
        if (c->hoff < c->hlen || sy_exchange_has_output(x)) { /* waiting for the client to read */
            uint64_t e = c->t_client + cfg->timeouts.client_body_ms;
            d = e < d ? e : d;
        }
        return d;
    }
    case SY_ST_TUNNEL: {
        uint64_t last = c->t_client > c->x->t_up ? c->t_client : c->x->t_up;
        return last + cfg->timeouts.tunnel_idle_ms;
    }
    case SY_ST_RESPOND:
        return c->t_client + (c->lingering ? LINGER_MS : cfg->timeouts.client_body_ms);
    case SY_ST_ADMIN:
        return c->t_accept + 10000;
    case SY_ST_H2:
        return sy_h2_deadline(c);
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
        sy_exchange_reject(x_get(c), 408, 0);
        pump(c);
        return;
    case SY_ST_PROXY: {
        struct sy_exchange *x = c->x;
        uint64_t now = now_ms(c);
        if (x->connecting) {
            if (sy_exchange_timeout(x) != P_CLOSED)
                pump(c);
            return;
        }
        if (!x->req_done && x->in_scanned == 0 && now >= c->t_client + cfg->timeouts.client_body_ms) {
            if (!x->resp_started) {
                sy_exchange_answer_error(x, 408);
                pump(c);
            } else {
                conn_close(c);
            }
            return;
        }
        if (sy_exchange_deadline(x) <= now) {
            if (sy_exchange_timeout(x) != P_CLOSED)
                pump(c);
            return;
        }
        conn_close(c); /* the client stopped reading */
        return;
    }
    case SY_ST_H2:
        sy_h2_timeout(c);
        pump(c);
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
        case SY_ST_TUNNEL:
            r = sy_exchange_pump(c->x);
            break;
        case SY_ST_RESPOND:
            r = do_respond(c);
            break;
        case SY_ST_ADMIN:
            r = sy_admin_pump(c);
            break;
        case SY_ST_H2:
            r = sy_h2_pump(c);
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
    if ((https && !c->ws->snap->tls) || sy_loop_add(w->loop, &c->io) < 0) {
        conn_close(c);
        return;
    }
    /* io_uring: receives and sends by completion, TLS records included; sends are refused
     * only beyond a cap */
    if (sy_loop_cio_start(w->loop, &c->io) == 0)
        c->writable = 1;
    if (https) {
        if (!(c->tls = sy__tls_conn_new(c, c->ws->snap->tls))) {
            conn_close(c);
            return;
        }
        c->state = SY_ST_HANDSHAKE;
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
    if (c->x) {
        sy_exchange_close(c->x); /* logs it, closes its upstream side */
        x_put(c);
    }
    if (c->h2)
        sy_h2_close(c); /* the same for each open stream */
    c->state = SY_ST_CLOSED;
    sy_timer_cancel(c->w->loop, &c->timer);
    if (c->tls) {
        sy_tls_conn_free(c->tls);
        c->tls = NULL;
    }
    sy_loop_close(c->w->loop, &c->io);
    sy__free_hbuf(c);
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
    sy_h2_reap(w);
    while (!sy_list_empty(&w->closed)) {
        struct sy_conn *c = SY_CONTAINER_OF(w->closed.next, struct sy_conn, link);
        sy_list_remove(&c->link);
        if (c->h2)
            sy_h2_free(c);
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
    struct sy_list *n, *next;
    for (n = w->conns.next; n != &w->conns; n = next) {
        next = n->next;
        struct sy_conn *c = SY_CONTAINER_OF(n, struct sy_conn, link);
        if (idle_between_requests(c)) {
            sy_timer_arm(w->loop, &c->timer, deadline(c));
        } else if (c->state == SY_ST_H2) {
            /* GOAWAY: open streams finish, then the connection closes (at once when idle). */
            sy_h2_drain(c);
            pump(c);
        }
    }
}

void sy_conn_pump(struct sy_conn *c)
{
    if (c->state != SY_ST_CLOSED)
        pump(c);
}

void sy_conn_close(struct sy_conn *c)
{
    conn_close(c);
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
        sy_loop_shutdown_wr(w->loop, &c->io);
        discard_input(c->io.fd);
        if (c->x && c->x->up) {
            sy_loop_shutdown_wr(w->loop, &c->x->up->io);
            discard_input(c->x->up->io.fd);
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
            x_get(c);
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
