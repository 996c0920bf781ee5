/*
 * upstream.c: choosing a server, connecting, and the per-server pools of idle
 * keep-alive connections. Worker-thread only.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/log.h"
#include "proxy/conn.h"

/* How long an idle upstream connection is kept (below common app server keep-alive timeouts). */
#define UP_IDLE_MS 15000
/* The first back-off after a failure; it doubles while failures continue, up to down_time. */
#define UP_BACKOFF_FIRST_MS 500

uint32_t sy_server_addrs(struct sy_server_rt *rt, struct sockaddr_storage *out, uint32_t max)
{
    for (;;) {
        unsigned s1 = atomic_load_explicit(&rt->seq, memory_order_acquire);
        if (s1 & 1)
            continue;
        uint32_t n = rt->naddrs;
        if (n > max)
            n = max;
        memcpy(out, rt->addrs, n * sizeof(*out));
        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(&rt->seq, memory_order_relaxed) == s1)
            return n;
    }
}

/*
 * Chooses a server not yet tried by this request: among those in rotation by
 * the balance rule, or, when every one left is backed off, the one that
 * failed least recently. A pool never refuses to try (nginx keeps the only
 * server of a group; Envoy routes to all hosts when too many are ejected).
 */
struct sy_wserver *sy_upstream_pick(struct sy_conn *c, struct sy_wupstream *wup, uint64_t now)
{
    const struct sy_upstream_conf *uc = wup->rt->conf;
    size_t n = uc->nservers;
    struct sy_wserver *best = NULL, *down = NULL;
    uint32_t start = wup->rr++;
    for (size_t k = 0; k < n; k++) {
        size_t i = (start + k) % n;
        struct sy_wserver *s = &wup->servers[i];
        if (i < 64 && (c->x->tried & (1ULL << i)))
            continue;
        if (!s->rt->naddrs)
            continue;
        if (s->down_until > now) {
            if (!down || s->failed_at < down->failed_at)
                down = s;
            continue;
        }
        if (uc->balance == SY_BALANCE_ROUND_ROBIN)
            return s;
        if (!best || s->outstanding < best->outstanding)
            best = s;
    }
    return best ? best : down;
}

/*
 * An attempt that started at `started` failed at `now`. Only an attempt made
 * while the server was in rotation moves its back-off: those already under
 * way when it was taken out, and those made while every server was down,
 * tell nothing new. So the back-off grows once per failed probe.
 */
void sy_upstream_mark_down(struct sy_wserver *s, const struct sy_upstream_conf *uc,
                           uint64_t started, uint64_t now)
{
    s->failed_at = now;
    if (started < s->down_until || !uc->down_time_ms)
        return;
    uint32_t b = s->backoff_ms ? s->backoff_ms : UP_BACKOFF_FIRST_MS / 2;
    b = b > uc->down_time_ms / 2 ? uc->down_time_ms : b * 2;
    s->backoff_ms = b;
    s->down_until = now + b;
    sy_counter_add(&s->stat->marked_down, 1);
    sy_counter_set(&s->stat->down, 1);
    sy_log_warn("upstream", "server %s of upstream %s marked down for %u ms", s->rt->conf->name,
                uc->name, b);
}

/* A connection to the server succeeded: it is back in rotation at once. */
void sy_upstream_mark_up(struct sy_wserver *s, const struct sy_upstream_conf *uc)
{
    if (!s->backoff_ms)
        return;
    s->backoff_ms = 0;
    s->down_until = 0;
    sy_counter_set(&s->stat->down, 0);
    sy_log_info("upstream", "server %s of upstream %s is back", s->rt->conf->name, uc->name);
}

static void idle_event(struct sy_io *io, uint32_t events)
{
    struct sy_upconn *u = SY_CONTAINER_OF(io, struct sy_upconn, io);
    if (u->dead)
        return;
    if (u->owner) {
        sy_conn_upstream_event(u, events);
        return;
    }
    /* Idle: any readability means the server closed it or sent garbage. */
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLERR | EPOLLHUP))
        sy_upconn_close(u);
}

/* Lazy: the timer is armed at release and left alone while the connection is in use. */
static void idle_timeout(struct sy_timer *t)
{
    struct sy_upconn *u = SY_CONTAINER_OF(t, struct sy_upconn, timer);
    if (u->owner || u->dead)
        return;
    uint64_t now = sy_loop_now(u->w->loop);
    if (now < u->idle_since + UP_IDLE_MS) {
        sy_timer_set(u->w->loop, t, u->idle_since + UP_IDLE_MS);
        return;
    }
    sy_upconn_close(u);
}

struct sy_upconn *sy_upconn_take_idle(struct sy_wserver *s)
{
    while (!sy_list_empty(&s->idle)) {
        struct sy_upconn *u = SY_CONTAINER_OF(s->idle.next, struct sy_upconn, link);
        sy_list_remove(&u->link);
        s->nidle--;
        u->reused = 1;
        u->io.first = 0;
        return u;
    }
    return NULL;
}

struct sy_upconn *sy_upconn_connect(struct sy_worker *w, struct sy_wserver *s, int *err)
{
    struct sockaddr_storage addrs[SY_MAX_ADDRS];
    uint32_t n = sy_server_addrs(s->rt, addrs, SY_MAX_ADDRS);
    if (!n) {
        *err = EHOSTUNREACH;
        return NULL;
    }
    struct sockaddr_storage *sa = &addrs[s->addr_rr++ % n];
    socklen_t salen = sa->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                                : sizeof(struct sockaddr_in);
    int fd = socket(sa->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        *err = errno;
        return NULL;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, (struct sockaddr *)sa, salen) < 0 && errno != EINPROGRESS) {
        *err = errno;
        close(fd);
        return NULL;
    }
    struct sy_upconn *u = sy_calloc(1, sizeof(*u));
    u->io.fd = fd;
    u->io.cb = idle_event;
    u->w = w;
    u->srv = s;
    u->timer.cb = idle_timeout;
    sy_list_init(&u->link);
    char ip[INET6_ADDRSTRLEN] = "?";
    uint16_t port = 0;
    if (sa->ss_family == AF_INET6) {
        struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &a6->sin6_addr, ip, sizeof(ip));
        port = ntohs(a6->sin6_port);
        snprintf(u->addr, sizeof(u->addr), "[%s]:%u", ip, port);
    } else {
        struct sockaddr_in *a4 = (struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &a4->sin_addr, ip, sizeof(ip));
        port = ntohs(a4->sin_port);
        snprintf(u->addr, sizeof(u->addr), "%s:%u", ip, port);
    }
    if (sy_loop_add(w->loop, &u->io) < 0) {
        *err = errno;
        close(fd);
        sy_free(u);
        return NULL;
    }
    return u;
}

void sy_upconn_close(struct sy_upconn *u)
{
    if (u->dead)
        return;
    u->dead = 1;
    if (!u->owner && sy_list_linked(&u->link)) {
        sy_list_remove(&u->link);
        u->srv->nidle--;
    }
    sy_timer_cancel(u->w->loop, &u->timer);
    sy_loop_del(u->w->loop, &u->io);
    close(u->io.fd);
    if (u->buf) {
        sy_worker_buf_put(u->w, u->buf);
        u->buf = NULL;
    }
    u->owner = NULL;
    /* Freed at the end of the loop iteration: events of this batch may still name it. */
    sy_list_init(&u->link);
    sy_list_insert_tail(&u->w->closed_up, &u->link);
}

void sy_upconn_release(struct sy_upconn *u, int reusable, uint32_t keep)
{
    u->owner = NULL;
    if (!reusable || u->eof || u->off != u->len || u->srv->nidle >= keep) {
        sy_upconn_close(u);
        return;
    }
    if (u->buf) {
        sy_worker_buf_put(u->w, u->buf);
        u->buf = NULL;
        u->off = u->len = 0;
    }
    /* Bytes or a close from the server while pooled must be seen before a request takes it. */
    u->io.first = 1;
    sy_list_insert_head(&u->srv->idle, &u->link);
    u->srv->nidle++;
    u->idle_since = sy_loop_now(u->w->loop);
    sy_timer_arm(u->w->loop, &u->timer, u->idle_since + UP_IDLE_MS);
}

void sy_upstream_release_idle(struct sy_wserver *s)
{
    while (!sy_list_empty(&s->idle)) {
        struct sy_upconn *u = SY_CONTAINER_OF(s->idle.next, struct sy_upconn, link);
        sy_upconn_close(u);
    }
}

void sy_upconn_reap(struct sy_worker *w)
{
    while (!sy_list_empty(&w->closed_up)) {
        struct sy_upconn *u = SY_CONTAINER_OF(w->closed_up.next, struct sy_upconn, link);
        sy_list_remove(&u->link);
        sy_free(u);
    }
}
