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
 * completion while the listener is enabled (level-triggered, as under epoll);
 * acceptors a multishot accept instead (see accept_done()).
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
 *
 * Plain TCP sockets may switch to completion I/O (sy__cio_start): a
 * multishot receive into the worker's provided-buffer ring and sends queued
 * from a per-socket buffer, submitted with the same one enter per iteration
 * (docs/internals/event-loop.md, "The completion model").
 */
#include <errno.h>
#include <liburing.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
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
    unsigned quiet : 1;        /* completion I/O: the poll is removed and not armed again */
    unsigned acceptor : 1;     /* a multishot accept (or, accept_poll, a poll + accept4) */
    unsigned accept_poll : 1;  /* no multishot accept here: the listener's poll and accept4 */
    unsigned accepted : 1;     /* the accept request gave a connection (so it is supported) */
    unsigned closed : 1;       /* sy_loop_acceptor_close: fds on their way still go to the owner */
};

_Static_assert(sizeof(struct slot) == 16, "a slot per registered socket stays 16 bytes");

/* Completion I/O (see the comment above sy__cio_start). */
#define CIO_BUFS 256           /* provided buffers per worker at most: 4 MiB of address space */
#define CIO_BUFS_GROW 32       /* put in the ring at first, and added each time it runs low */
#define CIO_BUFS_LOW 8         /* free buffers below which the ring grows */
#define CIO_BUF_SIZE 16384
#define CIO_BGID 1
#define CIO_RECV_CAP 65536     /* received bytes queued per socket before its receive is stopped */
#define CIO_RECV_BUFS 4        /* and received buffers (small segments fill a buffer each) */
#define CIO_SEND_CAP 65536     /* bytes accepted and not yet sent per socket */
#define CIO_SBUF_KEEP 16       /* idle send buffers kept per worker */
#define CIO_TRIM_MS 1000       /* quiet time after which the buffers' pages go back to the system */
#define CIO_TAG (1ULL << 63)   /* user_data of a completion I/O request: cio address | tag | op */
#define CIO_RECV 1ULL
#define CIO_SEND 2ULL

/* 56 bytes per socket under completion I/O, from the loop's pool (no allocator header). */
struct sy_cio {
    struct sy_io *io;          /* NULL once its owner closed it */
    struct sy_cio *next_flush; /* on the flush list: a send to queue at the next enter; free: the pool */
    char *sbuf;                /* bytes to send: [0, slen), of which [0, sinflight) are in the kernel */
    int fd;
    uint32_t queued;           /* bytes received and not read */
    uint32_t slen, sinflight;
    int16_t qhead, qtail;      /* received buffers, oldest first (buffer ids), -1: none */
    uint16_t qoff;             /* bytes of the oldest buffer already read */
    uint16_t nqueued;          /* buffers queued */
    uint16_t err;              /* a failed receive or send: positive errno */
    unsigned used : 1;         /* taken from the pool */
    unsigned recv_armed : 1;   /* the multishot receive is in the kernel (or queued) */
    unsigned recv_cancel : 1;  /* and its cancellation too */
    unsigned eof : 1;
    unsigned on_flush : 1;
    unsigned nobufs : 1;       /* the receive found no buffer: one read(2), then it is armed again */
    unsigned want_write : 1;   /* a write was refused for the cap: EPOLLOUT when there is room */
    unsigned shut_wr : 1;      /* shutdown(SHUT_WR) once the bytes are sent */
    unsigned closing : 1;      /* the owner closed it: the loop closes fd when all is done */
};

_Static_assert(sizeof(struct sy_cio) == 56, "completion I/O state stays 56 bytes per socket");
_Static_assert(CIO_BUFS <= INT16_MAX && CIO_BUF_SIZE <= UINT16_MAX, "buffer ids and offsets fit");

#define CIO_CHUNK 64           /* states allocated together */

struct cio_chunk {
    struct cio_chunk *next;
    struct sy_cio c[CIO_CHUNK];
};

struct sy_uring {
    struct io_uring ring;
    int enabled;               /* the worker enabled the ring (R_DISABLED until then) */
    int accept_poll;           /* a multishot accept was refused: acceptors poll and accept4 */
    /* completion I/O: the provided-buffer ring and its buffers, NULL when unavailable */
    struct io_uring_buf_ring *br;
    char *bufs;
    int32_t *bnext;            /* per buffer: the next in its socket's queue */
    uint32_t *blen;            /* per buffer: bytes received into it */
    struct sy_cio *flush_head;
    int nbufs;                 /* buffers put in the ring so far (ids 0..nbufs-1) */
    int nfree;                 /* of which in the ring, as far as the completions seen tell */
    int filled;                /* a buffer received bytes in this iteration */
    int dirty;                 /* buffers received bytes since the last trim */
    uint64_t last_fill;        /* loop time of the last iteration that filled one */
    char *sfree[CIO_SBUF_KEEP];
    int nsfree;
    struct cio_chunk *chunks;  /* the pool of completion I/O states; freed with the loop */
    struct sy_cio *cfree;
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
    if (s->acceptor && !s->accept_poll)
        io_uring_prep_multishot_accept(sqe, s->io->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    else if (s->listener)
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
    /* Connections an acceptor took and nobody saw: closed, not leaked. */
    unsigned head;
    struct io_uring_cqe *cqe;
    io_uring_for_each_cqe(&ur->ring, head, cqe)
    {
        struct slot *s = (cqe->user_data & CIO_TAG) ? NULL : slot_of(ur, cqe->user_data);
        if (s && s->acceptor && !s->accept_poll && cqe->res >= 0)
            close(cqe->res);
    }
    io_uring_queue_exit(&ur->ring);
    if (ur->br) {
        munmap(ur->br, CIO_BUFS * sizeof(struct io_uring_buf));
        munmap(ur->bufs, (size_t)CIO_BUFS * CIO_BUF_SIZE);
        sy_free(ur->bnext);
        sy_free(ur->blen);
    }
    for (int i = 0; i < ur->nsfree; i++)
        sy_free(ur->sfree[i]);
    while (ur->chunks) {
        struct cio_chunk *k = ur->chunks;
        ur->chunks = k->next;
        for (int i = 0; i < CIO_CHUNK; i++) {
            if (k->c[i].used && k->c[i].closing)
                close(k->c[i].fd);
            if (k->c[i].used)
                sy_free(k->c[i].sbuf);
        }
        sy_free(k);
    }
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

int sy__uring_no_multishot_accept;

int sy__uring_add_acceptor(struct sy_uring *ur, struct sy_acceptor *a)
{
    struct slot *s = slot_new(ur);
    s->io = &a->io;
    s->listener = 1;
    s->acceptor = 1;
    s->accept_poll = ur->accept_poll || sy__uring_no_multishot_accept;
    s->enabled = 1;
    a->io._slot = (uint32_t)(s - ur->slots) + 1;
    arm(ur, s);
    return 0;
}

/*
 * The accept request is cancelled now, not at the next wait: it holds a
 * reference to the socket, which the owner is about to close. Connections it
 * took before (completions already posted) still reach the owner; the slot is
 * freed by the last completion.
 */
void sy__uring_acceptor_close(struct sy_uring *ur, struct sy_acceptor *a)
{
    if (!a->io._slot)
        return;
    struct slot *s = &ur->slots[a->io._slot - 1];
    a->io._slot = 0;
    s->enabled = 0;
    s->closed = 1;
    if (!s->armed) {
        slot_free(ur, s);
        return;
    }
    disarm(ur, s);
    if (ur->enabled)
        io_uring_submit_and_get_events(&ur->ring);
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

/*
 * An acceptor's completion. A multishot accept gives one connection per
 * completion and ends (no IORING_CQE_F_MORE) when cancelled or on an error
 * (EMFILE...): it is armed again after the callback, only if the acceptor is
 * still enabled, so a callback that pauses for a back-off is not flooded. A
 * connection reaches the owner even when paused or closed meanwhile; after
 * sy_loop_del it is closed. -EINVAL before any connection: the kernel has no
 * multishot accept, and the acceptors fall back to the poll and accept4(2).
 */
static void accept_done(struct sy_uring *ur, struct slot *s, const struct ev *e)
{
    struct sy_acceptor *a = s->io ? SY_ACCEPTOR_OF(s->io) : NULL;
    if (s->accept_poll) {
        if (a && s->enabled && e->res >= 0)
            sy__accept_some(a, 64, 0);
    } else if (e->res >= 0) {
        s->accepted = 1;
        if (a)
            a->cb(a, e->res, NULL, 0);
        else
            close(e->res);
    } else if (e->res == -EINVAL && !s->accepted && !s->armed) {
        if (!ur->accept_poll)
            sy_log_info("loop", "io_uring: no multishot accept on this kernel; poll and accept4");
        ur->accept_poll = 1;
        s->accept_poll = 1;
    } else if (a && !s->closed && e->res != -ECANCELED && e->res != -EINTR &&
               e->res != -ECONNABORTED && e->res != -EAGAIN) {
        a->cb(a, e->res, NULL, 0);
    }
    s = slot_of(ur, e->ud); /* the callback may have paused, closed or deleted it */
    if (!s || s->armed)
        return;
    if (!s->io || s->closed)
        slot_free(ur, s);
    else if (s->enabled)
        arm(ur, s);
}

static void handle(struct sy_uring *ur, const struct ev *e)
{
    struct slot *s = slot_of(ur, e->ud);
    if (!s)
        return; /* a removal's error, or a slot already reused */
    if (!(e->flags & IORING_CQE_F_MORE))
        s->armed = 0;
    if (s->acceptor) {
        accept_done(ur, s, e);
        return;
    }
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
    if (!s->armed && !s->quiet)
        arm(ur, s); /* ended multishot, or the listener's one-shot: its next completion */
    if (s->io->_cio)
        events &= ~(uint32_t)(EPOLLIN | EPOLLOUT); /* the receive and send completions say it */
    if (events)
        s->io->cb(s->io, events);
}

/* ---- completion I/O ---- */

/*
 * Puts the next CIO_BUFS_GROW buffers of the mapping in the ring. The ring
 * hands its buffers out in turn, so every buffer in it becomes resident as
 * it cycles: it starts small and grows only when it runs low (many sockets
 * receiving at once, or owners not reading), up to CIO_BUFS. A worker serving
 * small requests keeps 512 KiB resident, not 4 MiB.
 */
static void cio_grow(struct sy_uring *ur)
{
    int n = CIO_BUFS - ur->nbufs < CIO_BUFS_GROW ? CIO_BUFS - ur->nbufs : CIO_BUFS_GROW;
    for (int i = 0; i < n; i++) {
        int bid = ur->nbufs + i;
        io_uring_buf_ring_add(ur->br, ur->bufs + (size_t)bid * CIO_BUF_SIZE, CIO_BUF_SIZE,
                              (unsigned short)bid, io_uring_buf_ring_mask(CIO_BUFS), i);
    }
    io_uring_buf_ring_advance(ur->br, n);
    ur->nbufs += n;
    ur->nfree += n;
}

/*
 * The provided-buffer ring, registered by the worker once its ring is
 * enabled (a registration names the submitter). Without it (an older
 * kernel) sockets keep the readiness model.
 */
static void cio_setup(struct sy_uring *ur)
{
    size_t rsz = CIO_BUFS * sizeof(struct io_uring_buf);
    void *br = mmap(NULL, rsz, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    if (br == MAP_FAILED)
        return;
    void *bufs = mmap(NULL, (size_t)CIO_BUFS * CIO_BUF_SIZE, PROT_READ | PROT_WRITE,
                      MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    if (bufs == MAP_FAILED) {
        munmap(br, rsz);
        return;
    }
    struct io_uring_buf_reg reg;
    memset(&reg, 0, sizeof(reg));
    reg.ring_addr = (uint64_t)(uintptr_t)br;
    reg.ring_entries = CIO_BUFS;
    reg.bgid = CIO_BGID;
    int rc = io_uring_register_buf_ring(&ur->ring, &reg, 0);
    if (rc < 0) {
        sy_log_warn("loop", "io_uring: no provided-buffer ring (%s): readiness I/O only",
                    strerror(-rc));
        munmap(br, rsz);
        munmap(bufs, (size_t)CIO_BUFS * CIO_BUF_SIZE);
        return;
    }
    ur->br = br;
    ur->bufs = bufs;
    ur->bnext = sy_calloc(CIO_BUFS, sizeof(*ur->bnext));
    ur->blen = sy_calloc(CIO_BUFS, sizeof(*ur->blen));
    io_uring_buf_ring_init(ur->br);
    cio_grow(ur);
}

static void buf_put(struct sy_uring *ur, int32_t bid)
{
    io_uring_buf_ring_add(ur->br, ur->bufs + (size_t)bid * CIO_BUF_SIZE, CIO_BUF_SIZE,
                          (unsigned short)bid, io_uring_buf_ring_mask(CIO_BUFS), 0);
    io_uring_buf_ring_advance(ur->br, 1);
    ur->nfree++;
}

static void cio_arm_recv(struct sy_uring *ur, struct sy_cio *c)
{
    struct io_uring_sqe *sqe = get_sqe(ur);
    io_uring_prep_recv_multishot(sqe, c->fd, NULL, 0, 0);
    /* No attempt before the socket is readable: a receive picks its buffer first, so on a dry
     * ring it would end with -ENOBUFS at once, bytes or not. Polled first, -ENOBUFS means bytes
     * (or the end) are there. */
    sqe->ioprio |= IORING_RECVSEND_POLL_FIRST;
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = CIO_BGID;
    io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)c | CIO_TAG | CIO_RECV);
    c->recv_armed = 1;
    c->recv_cancel = 0;
}

static void cio_cancel_recv(struct sy_uring *ur, struct sy_cio *c)
{
    if (!c->recv_armed || c->recv_cancel)
        return;
    struct io_uring_sqe *sqe = get_sqe(ur);
    io_uring_prep_cancel64(sqe, (uint64_t)(uintptr_t)c | CIO_TAG | CIO_RECV, 0);
    io_uring_sqe_set_data64(sqe, 0);
    sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
    c->recv_cancel = 1;
}

/* Receives again if it stopped and may go on. */
static void cio_maybe_rearm(struct sy_uring *ur, struct sy_cio *c)
{
    if (!c->recv_armed && !c->nobufs && !c->closing && !c->eof && !c->err &&
        c->queued < CIO_RECV_CAP && c->nqueued < CIO_RECV_BUFS)
        cio_arm_recv(ur, c);
}

/* One send in the kernel per socket at a time: its bytes go out in order. */
static void cio_send(struct sy_uring *ur, struct sy_cio *c)
{
    struct io_uring_sqe *sqe = get_sqe(ur);
    io_uring_prep_send(sqe, c->fd, c->sbuf, c->slen, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)c | CIO_TAG | CIO_SEND);
    c->sinflight = c->slen;
}

static void cio_flush_later(struct sy_uring *ur, struct sy_cio *c)
{
    if (c->on_flush)
        return;
    c->on_flush = 1;
    c->next_flush = ur->flush_head;
    ur->flush_head = c;
}

/* The owner is gone and no request names c any more: close the socket, forget c. */
static void cio_maybe_free(struct sy_uring *ur, struct sy_cio *c)
{
    if (!c->closing || c->recv_armed || c->sinflight || c->on_flush)
        return;
    close(c->fd);
    if (c->sbuf) {
        if (ur->nsfree < CIO_SBUF_KEEP)
            ur->sfree[ur->nsfree++] = c->sbuf;
        else
            sy_free(c->sbuf);
    }
    memset(c, 0, sizeof(*c));
    c->next_flush = ur->cfree;
    ur->cfree = c;
}

static void cio_drop_queue(struct sy_uring *ur, struct sy_cio *c)
{
    while (c->qhead >= 0) {
        int32_t bid = c->qhead;
        c->qhead = (int16_t)ur->bnext[bid];
        buf_put(ur, bid);
    }
    c->qtail = -1;
    c->qoff = c->queued = c->nqueued = 0;
}

static void cio_send_buf_release(struct sy_uring *ur, struct sy_cio *c)
{
    if (!c->sbuf || c->slen)
        return;
    if (ur->nsfree < CIO_SBUF_KEEP)
        ur->sfree[ur->nsfree++] = c->sbuf;
    else
        sy_free(c->sbuf);
    c->sbuf = NULL;
}

/*
 * Completion I/O for a plain TCP socket already registered with
 * sy__uring_add(): its poll is cancelled (the receive and send completions
 * say what it said). The state lives apart from the owner, on the loop's
 * list, and is freed only after the socket's last request completed.
 */
int sy__cio_start(struct sy_uring *ur, struct sy_io *io)
{
    if (!ur->br || io->_cio)
        return io->_cio ? 0 : -1;
    if (!ur->cfree) {
        struct cio_chunk *k = sy_calloc(1, sizeof(*k));
        k->next = ur->chunks;
        ur->chunks = k;
        for (int i = CIO_CHUNK - 1; i >= 0; i--) {
            k->c[i].next_flush = ur->cfree;
            ur->cfree = &k->c[i];
        }
    }
    struct sy_cio *c = ur->cfree;
    ur->cfree = c->next_flush;
    memset(c, 0, sizeof(*c));
    c->used = 1;
    c->io = io;
    c->fd = io->fd;
    c->qhead = c->qtail = -1;
    io->_cio = c;
    cio_arm_recv(ur, c);
    /* The receive reports the end and the errors, the sends theirs: the poll would only add a
     * completion per arrival and per acknowledgement. */
    if (io->_slot) {
        struct slot *sl = &ur->slots[io->_slot - 1];
        sl->quiet = 1;
        if (sl->armed)
            disarm(ur, sl);
    }
    return 0;
}

/*
 * Bytes already accepted go out as far as the socket takes them at once,
 * the same as close(2) after write(2) under epoll: a send still waiting for
 * room is cancelled, so a peer that stopped reading cannot hold the socket.
 */
void sy__cio_close(struct sy_uring *ur, struct sy_io *io)
{
    struct sy_cio *c = io->_cio;
    sy__uring_del(ur, io);
    io->_cio = NULL;
    c->io = NULL;
    c->closing = 1;
    cio_cancel_recv(ur, c);
    cio_drop_queue(ur, c);
    if (c->slen && !c->sinflight && !c->err)
        cio_send(ur, c);
    if (c->sinflight) {
        struct io_uring_sqe *sqe = get_sqe(ur);
        io_uring_prep_cancel64(sqe, (uint64_t)(uintptr_t)c | CIO_TAG | CIO_SEND, 0);
        io_uring_sqe_set_data64(sqe, 0);
        sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
    }
    cio_maybe_free(ur, c);
}

void sy__cio_shutdown_wr(struct sy_uring *ur, struct sy_io *io)
{
    struct sy_cio *c = io->_cio;
    if (c->slen || c->sinflight) {
        c->shut_wr = 1;
        return;
    }
    (void)ur;
    shutdown(c->fd, SHUT_WR);
}

/*
 * The ring had no buffer when bytes arrived (every buffer queued on sockets
 * whose owners are not reading: clients that do not take their answers): one
 * read(2), as under the readiness model, then the receive is armed again. If
 * bytes are left, or arrive later, it completes at the next enter, with a
 * buffer if one is free by then, else with -ENOBUFS again, which is a
 * readiness event. So a connection never waits for buffers others hold, and
 * a receive is always armed while the owner is not told to read.
 */
static size_t cio_read_direct(struct sy_cio *c, char *buf, size_t len)
{
    c->nobufs = 0;
    for (;;) {
        ssize_t n = recv(c->fd, buf, len, 0);
        if (n > 0)
            return (size_t)n;
        if (n < 0 && errno == EINTR)
            continue;
        if (n == 0)
            c->eof = 1;
        else if (errno != EAGAIN && errno != EWOULDBLOCK)
            c->err = (uint16_t)errno;
        return 0;
    }
}

ssize_t sy__cio_read(struct sy_uring *ur, struct sy_io *io, char *buf, size_t len, int *drained)
{
    struct sy_cio *c = io->_cio;
    size_t got = 0;
    while (got < len && c->qhead >= 0) {
        int32_t bid = c->qhead;
        size_t avail = ur->blen[bid] - c->qoff;
        size_t n = avail < len - got ? avail : len - got;
        memcpy(buf + got, ur->bufs + (size_t)bid * CIO_BUF_SIZE + c->qoff, n);
        got += n;
        c->qoff += (uint32_t)n;
        c->queued -= (uint32_t)n;
        if (c->qoff == ur->blen[bid]) {
            c->qhead = (int16_t)ur->bnext[bid];
            if (c->qhead < 0)
                c->qtail = -1;
            c->qoff = 0;
            c->nqueued--;
            buf_put(ur, bid);
        }
    }
    if (got < len && c->qhead < 0 && c->nobufs && !c->recv_armed)
        got += cio_read_direct(c, buf + got, len - got);
    cio_maybe_rearm(ur, c);
    if (c->qhead < 0 && !c->nobufs && !c->eof && !c->err)
        *drained = 1;
    if (got)
        return (ssize_t)got;
    if (c->err) {
        errno = c->err;
        return -2;
    }
    return c->eof ? 0 : -1;
}

ssize_t sy__cio_writev(struct sy_uring *ur, struct sy_io *io, const struct iovec *iov, int iovcnt)
{
    struct sy_cio *c = io->_cio;
    if (c->err) {
        errno = c->err;
        return -2;
    }
    if (c->shut_wr) {
        errno = EPIPE;
        return -2;
    }
    size_t room = CIO_SEND_CAP - c->slen;
    if (!room) {
        c->want_write = 1;
        return -1;
    }
    if (!c->sbuf)
        c->sbuf = ur->nsfree ? ur->sfree[--ur->nsfree] : sy_malloc(CIO_SEND_CAP);
    size_t took = 0;
    for (int i = 0; i < iovcnt && took < room; i++) {
        size_t n = iov[i].iov_len < room - took ? iov[i].iov_len : room - took;
        memcpy(c->sbuf + c->slen + took, iov[i].iov_base, n);
        took += n;
    }
    if (!took) {
        cio_send_buf_release(ur, c);
        return 0;
    }
    c->slen += (uint32_t)took;
    if (!c->sinflight)
        cio_flush_later(ur, c);
    return (ssize_t)took;
}

/* Before the enter: a send per socket with bytes waiting and none in the kernel. */
static void cio_flush(struct sy_uring *ur)
{
    struct sy_cio *c = ur->flush_head;
    ur->flush_head = NULL;
    while (c) {
        struct sy_cio *next = c->next_flush;
        c->on_flush = 0;
        if (c->slen && !c->sinflight && !c->err) {
            cio_send(ur, c);
        } else {
            cio_maybe_free(ur, c);
        }
        c = next;
    }
}

/*
 * A second of quiet after receiving: the pages of the buffers go back to the
 * system (MADV_DONTNEED: they read as zeros when next touched), and so do the
 * idle send buffers, so a worker holding only idle connections holds no I/O
 * memory, whatever burst came before. Only when no buffer is queued on a
 * socket and no completion is waiting: under DEFER_TASKRUN the kernel fills
 * buffers only inside this thread's io_uring_enter, so none is being written.
 */
static void cio_trim(struct sy_uring *ur, uint64_t now)
{
    if (ur->nfree != ur->nbufs || io_uring_cq_ready(&ur->ring)) {
        ur->last_fill = now; /* some are held (an owner not reading): look again later */
        return;
    }
    madvise(ur->bufs, (size_t)ur->nbufs * CIO_BUF_SIZE, MADV_DONTNEED);
    while (ur->nsfree)
        sy_free(ur->sfree[--ur->nsfree]);
    malloc_trim(0);
    ur->dirty = 0;
}

static void cio_recv_done(struct sy_uring *ur, struct sy_cio *c, const struct ev *e)
{
    uint32_t events = 0;
    if (!(e->flags & IORING_CQE_F_MORE))
        c->recv_armed = 0;
    if (e->res > 0 && (e->flags & IORING_CQE_F_BUFFER)) {
        int32_t bid = (int32_t)(e->flags >> IORING_CQE_BUFFER_SHIFT);
        ur->filled = 1;
        if (--ur->nfree < CIO_BUFS_LOW && ur->nbufs < CIO_BUFS)
            cio_grow(ur);
        if (c->closing) {
            buf_put(ur, bid);
        } else {
            ur->blen[bid] = (uint32_t)e->res;
            ur->bnext[bid] = -1;
            if (c->qtail >= 0)
                ur->bnext[c->qtail] = bid;
            else
                c->qhead = (int16_t)bid;
            c->qtail = (int16_t)bid;
            c->queued += (uint32_t)e->res;
            c->nqueued++;
            events = EPOLLIN;
            if (c->queued >= CIO_RECV_CAP || c->nqueued >= CIO_RECV_BUFS)
                cio_cancel_recv(ur, c); /* taken up again as it is read */
        }
    } else if (e->res == 0) {
        c->eof = 1;
        events = EPOLLIN;
    } else if (e->res == -ENOBUFS) {
        if (ur->nbufs < CIO_BUFS)
            cio_grow(ur); /* for the next receives; these bytes are read with read(2) */
        if (!c->recv_armed) {
            c->nobufs = 1; /* bytes are waiting: the owner reads them with read(2) */
            events = EPOLLIN;
        }
    } else if (e->res < 0 && e->res != -ECANCELED) {
        if (!c->err)
            c->err = (uint16_t)-e->res;
        events = EPOLLIN | EPOLLERR;
    }
    if (c->closing) {
        cio_maybe_free(ur, c);
        return;
    }
    if (!c->recv_armed)
        cio_maybe_rearm(ur, c);
    if (events)
        c->io->cb(c->io, events);
}

static void cio_send_done(struct sy_uring *ur, struct sy_cio *c, const struct ev *e)
{
    uint32_t events = 0;
    uint32_t sent = c->sinflight;
    c->sinflight = 0;
    if (c->closing) {
        c->slen = 0; /* what the socket did not take at once is dropped, as by close(2) */
        cio_maybe_free(ur, c);
        return;
    }
    if (e->res < 0) {
        if (!c->err)
            c->err = (uint16_t)-e->res;
        c->slen = 0;
        events = EPOLLERR | EPOLLOUT;
    } else {
        uint32_t n = (uint32_t)e->res < sent ? (uint32_t)e->res : sent;
        memmove(c->sbuf, c->sbuf + n, c->slen - n);
        c->slen -= n;
        if (c->slen)
            cio_flush_later(ur, c); /* a short send, or bytes taken meanwhile */
    }
    if (!c->slen && !c->sinflight) {
        if (c->shut_wr && !c->err)
            shutdown(c->fd, SHUT_WR);
        c->shut_wr = 0;
        cio_send_buf_release(ur, c);
    }
    if (c->want_write && c->slen < CIO_SEND_CAP) {
        c->want_write = 0;
        events |= EPOLLOUT;
    }
    if (events)
        c->io->cb(c->io, events);
}

static void cio_handle(struct sy_uring *ur, const struct ev *e)
{
    struct sy_cio *c = (struct sy_cio *)(uintptr_t)(e->ud & ~(CIO_TAG | 3ULL));
    if ((e->ud & 3ULL) == CIO_RECV)
        cio_recv_done(ur, c, e);
    else
        cio_send_done(ur, c, e);
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
        /* The ring's descriptor registered with this thread: each enter skips the file table
         * lookup and its reference count (atomic in a threaded process). Optional. */
        io_uring_register_ring_fd(&ur->ring);
        cio_setup(ur);
    }
    while (!l->stop) {
        if (ur->flush_head)
            cio_flush(ur);
        int timeout = sy__loop_timeout(l);
        if (ur->filled) {
            ur->filled = 0;
            ur->dirty = 1;
            ur->last_fill = l->now;
        }
        if (ur->dirty) {
            if (l->now - ur->last_fill >= CIO_TRIM_MS) {
                cio_trim(ur, l->now);
            } else {
                int left = (int)(ur->last_fill + CIO_TRIM_MS - l->now);
                if (timeout < 0 || timeout > left)
                    timeout = left;
            }
        }
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
            if (evs[i].ud & CIO_TAG) {
                const struct sy_cio *c =
                    (const struct sy_cio *)(uintptr_t)(evs[i].ud & ~(CIO_TAG | 3ULL));
                if (c->io && c->io->first)
                    cio_handle(ur, &evs[i]);
                else
                    evs[later++] = evs[i];
                continue;
            }
            struct slot *s = slot_of(ur, evs[i].ud);
            if (s && s->io && s->io->first)
                handle(ur, &evs[i]);
            else
                evs[later++] = evs[i];
        }
        for (int i = 0; i < later; i++) {
            if (evs[i].ud & CIO_TAG)
                cio_handle(ur, &evs[i]);
            else
                handle(ur, &evs[i]);
        }
        sy__loop_run_timers(l);
        l->dispatching = 0;
        if (l->idle_cb)
            l->idle_cb(l, l->idle_arg);
    }
}
