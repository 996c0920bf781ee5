/*
 * conn_io.c: the byte-moving edge of the connection state machine: reads and
 * writes on client sockets (plain or TLS) and upstream sockets, with the
 * edge-triggered readiness rules, and the buffers and per-request state a
 * connection borrows from its worker.
 */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "core/alloc.h"
#include "proxy/conn.h"
#include "tls/tls.h"

/*
 * read(2) on an edge-triggered socket: >0 bytes, 0 EOF, -1 would block, -2 error. Sets *drained
 * when the owner's readable flag must drop: on EAGAIN, and after a short read, which drained the
 * socket (the next arrival raises a new edge, so the read that would only say EAGAIN is skipped),
 * unless a FIN is already queued (hup: RDHUP seen), which only a further read reports.
 */
static ssize_t read_edge(int fd, char *buf, size_t len, int hup, int *drained)
{
    for (;;) {
        ssize_t n = read(fd, buf, len);
        if (n > 0) {
            if ((size_t)n < len && !hup)
                *drained = 1;
            return n;
        }
        if (n == 0)
            return 0;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            *drained = 1;
            return -1;
        }
        return -2;
    }
}

/* ---- client I/O: >0 bytes, 0 EOF, -1 would block, -2 error ---- */

ssize_t sy__cread(struct sy_conn *c, char *buf, size_t len)
{
    if (c->tls) {
        int io;
        ssize_t n = sy_tls_read(c->tls, buf, len, &io);
        if (n > 0) {
            if (!c->rd_hup && sy_tls_drained(c->tls))
                c->readable = 0;
            return n;
        }
        if (n == 0 || io == SY_TLS_CLOSED)
            return 0;
        if (io == SY_TLS_WANT_READ) {
            c->readable = 0;
            return -1;
        }
        if (io == SY_TLS_WANT_WRITE) {
            c->writable = 0;
            return -1;
        }
        return -2;
    }
    int drained = 0;
    ssize_t n = c->io._cio ? sy_loop_cio_read(c->w->loop, &c->io, buf, len, &drained)
                           : read_edge(c->io.fd, buf, len, c->rd_hup, &drained);
    if (drained)
        c->readable = 0;
    return n;
}

/*
 * TLS under completion I/O: OpenSSL reads its records out of the socket's
 * receive queue and writes them into its send buffer through these (see
 * sy_tls_conn_new_io), so a TLS connection costs no read(2) or write(2)
 * either. "Full" (-1) is the send cap: the loop calls back with EPOLLOUT.
 */
static ssize_t tls_cio_read(void *arg, char *buf, size_t len, int *drained)
{
    struct sy_conn *c = arg;
    return sy_loop_cio_read(c->w->loop, &c->io, buf, len, drained);
}

static ssize_t tls_cio_write(void *arg, const char *buf, size_t len)
{
    struct sy_conn *c = arg;
    struct iovec iov = {(void *)buf, len};
    return sy_loop_cio_writev(c->w->loop, &c->io, &iov, 1);
}

static const struct sy_tls_io_ops tls_cio_ops = {tls_cio_read, tls_cio_write};

struct sy_tls_conn *sy__tls_conn_new(struct sy_conn *c, struct sy_tls *t)
{
    return c->io._cio ? sy_tls_conn_new_io(t, &tls_cio_ops, c) : sy_tls_conn_new(t, c->io.fd);
}

static ssize_t tls_writev(struct sy_conn *c, struct iovec *iov, int iovcnt)
{
    ssize_t total = 0;
    for (int i = 0; i < iovcnt; i++) {
        if (!iov[i].iov_len)
            continue;
        int io;
        ssize_t n = sy_tls_write(c->tls, iov[i].iov_base, iov[i].iov_len, &io);
        if (n > 0) {
            total += n;
            if ((size_t)n < iov[i].iov_len)
                return total;
            continue;
        }
        if (io == SY_TLS_WANT_WRITE || io == SY_TLS_WANT_READ) {
            if (io == SY_TLS_WANT_WRITE)
                c->writable = 0;
            else
                c->readable = 0;
            return total ? total : -1;
        }
        return total ? total : -2;
    }
    return total;
}

ssize_t sy__cwritev(struct sy_conn *c, struct iovec *iov, int iovcnt)
{
    if (c->tls) {
        /* Several small pieces go out as one TLS record (one write(2) or one copy into the
         * completion I/O send buffer): copy them together.
         * After a WANT_* the caller retries with the same bytes, which is what OpenSSL needs. */
        size_t sum = 0;
        for (int i = 0; i < iovcnt; i++)
            sum += iov[i].iov_len;
        if (iovcnt > 1 && sum <= SY_BUF_SIZE) {
            char *tmp = c->w->tls_scratch;
            size_t off = 0;
            for (int i = 0; i < iovcnt; i++) {
                memcpy(tmp + off, iov[i].iov_base, iov[i].iov_len);
                off += iov[i].iov_len;
            }
            struct iovec one = {tmp, sum};
            return tls_writev(c, &one, 1);
        }
        return tls_writev(c, iov, iovcnt);
    }
    if (c->io._cio) {
        ssize_t n = sy_loop_cio_writev(c->w->loop, &c->io, iov, iovcnt);
        if (n == -1)
            c->writable = 0;
        return n;
    }
    for (;;) {
        ssize_t n = writev(c->io.fd, iov, iovcnt);
        if (n >= 0)
            return n;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            c->writable = 0;
            return -1;
        }
        return -2;
    }
}

/* ---- upstream I/O ---- */

ssize_t sy__uread(struct sy_upconn *u, char *buf, size_t len)
{
    int drained = 0;
    ssize_t n = u->io._cio ? sy_loop_cio_read(u->w->loop, &u->io, buf, len, &drained)
                           : read_edge(u->io.fd, buf, len, u->hup, &drained);
    if (drained)
        u->readable = 0;
    return n;
}

ssize_t sy__uwrite(struct sy_upconn *u, const char *buf, size_t len)
{
    if (u->io._cio) {
        struct iovec iov = {(void *)buf, len};
        ssize_t n = sy_loop_cio_writev(u->w->loop, &u->io, &iov, 1);
        if (n == -1)
            u->writable = 0;
        return n;
    }
    for (;;) {
        ssize_t n = send(u->io.fd, buf, len, MSG_NOSIGNAL);
        if (n >= 0)
            return n;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            u->writable = 0;
            return -1;
        }
        return -2;
    }
}

/* ---- buffers ---- */

void sy__rbuf_ensure(struct sy_conn *c)
{
    if (!c->rbuf) {
        c->rbuf = sy_worker_buf_get(c->w);
        c->rcap = SY_BUF_SIZE;
        c->rbuf_private = 0;
        c->roff = c->rlen = c->bpos = 0;
    }
}

void sy__rbuf_release_if_empty(struct sy_conn *c)
{
    if (c->rbuf && c->roff == c->rlen) {
        if (c->rbuf_private)
            sy_free(c->rbuf);
        else
            sy_worker_buf_put(c->w, c->rbuf);
        c->rbuf = NULL;
        c->rcap = c->roff = c->rlen = c->bpos = 0;
    }
}

/* Makes room at the end of rbuf for a head that does not fit yet. Returns 0 or -1 (full). */
int sy__rbuf_room_for_head(struct sy_conn *c)
{
    if (c->rlen < c->rcap)
        return 0;
    if (c->roff > 0) {
        memmove(c->rbuf, c->rbuf + c->roff, c->rlen - c->roff);
        c->rlen -= c->roff;
        c->roff = 0;
        c->bpos = 0;
        return 0;
    }
    size_t limit = c->ws->snap->cfg->limits.max_request_head + 1;
    if (c->rcap >= limit)
        return -1;
    size_t ncap = c->rcap * 2 > limit ? limit : c->rcap * 2;
    char *nb = sy_malloc(ncap);
    memcpy(nb, c->rbuf, c->rlen);
    if (c->rbuf_private)
        sy_free(c->rbuf);
    else
        sy_worker_buf_put(c->w, c->rbuf);
    c->rbuf = nb;
    c->rcap = ncap;
    c->rbuf_private = 1;
    return 0;
}

/* Out buffers: a pooled SY_BUF_SIZE buffer when `need` fits, a private one otherwise. */
char *sy__out_alloc(struct sy_worker *w, size_t need, int *pooled)
{
    *pooled = need <= SY_BUF_SIZE;
    return *pooled ? sy_worker_buf_get(w) : sy_malloc(need);
}

void sy__out_free(struct sy_worker *w, char **p, int pooled)
{
    if (!*p)
        return;
    if (pooled)
        sy_worker_buf_put(w, *p);
    else
        sy_free(*p);
    *p = NULL;
}

void sy__free_hbuf(struct sy_conn *c)
{
    sy__out_free(c->w, &c->hbuf, c->hbuf_pooled);
    c->hoff = c->hlen = 0;
}
