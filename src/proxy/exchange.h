/*
 * exchange.h: one request's life, whatever protocol carried it.
 *
 * An exchange owns everything between a parsed request head and the end of
 * its answer: the route, the upstream choice, connecting and retrying, the
 * request head and body sent upstream, the response parsed and handed back,
 * the gateway's own answers (redirects, ACME, 4xx/5xx) and, after a 101, the
 * tunnel. It never touches the client's socket: it talks to its client side
 * through struct sy_client_ops. An HTTP/1.1 connection (conn.c) is one client
 * side; an HTTP/2 stream would be another.
 *
 * Bytes cross the interface in HTTP/1.1 message framing, both ways: request
 * body bytes are framed as x->rf says (Content-Length or chunked), response
 * body bytes as x->sf says. An HTTP/1.1 client side passes them through
 * unchanged (no copy, one writev for head and body); another protocol
 * translates at its edge.
 *
 * Worker-thread only. Results: the P_* codes below.
 */
#ifndef SY_PROXY_EXCHANGE_H
#define SY_PROXY_EXCHANGE_H

#include <stdint.h>
#include <sys/types.h>

#include "http/h1.h"
#include "proxy/proxy.h"
#include "route/route.h"

/* Progress of a step: something moved, nothing can move now, the client side is closed. */
enum { SY_P_BLOCKED = 0, SY_P_PROGRESS = 1, SY_P_CLOSED = -1 };

/* What a client side's read of request bytes gave. */
enum { SY_RD_BYTES = 1, SY_RD_BLOCKED = 0, SY_RD_EOF = -1, SY_RD_ERROR = -2 };

struct sy_exchange;
struct sy_upconn;
struct sy_mirror;

/*
 * The client side of an exchange. Every call may be made from any step of
 * the exchange; none frees the exchange (ending is the client side's call).
 */
struct sy_client_ops {
    /* Request bytes received and not yet consumed (body, or tunnel bytes after a 101). */
    size_t (*in_peek)(struct sy_exchange *x, const char **p);
    void (*in_consume)(struct sy_exchange *x, size_t n);
    /* Receives more request bytes: SY_RD_*. */
    int (*in_read)(struct sy_exchange *x);
    /* 1 when there is no room left to receive more before some is consumed. */
    int (*in_full)(struct sy_exchange *x);
    /* Asks the client to send its body (Expect: 100-continue). */
    void (*send_continue)(struct sy_exchange *x);
    /* The upstream's response head, to translate and queue. 0, or -1 when it cannot be. */
    int (*out_head)(struct sy_exchange *x, const struct sy_h1_response *resp);
    /*
     * Sends queued head bytes and up to n response bytes (n may be 0: flush the head).
     * Returns the response bytes taken (>= 0; 0 with the head still queued means
     * blocked), or -1 when the client is gone (the client side is then closed).
     */
    ssize_t (*out_write)(struct sy_exchange *x, const char *p, size_t n);
    /* 1 while queued head bytes wait to be sent. */
    int (*out_pending)(struct sy_exchange *x);
    /* The gateway's own complete answer. Returns SY_P_*. */
    int (*respond)(struct sy_exchange *x, int status, const char *extra, const char *body,
                   int close);
    /* The response was sent in full (a tunnel: the upstream closed and its bytes were
     * taken): the exchange is over. Returns SY_P_*. */
    int (*finish)(struct sy_exchange *x);
    /* The answer cannot be completed: the client side ends abruptly. Returns SY_P_CLOSED. */
    int (*abort)(struct sy_exchange *x);
    /* A 101 was forwarded: the exchange becomes a tunnel. */
    void (*tunnel)(struct sy_exchange *x);
    /* An upstream event made progress possible: run the client side's pump. */
    void (*wake)(struct sy_exchange *x);
};

/*
 * What one request needs while it lives: allocated from a per-worker free
 * list when a request starts and returned when it ends, so an idle client
 * connection holds none.
 */
struct sy_exchange {
    struct sy_exchange *next_free;
    struct sy_worker *w;
    struct sy_wsnap *ws;                /* the client side's view (it holds the reference) */
    const struct sy_client_ops *ops;
    void *client;                       /* the client side's own object */
    const char *peer_ip;                /* the client side's, for headers and the log */
    uint16_t peer_port;
    unsigned https : 1;
    unsigned client_close : 1;          /* the client side will close after this answer */
    unsigned h2 : 1;                    /* carried by an HTTP/2 stream */
    struct sy_mirror *mirror;           /* copies comparing with this answer (mirror.c), or NULL */

    struct sy_h1_request req;           /* slices of bytes the client side keeps */
    struct sy_h1_framing rf;
    struct sy_route_result route;
    uint64_t req_remaining;             /* CL body bytes still to scan; chunked: 1 until the end */
    struct sy_h1_chunked req_chunked;
    size_t in_scanned;                  /* validated bytes at the front of in_peek() */

    uint64_t tried;                     /* bitmask of servers tried (first 64) */
    struct sy_wupstream *wup;
    struct sy_upconn *up;
    uint64_t t_connect;                 /* loop ms */
    uint64_t t_up;                      /* last upstream progress, loop ms */
    char *obuf;                         /* the upstream request head: [ooff, olen) to send */
    uint32_t ooff, olen;
    int obuf_pooled;
    uint32_t uscan;                     /* response bytes in up->buf up to here are validated */
    struct sy_h1_framing sf;
    uint64_t resp_remaining;
    struct sy_h1_chunked resp_chunked;

    unsigned req_done : 1, head_sent : 1, expect_sent : 1, upgrade : 1, retried_reuse : 1;
    unsigned resp_started : 1, resp_head_done : 1, resp_done : 1, connecting : 1;
    unsigned tunnel : 1, up_shut : 1;

    uint64_t bytes_in, bytes_out;
    uint64_t t_req_start_us;            /* 0: nothing to log */
    struct sy_str reqid_in;             /* X-Request-Id as received */
    struct sy_str log_path;             /* the request-target as sent */
    const char *log_upstream;           /* server name from the snapshot, or NULL */
    int status;
    char reqid[33];
};

/*
 * Starts the exchange for a parsed head (x->req with its headers, valid for
 * this call only: nothing keeps a pointer to the header array afterwards).
 * head_len: bytes of the head. Returns SY_P_*.
 */
int sy_exchange_start(struct sy_exchange *x, size_t head_len);
/*
 * Starts an exchange for `route` (an index into site's version routes)
 * without choosing: a mirrored copy's. Otherwise as sy_exchange_start().
 */
int sy_exchange_start_to(struct sy_exchange *x, size_t head_len, const struct sy_site_conf *site,
                         size_t route);
/* Moves the request and the response as far as they can go. Returns SY_P_*. */
int sy_exchange_pump(struct sy_exchange *x);
/* The earliest upstream deadline of the exchange (loop ms), UINT64_MAX for none. */
uint64_t sy_exchange_deadline(struct sy_exchange *x);
/* Called when sy_exchange_deadline() has passed. Returns SY_P_*. */
int sy_exchange_timeout(struct sy_exchange *x);
/* Answers `status` (a gateway error) now, closing the upstream side. Returns SY_P_*. */
int sy_exchange_answer_error(struct sy_exchange *x, int status);
/* 1 while validated response bytes wait for the client side to take them. */
int sy_exchange_has_output(const struct sy_exchange *x);
/* An event on the exchange's upstream connection. */
void sy_exchange_upstream_event(struct sy_upconn *u, uint32_t events);
/* A request that failed before it could start (parse error, timeout): answers `status`. */
int sy_exchange_reject(struct sy_exchange *x, int status, size_t bytes_in);
/* Releases the upstream side: back to its pool when reusable and the response is complete. */
void sy_exchange_release_upstream(struct sy_exchange *x);
/* Metrics and access log for the request, once. */
void sy_exchange_log(struct sy_exchange *x);
/*
 * The client side is closing with the exchange unfinished: logs it (499 when
 * the client left first) and closes the upstream side.
 */
void sy_exchange_close(struct sy_exchange *x);

/* From the worker's free list, zeroed, and back. */
struct sy_exchange *sy_exchange_get(struct sy_worker *w);
void sy_exchange_put(struct sy_exchange *x);

#endif
