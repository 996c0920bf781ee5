/*
 * loop_uring.c: the io_uring backend of the event loop (readiness model).
 *
 * Every registered socket has one multishot IORING_OP_POLL_ADD for
 * EPOLLIN|EPOLLOUT|EPOLLRDHUP. Without IORING_POLL_ADD_LEVEL such a poll is
 * edge-triggered the way epoll's EPOLLET is: a completion is posted on each
 * wake-up of the socket's wait queue that finds the socket ready, with the
 * readiness of that moment, and when it is armed on a socket that is already
 * ready. So the owners' `readable`/`writable` rules are those of the epoll
 * backend, unchanged. A multishot poll may end (a completion without
 * IORING_CQE_F_MORE: cancelled, out of memory, CQ overflow); it is armed
 * again at once, and arming reports the current readiness, so no edge is
 * lost. Listening sockets get a one-shot poll that is re-armed after each
 * completion while the listener is enabled (level-triggered, as under epoll).
 *
 * The wait is one io_uring_enter per iteration: it submits what the
 * iteration queued (new polls, removals) and waits for completions until the
 * earliest deadline of the timer heap. The ring is made with
 * IORING_SETUP_SINGLE_ISSUER|IORING_SETUP_DEFER_TASKRUN (completions are run
 * in that enter, on the worker thread, not by interrupting it) and
 * IORING_SETUP_R_DISABLED: it is created on the main thread and enabled by the
 * worker that owns it, which becomes its only submitter.
 *
 * A completion names a slot (index and generation in user_data), not the
 * owner's address: sy__uring_del() empties the slot at once, so completions
 * still on their way for a deleted descriptor are dropped whatever became of
 * its owner, and the slot is reused only after the poll's last completion
 * arrived. The freeing rule of the owners (closed objects freed at the end
 * of the iteration) is kept as well.
 */
#include <errno.h>
#include <liburing.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/log.h"
#include "event/loop_int.h"

#define SQ_ENTRIES 1024
#define CQ_ENTRIES 8192
#define MAX_EVENTS 256
#define SOCK_EVENTS (EPOLLIN | EPOLLOUT | EPOLLRDHUP)

/* 16 bytes per registered socket: the only memory an idle connection adds to user space. */
struct slot {
    union {
        struct sy_io *io;      /* in use: NULL once deleted (the poll may still be armed) */
        uint32_t next_free;    /* free: the free list, index + 1 */
    };
    uint32_t gen;              /* bumped at each reuse: stale completions are dropped */
    unsigned armed : 1;        /* a poll request is in the kernel (or queued) */
    unsigned listener : 1;     /* one-shot poll, re-armed while enabled */
    unsigned enabled : 1;
    unsigned used : 1;         /* not on the free list */
};

_Static_assert(sizeof(struct slot) == 16, "a slot per registered socket stays 16 bytes");

struct sy_uring {
    struct io_uring ring;
    int enabled;               /* the worker enabled the ring (R_DISABLED until then) */
    struct slot *slots;
    uint32_t nslots, capslots;
    uint32_t free_head;        /* index + 1, 0: none */
};

struct ev {
    uint64_t ud;
    int32_t res;
    uint32_t flags;
};

static inline uint64_t slot_ud(const struct sy_uring *ur, const struct slot *s)
{
    return (uint64_t)s->gen << 32 | (uint64_t)(s - ur->slots + 1);
}

static struct slot *slot_of(struct sy_uring *ur, uint64_t ud)
{
    uint32_t idx = (uint32_t)ud;
    if (!idx || idx > ur->nslots)
        return NULL;
    struct slot *s = &ur->slots[idx - 1];
    return s->used && s->gen == (uint32_t)(ud >> 32) ? s : NULL;
}

static struct slot *slot_new(struct sy_uring *ur)
{
    struct slot *s;
    if (ur->free_head) {
        s = &ur->slots[ur->free_head - 1];
        ur->free_head = s->next_free;
    } else {
        if (ur->nslots == ur->capslots) {
            ur->capslots = ur->capslots ? ur->capslots * 2 : 256;
            ur->slots = sy_realloc(ur->slots, ur->capslots * sizeof(*ur->slots));
        }
        s = &ur->slots[ur->nslots++];
        s->gen = 0;
    }
    uint32_t gen = s->gen + 1;
    memset(s, 0, sizeof(*s));
    s->gen = gen;
    s->used = 1;
    return s;
}

static void slot_free(struct sy_uring *ur, struct slot *s)
{
    s->used = 0;
    s->gen++;
    s->next_free = ur->free_head;
    ur->free_head = (uint32_t)(s - ur->slots) + 1;
}

/* A submission entry; when the queue is full, what is queued is submitted first. */
static struct io_uring_sqe *get_sqe(struct sy_uring *ur)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&ur->ring);
    if (!sqe) {
        io_uring_submit(&ur->ring);
        sqe = io_uring_get_sqe(&ur->ring);
        if (!sqe) {
            sy_log_error("loop", "io_uring: submission queue full");
            abort();
        }
    }
    return sqe;
}

static void arm(struct sy_uring *ur, struct slot *s)
{
    struct io_uring_sqe *sqe = get_sqe(ur);
    if (s->listener)
        io_uring_prep_poll_add(sqe, s->io->fd, EPOLLIN);
    else
        io_uring_prep_poll_multishot(sqe, s->io->fd, SOCK_EVENTS);
    io_uring_sqe_set_data64(sqe, slot_ud(ur, s));
    s->armed = 1;
}

/*
 * Ends the slot's poll. Not IORING_OP_POLL_REMOVE: it gives up with -EALREADY
 * when the poll's completion work is pending, which under DEFER_TASKRUN is
 * the usual state of a busy socket at submission time, and the poll (with
 * its reference to the socket) would stay. A cancellation marks the poll and
 * always ends it.
 */
static void disarm(struct sy_uring *ur, struct slot *s)
{
    struct io_uring_sqe *sqe = get_sqe(ur);
    io_uring_prep_cancel64(sqe, slot_ud(ur, s), 0);
    io_uring_sqe_set_data64(sqe, 0);
    sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
}

/* IORING_REGISTER_ENABLE_RINGS (Debian's liburing 2.3 does not export io_uring_enable_rings). */
static int enable_rings(struct io_uring *ring)
{
    long rc = syscall(__NR_io_uring_register, ring->ring_fd, IORING_REGISTER_ENABLE_RINGS, NULL, 0);
    return rc < 0 ? -errno : 0;
}

static int setup(struct io_uring *ring, unsigned extra)
{
    struct io_uring_params p;
    memset(&p, 0, sizeof(p));
    p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_CQSIZE |
              IORING_SETUP_SUBMIT_ALL | extra;
    p.cq_entries = CQ_ENTRIES;
    return io_uring_queue_init_params(SQ_ENTRIES, ring, &p);
}

struct sy_uring *sy__uring_new(const char **why)
{
    struct sy_uring *ur = sy_calloc(1, sizeof(*ur));
    int rc = setup(&ur->ring, IORING_SETUP_R_DISABLED);
    if (rc < 0) {
        if (why)
            *why = strerror(-rc);
        sy_free(ur);
        return NULL;
    }
    return ur;
}

void sy__uring_free(struct sy_uring *ur)
{
    if (!ur)
        return;
    io_uring_queue_exit(&ur->ring);
    sy_free(ur->slots);
    sy_free(ur);
}

/*
 * Whether io_uring works here, with the three system calls the backend uses
 * (a seccomp profile may refuse any of them): a ring is set up, enabled
 * (io_uring_register) and runs one no-op (io_uring_enter). 0 or -errno.
 */
int sy_loop_uring_probe(void)
{
    struct io_uring ring;
    int rc = setup(&ring, IORING_SETUP_R_DISABLED);
    if (rc < 0)
        return rc;
    rc = enable_rings(&ring);
    if (rc >= 0) {
        struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
        io_uring_prep_nop(sqe);
        struct io_uring_cqe *cqe;
        rc = io_uring_submit_and_wait(&ring, 1);
        if (rc >= 0 && (rc = io_uring_peek_cqe(&ring, &cqe)) == 0)
            io_uring_cqe_seen(&ring, cqe);
    }
    io_uring_queue_exit(&ring);
    return rc < 0 ? rc : 0;
}

int sy__uring_add(struct sy_uring *ur, struct sy_io *io, int listener)
{
    struct slot *s = slot_new(ur);
    s->io = io;
    s->listener = listener ? 1 : 0;
    s->enabled = 1;
    io->_slot = (uint32_t)(s - ur->slots) + 1;
    arm(ur, s);
    return 0;
}

int sy__uring_listener_enable(struct sy_uring *ur, struct sy_io *io, int on)
{
    if (!io->_slot)
        return -1;
    struct slot *s = &ur->slots[io->_slot - 1];
    if (on == (int)s->enabled)
        return 0;
    s->enabled = on ? 1 : 0;
    if (on && !s->armed)
        arm(ur, s);
    else if (!on && s->armed)
        disarm(ur, s); /* a completion already on its way is dropped: disabled */
    return 0;
}

void sy__uring_del(struct sy_uring *ur, struct sy_io *io)
{
    if (!io->_slot)
        return;
    struct slot *s = &ur->slots[io->_slot - 1];
    io->_slot = 0;
    s->io = NULL;
    if (!s->armed) {
        slot_free(ur, s);
        return;
    }
    disarm(ur, s); /* the slot is freed by the poll's last completion */
    /* The poll holds a reference to the socket: a listener being closed must let go of it
     * now, not at the next wait (its port would keep taking connections until then). */
    if (s->listener && ur->enabled)
        io_uring_submit_and_get_events(&ur->ring);
}

static void handle(struct sy_uring *ur, const struct ev *e)
{
    struct slot *s = slot_of(ur, e->ud);
    if (!s)
        return; /* a removal's error, or a slot already reused */
    if (!(e->flags & IORING_CQE_F_MORE))
        s->armed = 0;
    if (!s->io) {
        if (!s->armed)
            slot_free(ur, s);
        return;
    }
    if (s->listener && !s->enabled)
        return;
    uint32_t events;
    if (e->res >= 0) {
        events = (uint32_t)e->res;
    } else if (e->res == -ECANCELED) {
        events = 0;
    } else {
        sy_log_warn("loop", "io_uring poll on fd %d: %s", s->io->fd, strerror(-e->res));
        events = EPOLLERR;
    }
    if (!s->armed)
        arm(ur, s); /* ended multishot, or the listener's one-shot: its next completion */
    if (events)
        s->io->cb(s->io, events);
}

void sy__uring_run(struct sy_loop *l)
{
    struct sy_uring *ur = l->ur;
    struct ev evs[MAX_EVENTS];
    if (!ur->enabled) {
        int rc = enable_rings(&ur->ring);
        if (rc < 0) {
            sy_log_error("loop", "io_uring: cannot enable the ring: %s", strerror(-rc));
            return;
        }
        ur->enabled = 1;
    }
    while (!l->stop) {
        int timeout = sy__loop_timeout(l);
        int rc;
        if (timeout == 0) {
            rc = io_uring_submit_and_get_events(&ur->ring);
        } else if (timeout < 0) {
            rc = io_uring_submit_and_wait(&ur->ring, 1);
        } else {
            struct __kernel_timespec ts = {.tv_sec = timeout / 1000,
                                           .tv_nsec = (long long)(timeout % 1000) * 1000000};
            struct io_uring_cqe *cqe;
            rc = io_uring_submit_and_wait_timeout(&ur->ring, &cqe, 1, &ts, NULL);
        }
        if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) {
            sy_log_error("loop", "io_uring_enter: %s", strerror(-rc));
            break;
        }
        int n = 0;
        unsigned head;
        struct io_uring_cqe *cqe;
        io_uring_for_each_cqe(&ur->ring, head, cqe)
        {
            if (n == MAX_EVENTS)
                break;
            evs[n++] = (struct ev){cqe->user_data, cqe->res, cqe->flags};
        }
        io_uring_cq_advance(&ur->ring, (unsigned)n);
        sy_loop_update_time(l);
        l->dispatching = 1;
        /* Two passes, as under epoll: sockets marked `first` before the others. */
        int later = 0;
        for (int i = 0; i < n; i++) {
            struct slot *s = slot_of(ur, evs[i].ud);
            if (s && s->io && s->io->first)
                handle(ur, &evs[i]);
            else
                evs[later++] = evs[i];
        }
        for (int i = 0; i < later; i++)
            handle(ur, &evs[i]);
        sy__loop_run_timers(l);
        l->dispatching = 0;
        if (l->idle_cb)
            l->idle_cb(l, l->idle_arg);
    }
}
