/*
 * test_loop.c: the event loop's contract, on both backends: edge-triggered
 * readiness, no event after sy_loop_del (even when the descriptor number is
 * reused at once), listeners paused and resumed, acceptors, timers in deadline order
 * and the cross-thread wake-up. Each test runs once per backend; the io_uring
 * ones are skipped where io_uring is refused.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "event/loop.h"
#include "event/loop_int.h"

struct probe {
    struct sy_io io;
    struct sy_loop *loop;
    int nin, nout, nbytes;
    int del_on_read;           /* sy_loop_del at the first EPOLLIN */
};

struct step {
    struct sy_timer t;
    struct sy_loop *loop;
    void (*fn)(struct step *s);
    int fd;
    int *order, *norder, id;
};

static void on_io(struct sy_io *io, uint32_t events)
{
    struct probe *p = (struct probe *)io;
    if (events & EPOLLOUT)
        p->nout++;
    if (!(events & EPOLLIN))
        return;
    p->nin++;
    char buf[64];
    for (ssize_t n; (n = read(io->fd, buf, sizeof(buf))) > 0;)
        p->nbytes += (int)n;
    if (p->del_on_read)
        sy_loop_del(p->loop, io);
}

static void step_cb(struct sy_timer *t)
{
    struct step *s = (struct step *)t;
    s->fn(s);
}

static void write_one(struct step *s)
{
    cr_assert_eq(write(s->fd, "x", 1), 1);
}

static void stop(struct step *s)
{
    sy_loop_stop(s->loop);
}

static void note(struct step *s)
{
    s->order[(*s->norder)++] = s->id;
}

static void at(struct step *s, struct sy_loop *loop, uint64_t ms, void (*fn)(struct step *), int fd)
{
    memset(s, 0, sizeof(*s));
    s->t.cb = step_cb;
    s->loop = loop;
    s->fn = fn;
    s->fd = fd;
    sy_timer_set(loop, &s->t, sy_loop_update_time(loop) + ms);
}

static struct sy_loop *make(enum sy_loop_backend b)
{
    if (b == SY_LOOP_URING && sy_loop_uring_probe() < 0)
        cr_skip_test("io_uring is not available here");
    const char *why = NULL;
    struct sy_loop *loop = sy_loop_new(b, &why);
    cr_assert_not_null(loop, "%s", why ? why : "");
    cr_assert_eq(sy_loop_backend(loop), b);
    return loop;
}

static void pair(int sv[2])
{
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
}

/* Two writes at different times: two read edges, and the initial writability. */
static void edges(enum sy_loop_backend b)
{
    struct sy_loop *loop = make(b);
    int sv[2];
    pair(sv);
    struct probe p = {.io = {.fd = sv[0], .cb = on_io}, .loop = loop};
    cr_assert_eq(sy_loop_add(loop, &p.io), 0);
    struct step s1, s2, s3;
    at(&s1, loop, 20, write_one, sv[1]);
    at(&s2, loop, 60, write_one, sv[1]);
    at(&s3, loop, 120, stop, -1);
    sy_loop_run(loop);
    cr_assert_eq(p.nbytes, 2);
    cr_assert_geq(p.nin, 2);
    cr_assert_geq(p.nout, 1);
    sy_loop_del(loop, &p.io);
    close(sv[0]);
    close(sv[1]);
    sy_loop_free(loop);
}

Test(loop, edges_epoll) { edges(SY_LOOP_EPOLL); }
Test(loop, edges_io_uring) { edges(SY_LOOP_URING); }

/*
 * A socket deleted in its callback gets no further event, and once closed, a
 * new socket that reuses its descriptor number at once gets its own events only.
 */
static struct probe *reused;

static void reuse(struct step *s)
{
    struct probe *q = reused;
    close(s->fd);
    int sv[2];
    pair(sv);
    q->io.fd = sv[0];
    cr_assert_eq(sy_loop_add(q->loop, &q->io), 0);
    cr_assert_eq(write(sv[1], "yy", 2), 2);
}

static void del_then_reuse(enum sy_loop_backend b)
{
    struct sy_loop *loop = make(b);
    int sv[2];
    pair(sv);
    struct probe p = {.io = {.fd = sv[0], .cb = on_io}, .loop = loop, .del_on_read = 1};
    struct probe q = {.io = {.cb = on_io}, .loop = loop};
    cr_assert_eq(sy_loop_add(loop, &p.io), 0);
    struct step s1, s2, s3, s4;
    at(&s1, loop, 20, write_one, sv[1]);
    at(&s2, loop, 50, write_one, sv[1]); /* after the del: nobody may hear it */
    reused = &q;
    at(&s3, loop, 70, reuse, sv[0]);
    at(&s4, loop, 150, stop, -1);
    sy_loop_run(loop);
    cr_assert_eq(p.nin, 1);
    cr_assert_eq(p.nbytes, 1);
    cr_assert_eq(q.nbytes, 2);
    cr_assert_eq(q.io.fd, sv[0], "the test meant the descriptor number to be reused");
    sy_loop_del(loop, &q.io);
    close(q.io.fd);
    close(sv[1]);
    sy_loop_free(loop);
}

Test(loop, del_then_reuse_epoll) { del_then_reuse(SY_LOOP_EPOLL); }
Test(loop, del_then_reuse_io_uring) { del_then_reuse(SY_LOOP_URING); }

/* A paused listener reports nothing; resumed, it reports the waiting connection. */
struct lst {
    struct sy_io io;
    int n;
};

static void on_listen(struct sy_io *io, uint32_t events)
{
    struct lst *l = (struct lst *)io;
    int fd = accept4(io->fd, NULL, NULL, SOCK_NONBLOCK);
    if (fd >= 0) {
        l->n++;
        close(fd);
    }
}

static struct lst *the_listener;

/* Nothing accepted while paused; then resumed. */
static void resume(struct step *s)
{
    cr_assert_eq(the_listener->n, 0);
    sy_loop_listener_enable(s->loop, &the_listener->io, 1);
}

static void pause_resume(enum sy_loop_backend b)
{
    struct sy_loop *loop = make(b);
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof(a);
    cr_assert_eq(bind(lfd, (struct sockaddr *)&a, sizeof(a)), 0);
    cr_assert_eq(listen(lfd, 8), 0);
    cr_assert_eq(getsockname(lfd, (struct sockaddr *)&a, &alen), 0);
    struct lst l = {.io = {.fd = lfd, .cb = on_listen}};
    the_listener = &l;
    cr_assert_eq(sy_loop_add_listener(loop, &l.io), 0);
    cr_assert_eq(sy_loop_listener_enable(loop, &l.io, 0), 0);
    int c = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_eq(connect(c, (struct sockaddr *)&a, sizeof(a)), 0);
    struct step s1, s2;
    at(&s1, loop, 60, resume, -1);
    at(&s2, loop, 140, stop, -1);
    sy_loop_run(loop);
    cr_assert_eq(l.n, 1);
    sy_loop_del(loop, &l.io);
    close(lfd);
    close(c);
    sy_loop_free(loop);
}

Test(loop, listener_pause_resume_epoll) { pause_resume(SY_LOOP_EPOLL); }
Test(loop, listener_pause_resume_io_uring) { pause_resume(SY_LOOP_URING); }

/*
 * Acceptors (sy_loop_add_acceptor), on epoll, on io_uring's multishot accept
 * and on io_uring's fallback (poll and accept4, as on kernels without
 * multishot accept). Accepted descriptors are counted in /proc/self/fd: none
 * may leak, whatever happens to the acceptor.
 */
enum acc_mode { ACC_EPOLL = 0, ACC_URING, ACC_URING_POLL };

struct acc {
    struct sy_acceptor a;
    struct sy_loop *loop;
    struct sockaddr_in addr;
    int n, npeer, nerr;
    int clients[16], nclients;
    int del_at_first;          /* sy_loop_del (and close) at the first connection */
};

static struct acc *the_acc;

static int count_fds(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    cr_assert_not_null(d);
    while (readdir(d))
        n++;
    closedir(d);
    return n;
}

static void on_conn(struct sy_acceptor *a, int fd, const struct sockaddr *peer, socklen_t plen)
{
    struct acc *x = (struct acc *)a;
    if (fd < 0) {
        x->nerr++;
        return;
    }
    x->n++;
    if (peer) {
        cr_assert_eq(peer->sa_family, AF_INET);
        cr_assert_eq(plen, sizeof(struct sockaddr_in));
        x->npeer++;
    }
    cr_assert(fcntl(fd, F_GETFL) & O_NONBLOCK);
    cr_assert(fcntl(fd, F_GETFD) & FD_CLOEXEC);
    close(fd);
    if (x->del_at_first && x->n == 1) {
        sy_loop_del(x->loop, &a->io);
        close(a->io.fd);
        a->io.fd = -1;
    }
}

static struct sy_loop *acc_setup(enum acc_mode m, struct acc *x)
{
    struct sy_loop *loop = make(m == ACC_EPOLL ? SY_LOOP_EPOLL : SY_LOOP_URING);
    sy__uring_no_multishot_accept = m == ACC_URING_POLL;
    memset(x, 0, sizeof(*x));
    x->loop = loop;
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    x->addr = (struct sockaddr_in){.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof(x->addr);
    cr_assert_eq(bind(lfd, (struct sockaddr *)&x->addr, sizeof(x->addr)), 0);
    cr_assert_eq(listen(lfd, 64), 0);
    cr_assert_eq(getsockname(lfd, (struct sockaddr *)&x->addr, &alen), 0);
    x->a.io.fd = lfd;
    x->a.cb = on_conn;
    cr_assert_eq(sy_loop_add_acceptor(loop, &x->a), 0);
    the_acc = x;
    return loop;
}

static void connect_n(struct acc *x, int n)
{
    for (int i = 0; i < n; i++) {
        int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        cr_assert_eq(connect(c, (struct sockaddr *)&x->addr, sizeof(x->addr)), 0);
        x->clients[x->nclients++] = c;
    }
}

static void acc_teardown(struct acc *x, struct sy_loop *loop)
{
    for (int i = 0; i < x->nclients; i++)
        close(x->clients[i]);
    if (x->a.io.fd >= 0) {
        sy_loop_del(loop, &x->a.io);
        close(x->a.io.fd);
    }
    sy_loop_free(loop);
    sy__uring_no_multishot_accept = 0;
}

static void connect3(struct step *s) { connect_n(the_acc, 3); }
static void connect2(struct step *s) { connect_n(the_acc, 2); }

static void check3_pause(struct step *s)
{
    cr_assert_eq(the_acc->n, 3);
    cr_assert_eq(sy_loop_acceptor_enable(s->loop, &the_acc->a, 0), 0);
}

static void check3_resume(struct step *s)
{
    cr_assert_eq(the_acc->n, 3, "nothing accepted while paused");
    cr_assert_eq(sy_loop_acceptor_enable(s->loop, &the_acc->a, 1), 0);
}

/* Connections accepted, none while paused, the waiting ones once resumed. */
static void acceptor_pause_resume(enum acc_mode m)
{
    int base = count_fds();
    struct acc x;
    struct sy_loop *loop = acc_setup(m, &x);
    struct step s[6];
    at(&s[0], loop, 10, connect3, -1);
    at(&s[1], loop, 50, check3_pause, -1);
    at(&s[2], loop, 70, connect2, -1);
    at(&s[3], loop, 110, check3_resume, -1);
    at(&s[4], loop, 150, connect3, -1);
    at(&s[5], loop, 200, stop, -1);
    sy_loop_run(loop);
    cr_assert_eq(x.n, 8);
    cr_assert_eq(x.nerr, 0);
    cr_assert_eq(x.npeer, m == ACC_URING ? 0 : 8, "the peer when accept4 gave it");
    acc_teardown(&x, loop);
    cr_assert_eq(count_fds(), base, "no descriptor leaked");
}

Test(loop, acceptor_pause_resume_epoll) { acceptor_pause_resume(ACC_EPOLL); }
Test(loop, acceptor_pause_resume_io_uring) { acceptor_pause_resume(ACC_URING); }
Test(loop, acceptor_pause_resume_io_uring_poll) { acceptor_pause_resume(ACC_URING_POLL); }

static void pause_connect(struct step *s)
{
    cr_assert_eq(sy_loop_acceptor_enable(s->loop, &the_acc->a, 0), 0);
    connect_n(the_acc, 4);
}

static void close_acceptor(struct step *s)
{
    sy_loop_acceptor_close(s->loop, &the_acc->a);
    cr_assert_eq(the_acc->a.io.fd, -1);
    /* the port is closed: a new connection is refused */
    int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_neq(connect(c, (struct sockaddr *)&the_acc->addr, sizeof(the_acc->addr)), 0);
    close(c);
}

/* Closing an acceptor, paused or not, hands over every connection the kernel queued. */
static void acceptor_close(enum acc_mode m, int paused)
{
    int base = count_fds();
    struct acc x;
    struct sy_loop *loop = acc_setup(m, &x);
    struct step s[3];
    at(&s[0], loop, 10, paused ? pause_connect : connect3, -1);
    at(&s[1], loop, paused ? 40 : 10, close_acceptor, -1); /* same iteration when not paused */
    at(&s[2], loop, 100, stop, -1);
    sy_loop_run(loop);
    cr_assert_eq(x.n, paused ? 4 : 3);
    acc_teardown(&x, loop);
    cr_assert_eq(count_fds(), base, "no descriptor leaked");
}

Test(loop, acceptor_close_epoll) { acceptor_close(ACC_EPOLL, 0); }
Test(loop, acceptor_close_io_uring) { acceptor_close(ACC_URING, 0); }
Test(loop, acceptor_close_io_uring_poll) { acceptor_close(ACC_URING_POLL, 0); }
Test(loop, acceptor_close_paused_epoll) { acceptor_close(ACC_EPOLL, 1); }
Test(loop, acceptor_close_paused_io_uring) { acceptor_close(ACC_URING, 1); }
Test(loop, acceptor_close_paused_io_uring_poll) { acceptor_close(ACC_URING_POLL, 1); }

static void connect6(struct step *s) { connect_n(the_acc, 6); }

/*
 * Deleted at its first connection while more are pending (under io_uring the
 * multishot accept took them all in one go): no further callback, and the
 * connections taken and not handed over are closed by the loop.
 */
static void acceptor_del_pending(enum acc_mode m)
{
    int base = count_fds();
    struct acc x;
    struct sy_loop *loop = acc_setup(m, &x);
    x.del_at_first = 1;
    struct step s[2];
    at(&s[0], loop, 10, connect6, -1);
    at(&s[1], loop, 80, stop, -1);
    sy_loop_run(loop);
    cr_assert_eq(x.n, 1);
    for (int i = 0; i < x.nclients; i++) {
        char c;
        struct pollfd pfd = {.fd = x.clients[i], .events = POLLIN};
        cr_assert_eq(poll(&pfd, 1, 1000), 1, "client %d: its connection ended", i);
        cr_assert_leq(read(x.clients[i], &c, 1), 0);
    }
    acc_teardown(&x, loop);
    cr_assert_eq(count_fds(), base, "no descriptor leaked");
}

Test(loop, acceptor_del_pending_epoll) { acceptor_del_pending(ACC_EPOLL); }
Test(loop, acceptor_del_pending_io_uring) { acceptor_del_pending(ACC_URING); }
Test(loop, acceptor_del_pending_io_uring_poll) { acceptor_del_pending(ACC_URING_POLL); }

/* Timers fire in deadline order, a moved one at its new time; a cancelled one never. */
static void timers(enum sy_loop_backend b)
{
    struct sy_loop *loop = make(b);
    int order[8], n = 0;
    struct step s[5];
    uint64_t ms[4] = {40, 10, 30, 20};
    for (int i = 0; i < 4; i++) {
        at(&s[i], loop, ms[i], note, -1);
        s[i].order = order;
        s[i].norder = &n;
        s[i].id = i;
    }
    sy_timer_set(loop, &s[0].t, sy_loop_now(loop) + 5); /* 40 -> 5 */
    sy_timer_cancel(loop, &s[2].t);
    at(&s[4], loop, 80, stop, -1);
    sy_loop_run(loop);
    cr_assert_eq(n, 3);
    cr_assert_eq(order[0], 0);
    cr_assert_eq(order[1], 1);
    cr_assert_eq(order[2], 3);
    sy_loop_free(loop);
}

Test(loop, timers_epoll) { timers(SY_LOOP_EPOLL); }
Test(loop, timers_io_uring) { timers(SY_LOOP_URING); }

/* sy_loop_wake from another thread runs the wake callback on the loop's thread. */
static pthread_t loop_thread;
static int woken;

static void on_wake(struct sy_loop *loop, void *arg)
{
    (void)arg;
    cr_assert(pthread_equal(pthread_self(), loop_thread));
    woken++;
    sy_loop_stop(loop);
}

static void *waker(void *arg)
{
    usleep(20000);
    sy_loop_wake(arg);
    return NULL;
}

static void wake(enum sy_loop_backend b)
{
    struct sy_loop *loop = make(b);
    sy_loop_set_wake(loop, on_wake, NULL);
    loop_thread = pthread_self();
    struct step guard;
    at(&guard, loop, 2000, stop, -1);
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, waker, loop), 0);
    sy_loop_run(loop);
    pthread_join(th, NULL);
    cr_assert_eq(woken, 1);
    sy_timer_cancel(loop, &guard.t);
    sy_loop_free(loop);
}

Test(loop, wake_epoll) { wake(SY_LOOP_EPOLL); }
Test(loop, wake_io_uring) { wake(SY_LOOP_URING); }

/*
 * Completion I/O (io_uring): received bytes come through the buffer ring with
 * an EPOLLIN callback, sends are taken up to the cap then refused until an
 * EPOLLOUT callback, the end of the peer reads as 0, and after
 * sy_loop_close() the bytes already taken still reach the peer.
 */
struct cprobe {
    struct sy_io io;
    struct sy_loop *loop;
    int nin, nout, eof;
    char got[64];
    size_t ngot;
};

static void on_cio(struct sy_io *io, uint32_t events)
{
    struct cprobe *p = (struct cprobe *)io;
    if (events & EPOLLOUT)
        p->nout++;
    if (!(events & EPOLLIN))
        return;
    p->nin++;
    for (;;) {
        int drained = 0;
        ssize_t n = sy_loop_cio_read(p->loop, io, p->got + p->ngot, sizeof(p->got) - p->ngot, &drained);
        if (n > 0)
            p->ngot += (size_t)n;
        if (n == 0)
            p->eof = 1;
        if (n <= 0 || drained)
            break;
    }
}

static void write_hello(struct step *s)
{
    cr_assert_eq(write(s->fd, "hello", 5), 5);
}

static void shut_peer(struct step *s)
{
    shutdown(s->fd, SHUT_WR);
}

static size_t drain_fd(int fd)
{
    char buf[65536];
    size_t total = 0;
    for (ssize_t n; (n = read(fd, buf, sizeof(buf))) > 0;)
        total += (size_t)n;
    return total;
}

static size_t peer_got;

static void drain_peer(struct step *s)
{
    peer_got += drain_fd(s->fd);
}

static struct cprobe *cp;
static ssize_t cp_took;
static int cp_skip;
static char big[200000];

/* In the loop's thread, once it runs: the buffer ring is registered then. */
static void cio_begin(struct step *s)
{
    if (sy_loop_cio_start(cp->loop, &cp->io) < 0) {
        cp_skip = 1;
        sy_loop_stop(cp->loop);
        return;
    }
    memset(big, 'b', sizeof(big));
    struct iovec iov = {big, sizeof(big)};
    cp_took = sy_loop_cio_writev(cp->loop, &cp->io, &iov, 1);
    cr_assert(cp_took > 0 && cp_took < (ssize_t)sizeof(big), "taken up to the cap: %zd", cp_took);
    cr_assert_eq(sy_loop_cio_writev(cp->loop, &cp->io, &iov, 1), -1, "refused beyond the cap");
}

/* Bytes taken before the close still go out, then the end. */
static void cio_end(struct step *s)
{
    cr_assert_eq(cp->ngot, 5);
    cr_assert_eq(memcmp(cp->got, "hello", 5), 0);
    cr_assert_geq(cp->nin, 2);
    cr_assert_eq(cp->eof, 1);
    cr_assert_geq(cp->nout, 1, "EPOLLOUT once the sends made room");
    struct iovec iov = {big, 1000};
    cr_assert_eq(sy_loop_cio_writev(cp->loop, &cp->io, &iov, 1), 1000);
    sy_loop_close(cp->loop, &cp->io);
}

Test(loop, completion_io_uring)
{
    struct sy_loop *loop = make(SY_LOOP_URING);
    int sv[2];
    pair(sv);
    struct cprobe p = {.io = {.fd = sv[0], .cb = on_cio}, .loop = loop};
    cr_assert_eq(sy_loop_add(loop, &p.io), 0);
    cp = &p;
    peer_got = 0;
    struct step s0, s1, s2, s3, s4, s5, s6;
    at(&s0, loop, 5, cio_begin, -1);
    at(&s1, loop, 20, write_hello, sv[1]);
    at(&s2, loop, 40, drain_peer, sv[1]);
    at(&s3, loop, 60, shut_peer, sv[1]);
    at(&s4, loop, 100, cio_end, -1);
    at(&s5, loop, 130, drain_peer, sv[1]);
    at(&s6, loop, 160, stop, -1);
    sy_loop_run(loop);
    if (cp_skip)
        cr_skip_test("no provided-buffer ring here");
    peer_got += drain_fd(sv[1]);
    cr_assert_geq(peer_got, (size_t)cp_took + 1000, "%zu", peer_got);
    char c;
    cr_assert_eq(read(sv[1], &c, 1), 0, "the loop closed the socket");
    close(sv[1]);
    sy_loop_free(loop);
}

/*
 * The buffer ring runs dry: 100 sockets whose owners never read hold every
 * buffer. Another socket is still told of its bytes and reads them all: a
 * receive that finds no buffer is a readiness event, served by read(2). Its
 * first burst is an exact multiple of the owner's reads, so the last read
 * does not show the socket empty: the bytes sent later must still call back.
 */
#define HOARDERS 100

struct bprobe {
    struct sy_io io;
    struct sy_loop *loop;
    size_t ngot, want;         /* reads no further than `want`, as a body's length bounds them */
    int nin;
};

static void on_hoard(struct sy_io *io, uint32_t events)
{
    (void)io;
    (void)events; /* never reads: its buffers stay queued */
}

static void on_bread(struct sy_io *io, uint32_t events)
{
    struct bprobe *p = (struct bprobe *)io;
    if (!(events & EPOLLIN))
        return;
    p->nin++;
    while (p->ngot < p->want) {
        char buf[16384];
        size_t len = p->want - p->ngot < sizeof(buf) ? p->want - p->ngot : sizeof(buf);
        int drained = 0;
        ssize_t n = sy_loop_cio_read(p->loop, io, buf, len, &drained);
        if (n > 0)
            p->ngot += (size_t)n;
        if (n <= 0 || drained)
            break;
    }
}

static struct bprobe hoard[HOARDERS], breader;
static int hoard_peer[HOARDERS];
static int bring_skip;

/* Completion I/O on n probes, in the loop's thread; 0, or -1 (no buffer ring: the loop is stopped). */
static int start_bprobes(struct step *s, struct bprobe *p, int n)
{
    for (int i = 0; i < n; i++) {
        if (sy_loop_cio_start(p[i].loop, &p[i].io) < 0) {
            sy_loop_stop(s->loop);
            return -1;
        }
    }
    return 0;
}

static void bring_begin(struct step *s)
{
    if (start_bprobes(s, hoard, HOARDERS) < 0) {
        bring_skip = 1;
        return;
    }
    cr_assert_eq(sy_loop_cio_start(breader.loop, &breader.io), 0);
}

/* n probes on n socket pairs, registered with loop; the other ends in peers. */
static void add_bprobes(struct sy_loop *loop, struct bprobe *p, int *peers, int n, sy_io_cb cb, size_t want)
{
    for (int i = 0; i < n; i++) {
        int sv[2];
        pair(sv);
        p[i] = (struct bprobe){.io = {.fd = sv[0], .cb = cb}, .loop = loop, .want = want};
        peers[i] = sv[1];
        cr_assert_eq(sy_loop_add(loop, &p[i].io), 0);
    }
}

static void close_bprobes(struct bprobe *p, int n)
{
    for (int i = 0; i < n; i++)
        sy_loop_close(p[i].loop, &p[i].io);
}

/* 64 KiB to each peer socket. */
static void send_64k(const int *peers, int n)
{
    static char chunk[65536];
    memset(chunk, 'x', sizeof(chunk));
    for (int i = 0; i < n; i++)
        cr_assert_eq(write(peers[i], chunk, sizeof(chunk)), (ssize_t)sizeof(chunk));
}

static void bring_fill(struct step *s)
{
    send_64k(hoard_peer, HOARDERS);
}

static void bring_burst(struct step *s)
{
    static char chunk[2 * 16384];
    memset(chunk, 'r', sizeof(chunk));
    cr_assert_eq(write(s->fd, chunk, sizeof(chunk)), (ssize_t)sizeof(chunk));
}

static void bring_check_burst(struct step *s)
{
    cr_assert_eq(breader.ngot, 2 * 16384, "read the burst while the ring is dry: %zu", breader.ngot);
    breader.want += 5;
    write_hello(s);
}

static void bring_end(struct step *s)
{
    cr_assert_eq(breader.ngot, 2 * 16384 + 5, "bytes after an exact-multiple read: %zu (nin %d)", breader.ngot, breader.nin);
    close_bprobes(hoard, HOARDERS);
    close_bprobes(&breader, 1);
    sy_loop_stop(s->loop);
}

Test(loop, completion_buffers_exhausted_io_uring)
{
    struct sy_loop *loop = make(SY_LOOP_URING);
    add_bprobes(loop, hoard, hoard_peer, HOARDERS, on_hoard, 0);
    int sv[2];
    pair(sv);
    breader = (struct bprobe){.io = {.fd = sv[0], .cb = on_bread}, .loop = loop, .want = 2 * 16384};
    cr_assert_eq(sy_loop_add(loop, &breader.io), 0);
    struct step s0, s1, s2, s3, s4;
    at(&s0, loop, 5, bring_begin, -1);
    at(&s1, loop, 20, bring_fill, -1);
    at(&s2, loop, 60, bring_burst, sv[1]);
    at(&s3, loop, 100, bring_check_burst, sv[1]);
    at(&s4, loop, 150, bring_end, -1);
    sy_loop_run(loop);
    if (bring_skip)
        cr_skip_test("no provided-buffer ring here");
    for (int i = 0; i < HOARDERS; i++)
        close(hoard_peer[i]);
    close(sv[1]);
    sy_loop_free(loop);
}

/*
 * After a second without receiving, the buffers' pages go back to the
 * system: 8 sockets move 512 KiB through the ring, then the process's
 * resident memory drops by most of it while the sockets stay open.
 */
#define TRIMMERS 8

static struct bprobe trim_rd[TRIMMERS];
static int trim_peer[TRIMMERS];
static long trim_rss_full, trim_rss_quiet;
static int trim_skip;

static long rss_kib(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long size = 0, res = 0;
    cr_assert_not_null(f);
    cr_assert_eq(fscanf(f, "%ld %ld", &size, &res), 2);
    fclose(f);
    return res * (sysconf(_SC_PAGESIZE) / 1024);
}

static void trim_begin(struct step *s)
{
    if (start_bprobes(s, trim_rd, TRIMMERS) < 0)
        trim_skip = 1;
}

static void trim_send(struct step *s)
{
    send_64k(trim_peer, TRIMMERS);
}

static void trim_measure_full(struct step *s)
{
    for (int i = 0; i < TRIMMERS; i++)
        cr_assert_eq(trim_rd[i].ngot, 65536, "socket %d read %zu", i, trim_rd[i].ngot);
    trim_rss_full = rss_kib();
}

static void trim_measure_quiet(struct step *s)
{
    trim_rss_quiet = rss_kib();
    close_bprobes(trim_rd, TRIMMERS);
    sy_loop_stop(s->loop);
}

Test(loop, completion_buffers_trimmed_io_uring)
{
    struct sy_loop *loop = make(SY_LOOP_URING);
    add_bprobes(loop, trim_rd, trim_peer, TRIMMERS, on_bread, 1 << 30);
    struct step s0, s1, s2, s3;
    at(&s0, loop, 5, trim_begin, -1);
    at(&s1, loop, 20, trim_send, -1);
    at(&s2, loop, 300, trim_measure_full, -1);
    at(&s3, loop, 1600, trim_measure_quiet, -1);
    sy_loop_run(loop);
    if (trim_skip)
        cr_skip_test("no provided-buffer ring here");
    cr_log_info("resident %ld -> %ld KiB", trim_rss_full, trim_rss_quiet);
    cr_assert_geq(trim_rss_full - trim_rss_quiet, 256, "resident %ld KiB after the bytes, %ld KiB after a quiet second",
                  trim_rss_full, trim_rss_quiet);
    for (int i = 0; i < TRIMMERS; i++)
        close(trim_peer[i]);
    sy_loop_free(loop);
}
