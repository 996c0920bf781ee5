/*
 * worker.c: worker threads, their listeners, accept back-off, buffer pools
 * and their view of configuration snapshots.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/log.h"
#include "core/logq.h"
#include "proxy/conn.h"
#include "proxy/h2conn.h"
#include "proxy/mirror.h"
#include "tls/tls.h"

/*
 * Buffers kept for reuse per worker (16 KiB each). The pool grows to what the
 * load needs, up to BUF_POOL_MAX, and once a second gives back what stayed
 * unused for that whole second, down to BUF_POOL_KEEP.
 */
#define BUF_POOL_MAX 512
#define BUF_POOL_KEEP 8
#define ACCEPT_BACKOFF_MS 100
#define LOG_REPORT_MS 10000
#define LOG_REPORT_RETRY_MS 1000

struct sy_process sy_proc;

/* ---- snapshots ---- */

void sy_snapshot_ref(struct sy_snapshot *s)
{
    atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
}

void sy_snapshot_unref(struct sy_snapshot *s)
{
    if (!s || atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) != 1)
        return;
    if (s->tls)
        sy_tls_unref(s->tls);
    for (size_t i = 0; i < s->cfg->nupstreams; i++) {
        for (size_t k = 0; k < s->cfg->upstreams[i].nservers; k++)
            sy_free(s->ups[i].servers[k].addrs);
        sy_free(s->ups[i].servers);
    }
    sy_free(s->ups);
    sy_config_free(s->cfg);
    sy_free(s);
}

static struct sy_wsnap *wsnap_new(struct sy_worker *w, struct sy_snapshot *s)
{
    const struct sy_config *cfg = s->cfg;
    struct sy_wsnap *ws = sy_calloc(1, sizeof(*ws));
    ws->snap = s;
    ws->w = w;
    ws->refs = 1; /* the worker's own */
    ws->ups = sy_calloc(cfg->nupstreams, sizeof(*ws->ups));
    for (size_t i = 0; i < cfg->nupstreams; i++)
        sy_wupstream_init(w, &ws->ups[i], &s->ups[i]);
    ws->site_counters = sy_calloc(cfg->nsites, sizeof(*ws->site_counters));
    for (size_t i = 0; i < cfg->nsites; i++) {
        const struct sy_site_conf *site = &cfg->sites[i];
        size_t nr = site->has_version ? site->version.nroutes : 0;
        ws->site_counters[i] = sy_calloc(nr + 1, sizeof(*ws->site_counters[i]));
        ws->site_counters[i][0] = sy_metrics_req(&w->metrics, site->hosts[0], "");
        for (size_t r = 0; r < nr; r++)
            ws->site_counters[i][r + 1] =
                sy_metrics_req(&w->metrics, site->hosts[0], site->version.routes[r].version);
    }
    ws->nosite_counter = sy_metrics_req(&w->metrics, "", "");
    return ws;
}

void sy_wsnap_unref(struct sy_wsnap *ws)
{
    if (!ws || --ws->refs > 0)
        return;
    const struct sy_config *cfg = ws->snap->cfg;
    for (size_t i = 0; i < cfg->nupstreams; i++)
        sy_wupstream_free(&ws->ups[i]);
    sy_free(ws->ups);
    for (size_t i = 0; i < cfg->nsites; i++)
        sy_free(ws->site_counters[i]);
    sy_free(ws->site_counters);
    sy_free(ws->mirror_bounds);
    sy_snapshot_unref(ws->snap);
    sy_free(ws);
}

struct sy_wsnap *sy_wsnap_get(struct sy_worker *w)
{
    return w->ws;
}

/* Takes a snapshot handed over by the main thread (called on the worker thread). */
static void take_mailbox(struct sy_worker *w)
{
    struct sy_snapshot *s = atomic_exchange(&w->mailbox, NULL);
    if (!s)
        return;
    struct sy_wsnap *old = w->ws;
    w->ws = wsnap_new(w, s);
    if (old) {
        /* Idle pooled connections belong to the old view: close them now. */
        const struct sy_config *cfg = old->snap->cfg;
        for (size_t i = 0; i < cfg->nupstreams; i++)
            sy_wupstream_release_idle(&old->ups[i]);
        sy_wsnap_unref(old);
    }
}

void sy_worker_deliver(struct sy_worker *w, struct sy_snapshot *s)
{
    sy_snapshot_ref(s);
    struct sy_snapshot *prev = atomic_exchange(&w->mailbox, s);
    if (prev)
        sy_snapshot_unref(prev); /* never taken: the worker has not woken since */
    sy_loop_wake(w->loop);
}

/* ---- buffers ---- */

char *sy_worker_buf_get(struct sy_worker *w)
{
    if (w->buf_free) {
        char *b = w->buf_free;
        memcpy(&w->buf_free, b, sizeof(char *));
        w->nbuf_free--;
        if (w->nbuf_free < w->buf_low)
            w->buf_low = w->nbuf_free;
        return b;
    }
    /* Straight from the kernel, not the heap: 16 KiB blocks freed between small live objects
     * would pin heap pages; mapped blocks go back whole when the pool shrinks. */
    void *p = mmap(NULL, SY_BUF_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        sy_log_error("worker", "out of memory for a %d-byte buffer", SY_BUF_SIZE);
        abort();
    }
    return p;
}

void sy_worker_buf_put(struct sy_worker *w, char *b)
{
    if (w->nbuf_free >= BUF_POOL_MAX) {
        munmap(b, SY_BUF_SIZE);
        return;
    }
    memcpy(b, &w->buf_free, sizeof(char *));
    w->buf_free = b;
    w->nbuf_free++;
}

/* Called once a second: frees the buffers that nobody needed during the last second. */
static void buf_shrink(struct sy_worker *w)
{
    /* Half of what stayed unused: a steady load does not map and unmap in turns. */
    uint32_t spare = w->buf_low > BUF_POOL_KEEP ? (w->buf_low - BUF_POOL_KEEP + 1) / 2 : 0;
    while (spare-- && w->buf_free) {
        char *b = w->buf_free;
        memcpy(&w->buf_free, b, sizeof(char *));
        w->nbuf_free--;
        munmap(b, SY_BUF_SIZE);
    }
    w->buf_low = w->nbuf_free;
}

/* ---- listeners ---- */

static int open_listener(const struct sy_listen_addr *a, int reuseport, char **err)
{
    int fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        *err = sy_asprintf("socket for %s: %s", a->text, strerror(errno));
        return -1;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (reuseport)
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    if (a->ss.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (bind(fd, (const struct sockaddr *)&a->ss, a->len) < 0) {
        *err = sy_asprintf("cannot listen on %s: %s", a->text, strerror(errno));
        close(fd);
        return -1;
    }
    if (listen(fd, 4096) < 0) {
        *err = sy_asprintf("listen on %s: %s", a->text, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

static void pause_accept(struct sy_worker *w)
{
    if (w->accept_paused)
        return;
    w->accept_paused = 1;
    sy_counter_add(&w->metrics.accept_paused, 1);
    for (int i = 0; i < 2; i++)
        if (w->listeners[i].acc.io.fd >= 0)
            sy_loop_acceptor_enable(w->loop, &w->listeners[i].acc, 0);
    sy_timer_set(w->loop, &w->accept_timer, sy_loop_now(w->loop) + ACCEPT_BACKOFF_MS);
}

/*
 * The peer of a connection the backend took without its address (io_uring's
 * multishot accept). SO_PEERNAME, not getpeername(2): it reads the address the
 * way accept4(2) does, so a client that sent its request and reset at once is
 * still logged and forwarded with its address (getpeername says ENOTCONN).
 * The option length must not exceed the family's address length.
 */
static void peer_of(int fd, int family, struct sockaddr_storage *ss)
{
    socklen_t len = family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    memset(ss, 0, sizeof(*ss));
    if (getsockopt(fd, SOL_SOCKET, SO_PEERNAME, ss, &len) < 0)
        ss->ss_family = (sa_family_t)family; /* logged as the unspecified address */
}

static void serve(struct sy_worker *w, int fd, int kind, const struct sockaddr *peer, socklen_t plen)
{
    struct sockaddr_storage ss;
    if (peer && plen <= sizeof(ss)) {
        memcpy(&ss, peer, plen);
    } else {
        peer_of(fd, w->listeners[kind].family, &ss);
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    sy_conn_accept(w, fd, &ss, kind == SY_LISTEN_HTTPS);
}

/*
 * Parked connections are served oldest first while there is room (all of them
 * while the listeners close). Returns the number still parked.
 */
static uint32_t serve_parked(struct sy_worker *w, int all)
{
    uint32_t i = 0;
    if (!w->nparked)
        return 0;
    while (i < w->nparked && (all || w->nconns < w->max_conns)) {
        serve(w, w->parked[i].fd, w->parked[i].kind, NULL, 0);
        i++;
    }
    memmove(w->parked, w->parked + i, (w->nparked - i) * sizeof(*w->parked));
    w->nparked -= i;
    return w->nparked;
}

static void resume_accept(struct sy_timer *t)
{
    struct sy_worker *w = SY_CONTAINER_OF(t, struct sy_worker, accept_timer);
    if (!w->accept_paused || atomic_load(&w->draining))
        return;
    if (serve_parked(w, 0) || w->nconns >= w->max_conns) {
        sy_timer_set(w->loop, t, sy_loop_now(w->loop) + ACCEPT_BACKOFF_MS);
        return;
    }
    w->accept_paused = 0;
    for (int i = 0; i < 2; i++)
        if (w->listeners[i].acc.io.fd >= 0)
            sy_loop_acceptor_enable(w->loop, &w->listeners[i].acc, 1);
}

/*
 * Each connection a listener took (sy_loop_add_acceptor). At
 * limits.max_connections the listeners pause, and the backlog waits in the
 * kernel. A multishot accept (io_uring) may have taken more than the limit
 * before it was cancelled: those are parked (descriptor only, not counted as
 * active) and served first when slots free, never reset. A closing listener
 * (drain) serves what the kernel already took, whatever the limit.
 */
static void on_accept(struct sy_acceptor *a, int fd, const struct sockaddr *peer, socklen_t plen)
{
    struct sy_listener *l = SY_CONTAINER_OF(a, struct sy_listener, acc);
    struct sy_worker *w = l->w;
    if (fd < 0) {
        int e = -fd;
        if (e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM) {
            sy_log_warn("worker", "accept: %s; pausing accepts for %d ms", strerror(e),
                        ACCEPT_BACKOFF_MS);
            if (l->kind != SY_LISTEN_ADMIN && !l->closing)
                pause_accept(w);
        } else {
            sy_log_warn("worker", "accept: %s", strerror(e));
        }
        return;
    }
    if (l->kind == SY_LISTEN_ADMIN) {
        sy_admin_accept(w, fd);
        return;
    }
    if (!l->closing && (w->nparked || w->nconns >= w->max_conns)) {
        if (w->nparked == w->capparked) {
            w->capparked = w->capparked ? w->capparked * 2 : 64;
            w->parked = sy_realloc(w->parked, w->capparked * sizeof(*w->parked));
        }
        w->parked[w->nparked++] = (struct sy_parked){fd, l->kind};
        pause_accept(w);
        return;
    }
    serve(w, fd, l->kind, peer, plen);
    if (!l->closing && w->nconns >= w->max_conns)
        pause_accept(w);
}

/*
 * SO_REUSEPORT lets any process of the same user bind the port too and take a
 * share of the connections. Before worker 0 binds, a plain bind (without
 * SO_REUSEPORT) proves that nobody else listens there.
 *
 * A previous process killed a moment ago may still hold the address: the
 * kernel tears an io_uring down after the process is gone, and its listening
 * sockets (held by the ring's accept and poll requests) close a few
 * milliseconds later. So the probe tries again for up to PROBE_WAIT_MS before
 * it calls the address taken (nginx retries its binds the same way).
 */
#define PROBE_WAIT_MS 2000
#define PROBE_STEP_MS 25

static int probe_bind(const struct sy_listen_addr *a)
{
    int fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return 0;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (a->ss.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    int rc = bind(fd, (const struct sockaddr *)&a->ss, a->len);
    int e = errno;
    close(fd);
    return rc < 0 && e == EADDRINUSE ? -1 : 0;
}

static int probe_free(const struct sy_listen_addr *a, char **err)
{
    for (int waited = 0; probe_bind(a) < 0; waited += PROBE_STEP_MS) {
        if (waited >= PROBE_WAIT_MS) {
            *err = sy_asprintf("cannot listen on %s: address already in use", a->text);
            return -1;
        }
        if (!waited)
            sy_log_info("worker", "%s is in use; waiting up to %d ms for it to be released", a->text,
                        PROBE_WAIT_MS);
        usleep(PROBE_STEP_MS * 1000);
    }
    return 0;
}

int sy_worker_open_listeners(struct sy_worker *w, const struct sy_config *cfg, char **err)
{
    if (w->id == 0) {
        const struct sy_listen_addr *all[3] = {&cfg->listen_http, &cfg->listen_https,
                                               &cfg->listen_admin};
        for (int i = 0; i < 3; i++)
            if (all[i]->set && probe_free(all[i], err) < 0)
                return -1;
    }
    const struct sy_listen_addr *addrs[3] = {&cfg->listen_http, &cfg->listen_https,
                                             &cfg->listen_admin};
    for (int i = 0; i < 3; i++) {
        w->listeners[i].acc.io.fd = -1;
        w->listeners[i].acc.cb = on_accept;
        w->listeners[i].w = w;
        w->listeners[i].kind = i;
        w->listeners[i].family = addrs[i]->ss.ss_family;
        if (!addrs[i]->set)
            continue;
        if (i == SY_LISTEN_ADMIN && w->id != 0)
            continue; /* the admin listener lives on worker 0 only */
        int fd = open_listener(addrs[i], i != SY_LISTEN_ADMIN, err);
        if (fd < 0)
            return -1;
        w->listeners[i].acc.io.fd = fd;
    }
    return 0;
}

/* ---- the thread ---- */

/*
 * Wake-ups run inside the event batch: nothing here frees a connection (they
 * are reaped in on_idle, at the end of the iteration). Drain, stage 1: idle
 * keep-alive connections get the short drain deadline. Stage 2: what the
 * kernel already accepted is taken, then the public listeners close.
 */
static void on_wake(struct sy_loop *loop, void *arg)
{
    struct sy_worker *w = arg;
    take_mailbox(w);
    int stage = atomic_load(&w->draining);
    if (stage && !w->drain_started) {
        w->drain_started = 1;
        sy_conn_drain_start(w);
    }
    if (stage >= 2 && !atomic_load(&w->drain_ack)) {
        for (int i = 0; i < 2; i++) {
            struct sy_listener *l = &w->listeners[i];
            l->closing = 1;
            sy_loop_acceptor_close(loop, &l->acc);
        }
        serve_parked(w, 1);
        sy_timer_cancel(loop, &w->accept_timer);
        w->listeners_closed = 1; /* acknowledged at the end of the iteration (on_idle) */
    }
}

/* The end of every loop iteration: the one place where closed objects are freed. */
static void on_idle(struct sy_loop *loop, void *arg)
{
    struct sy_worker *w = arg;
    sy_h2_run_woken(w);
    sy_conn_reap(w);
    sy_mirror_idle(w);
    if (w->loglen && (w->loglen > 16384 || sy_loop_now(loop) - w->log_flushed_at >= 100))
        sy_accesslog_flush(w);
    if (atomic_load(&w->draining)) {
        __atomic_store_n(&w->nconns_pub, w->nconns, __ATOMIC_RELAXED);
        /* After the batch in which the listeners closed: connections an io_uring accept took
         * just before are counted now (they came as completions later in that batch). */
        if (w->listeners_closed && !atomic_load(&w->drain_ack))
            atomic_store(&w->drain_ack, 1);
        if (atomic_load(&sy_proc.draining) > 1) {
            /* The drain time is over: what is still open ends now, with a FIN. */
            sy_conn_close_all(w);
            sy_conn_reap(w);
            sy_loop_stop(loop);
        }
    }
}

/*
 * Worker 0 reports lines the log rings dropped (all workers' rings), at most once per
 * LOG_REPORT_MS per stream. A report that is itself dropped (stderr still stalled) is tried
 * again a second later, so it arrives soon after the reader resumes.
 */
static void report_log_drops(struct sy_worker *w)
{
    static const char *const what[2][2] = {{"access", "stdout"}, {"error", "stderr"}};
    uint64_t now = sy_loop_now(w->loop);
    for (int k = 0; k < 2; k++) {
        uint64_t d = sy_logq_dropped(k == 0 ? STDOUT_FILENO : STDERR_FILENO);
        if (d == w->log_reported[k] || (w->log_report_at[k] && now - w->log_report_at[k] <
                                                                    LOG_REPORT_MS))
            continue;
        w->log_report_at[k] = now;
        if (sy_log_warn("log", "%s log: %llu lines dropped, %s not keeping up", what[k][0],
                        (unsigned long long)(d - w->log_reported[k]), what[k][1]) == 0)
            w->log_reported[k] = d;
        else
            w->log_report_at[k] = now - LOG_REPORT_MS + LOG_REPORT_RETRY_MS;
    }
}

/*
 * Flushes the access log at least every 100 ms even when the loop is quiet,
 * and takes new upstream addresses: a retired address's idle connections
 * close even when no request comes.
 */
static void tick(struct sy_timer *t)
{
    struct sy_worker *w = SY_CONTAINER_OF(t, struct sy_worker, tick);
    if (w->loglen)
        sy_accesslog_flush(w);
    if (w->id == 0)
        report_log_drops(w);
    if (w->ws)
        for (size_t i = 0; i < w->ws->snap->cfg->nupstreams; i++)
            sy_wupstream_refresh(w, &w->ws->ups[i]);
    if (++w->ticks % 10 == 0)
        buf_shrink(w);
    sy_timer_set(w->loop, t, sy_loop_now(w->loop) + 100);
}

static void *worker_main(void *arg)
{
    struct sy_worker *w = arg;
    sy_log_own_ring();
    w->tick.cb = tick;
    sy_timer_set(w->loop, &w->tick, sy_loop_now(w->loop) + 100);
    sy_loop_run(w->loop);
    sy_timer_cancel(w->loop, &w->tick);
    if (w->loglen)
        sy_accesslog_flush(w);
    return NULL;
}

int sy_worker_start(struct sy_worker *w, struct sy_snapshot *s)
{
    if (!w->loop) {
        const char *why = NULL;
        w->loop = sy_loop_new(sy_proc.io_backend, &why);
        if (!w->loop) {
            sy_log_error("worker", "worker %u: cannot make its %s loop%s%s", w->id,
                         sy_loop_backend_name(sy_proc.io_backend), why ? ": " : "", why ? why : "");
            return -1;
        }
    }
    sy_list_init(&w->conns);
    sy_list_init(&w->closed);
    sy_list_init(&w->closed_up);
    sy_list_init(&w->h2_dead);
    sy_list_init(&w->h2_woken);
    w->accept_timer.cb = resume_accept;
    uint32_t maxc = s->cfg->limits.max_connections;
    unsigned nw = sy_proc.nworkers ? sy_proc.nworkers : 1;
    w->max_conns = maxc / nw + (maxc % nw > w->id ? 1 : 0);
    if (w->max_conns == 0)
        w->max_conns = 1;
    sy_snapshot_ref(s);
    w->ws = wsnap_new(w, s);
    __atomic_store_n(&w->mirror, sy_mirror_worker_new(), __ATOMIC_RELEASE);
    sy_loop_set_wake(w->loop, on_wake, w);
    sy_loop_set_idle(w->loop, on_idle, w);
    for (int i = 0; i < 3; i++)
        if (w->listeners[i].acc.io.fd >= 0 && sy_loop_add_acceptor(w->loop, &w->listeners[i].acc) < 0)
            return -1;
    return pthread_create(&w->thread, NULL, worker_main, w) == 0 ? 0 : -1;
}

void sy_worker_drain(struct sy_worker *w, int stage)
{
    atomic_store(&w->draining, stage);
    sy_loop_wake(w->loop);
}
