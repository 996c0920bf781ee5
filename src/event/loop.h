/*
 * loop.h: one event loop per worker thread with a deadline heap and a
 * cross-thread wake-up, on one of two backends: epoll (loop.c) or io_uring
 * (loop_uring.c), chosen when the loop is made.
 *
 * Every file descriptor is registered once for EPOLLIN|EPOLLOUT|EPOLLRDHUP
 * in edge-triggered mode and never re-armed: owners remember readiness
 * themselves (see struct sy_io) and act until EAGAIN. This keeps the number
 * of system calls per request at the minimum: no epoll_ctl churn. Under
 * io_uring the same edges come from multishot poll requests, and the events
 * handed to the callbacks are the same epoll masks.
 *
 * Everything here is used from the loop's own thread only, except
 * sy_loop_wake().
 */
#ifndef SY_EVENT_LOOP_H
#define SY_EVENT_LOOP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

struct iovec;
struct sy_loop;
struct sy_io;
struct sy_cio;

/* Called with the epoll event mask (EPOLLIN, EPOLLOUT, EPOLLERR, ...). */
typedef void (*sy_io_cb)(struct sy_io *io, uint32_t events);

struct sy_io {
    int fd;
    sy_io_cb cb;
    int first;                 /* handled before the other events of the same batch */
    uint32_t _slot;            /* io_uring backend: its registration, index + 1 */
    struct sy_cio *_cio;       /* io_uring backend: completion I/O state, owned by the loop */
};

struct sy_timer;
typedef void (*sy_timer_cb)(struct sy_timer *t);

/*
 * A deadline. Embedded in its owner. `at` is in loop milliseconds
 * (sy_loop_now()). Zero-initialised means "not scheduled".
 */
struct sy_timer {
    uint64_t at;
    size_t _idx;               /* position in the heap + 1; 0 when not queued */
    sy_timer_cb cb;
};

enum sy_loop_backend {
    SY_LOOP_AUTO = 0,          /* io_uring when the kernel and the sandbox allow it, else epoll */
    SY_LOOP_EPOLL,
    SY_LOOP_URING
};

/*
 * Makes a loop on backend b. NULL on failure; with SY_LOOP_URING, *why
 * (when not NULL) gets the reason io_uring was refused. SY_LOOP_AUTO falls
 * back to epoll without a word: the caller probes and logs once
 * (sy_loop_uring_probe). Any thread; the loop then runs on one thread only.
 */
struct sy_loop *sy_loop_new(enum sy_loop_backend b, const char **why);
/* The backend a loop runs on: SY_LOOP_EPOLL or SY_LOOP_URING. */
enum sy_loop_backend sy_loop_backend(const struct sy_loop *loop);
/* "auto", "epoll" or "io_uring". */
const char *sy_loop_backend_name(enum sy_loop_backend b);
/* Parses a backend name. Returns 0 or -1. */
int sy_loop_backend_parse(const char *s, enum sy_loop_backend *out);
/*
 * Whether io_uring works here with every system call the backend makes
 * (io_uring_setup, io_uring_register, io_uring_enter; container runtimes'
 * default seccomp profiles refuse them). Returns 0 or -errno.
 */
int sy_loop_uring_probe(void);
void sy_loop_free(struct sy_loop *loop);

/* Registers fd edge-triggered for read and write. Returns 0 or -1 (errno). */
int sy_loop_add(struct sy_loop *loop, struct sy_io *io);
/* Registers a listening socket (level-triggered read only, so accept back-off works). */
int sy_loop_add_listener(struct sy_loop *loop, struct sy_io *io);
/* Pauses or resumes a listener registered with sy_loop_add_listener. */
int sy_loop_listener_enable(struct sy_loop *loop, struct sy_io *io, int on);
void sy_loop_del(struct sy_loop *loop, struct sy_io *io);

/*
 * A listening socket whose connections the loop takes (accepts) for its
 * owner. The callback gets each new connection: fd >= 0 (non-blocking,
 * close-on-exec, now the callback's), with its address in peer when the
 * backend had it at no cost, else peer NULL; or fd = -errno when accepting
 * failed for a reason worth acting on (EMFILE, ENFILE, ENOBUFS, ENOMEM, ...:
 * pause the acceptor, or it is tried again at once).
 *
 * epoll: the listener's level-triggered readiness and accept4(2) until
 * EAGAIN (at most 64 per event), peer filled in. io_uring: one multishot
 * IORING_OP_ACCEPT, no system call per connection, peer NULL (the kernel
 * would write every peer into one buffer); on a kernel without multishot
 * accept, the poll and accept4(2) as under epoll.
 */
struct sy_acceptor;
typedef void (*sy_accept_cb)(struct sy_acceptor *a, int fd, const struct sockaddr *peer,
                             socklen_t peerlen);

struct sy_acceptor {
    struct sy_io io;           /* io.fd: the listening socket; io.cb belongs to the loop */
    sy_accept_cb cb;
    int _off;                  /* 1 paused, 2 deleted: an accept4(2) loop stops */
};

/* Starts accepting on a->io.fd (listening, non-blocking). Returns 0 or -1 (errno). */
int sy_loop_add_acceptor(struct sy_loop *loop, struct sy_acceptor *a);
/*
 * Pauses or resumes an acceptor. Pausing cancels the multishot accept under
 * io_uring; connections the kernel took before the cancellation took effect
 * still reach the callback afterwards (real descriptors: serve or close them).
 */
int sy_loop_acceptor_enable(struct sy_loop *loop, struct sy_acceptor *a, int on);
/*
 * Stops accepting and closes a->io.fd (set to -1), so the port stops taking
 * connections at once; what the kernel already queued on it (paused or not)
 * is accepted and handed to the callback first. Under io_uring, connections
 * taken by the multishot accept and not yet seen reach the callback in later
 * iterations: the acceptor must outlive them (keep it as long as the loop).
 * sy_loop_del() on an acceptor instead closes such connections.
 */
void sy_loop_acceptor_close(struct sy_loop *loop, struct sy_acceptor *a);
/*
 * sy_loop_del() and close(io->fd). Under completion I/O the loop owns the
 * descriptor from then on: it closes it once the sends already accepted are
 * out (or failed) and its receive is cancelled. The owner may be freed at
 * the end of the iteration as usual: no late completion names it.
 */
void sy_loop_close(struct sy_loop *loop, struct sy_io *io);
/* shutdown(io->fd, SHUT_WR), after the sends already accepted under completion I/O. */
void sy_loop_shutdown_wr(struct sy_loop *loop, struct sy_io *io);

/*
 * Completion I/O (io_uring backend; TCP sockets, TLS ones through a callback
 * BIO: sy_tls_conn_new_io). Receives are one
 * multishot IORING_OP_RECV into the worker's provided-buffer ring, sends are
 * copied into a per-socket buffer and queued, all submitted with the loop's
 * one io_uring_enter per iteration. The callback is called as for a poll
 * event: EPOLLIN when bytes (or the end, or an error) arrived, EPOLLOUT when
 * a send that was refused for the cap may go on, EPOLLERR when a send
 * failed. Returns 0 when io (registered with sy_loop_add) now uses it, -1
 * when not (epoll backend, no buffer ring): the owner keeps read/write(2).
 */
int sy_loop_cio_start(struct sy_loop *loop, struct sy_io *io);
/*
 * Copies received bytes: >0 bytes, 0 EOF, -1 nothing yet, -2 error. Sets
 * *drained when nothing is left (the next arrival calls back).
 */
ssize_t sy_loop_cio_read(struct sy_loop *loop, struct sy_io *io, char *buf, size_t len, int *drained);
/* Copies bytes to send: >0 bytes taken, -1 the bytes in flight are at the cap (EPOLLOUT follows), -2 error. */
ssize_t sy_loop_cio_writev(struct sy_loop *loop, struct sy_io *io, const struct iovec *iov, int iovcnt);

/* Monotonic milliseconds, refreshed once per loop iteration. */
uint64_t sy_loop_now(const struct sy_loop *loop);
/* Refreshes and returns the cached time. */
uint64_t sy_loop_update_time(struct sy_loop *loop);

/*
 * Schedules t to fire at `at`. When t is already queued for an earlier time
 * it is left there (lazy re-arm): the callback must check whether its real
 * deadline has come and re-arm otherwise.
 */
void sy_timer_arm(struct sy_loop *loop, struct sy_timer *t, uint64_t at);
/* Moves t to exactly `at` (earlier or later). */
void sy_timer_set(struct sy_loop *loop, struct sy_timer *t, uint64_t at);
void sy_timer_cancel(struct sy_loop *loop, struct sy_timer *t);

/*
 * Called at the end of every loop iteration (after events and timers). This
 * is the only place where objects closed during the iteration may be freed:
 * any later event or timer of the same iteration may still name them.
 */
typedef void (*sy_loop_idle_cb)(struct sy_loop *loop, void *arg);
void sy_loop_set_idle(struct sy_loop *loop, sy_loop_idle_cb cb, void *arg);

/* Cross-thread wake-up: makes the loop call wake_cb(arg) on its own thread. Thread-safe. */
typedef void (*sy_loop_wake_cb)(struct sy_loop *loop, void *arg);
void sy_loop_set_wake(struct sy_loop *loop, sy_loop_wake_cb cb, void *arg);
void sy_loop_wake(struct sy_loop *loop);

/*
 * 1 while the loop dispatches an event batch or its timers (wake-ups
 * included), 0 in the end-of-iteration callback and outside the loop. Code
 * that frees objects an event may name asserts that this is 0.
 */
int sy_loop_dispatching(const struct sy_loop *loop);

/* Runs until sy_loop_stop(). */
void sy_loop_run(struct sy_loop *loop);
void sy_loop_stop(struct sy_loop *loop);

#endif
