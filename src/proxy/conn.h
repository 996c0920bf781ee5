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
#include "proxy/proxy.h"
#include "route/route.h"

struct sy_tls_conn;

enum sy_conn_state {
    SY_ST_HANDSHAKE = 0,       /* TLS handshake in progress */
    SY_ST_HEAD,                /* reading a request head (or idle between requests) */
    SY_ST_PROXY,               /* a request is being forwarded */
    SY_ST_TUNNEL,              /* Upgrade: bytes flow both ways */
    SY_ST_RESPOND,             /* writing a response made by the gateway */
    SY_ST_ADMIN,               /* admin listener connection */
    SY_ST_CLOSED
};

/* One connection to an upstream server. */
struct sy_upconn {
    struct sy_io io;
    struct sy_list link;       /* wserver idle list, or worker closed list */
    struct sy_worker *w;
    struct sy_wserver *srv;
    struct sy_conn *owner;     /* NULL while idle */
    struct sy_timer timer;     /* idle expiry while pooled (lazy) */
    uint64_t idle_since;
    unsigned readable : 1, writable : 1, eof : 1, dead : 1, reused : 1, hup : 1;
    char *buf;                 /* response bytes: [off, len) */
    size_t off, len;
    char addr[64];             /* "ip:port" for logs */
};


/*
 * What one request needs while it lives: allocated from a per-worker free
 * list when a request head starts arriving and returned when the exchange
 * ends, so an idle keep-alive connection holds only struct sy_conn.
 */
struct sy_exchange {
    struct sy_exchange *next_free;
    struct sy_h1_request req;
    struct sy_h1_framing rf;
    struct sy_route_result route;
    uint64_t req_remaining;    /* CL body bytes still to forward */
    struct sy_h1_chunked req_chunked;
    uint64_t tried;            /* members tried (sy_upstream_tried_bit) */
    struct sy_wupstream *wup;
    uint64_t t_connect;
    struct sy_h1_framing sf;
    uint64_t resp_remaining;
    struct sy_h1_chunked resp_chunked;
    uint64_t bytes_in, bytes_out;
    uint64_t t_req_start_us;   /* 0: nothing to log */
    struct sy_str reqid_in;    /* X-Request-Id as received (points into rbuf) */
    struct sy_str log_path;    /* the request-target as sent (a slice of the head) */
    const char *log_upstream;  /* server name from the snapshot, or NULL */
    int status;
    char reqid[33];
};

struct sy_conn {
    struct sy_io io;
    struct sy_list link;
    struct sy_worker *w;
    struct sy_wsnap *ws;
    struct sy_tls_conn *tls;
    struct sy_exchange *x;     /* the request in flight, or NULL */
    enum sy_conn_state state;
    unsigned readable : 1, writable : 1, rd_eof : 1, rd_hup : 1, https : 1, close_after : 1;
    unsigned req_done : 1, head_sent : 1, expect_sent : 1, upgrade : 1, retried_reuse : 1;
    unsigned resp_started : 1, resp_head_done : 1, resp_done : 1, resp_close : 1;
    unsigned resp_chunked_out : 1, connecting : 1, lingering : 1, is_admin : 1;
    unsigned rbuf_private : 1;
    int obuf_pooled, hbuf_pooled;
    uint16_t peer_port;
    struct sy_timer timer;
    uint64_t t_accept, t_client, t_up, t_head_start;
    char peer_ip[INET6_ADDRSTRLEN];

    /* Client input: [roff, rlen) valid. rbuf is a pooled buffer or a private larger one. */
    char *rbuf;
    uint32_t rcap, roff, rlen;
    uint32_t head_len;         /* bytes of the request head at rbuf+roff (kept until the end) */
    uint32_t bpos;             /* next body byte not yet written upstream */
    uint32_t bscan;            /* body bytes up to here are validated and ready to write */
    uint32_t uscan;            /* response bytes in up->buf up to here are validated */

    struct sy_upconn *up;

    /* Bytes to the upstream (request head) and to the client (response head). */
    char *obuf;
    uint32_t ooff, olen;
    char *hbuf;
    uint32_t hoff, hlen;
};

/*
 * conn_io.c. Client and upstream I/O return >0 bytes, 0 EOF, -1 would block
 * (the readiness flag dropped), -2 error.
 */
ssize_t sy__cread(struct sy_conn *c, char *buf, size_t len);
ssize_t sy__cwritev(struct sy_conn *c, struct iovec *iov, int iovcnt);
ssize_t sy__uread(struct sy_upconn *u, char *buf, size_t len);
ssize_t sy__uwrite(struct sy_upconn *u, const char *buf, size_t len);
/* The client read buffer: taken from the worker pool, back when empty; room for a head or -1. */
void sy__rbuf_ensure(struct sy_conn *c);
void sy__rbuf_release_if_empty(struct sy_conn *c);
int sy__rbuf_room_for_head(struct sy_conn *c);
/* The per-request state, zeroed, from the worker's free list, and back. */
struct sy_exchange *sy__x_get(struct sy_conn *c);
void sy__x_put(struct sy_conn *c);
/* Head buffers: pooled when `need` fits SY_BUF_SIZE (*pooled set), private otherwise. */
char *sy__out_alloc(struct sy_conn *c, size_t need, int *pooled);
void sy__out_free(struct sy_conn *c, char **p, int pooled);
void sy__free_hbuf(struct sy_conn *c);
void sy__free_out_buffers(struct sy_conn *c);

/* headers.c */
size_t sy_build_upstream_head(struct sy_conn *c, char *out, size_t cap);
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
struct sy_wserver *sy_upstream_pick(struct sy_conn *c, struct sy_wupstream *wup, uint64_t now);
struct sy_upconn *sy_upconn_take_idle(struct sy_wserver *s);
struct sy_upconn *sy_upconn_connect(struct sy_worker *w, struct sy_wserver *s, int *err);
void sy_upconn_release(struct sy_upconn *u, int reusable, uint32_t keep);
void sy_upconn_close(struct sy_upconn *u);
void sy_upstream_mark_down(struct sy_wserver *s, const struct sy_upstream_conf *uc,
                           uint64_t started, uint64_t now);
void sy_upstream_mark_up(struct sy_wserver *s, const struct sy_upstream_conf *uc);
void sy_upconn_reap(struct sy_worker *w);

/* accesslog.c */
void sy_accesslog_write(struct sy_conn *c, uint64_t duration_us);
void sy_request_id(struct sy_worker *w, char *out);

/* conn.c: upstream events land here */
void sy_conn_upstream_event(struct sy_upconn *u, uint32_t events);
int sy_admin_pump(struct sy_conn *c);

#endif
