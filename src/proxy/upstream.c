/*
 * upstream.c: the balancing members of an upstream (one per address of each
 * configured server, kept in step with DNS), choosing one, connecting, and
 * the per-member pools of idle keep-alive connections. Worker-thread only.
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

uint32_t sy_server_addrs(struct sy_server_rt *rt, union sy_addr *out, uint32_t max, unsigned *seq)
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
        if (atomic_load_explicit(&rt->seq, memory_order_relaxed) == s1) {
            *seq = s1;
            return n;
        }
    }
}

/* ---- members: one per address, kept in step with the resolver ---- */

static void addr_text(const union sy_addr *a, char *out, size_t cap)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    if (a->sa.sa_family == AF_INET6) {
        inet_ntop(AF_INET6, &a->in6.sin6_addr, ip, sizeof(ip));
        snprintf(out, cap, "[%s]:%u", ip, ntohs(a->in6.sin6_port));
    } else {
        inet_ntop(AF_INET, &a->in.sin_addr, ip, sizeof(ip));
        snprintf(out, cap, "%s:%u", ip, ntohs(a->in.sin_port));
    }
}

static struct sy_wserver *member_new(struct sy_worker *w, const struct sy_upstream_conf *uc,
                                     struct sy_server_rt *rt, const union sy_addr *a)
{
    struct sy_wserver *m = sy_calloc(1, sizeof(*m));
    m->rt = rt;
    m->addr = *a;
    addr_text(a, m->text, sizeof(m->text));
    sy_list_init(&m->idle);
    /* A new member starts in rotation. */
    m->stat = sy_metrics_upsrv(&w->metrics, uc->name, rt->conf->name, m->text);
    sy_counter_add(&m->stat->refs, 1);
    sy_counter_set(&m->stat->down, 0);
    return m;
}

static void member_free(struct sy_wserver *m)
{
    sy_counter_add(&m->stat->refs, (uint64_t)-1);
    sy_free(m);
}

static void release_idle(struct sy_wserver *s)
{
    while (!sy_list_empty(&s->idle)) {
        struct sy_upconn *u = SY_CONTAINER_OF(s->idle.next, struct sy_upconn, link);
        sy_upconn_close(u);
    }
}

/* Out of the balance: idle connections close now; the member goes with its last connection. */
static void member_retire(struct sy_wserver *m)
{
    release_idle(m);
    if (!m->nconns)
        member_free(m);
    else
        m->retired = 1;
}

/* Brings a server's members in line with its published addresses. Returns 1 if they changed. */
static int sync_name(struct sy_worker *w, const struct sy_upstream_conf *uc, struct sy_wname *nm)
{
    union sy_addr a[SY_MAX_ADDRS];
    unsigned seq;
    uint32_t n = sy_server_addrs(nm->rt, a, SY_MAX_ADDRS, &seq);
    if (seq == nm->seq)
        return 0;
    struct sy_wserver **next = sy_calloc(n ? n : 1, sizeof(*next));
    for (uint32_t i = 0; i < n; i++) {
        for (uint32_t k = 0; k < nm->nmembers && !next[i]; k++) {
            if (nm->members[k] && !memcmp(&nm->members[k]->addr, &a[i], sizeof(a[i]))) {
                next[i] = nm->members[k];
                nm->members[k] = NULL;
            }
        }
        if (!next[i]) {
            next[i] = member_new(w, uc, nm->rt, &a[i]);
            sy_log_debug("upstream", "upstream %s server %s: address %s added", uc->name,
                         nm->rt->conf->name, next[i]->text);
        }
    }
    for (uint32_t k = 0; k < nm->nmembers; k++) {
        if (!nm->members[k])
            continue;
        sy_log_debug("upstream", "upstream %s server %s: address %s retired", uc->name,
                     nm->rt->conf->name, nm->members[k]->text);
        member_retire(nm->members[k]);
    }
    sy_free(nm->members);
    nm->members = next;
    nm->nmembers = n;
    nm->seq = seq;
    return 1;
}

/* Off the request path in practice: only when the resolver published a change. */
static void sync_upstream(struct sy_worker *w, struct sy_wupstream *wu, unsigned gen)
{
    const struct sy_upstream_conf *uc = wu->rt->conf;
    int changed = 0;
    wu->gen = gen;
    for (size_t i = 0; i < uc->nservers; i++)
        changed |= sync_name(w, uc, &wu->names[i]);
    if (!changed)
        return;
    uint32_t total = 0;
    for (size_t i = 0; i < uc->nservers; i++)
        total += wu->names[i].nmembers;
    if (total > wu->members_cap) {
        wu->members_cap = total;
        wu->members = sy_realloc(wu->members, total * sizeof(*wu->members));
    }
    wu->nmembers = 0;
    for (size_t i = 0; i < uc->nservers; i++) {
        for (uint32_t k = 0; k < wu->names[i].nmembers; k++) {
            struct sy_wserver *m = wu->names[i].members[k];
            m->slot = wu->nmembers;
            wu->members[wu->nmembers++] = m;
        }
    }
}

void sy_wupstream_init(struct sy_worker *w, struct sy_wupstream *wu, struct sy_upstream_rt *rt)
{
    const struct sy_upstream_conf *uc = rt->conf;
    wu->rt = rt;
    wu->names = sy_calloc(uc->nservers, sizeof(*wu->names));
    for (size_t i = 0; i < uc->nservers; i++) {
        wu->names[i].rt = &rt->servers[i];
        wu->names[i].seq = 1; /* odd: never a published version */
    }
    wu->rr = w->id; /* workers start their rotation at different members */
    wu->errs = sy_metrics_uperr(&w->metrics, uc->name);
    sync_upstream(w, wu, atomic_load_explicit(&rt->gen, memory_order_acquire));
}

void sy_wupstream_refresh(struct sy_worker *w, struct sy_wupstream *wu)
{
    unsigned gen = atomic_load_explicit(&wu->rt->gen, memory_order_acquire);
    if (gen != wu->gen)
        sync_upstream(w, wu, gen);
}

void sy_wupstream_release_idle(struct sy_wupstream *wu)
{
    for (uint32_t i = 0; i < wu->nmembers; i++)
        release_idle(wu->members[i]);
}

void sy_wupstream_free(struct sy_wupstream *wu)
{
    for (size_t i = 0; i < wu->rt->conf->nservers; i++) {
        for (uint32_t k = 0; k < wu->names[i].nmembers; k++)
            member_retire(wu->names[i].members[k]);
        sy_free(wu->names[i].members);
    }
    sy_free(wu->names);
    sy_free(wu->members);
}

/* ---- choosing ---- */

/*
 * Chooses a member (an address) not yet tried by this request: among those
 * in rotation by the balance rule, or, when every one left is backed off,
 * the one that failed least recently. A pool never refuses to try (nginx
 * keeps the only server of a group; Envoy routes to all hosts when too many
 * are ejected). The cost per request is one atomic load unless the resolver
 * published new addresses.
 */
struct sy_wserver *sy_upstream_pick(struct sy_exchange *x, struct sy_wupstream *wup, uint64_t now)
{
    const struct sy_upstream_conf *uc = wup->rt->conf;
    sy_wupstream_refresh(x->w, wup);
    uint32_t n = wup->nmembers;
    struct sy_wserver *best = NULL, *down = NULL;
    uint32_t start = wup->rr++;
    for (uint32_t k = 0; k < n; k++) {
        struct sy_wserver *s = wup->members[(start + k) % n];
        if (x->tried & sy_upstream_tried_bit(s))
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
    sy_log_warn("upstream", "server %s (%s) of upstream %s marked down for %u ms",
                s->rt->conf->name, s->text, uc->name, b);
}

/* A connection to the server succeeded: it is back in rotation at once. */
void sy_upstream_mark_up(struct sy_wserver *s, const struct sy_upstream_conf *uc)
{
    if (!s->backoff_ms)
        return;
    s->backoff_ms = 0;
    s->down_until = 0;
    sy_counter_set(&s->stat->down, 0);
    sy_log_info("upstream", "server %s (%s) of upstream %s is back", s->rt->conf->name, s->text,
                uc->name);
}

static void idle_event(struct sy_io *io, uint32_t events)
{
    struct sy_upconn *u = SY_CONTAINER_OF(io, struct sy_upconn, io);
    if (u->dead)
        return;
    if (u->owner) {
        sy_exchange_upstream_event(u, events);
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
    const union sy_addr *sa = &s->addr;
    socklen_t salen = sa->sa.sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                                   : sizeof(struct sockaddr_in);
    int fd = socket(sa->sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        *err = errno;
        return NULL;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, &sa->sa, salen) < 0 && errno != EINPROGRESS) {
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
    memcpy(u->addr, s->text, sizeof(u->addr));
    if (sy_loop_add(w->loop, &u->io) < 0) {
        *err = errno;
        close(fd);
        sy_free(u);
        return NULL;
    }
    s->nconns++;
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
    sy_loop_close(u->w->loop, &u->io);
    if (u->buf) {
        sy_worker_buf_put(u->w, u->buf);
        u->buf = NULL;
    }
    u->owner = NULL;
    /* Freed at the end of the loop iteration: events of this batch may still name it. */
    sy_list_init(&u->link);
    sy_list_insert_tail(&u->w->closed_up, &u->link);
    /* The last connection of an address that left DNS takes the member with it. */
    if (!--u->srv->nconns && u->srv->retired)
        member_free(u->srv);
}

void sy_upconn_release(struct sy_upconn *u, int reusable, uint32_t keep)
{
    u->owner = NULL;
    if (!reusable || u->eof || u->off != u->len || u->srv->nidle >= keep || u->srv->retired) {
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

void sy_upconn_reap(struct sy_worker *w)
{
    while (!sy_list_empty(&w->closed_up)) {
        struct sy_upconn *u = SY_CONTAINER_OF(w->closed_up.next, struct sy_upconn, link);
        sy_list_remove(&u->link);
        sy_free(u);
    }
}
