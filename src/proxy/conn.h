/*
 * conn.h: private types of the connection state machine (conn.c, upstream.c,
 * headers.c, accesslog.c, admin). Not part of any public API.
 */
#ifndef SY_PROXY_CONN_H
#define SY_PROXY_CONN_H

#include <netinet/in.h>
#include <sys/uio.h>
#include <stdint.h>

#include "http/h1.h"
#include "proxy/exchange.h"
#include "proxy/proxy.h"
#include "route/route.h"

struct sy_tls;
struct sy_tls_conn;
struct sy_h2conn;

enum sy_conn_state {
    SY_ST_HANDSHAKE = 0,       /* TLS handshake in progress */
    SY_ST_HEAD,                /* reading a request head (or idle between requests) */
    SY_ST_PROXY,               /* a request is being forwarded */
    SY_ST_TUNNEL,              /* Upgrade: bytes flow both ways */
    SY_ST_RESPOND,             /* writing a response made by the gateway */
    SY_ST_ADMIN,               /* admin listener connection */
    SY_ST_H2,                  /* HTTP/2: the streams live in c->h2 (h2conn.c) */
    SY_ST_CLOSED
};

/* One connection to an upstream server. */
struct sy_upconn {
    struct sy_io io;
    struct sy_list link;       /* wserver idle list, or worker closed list */
    struct sy_worker *w;
    struct sy_wserver *srv;
    struct sy_exchange *owner; /* NULL while idle */
    struct sy_timer timer;     /* idle expiry while pooled (lazy) */
    uint64_t idle_since;
    unsigned readable : 1, writable : 1, eof : 1, dead : 1, reused : 1, hup : 1;
    char *buf;                 /* response bytes: [off, len) */
    size_t off, len;
    char addr[64];             /* "ip:port" for logs */
};


/* An HTTP/1.1 client connection: the client side of its exchanges (conn.c). */
struct sy_conn {
    struct sy_io io;
    struct sy_list link;
    struct sy_worker *w;
    struct sy_wsnap *ws;
    struct sy_tls_conn *tls;
    struct sy_exchange *x;     /* the request being read or served, or NULL */
    struct sy_h2conn *h2;      /* SY_ST_H2 only */
    enum sy_conn_state state;
    unsigned readable : 1, writable : 1, rd_eof : 1, rd_hup : 1, https : 1, close_after : 1;
    unsigned resp_close : 1, resp_chunked_out : 1, lingering : 1, is_admin : 1;
    unsigned rbuf_private : 1, had_request : 1;
    int hbuf_pooled;
    uint16_t peer_port;
    struct sy_timer timer;
    uint64_t t_accept, t_client, t_head_start;
    char peer_ip[INET6_ADDRSTRLEN];

    /* Client input: [roff, rlen) valid. rbuf is a pooled buffer or a private larger one. */
    char *rbuf;
    uint32_t rcap, roff, rlen;
    uint32_t head_len;         /* bytes of the request head at rbuf+roff (kept until the end) */
    uint32_t bpos;             /* next body (or tunnel) byte not yet taken by the exchange */

    /* Bytes to the client: a response head (ours or translated), or our own whole answer. */
    char *hbuf;
    uint32_t hoff, hlen;
};

/*
 * conn_io.c. Client and upstream I/O return >0 bytes, 0 EOF, -1 would block
 * (the readiness flag dropped), -2 error.
 */
ssize_t sy__cread(struct sy_conn *c, char *buf, size_t len);
/*
 * The TLS side of a client connection registered with the loop: on its
 * completion I/O when it runs on it (io._cio), else on the socket. NULL when
 * OpenSSL cannot allocate.
 */
struct sy_tls_conn *sy__tls_conn_new(struct sy_conn *c, struct sy_tls *t);
ssize_t sy__cwritev(struct sy_conn *c, struct iovec *iov, int iovcnt);
ssize_t sy__uread(struct sy_upconn *u, char *buf, size_t len);
ssize_t sy__uwrite(struct sy_upconn *u, const char *buf, size_t len);
/* The client read buffer: taken from the worker pool, back when empty; room for a head or -1. */
void sy__rbuf_ensure(struct sy_conn *c);
void sy__rbuf_release_if_empty(struct sy_conn *c);
int sy__rbuf_room_for_head(struct sy_conn *c);
/* Head buffers: pooled when `need` fits SY_BUF_SIZE (*pooled set), private otherwise. */
char *sy__out_alloc(struct sy_worker *w, size_t need, int *pooled);
void sy__out_free(struct sy_worker *w, char **p, int pooled);
void sy__free_hbuf(struct sy_conn *c);

/* headers.c */
size_t sy_build_upstream_head(struct sy_exchange *x, char *out, size_t cap);
/*
 * The response fields a client gets, whatever its protocol: the upstream's
 * fields without hop-by-hop ones and the version header, then the served
 * version, the pin cookie and HSTS; emit(arg, name, value) for each. Framing
 * fields (Transfer-Encoding, Connection) are left to the client side.
 */
void sy_response_fields(const struct sy_exchange *x, const struct sy_h1_response *resp,
                        void (*emit)(void *arg, struct sy_str name, struct sy_str value), void *arg);
size_t sy_build_response_head(struct sy_conn *c, const struct sy_h1_response *resp, char *out,
                              size_t cap);
size_t sy_build_simple_response(char *out, size_t cap, int status, const char *extra_headers,
                                const char *body, int close);
const char *sy_status_reason(int status);

/* upstream.c */
/* The bit of a member in the exchange's `tried` mask: at most 64 attempts per request. */
static inline uint64_t sy_upstream_tried_bit(const struct sy_wserver *s)
{
    return 1ULL << (s->slot % 64);
}
struct sy_wserver *sy_upstream_pick(struct sy_exchange *x, struct sy_wupstream *wup, uint64_t now);
struct sy_upconn *sy_upconn_take_idle(struct sy_wserver *s);
struct sy_upconn *sy_upconn_connect(struct sy_worker *w, struct sy_wserver *s, int *err);
void sy_upconn_release(struct sy_upconn *u, int reusable, uint32_t keep);
void sy_upconn_close(struct sy_upconn *u);
void sy_upstream_mark_down(struct sy_wserver *s, const struct sy_upstream_conf *uc,
                           uint64_t started, uint64_t now);
void sy_upstream_mark_up(struct sy_wserver *s, const struct sy_upstream_conf *uc);
void sy_upconn_reap(struct sy_worker *w);

/* accesslog.c */
void sy_accesslog_write(struct sy_exchange *x, uint64_t duration_us);
void sy_request_id(struct sy_worker *w, char *out);
/* 64 random bits from the worker's generator (xorshift128+, seeded once). */
uint64_t sy_worker_random(struct sy_worker *w);

/* conn.c */
int sy_admin_pump(struct sy_conn *c);
/* Runs the connection's pump and arms its timer (another client side's wake-up). */
void sy_conn_pump(struct sy_conn *c);
/* Closes the connection (freed at the end of the loop iteration). */
void sy_conn_close(struct sy_conn *c);
/* After our FIN: reads and drops the client's bytes until it closes. Returns SY_P_*. */
int sy_conn_linger(struct sy_conn *c);

#endif
