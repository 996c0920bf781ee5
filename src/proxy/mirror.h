/*
 * mirror.h: copies of eligible requests sent to another version of the site
 * (sites[].mirror), and the comparison of the copy's answer with the one the
 * client got.
 *
 * A copy is a second exchange of the same request whose client side is a
 * sink (struct sy_client_ops in mirror.c): it swallows the answer and keeps
 * what the comparison needs. It never touches the client. Everything the
 * copy needs from the request is copied at the start into memory the copy
 * owns; its exchange starts at the end of the loop iteration, and its
 * comparison runs there too, off the client's path. With compare on, the
 * client's exchange gets a tee in front of its client side that keeps a
 * bounded capture of its answer.
 *
 * Worker-thread only, except the renderers of /diffs (any thread, under the
 * workers' diff-store locks).
 */
#ifndef SY_PROXY_MIRROR_H
#define SY_PROXY_MIRROR_H

#include <stddef.h>
#include <stdint.h>

#include "admin/metrics.h"
#include "config/config.h"
#include "http/h1.h"

struct sy_exchange;
struct sy_worker;
struct sy_mirror_worker;

/* How many compared headers (mirror.headers) a capture keeps. */
#define SY_MIRROR_MAX_HEADERS 16
/* Differing JSON paths kept per comparison. */
#define SY_MIRROR_MAX_PATHS 16

/* What one answer looked like: enough to compare it, bounded by mirror.max_response. */
struct sy_mirror_cap {
    int status;
    unsigned done : 1;         /* the answer arrived whole */
    unsigned gateway : 1;      /* the gateway answered itself: status only */
    unsigned json : 1;         /* its Content-Type is JSON */
    unsigned chunked : 1;      /* body bytes come chunked (de-chunked here) */
    unsigned truncated : 1;    /* longer than the capture limit */
    char *hv[SY_MIRROR_MAX_HEADERS]; /* compared header values, NULL when absent */
    char *body;
    size_t blen, bcap;
    uint64_t total;            /* body bytes, all of them */
    uint64_t hash;             /* FNV-1a of all of them */
    int cstate;                /* de-chunking state */
    uint64_t crem;
};

/* What differed between two answers. */
struct sy_mirror_diff {
    unsigned status : 1, body : 1, body_json : 1;
    uint32_t headers;          /* bit i: mirror.headers[i] differs */
    size_t npaths;             /* JSON paths that differ (after ignoring) */
    char *paths[SY_MIRROR_MAX_PATHS];
    int more_paths;            /* more than SY_MIRROR_MAX_PATHS */
};

/*
 * Called by the exchange's start when its site has a mirror block, while
 * the request head is still parsed (x->req.headers valid). Decides whether
 * the request is copied, copies it and, with compare, puts the tee in front
 * of x's client side. Never fails the request.
 */
void sy_mirror_offer(struct sy_exchange *x);
/* The client's exchange ends (any way): the copies no longer look at it. */
void sy_mirror_primary_gone(struct sy_exchange *x);
/* End of a loop iteration: starts the copies queued, compares and frees the finished ones. */
void sy_mirror_idle(struct sy_worker *w);
struct sy_mirror_worker *sy_mirror_worker_new(void);

/* mirror_cmp.c: captures, comparison, the diff and noise stores. */
void sy_mirror_cap_head(struct sy_mirror_cap *c, const struct sy_mirror_conf *mc,
                        const struct sy_h1_response *resp, int chunked);
void sy_mirror_cap_body(struct sy_mirror_cap *c, const struct sy_mirror_conf *mc, const char *p,
                        size_t n);
void sy_mirror_cap_free(struct sy_mirror_cap *c);
/*
 * Compares b (the copy) with a (the client's answer). ignore(arg, path)
 * says whether a JSON path is to be ignored (configured or learned noise).
 */
void sy_mirror_compare(const struct sy_mirror_conf *mc, const struct sy_mirror_cap *a,
                       const struct sy_mirror_cap *b, int (*ignore)(void *, const char *),
                       void *arg, struct sy_mirror_diff *d);
void sy_mirror_diff_free(struct sy_mirror_diff *d);
/* 1 when JSON path `path` is `pattern` or under it ("[*]" and ".*" match any step). */
int sy_mirror_path_match(const char *pattern, const char *path);
/* "GET", "/api/retros/17?x=1" -> "/api/retros/:id" (numeric and long hex segments). */
void sy_mirror_pattern(const char *target, size_t len, char *out, size_t cap);

/* Renders /diffs (JSON) or /diffs.html from every worker's stores. Any thread. */
struct sy_textbuf;
void sy_mirror_render(struct sy_textbuf *b, int html);

#endif
