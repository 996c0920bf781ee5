/*
 * mirror_int.h: what mirror.c and mirror_store.c share: a worker's mirror
 * state and its stores of differences and learned noise.
 */
#ifndef SY_PROXY_MIRROR_INT_H
#define SY_PROXY_MIRROR_INT_H

#include <pthread.h>
#include <stdint.h>

#include "core/list.h"
#include "proxy/mirror.h"

/* Groups of differences and endpoints with learned noise kept per worker. */
#define SY_MIRROR_GROUPS 128
#define SY_MIRROR_NOISE_ENDPOINTS 128
#define SY_MIRROR_NOISE_PATHS 32

struct sy_mirror_group;
struct sy_mirror_noise;

struct sy_mirror_worker {
    struct sy_list pending;        /* copies made, exchanges not started yet */
    struct sy_list active;         /* copies under way, or waiting for the client's answer */
    struct sy_list done;           /* to compare and free at the end of the iteration */
    /*
     * The stores: written by the worker when a comparison ends (never on a
     * client's path), read by /diffs on worker 0. The lock guards both.
     */
    pthread_mutex_t lock;
    struct sy_mirror_group *groups;    /* SY_MIRROR_GROUPS slots */
    size_t ngroups;
    struct sy_mirror_noise *noise;     /* SY_MIRROR_NOISE_ENDPOINTS slots */
    size_t nnoise;
};

/* A site's copies on this worker, against mirror.max_inflight and mirror.max_buffered. */
struct sy_mirror_bounds {
    uint32_t inflight;             /* legs whose exchange has not ended */
    uint64_t buffered;             /* bytes reserved by live copies */
};

/* What a comparison is about, for the stores. */
struct sy_mirror_subject {
    const char *site, *from, *to;
    const char *method;
    const char *pattern;           /* "/api/retros/:id" */
    const char *request;           /* "GET /api/retros/17 HTTP/1.1" */
    const struct sy_mirror_conf *conf;
    const struct sy_mirror_cap *a, *b;
};

void sy__mirror_store_init(struct sy_mirror_worker *mw);
/* Learns what differed between two answers of the same version as noise. */
void sy__mirror_learn(struct sy_mirror_worker *mw, const struct sy_mirror_subject *s,
                      const struct sy_mirror_diff *d);
/* The learned noise of an endpoint, or NULL; the filter for sy_mirror_compare(). */
struct sy_mirror_noise *sy__mirror_noise_find(struct sy_mirror_worker *mw, const char *site,
                                              const char *method, const char *pattern);
int sy__mirror_noise_has(const struct sy_mirror_noise *n, const char *path);
int sy__mirror_noise_header(const struct sy_mirror_noise *n, const char *name);
/* Records a difference (a group per site, method, pattern, from, to). */
void sy__mirror_record(struct sy_mirror_worker *mw, const struct sy_mirror_subject *s,
                       const struct sy_mirror_diff *d);

#endif
