/*
 * logq.c: bounded line rings emptied by writer threads (see logq.h).
 *
 * Why a writer thread rather than non-blocking writes from the workers:
 * - O_NONBLOCK set with fcntl() on fd 1 or 2 changes the open file
 *   description, which is shared with whoever else holds it (the parent
 *   shell, a terminal, other processes writing to the same pipe); they would
 *   start getting EAGAIN.
 * - Reopening /proc/self/fd/1 gives a private description, but only for
 *   pipes and ttys: it fails for sockets, needs /proc, is refused when the
 *   process runs as a user other than the pipe's creator (a container whose
 *   runtime created the pipe as root), and for a regular file it starts a new
 *   offset at 0 and overwrites what the file held.
 * - send(MSG_DONTWAIT) works for sockets only.
 * - A blocking write larger than PIPE_BUF from several workers may be split
 *   and interleaved with another worker's: the lines break.
 * A writer thread works the same for pipes, sockets, ttys and files, needs no
 * flag on a shared description, and is the only writer of its descriptor, so
 * lines never interleave. It may block as long as the reader pauses; only
 * the rings fill up meanwhile, and then lines are dropped whole.
 *
 * A ring is single-producer single-consumer: the producer advances head, the
 * writer advances tail (free-running byte counts, position = count % cap).
 * The producer publishes only whole lines, and the writer writes everything
 * up to the head it read before it turns to another ring, so output from
 * different rings meets at line boundaries.
 *
 * Waking the writer costs the producer a system call only when the writer is
 * idle (an eventfd write); a busy writer finds new lines on its next pass.
 */
#include "core/logq.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"

#define MAX_OUTPUTS 4
#define IDLE_POLL_MS 1000 /* a writer re-checks its rings this often even when not woken */

struct logq_out;

struct sy_logq_ring {
    char *buf;
    size_t cap;
    int fd;                       /* the descriptor its lines are meant for (1, 2, ...) */
    atomic_size_t head;           /* bytes published; producer writes */
    atomic_size_t tail;           /* bytes written out; writer writes */
    uint64_t dropped;             /* lines dropped; producer writes, anyone reads (relaxed) */
    struct logq_out *out;
    struct sy_logq_ring *next;    /* published with a release store */
};

struct logq_out {
    int fd;                       /* where the writer writes */
    int efd;                      /* eventfd: wakes an idle writer */
    int has_id;
    int is_pipe;                  /* a pipe or FIFO: writes of PIPE_BUF bytes are atomic */
    dev_t dev;
    ino_t ino;
    atomic_int idle;              /* the writer sleeps or is about to */
    _Atomic(struct sy_logq_ring *) rings;
    pthread_t thread;
};

static struct logq_out outs[MAX_OUTPUTS];
static struct {
    int fd;                       /* descriptor asked for */
    struct logq_out *out;         /* its writer (shared when two fds name one file) */
} fdmap[MAX_OUTPUTS];
static atomic_int nfdmap;
static atomic_int nouts;         /* outs[] entries published (release) */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static size_t pending(struct sy_logq_ring *r)
{
    return atomic_load_explicit(&r->head, memory_order_acquire) -
           atomic_load_explicit(&r->tail, memory_order_relaxed);
}

/* Points iov at bytes [from, from + n) of r: two pieces when they wrap around. Returns the count. */
static int ring_iov(const struct sy_logq_ring *r, size_t from, size_t n, struct iovec iov[2])
{
    size_t pos = from % r->cap;
    size_t first = n < r->cap - pos ? n : r->cap - pos;
    iov[0].iov_base = r->buf + pos;
    iov[0].iov_len = first;
    iov[1].iov_base = r->buf;
    iov[1].iov_len = n - first;
    return n > first ? 2 : 1;
}

/* Length of the whole lines at the start of [from, from + n) that fit in max bytes; when the
 * first line alone is longer, the length of that line. */
static size_t whole_lines(const struct sy_logq_ring *r, size_t from, size_t n, size_t max)
{
    struct iovec iov[2];
    int k = ring_iov(r, from, n < max ? n : max, iov);
    for (int i = k - 1; i >= 0; i--) {
        const char *nl = memrchr(iov[i].iov_base, '\n', iov[i].iov_len);
        if (nl)
            return (size_t)(nl - (const char *)iov[i].iov_base) + 1 + (i ? iov[0].iov_len : 0);
    }
    k = ring_iov(r, from, n, iov);
    for (int i = 0; i < k; i++) {
        const char *nl = memchr(iov[i].iov_base, '\n', iov[i].iov_len);
        if (nl)
            return (size_t)(nl - (const char *)iov[i].iov_base) + 1 + (i ? iov[0].iov_len : 0);
    }
    return n;
}

/* Writes everything r held when called. Blocks as long as the reader does.
 * Returns the bytes written or discarded. */
static size_t drain_ring(struct logq_out *o, struct sy_logq_ring *r)
{
    size_t head = atomic_load_explicit(&r->head, memory_order_acquire);
    size_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
    size_t moved = head - tail;
    while (tail != head) {
        size_t len = head - tail;
        /* Into a pipe, a write of at most PIPE_BUF bytes is atomic: it waits for room for all
         * of it. Writing whole lines that way, the pipe never holds half a line, even when the
         * process is killed while the reader pauses (only a line longer than PIPE_BUF goes in
         * pieces). Other outputs take everything at once. */
        if (o->is_pipe && len > PIPE_BUF)
            len = whole_lines(r, tail, len, PIPE_BUF);
        struct iovec iov[2];
        ssize_t n = writev(o->fd, iov, ring_iov(r, tail, len, iov));
        if (n > 0) {
            tail += (size_t)n;
            atomic_store_explicit(&r->tail, tail, memory_order_release);
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN) {
            /* Someone made the shared description non-blocking: wait, still on our own time. */
            struct pollfd p = {o->fd, POLLOUT, 0};
            poll(&p, 1, IDLE_POLL_MS);
            continue;
        }
        /* Reader gone or descriptor unusable (EPIPE, EBADF, ENOSPC...): nothing can take
         * these lines; discard them so producers keep room. */
        atomic_store_explicit(&r->tail, head, memory_order_release);
        break;
    }
    return moved;
}

static void *writer_main(void *arg)
{
    struct logq_out *o = arg;
    for (;;) {
        size_t moved = 0;
        for (struct sy_logq_ring *r = atomic_load_explicit(&o->rings, memory_order_acquire); r;
             r = r->next)
            moved += drain_ring(o, r);
        if (moved)
            continue;
        atomic_store(&o->idle, 1);
        atomic_thread_fence(memory_order_seq_cst);
        int more = 0;
        for (struct sy_logq_ring *r = atomic_load_explicit(&o->rings, memory_order_acquire); r;
             r = r->next)
            more |= pending(r) != 0;
        if (!more) {
            struct pollfd p = {o->efd, POLLIN, 0};
            poll(&p, 1, IDLE_POLL_MS);
            uint64_t v;
            if (read(o->efd, &v, sizeof(v)) < 0) {
                /* EAGAIN: woken by the timeout, nothing to clear */
            }
        }
        atomic_store(&o->idle, 0);
    }
    return NULL;
}

static void kick(struct logq_out *o)
{
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load_explicit(&o->idle, memory_order_relaxed) && atomic_exchange(&o->idle, 0)) {
        uint64_t one = 1;
        if (write(o->efd, &one, sizeof(one)) < 0) {
            /* the counter is saturated: the writer is being woken anyway */
        }
    }
}

static struct logq_out *find_out(int fd)
{
    int n = atomic_load_explicit(&nfdmap, memory_order_acquire);
    for (int i = 0; i < n; i++)
        if (fdmap[i].fd == fd)
            return fdmap[i].out;
    return NULL;
}

int sy_logq_open(int fd)
{
    pthread_mutex_lock(&lock);
    int rc = -1;
    int n = atomic_load_explicit(&nfdmap, memory_order_relaxed);
    if (find_out(fd)) {
        rc = 0;
        goto out;
    }
    if (n == MAX_OUTPUTS)
        goto out;
    struct stat st;
    int has_id = fstat(fd, &st) == 0;
    struct logq_out *o = NULL;
    int no = atomic_load_explicit(&nouts, memory_order_relaxed);
    for (int i = 0; i < no && has_id; i++)
        if (outs[i].has_id && outs[i].dev == st.st_dev && outs[i].ino == st.st_ino)
            o = &outs[i]; /* the same pipe, socket, tty or file: one writer keeps lines whole */
    if (!o) {
        o = &outs[no];
        o->fd = fd;
        o->has_id = has_id;
        if (has_id) {
            o->dev = st.st_dev;
            o->ino = st.st_ino;
            o->is_pipe = S_ISFIFO(st.st_mode);
        }
        o->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (o->efd < 0)
            goto out;
        if (pthread_create(&o->thread, NULL, writer_main, o) != 0) {
            close(o->efd);
            goto out;
        }
        atomic_store_explicit(&nouts, no + 1, memory_order_release);
    }
    fdmap[n].fd = fd;
    fdmap[n].out = o;
    atomic_store_explicit(&nfdmap, n + 1, memory_order_release);
    rc = 0;
out:
    pthread_mutex_unlock(&lock);
    return rc;
}

int sy_logq_start(void)
{
    return sy_logq_open(STDOUT_FILENO) < 0 || sy_logq_open(STDERR_FILENO) < 0 ? -1 : 0;
}

int sy_logq_running(int fd)
{
    return find_out(fd) != NULL;
}

struct sy_logq_ring *sy_logq_ring_new(int fd, size_t cap)
{
    struct logq_out *o = find_out(fd);
    if (!o || cap == 0)
        return NULL;
    struct sy_logq_ring *r = sy_calloc(1, sizeof(*r));
    r->buf = sy_malloc(cap);
    r->cap = cap;
    r->fd = fd;
    r->out = o;
    pthread_mutex_lock(&lock);
    r->next = atomic_load_explicit(&o->rings, memory_order_relaxed);
    atomic_store_explicit(&o->rings, r, memory_order_release);
    pthread_mutex_unlock(&lock);
    return r;
}

static uint64_t count_lines(const char *p, size_t n)
{
    uint64_t k = 0;
    for (const char *e = p + n; (p = memchr(p, '\n', (size_t)(e - p))) != NULL; p++)
        k++;
    return k;
}

size_t sy_logq_put(struct sy_logq_ring *r, const char *p, size_t n)
{
    size_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
    size_t room = r->cap - (head - atomic_load_explicit(&r->tail, memory_order_acquire));
    size_t take = n;
    if (take > room) {
        /* Keep the lines that fit entirely; a line never goes out in part. */
        const char *nl = room ? memrchr(p, '\n', room) : NULL;
        take = nl ? (size_t)(nl - p) + 1 : 0;
    }
    size_t lost = 0;
    if (take < n) {
        lost = count_lines(p + take, n - take);
        if (p[n - 1] != '\n')
            lost++;
        sy_logq_drop(r, lost);
    }
    if (take) {
        size_t pos = head % r->cap;
        size_t first = take < r->cap - pos ? take : r->cap - pos;
        memcpy(r->buf + pos, p, first);
        memcpy(r->buf, p + first, take - first);
        atomic_store_explicit(&r->head, head + take, memory_order_release);
        kick(r->out);
    }
    return lost;
}

void sy_logq_drop(struct sy_logq_ring *r, uint64_t n)
{
    __atomic_store_n(&r->dropped, __atomic_load_n(&r->dropped, __ATOMIC_RELAXED) + n,
                     __ATOMIC_RELAXED);
}

uint64_t sy_logq_dropped(int fd)
{
    uint64_t sum = 0;
    int no = atomic_load_explicit(&nouts, memory_order_acquire);
    for (int i = 0; i < no; i++)
        for (struct sy_logq_ring *r = atomic_load_explicit(&outs[i].rings, memory_order_acquire);
             r; r = r->next)
            if (r->fd == fd)
                sum += __atomic_load_n(&r->dropped, __ATOMIC_RELAXED);
    return sum;
}

int sy_logq_flush(unsigned timeout_ms)
{
    struct timespec t0, now;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        int busy = 0;
        int no = atomic_load_explicit(&nouts, memory_order_acquire);
        for (int i = 0; i < no; i++) {
            for (struct sy_logq_ring *r =
                     atomic_load_explicit(&outs[i].rings, memory_order_acquire);
                 r; r = r->next)
                busy |= pending(r) != 0;
            kick(&outs[i]);
        }
        if (!busy)
            return 0;
        clock_gettime(CLOCK_MONOTONIC, &now);
        uint64_t ms = (uint64_t)(now.tv_sec - t0.tv_sec) * 1000 +
                      (uint64_t)(now.tv_nsec / 1000000) - (uint64_t)(t0.tv_nsec / 1000000);
        if (ms >= timeout_ms)
            return -1;
        poll(NULL, 0, 5);
    }
}
