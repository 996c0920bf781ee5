/*
 * metrics.h: per-worker counters, summed at scrape time.
 *
 * Each worker owns one struct sy_metrics and is its only writer; the admin
 * endpoint reads all of them. Counters are plain uint64_t written with
 * relaxed atomic stores (no lock prefix on the hot path) and read with
 * relaxed loads. Labelled counters live in append-only lists published with
 * release stores, so a reader never sees a half-built entry.
 */
#ifndef SY_ADMIN_METRICS_H
#define SY_ADMIN_METRICS_H

#include <stddef.h>
#include <stdint.h>

enum sy_uperr {
    SY_UPERR_CONNECT_REFUSED = 0,
    SY_UPERR_CONNECT_TIMEOUT,
    SY_UPERR_RESPONSE_TIMEOUT,
    SY_UPERR_RESET,
    SY_UPERR_BAD_RESPONSE,
    SY_UPERR_NO_SERVER,
    SY_UPERR_MAX
};

/* Upper bounds in seconds of the request duration histogram (+Inf implied). */
#define SY_HIST_NBUCKETS 12
extern const double sy_hist_bounds[SY_HIST_NBUCKETS];

/* The client's protocol, a label of the request metrics. */
enum sy_proto { SY_PROTO_H1 = 0, SY_PROTO_H2, SY_PROTO_MAX };

struct sy_req_counter {
    char *site;
    char *version;             /* "" for plain upstream sites and gateway answers */
    uint64_t by_class[SY_PROTO_MAX][6]; /* [protocol][status / 100 (1..5)]; class 0 unused */
    struct sy_req_counter *next;
};

struct sy_uperr_counter {
    char *upstream;
    uint64_t by_reason[SY_UPERR_MAX];
    struct sy_uperr_counter *next;
};

/*
 * State of one address of an upstream server as this worker sees it. refs
 * counts the worker's balancing members for it: an entry with no reference
 * (the address left DNS, or the server the configuration) is not exported,
 * and is kept so that its counter goes on if the address comes back.
 */
struct sy_upsrv_counter {
    char *upstream;
    char *server;
    char *address;
    uint64_t refs;
    uint64_t down;             /* 1 while backed off or not yet seen answering since a failure */
    uint64_t marked_down;      /* times it was taken out of rotation */
    struct sy_upsrv_counter *next;
};

/* Mirrored copies: what became of them, and the differences found (kind). */
enum sy_mirror_outcome {
    SY_MIRROR_COMPARED = 0,    /* the copy was answered (and compared when compare is on) */
    SY_MIRROR_DROPPED,         /* not sent: over the worker's bounds or the body limit */
    SY_MIRROR_FAILED,          /* the copy's upstream failed or answered badly */
    SY_MIRROR_TIMEOUT,         /* no complete answer in time */
    SY_MIRROR_OUTCOME_MAX
};
enum sy_mirror_kind { SY_DIFF_STATUS = 0, SY_DIFF_HEADER, SY_DIFF_BODY, SY_DIFF_KIND_MAX };

struct sy_mirror_counter {
    char *site;
    char *from;                /* the version that served the client */
    char *to;                  /* the version the copy went to */
    uint64_t by_outcome[SY_MIRROR_OUTCOME_MAX];
    uint64_t by_kind[SY_DIFF_KIND_MAX];
    struct sy_mirror_counter *next;
};

/* GOAWAY frames sent, by why (the error code, and for NO_ERROR whether drain or idle). */
enum sy_h2_goaway {
    SY_H2_GOAWAY_DRAIN = 0,
    SY_H2_GOAWAY_IDLE,
    SY_H2_GOAWAY_PROTOCOL_ERROR,
    SY_H2_GOAWAY_FLOW_CONTROL_ERROR,
    SY_H2_GOAWAY_SETTINGS_TIMEOUT,
    SY_H2_GOAWAY_COMPRESSION_ERROR,
    SY_H2_GOAWAY_ENHANCE_YOUR_CALM,
    SY_H2_GOAWAY_OTHER,
    SY_H2_GOAWAY_MAX
};

/* HTTP/2 defences, each counted when it trips (docs/http2-defences.md). */
enum sy_h2_defence {
    SY_H2_DEF_RAPID_RESET = 0,   /* http2.max_resets */
    SY_H2_DEF_CONTROL_FLOOD,     /* SETTINGS, PING, PRIORITY, empty DATA over budget */
    SY_H2_DEF_CONTINUATION,      /* too many CONTINUATION frames in one block */
    SY_H2_DEF_HEADER_LIST,       /* a header block far beyond http2.max_header_list_size */
    SY_H2_DEF_HEADER_TIMEOUT,    /* a header block left unfinished */
    SY_H2_DEF_SETTINGS_TIMEOUT,  /* our SETTINGS not acknowledged in time */
    SY_H2_DEF_LIBRARY_FLOOD,     /* nghttp2's own limits (queued replies, its reset budget) */
    SY_H2_DEF_STALLED_READER,    /* a stream or connection whose client stopped reading */
    SY_H2_DEF_MAX
};

struct sy_metrics {
    struct sy_req_counter *reqs;
    struct sy_mirror_counter *mirrors;
    struct sy_uperr_counter *uperrs;
    struct sy_upsrv_counter *upsrvs;
    uint64_t conns_active;
    uint64_t conns_accepted;
    uint64_t accept_paused;    /* times accepting was paused (fd or connection limit) */
    uint64_t tunnels_active;
    uint64_t hist[SY_PROTO_MAX][SY_HIST_NBUCKETS + 1];
    uint64_t hist_count[SY_PROTO_MAX];
    uint64_t hist_sum_us[SY_PROTO_MAX];
    uint64_t client_errors[8]; /* 400 408 413 414 417 431 501 505 */
    uint64_t h2_conns;         /* connections that negotiated h2 */
    uint64_t h2_streams;       /* request streams opened by clients */
    uint64_t h2_client_resets; /* RST_STREAM frames received */
    uint64_t h2_goaways[SY_H2_GOAWAY_MAX];
    uint64_t h2_defences[SY_H2_DEF_MAX];
};

/* Owner-only increments: no read-modify-write atomics needed. */
static inline void sy_counter_add(uint64_t *c, uint64_t n)
{
    __atomic_store_n(c, __atomic_load_n(c, __ATOMIC_RELAXED) + n, __ATOMIC_RELAXED);
}

static inline void sy_counter_set(uint64_t *c, uint64_t v)
{
    __atomic_store_n(c, v, __ATOMIC_RELAXED);
}

static inline uint64_t sy_counter_get(const uint64_t *c)
{
    return __atomic_load_n(c, __ATOMIC_RELAXED);
}

/* Finds or creates the counter for (site, version). Owner thread only. */
struct sy_req_counter *sy_metrics_req(struct sy_metrics *m, const char *site, const char *version);
struct sy_uperr_counter *sy_metrics_uperr(struct sy_metrics *m, const char *upstream);
struct sy_upsrv_counter *sy_metrics_upsrv(struct sy_metrics *m, const char *upstream,
                                          const char *server, const char *address);
struct sy_mirror_counter *sy_metrics_mirror(struct sy_metrics *m, const char *site,
                                            const char *from, const char *to);
void sy_metrics_observe(struct sy_metrics *m, enum sy_proto proto, uint64_t duration_us);
void sy_metrics_client_error(struct sy_metrics *m, int status);
void sy_metrics_free(struct sy_metrics *m);

const char *sy_uperr_name(enum sy_uperr e);

/* Growable text buffer for rendering the exposition. */
struct sy_textbuf {
    char *p;
    size_t len, cap;
};
void sy_textbuf_printf(struct sy_textbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sy_textbuf_append(struct sy_textbuf *b, const char *s, size_t n);
void sy_textbuf_free(struct sy_textbuf *b);

/*
 * Renders the Prometheus text exposition of all workers' metrics (plus
 * process-wide gauges supplied by the caller) into b.
 */
void sy_metrics_render(struct sy_textbuf *b, struct sy_metrics *const *ms, size_t n);

#endif
