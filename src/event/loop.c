#include "event/loop.h"

#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/log.h"
#include "event/loop_int.h"

#define MAX_EVENTS 256

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void sy__loop_wake_read(struct sy_io *io, uint32_t events)
{
    (void)events;
    struct sy_loop *loop = (struct sy_loop *)((char *)io - offsetof(struct sy_loop, wake_io));
    uint64_t v;
    while (read(io->fd, &v, sizeof(v)) == sizeof(v))
        ;
    atomic_store(&loop->wake_pending, 0);
    if (loop->wake_cb)
        loop->wake_cb(loop, loop->wake_arg);
}

static const char *const backend_names[] = {"auto", "epoll", "io_uring"};

const char *sy_loop_backend_name(enum sy_loop_backend b)
{
    return (unsigned)b < 3 ? backend_names[b] : "?";
}

int sy_loop_backend_parse(const char *s, enum sy_loop_backend *out)
{
    for (int i = 0; i < 3; i++) {
        if (strcmp(s, backend_names[i]) == 0) {
            *out = (enum sy_loop_backend)i;
            return 0;
        }
    }
    return -1;
}

struct sy_loop *sy_loop_new(enum sy_loop_backend b, const char **why)
{
    struct sy_loop *loop = sy_calloc(1, sizeof(*loop));
    loop->epfd = -1;
    if (b != SY_LOOP_EPOLL) {
        loop->ur = sy__uring_new(why);
        if (!loop->ur && b == SY_LOOP_URING) {
            sy_free(loop);
            return NULL;
        }
    }
    if (!loop->ur && (loop->epfd = epoll_create1(EPOLL_CLOEXEC)) < 0) {
        sy_free(loop);
        return NULL;
    }
    loop->wake_io.fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    loop->wake_io.cb = sy__loop_wake_read;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &loop->wake_io};
    if (loop->wake_io.fd < 0 ||
        (loop->ur ? sy__uring_add(loop->ur, &loop->wake_io, 0)
                  : epoll_ctl(loop->epfd, EPOLL_CTL_ADD, loop->wake_io.fd, &ev)) < 0) {
        if (loop->epfd >= 0)
            close(loop->epfd);
        sy__uring_free(loop->ur);
        if (loop->wake_io.fd >= 0)
            close(loop->wake_io.fd);
        sy_free(loop);
        return NULL;
    }
    loop->now = mono_ms();
    return loop;
}

enum sy_loop_backend sy_loop_backend(const struct sy_loop *loop)
{
    return loop->ur ? SY_LOOP_URING : SY_LOOP_EPOLL;
}

void sy_loop_free(struct sy_loop *loop)
{
    if (!loop)
        return;
    sy__uring_free(loop->ur);
    close(loop->wake_io.fd);
    if (loop->epfd >= 0)
        close(loop->epfd);
    sy_free(loop->heap);
    sy_free(loop);
}

int sy_loop_add(struct sy_loop *loop, struct sy_io *io)
{
    if (loop->ur)
        return sy__uring_add(loop->ur, io, 0);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = io};
    return epoll_ctl(loop->epfd, EPOLL_CTL_ADD, io->fd, &ev);
}

int sy_loop_add_listener(struct sy_loop *loop, struct sy_io *io)
{
    if (loop->ur)
        return sy__uring_add(loop->ur, io, 1);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = io};
    return epoll_ctl(loop->epfd, EPOLL_CTL_ADD, io->fd, &ev);
}

int sy_loop_listener_enable(struct sy_loop *loop, struct sy_io *io, int on)
{
    if (loop->ur)
        return sy__uring_listener_enable(loop->ur, io, on);
    struct epoll_event ev = {.events = on ? EPOLLIN : 0, .data.ptr = io};
    return epoll_ctl(loop->epfd, EPOLL_CTL_MOD, io->fd, &ev);
}

/*
 * Takes up to max connections from the acceptor's socket with accept4(2) and
 * hands each to the callback. Stops at EAGAIN, at an error the callback must
 * hear of, when the callback paused the acceptor (unless `all`: the drain
 * takes the whole queue) or closed it. Returns 1 when it stopped at max.
 */
int sy__accept_some(struct sy_acceptor *a, int max, int all)
{
    for (int i = 0; i < max; i++) {
        if (a->io.fd < 0 || a->_off == 2 || (a->_off && !all))
            return 0;
        struct sockaddr_storage peer;
        socklen_t plen = sizeof(peer);
        int fd = accept4(a->io.fd, (struct sockaddr *)&peer, &plen, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 0;
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            a->cb(a, -errno, NULL, 0);
            return 0;
        }
        a->cb(a, fd, (const struct sockaddr *)&peer, plen);
    }
    return 1;
}

/* The listener is readable (level-triggered): a batch, the rest at the next wait. */
void sy__accept_ready(struct sy_io *io, uint32_t events)
{
    (void)events;
    sy__accept_some(SY_ACCEPTOR_OF(io), 64, 0);
}

int sy_loop_add_acceptor(struct sy_loop *loop, struct sy_acceptor *a)
{
    a->io.cb = sy__accept_ready;
    a->_off = 0;
    if (loop->ur)
        return sy__uring_add_acceptor(loop->ur, a);
    return sy_loop_add_listener(loop, &a->io);
}

int sy_loop_acceptor_enable(struct sy_loop *loop, struct sy_acceptor *a, int on)
{
    if (a->_off == 2)
        return -1;
    a->_off = !on;
    return sy_loop_listener_enable(loop, &a->io, on);
}

void sy_loop_acceptor_close(struct sy_loop *loop, struct sy_acceptor *a)
{
    if (a->io.fd < 0)
        return;
    /* io_uring: the multishot accept is cancelled first (submitted now), so that nothing
     * competes with the accept4 loop below and the close really closes the port. */
    if (loop->ur)
        sy__uring_acceptor_close(loop->ur, a);
    else
        epoll_ctl(loop->epfd, EPOLL_CTL_DEL, a->io.fd, NULL);
    sy__accept_some(a, 4096, 1);
    close(a->io.fd);
    a->io.fd = -1;
}

void sy_loop_del(struct sy_loop *loop, struct sy_io *io)
{
    if (io->cb == sy__accept_ready)
        SY_ACCEPTOR_OF(io)->_off = 2; /* an accept4 loop under way stops at once */
    if (loop->ur) {
        sy__uring_del(loop->ur, io);
        return;
    }
    epoll_ctl(loop->epfd, EPOLL_CTL_DEL, io->fd, NULL);
}

void sy_loop_close(struct sy_loop *loop, struct sy_io *io)
{
    if (io->_cio) {
        sy__cio_close(loop->ur, io);
        return;
    }
    sy_loop_del(loop, io);
    close(io->fd);
}

void sy_loop_shutdown_wr(struct sy_loop *loop, struct sy_io *io)
{
    if (io->_cio)
        sy__cio_shutdown_wr(loop->ur, io);
    else
        shutdown(io->fd, SHUT_WR);
}

int sy_loop_cio_start(struct sy_loop *loop, struct sy_io *io)
{
    return loop->ur ? sy__cio_start(loop->ur, io) : -1;
}

ssize_t sy_loop_cio_read(struct sy_loop *loop, struct sy_io *io, char *buf, size_t len, int *drained)
{
    return sy__cio_read(loop->ur, io, buf, len, drained);
}

ssize_t sy_loop_cio_writev(struct sy_loop *loop, struct sy_io *io, const struct iovec *iov, int iovcnt)
{
    return sy__cio_writev(loop->ur, io, iov, iovcnt);
}

uint64_t sy_loop_now(const struct sy_loop *loop)
{
    return loop->now;
}

uint64_t sy_loop_update_time(struct sy_loop *loop)
{
    loop->now = mono_ms();
    return loop->now;
}

/* Binary min-heap on `at`; t->_idx is the 1-based slot. */
static void heap_swap(struct sy_loop *l, size_t a, size_t b)
{
    struct sy_timer *t = l->heap[a];
    l->heap[a] = l->heap[b];
    l->heap[b] = t;
    l->heap[a]->_idx = a + 1;
    l->heap[b]->_idx = b + 1;
}

static void heap_up(struct sy_loop *l, size_t i)
{
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (l->heap[p]->at <= l->heap[i]->at)
            break;
        heap_swap(l, p, i);
        i = p;
    }
}

static void heap_down(struct sy_loop *l, size_t i)
{
    for (;;) {
        size_t a = 2 * i + 1, b = a + 1, m = i;
        if (a < l->nheap && l->heap[a]->at < l->heap[m]->at)
            m = a;
        if (b < l->nheap && l->heap[b]->at < l->heap[m]->at)
            m = b;
        if (m == i)
            break;
        heap_swap(l, i, m);
        i = m;
    }
}

void sy_timer_cancel(struct sy_loop *l, struct sy_timer *t)
{
    if (!t->_idx)
        return;
    size_t i = t->_idx - 1;
    t->_idx = 0;
    l->nheap--;
    if (i != l->nheap) {
        l->heap[i] = l->heap[l->nheap];
        l->heap[i]->_idx = i + 1;
        heap_down(l, i);
        heap_up(l, i);
    }
}

void sy_timer_set(struct sy_loop *l, struct sy_timer *t, uint64_t at)
{
    if (t->_idx) {
        size_t i = t->_idx - 1;
        uint64_t old = t->at;
        t->at = at;
        if (at < old)
            heap_up(l, i);
        else
            heap_down(l, i);
        return;
    }
    if (l->nheap == l->capheap) {
        l->capheap = l->capheap ? l->capheap * 2 : 256;
        l->heap = sy_realloc(l->heap, l->capheap * sizeof(*l->heap));
    }
    t->at = at;
    l->heap[l->nheap] = t;
    t->_idx = ++l->nheap;
    heap_up(l, l->nheap - 1);
}

void sy_timer_arm(struct sy_loop *l, struct sy_timer *t, uint64_t at)
{
    if (t->_idx && t->at <= at)
        return;
    sy_timer_set(l, t, at);
}

void sy_loop_set_idle(struct sy_loop *loop, sy_loop_idle_cb cb, void *arg)
{
    loop->idle_cb = cb;
    loop->idle_arg = arg;
}

void sy_loop_set_wake(struct sy_loop *loop, sy_loop_wake_cb cb, void *arg)
{
    loop->wake_cb = cb;
    loop->wake_arg = arg;
}

void sy_loop_wake(struct sy_loop *loop)
{
    if (atomic_exchange(&loop->wake_pending, 1))
        return;
    uint64_t one = 1;
    ssize_t r = write(loop->wake_io.fd, &one, sizeof(one));
    (void)r;
}

int sy_loop_dispatching(const struct sy_loop *loop)
{
    return loop->dispatching;
}

void sy_loop_stop(struct sy_loop *loop)
{
    loop->stop = 1;
}

void sy__loop_run_timers(struct sy_loop *l)
{
    while (l->nheap && l->heap[0]->at <= l->now) {
        struct sy_timer *t = l->heap[0];
        sy_timer_cancel(l, t);
        t->cb(t);
    }
}

void sy_loop_run(struct sy_loop *l)
{
    if (l->ur) {
        sy__uring_run(l);
        return;
    }
    struct epoll_event evs[MAX_EVENTS];
    while (!l->stop) {
        int timeout = sy__loop_timeout(l);
        int n = epoll_wait(l->epfd, evs, MAX_EVENTS, timeout);
        if (n < 0 && errno != EINTR) {
            sy_log_error("loop", "epoll_wait: %s", strerror(errno));
            break;
        }
        sy_loop_update_time(l);
        l->dispatching = 1;
        /* Two passes: sockets marked `first` (pooled idle upstream connections) are handled
         * before anything in the same batch can pick them up for a new request. */
        int later = 0;
        for (int i = 0; i < n; i++) {
            struct sy_io *io = evs[i].data.ptr;
            if (io->first)
                io->cb(io, evs[i].events);
            else
                evs[later++] = evs[i];
        }
        for (int i = 0; i < later; i++) {
            struct sy_io *io = evs[i].data.ptr;
            io->cb(io, evs[i].events);
        }
        sy__loop_run_timers(l);
        l->dispatching = 0;
        if (l->idle_cb)
            l->idle_cb(l, l->idle_arg);
    }
}
