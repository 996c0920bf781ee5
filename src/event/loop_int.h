/*
 * loop_int.h: the loop's state, shared by its two backends (loop.c: epoll,
 * loop_uring.c: io_uring). Nothing outside src/event includes this, but the
 * unit tests (for their hooks).
 */
#ifndef SY_EVENT_LOOP_INT_H
#define SY_EVENT_LOOP_INT_H

#include <stdatomic.h>
#include <stddef.h>

#include "event/loop.h"

struct sy_uring;

struct sy_loop {
    int epfd;                  /* epoll backend; -1 under io_uring */
    struct sy_uring *ur;       /* io_uring backend; NULL under epoll */
    int stop;
    int dispatching;           /* inside an event batch or its timers */
    uint64_t now;
    struct sy_timer **heap;
    size_t nheap, capheap;
    struct sy_io wake_io;
    atomic_int wake_pending;
    sy_loop_wake_cb wake_cb;
    void *wake_arg;
    sy_loop_idle_cb idle_cb;
    void *idle_arg;
};

/* loop.c: the part of an iteration that does not depend on the backend. */
void sy__loop_wake_read(struct sy_io *io, uint32_t events);
void sy__loop_run_timers(struct sy_loop *l);

/* Acceptors (loop.c): the accept4(2) loop of the epoll backend and of io_uring's fallback. */
#define SY_ACCEPTOR_OF(iop) ((struct sy_acceptor *)((char *)(iop) - offsetof(struct sy_acceptor, io)))
int sy__accept_some(struct sy_acceptor *a, int max, int all);
void sy__accept_ready(struct sy_io *io, uint32_t events);

/* Milliseconds until the earliest deadline (capped at 60 s), 0 if due, -1 without one. */
static inline int sy__loop_timeout(const struct sy_loop *l)
{
    if (!l->nheap)
        return -1;
    uint64_t at = l->heap[0]->at;
    return at <= l->now ? 0 : (int)(at - l->now > 60000 ? 60000 : at - l->now);
}

/* loop_uring.c */
struct sy_uring *sy__uring_new(const char **why);
void sy__uring_free(struct sy_uring *ur);
int sy__uring_add(struct sy_uring *ur, struct sy_io *io, int listener);
int sy__uring_listener_enable(struct sy_uring *ur, struct sy_io *io, int on);
void sy__uring_del(struct sy_uring *ur, struct sy_io *io);
int sy__uring_add_acceptor(struct sy_uring *ur, struct sy_acceptor *a);
void sy__uring_acceptor_close(struct sy_uring *ur, struct sy_acceptor *a);
/* Tests: acceptors use the poll and accept4(2), as on a kernel without multishot accept. */
extern int sy__uring_no_multishot_accept;
void sy__uring_run(struct sy_loop *l);
int sy__cio_start(struct sy_uring *ur, struct sy_io *io);
void sy__cio_close(struct sy_uring *ur, struct sy_io *io);
void sy__cio_shutdown_wr(struct sy_uring *ur, struct sy_io *io);
ssize_t sy__cio_read(struct sy_uring *ur, struct sy_io *io, char *buf, size_t len, int *drained);
ssize_t sy__cio_writev(struct sy_uring *ur, struct sy_io *io, const struct iovec *iov, int iovcnt);

#endif
