/*
 * proxy.h: the gateway's runtime: configuration snapshots, worker threads,
 * upstream state and the connection state machine.
 *
 * Threading: each worker owns an event loop, its listening sockets, its
 * connections, its upstream pools and its metrics. Nothing on the request
 * path takes a lock. The main thread builds snapshots (config + resolved
 * upstream addresses + TLS store), hands each worker a reference through a
 * mailbox, and re-resolves upstream names.
 */
#ifndef SY_PROXY_PROXY_H
#define SY_PROXY_PROXY_H

#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/socket.h>

#include "admin/metrics.h"
#include "config/config.h"
#include "core/list.h"
#include "event/loop.h"
#include "http/h1.h"

struct sy_tls;
struct sy_acme;
struct sy_exchange;
struct sy_mirror_worker;
struct sy_mirror_bounds;

/*
 * Addresses kept per server name: a headless Service returns one per pod.
 * More are dropped (with a warning) after sorting, so every replica keeps
 * the same ones.
 */
#define SY_MAX_ADDRS 256
#define SY_BUF_SIZE 16384
#define SY_MAX_HEADERS_CAP 256
/* While draining, a keep-alive connection idle this long is closed (ms). */
#define SY_DRAIN_IDLE_MS 1000

/* One upstream address (IPv4 or IPv6, with the port); unused bytes are zero. */
union sy_addr {
    struct sockaddr sa;
    struct sockaddr_in in;
    struct sockaddr_in6 in6;
};

/* Addresses of one configured server, published by the resolver with a seqlock. */
struct sy_server_rt {
    const struct sy_server_conf *conf;
    atomic_uint seq;           /* odd while the resolver writes; +2 per new list */
    uint32_t naddrs;
    union sy_addr *addrs;      /* room for 1 (IP literal) or SY_MAX_ADDRS */
    int literal;               /* IP literal: never re-resolved */
    uint64_t resolved_at;      /* main thread only */
    uint32_t over_limit;       /* main thread only: addresses last seen beyond SY_MAX_ADDRS */
};

struct sy_upstream_rt {
    const struct sy_upstream_conf *conf;
    struct sy_server_rt *servers;
    atomic_uint gen;           /* bumped after any server's list changed */
};

/* An immutable snapshot: what a connection runs with. Refcounted across threads. */
struct sy_snapshot {
    atomic_int refs;
    uint64_t generation;
    struct sy_config *cfg;
    struct sy_upstream_rt *ups;    /* cfg->nupstreams */
    struct sy_tls *tls;            /* NULL without listen.https */
};

void sy_snapshot_ref(struct sy_snapshot *s);
void sy_snapshot_unref(struct sy_snapshot *s);

/*
 * Copies the addresses of server rt into out (seqlock read). Returns the
 * count; *seq gets the version of the list.
 */
uint32_t sy_server_addrs(struct sy_server_rt *rt, union sy_addr *out, uint32_t max, unsigned *seq);

/*
 * Per-worker state of one balancing member: one address of a configured
 * server (a name resolving to several addresses gives several members), with
 * its own keep-alive pool and failure state. A failed member is backed off:
 * out of rotation for backoff_ms, which starts short and doubles while the
 * attempts made after each back-off fail too, up to the upstream's
 * down_time. The first connection that succeeds clears it (upstream.c).
 *
 * A member whose address left DNS is retired: its idle connections are
 * closed, the requests on it finish, and it is freed with its last
 * connection.
 */
struct sy_wserver {
    struct sy_server_rt *rt;   /* the configured server it belongs to */
    union sy_addr addr;
    char text[64];             /* "ip:port" */
    uint64_t down_until;       /* loop ms: out of rotation until then; 0 = up */
    uint64_t failed_at;        /* loop ms of the last failure: order when every one is down */
    uint32_t backoff_ms;       /* 0: no failure since the last success */
    uint32_t outstanding;      /* requests in flight on this worker */
    uint32_t nconns;           /* open connections, idle or in use */
    int retired;
    uint32_t slot;             /* index in the upstream's members (bit slot % 64 of `tried`) */
    struct sy_upsrv_counter *stat;
    struct sy_list idle;       /* idle keep-alive connections (struct sy_upconn.link) */
    uint32_t nidle;
};

/* Per-worker view of one configured server: its current members. */
struct sy_wname {
    struct sy_server_rt *rt;
    unsigned seq;              /* version of rt's list that members reflect */
    struct sy_wserver **members;
    uint32_t nmembers;
};

struct sy_wupstream {
    struct sy_upstream_rt *rt;
    struct sy_wname *names;        /* one per configured server */
    unsigned gen;                  /* rt->gen the members reflect */
    struct sy_wserver **members;   /* every address of every server: what is balanced */
    uint32_t nmembers, members_cap;
    uint32_t rr;
    struct sy_uperr_counter *errs;
};

/* A worker's view of one snapshot. Refcounted by connections of that worker only. */
struct sy_wsnap {
    struct sy_snapshot *snap;
    struct sy_worker *w;
    int refs;
    struct sy_wupstream *ups;
    struct sy_req_counter ***site_counters; /* [site][route or 0] */
    struct sy_req_counter *nosite_counter;
    struct sy_mirror_bounds *mirror_bounds; /* [site], made by the first copy (mirror.c) */
};

struct sy_listener {
    struct sy_acceptor acc;
    struct sy_worker *w;
    int kind;                  /* SY_LISTEN_HTTP, SY_LISTEN_HTTPS, SY_LISTEN_ADMIN */
    int family;                /* AF_INET or AF_INET6 */
    int closing;               /* drain: what the kernel took is served, whatever the limit */
};

/* A connection taken while at limits.max_connections, served when a slot frees. */
struct sy_parked {
    int fd;
    int kind;
};

enum { SY_LISTEN_HTTP = 0, SY_LISTEN_HTTPS, SY_LISTEN_ADMIN };

struct sy_worker {
    unsigned id;
    pthread_t thread;
    struct sy_loop *loop;
    struct sy_listener listeners[3];
    struct sy_wsnap *ws;                       /* current */
    _Atomic(struct sy_snapshot *) mailbox;     /* new snapshot handed over by main (with a ref) */
    atomic_int draining;                       /* 1: draining, 2: listeners to close */
    int drain_started;                         /* worker thread only */
    int listeners_closed;                      /* drain stage 2 done, drain_ack at the iteration's end */
    int accept_paused;
    struct sy_timer accept_timer;
    struct sy_parked *parked;                  /* FIFO of connections taken beyond the limit */
    uint32_t nparked, capparked;
    struct sy_timer tick;
    uint32_t nconns_pub;                       /* nconns as seen by main while draining */
    atomic_int drain_ack;                      /* listeners closed, nconns_pub valid */
    struct sy_list conns;                      /* all client connections */
    struct sy_list closed;                     /* closed, freed at the end of the iteration */
    struct sy_list closed_up;                  /* closed upstream connections, likewise */
    struct sy_list h2_dead;                    /* ended HTTP/2 streams, likewise */
    struct sy_list h2_woken;                   /* HTTP/2 connections to pump at the iteration's end */
    uint32_t nconns;
    uint32_t max_conns;
    struct sy_metrics metrics;
    char *buf_free;                            /* free list of SY_BUF_SIZE buffers */
    uint32_t nbuf_free;
    uint32_t buf_low;                          /* fewest free buffers during the last second */
    uint32_t ticks;
    char *log;                                 /* access log staging buffer */
    size_t loglen;
    size_t log_line;                           /* start of the line being built */
    int log_overlong;                          /* that line outgrew the buffer: drop it */
    struct sy_logq_ring *logring;              /* complete lines waiting for stdout */
    uint64_t log_flushed_at;
    uint64_t log_reported[2];                  /* worker 0: drops already reported (stdout, stderr) */
    uint64_t log_report_at[2];                 /* worker 0: when they were (loop ms) */
    uint64_t rng[2];
    uint64_t reqseq;
    struct sy_mirror_worker *mirror;           /* mirrored copies and their stores (mirror.c) */
    struct sy_exchange *x_free;                /* free list of per-request states */
    uint32_t nx_free;
    struct sy_h1_header hdrs[SY_MAX_HEADERS_CAP]; /* scratch: the request head being started */
    char tls_scratch[SY_BUF_SIZE];               /* scratch: pieces joined into one TLS record */
};


/* The process: workers and global state shared with the admin endpoint. */
struct sy_process {
    struct sy_worker *workers;
    unsigned nworkers;
    enum sy_loop_backend io_backend;   /* chosen at start: SY_LOOP_EPOLL or SY_LOOP_URING */
    _Atomic(struct sy_snapshot *) current;
    atomic_ullong reloads_ok, reloads_failed;
    atomic_int draining;
    uint64_t start_time;
    struct sy_acme *acme;
};

extern struct sy_process sy_proc;

static inline int sy_atomic_draining(void)
{
    return atomic_load_explicit(&sy_proc.draining, memory_order_relaxed);
}

/* Worker lifecycle (worker.c). Listening sockets are opened by main. */
int sy_worker_open_listeners(struct sy_worker *w, const struct sy_config *cfg, char **err);
int sy_worker_start(struct sy_worker *w, struct sy_snapshot *s);
void sy_worker_deliver(struct sy_worker *w, struct sy_snapshot *s); /* takes a ref */
/*
 * Drain stage 1: answer with Connection: close, close idle keep-alive
 * connections once they have been idle for SY_DRAIN_IDLE_MS, keep accepting.
 * Stage 2: accept what the kernel holds, then close the public listeners
 * (drain_ack set). Any thread.
 */
void sy_worker_drain(struct sy_worker *w, int stage);

struct sy_wsnap *sy_wsnap_get(struct sy_worker *w);
void sy_wsnap_unref(struct sy_wsnap *ws);

/* Buffers of SY_BUF_SIZE bytes from the worker's free list. */
char *sy_worker_buf_get(struct sy_worker *w);
void sy_worker_buf_put(struct sy_worker *w, char *b);

/* Connections (conn.c). */
void sy_conn_accept(struct sy_worker *w, int fd, const struct sockaddr_storage *peer, int https);
/* Drain started: idle keep-alive connections get the drain's idle deadline. */
void sy_conn_drain_start(struct sy_worker *w);
/* The drain time is over: every connection is closed, with a FIN (TLS: close_notify). */
void sy_conn_close_all(struct sy_worker *w);
/* Frees what was closed. End of a loop iteration only (sy_loop_dispatching() == 0). */
void sy_conn_reap(struct sy_worker *w);
void sy_admin_accept(struct sy_worker *w, int fd);

/* Upstream connections (upstream.c). */
struct sy_upconn;
void sy_wupstream_init(struct sy_worker *w, struct sy_wupstream *wu, struct sy_upstream_rt *rt);
/* Takes the addresses the resolver published since: new members, retired ones. */
void sy_wupstream_refresh(struct sy_worker *w, struct sy_wupstream *wu);
void sy_wupstream_release_idle(struct sy_wupstream *wu);
void sy_wupstream_free(struct sy_wupstream *wu);

/* Access log (accesslog.c). */
void sy_accesslog_flush(struct sy_worker *w);

#endif
