/*
 * tlsload: full TLS handshakes per second, with many in flight.
 *
 *   tlsload -p PORT [-c CONNS] [-d SECONDS] [-H 'Name: value']... [-k]
 *
 * Keeps CONNS connections busy from one event-loop thread. Each one connects
 * to 127.0.0.1:PORT, does a full TLS handshake (the client keeps no session
 * and asks for no ticket, so nothing can be resumed), sends one
 * `GET / HTTP/1.1` with `Connection: close` and the extra headers, reads the
 * answer until the server closes, checks that it starts with
 * `HTTP/1.1 200`, closes, and starts over. With -k the client instead
 * resumes the session of the slot's previous connection (TLS 1.3 tickets).
 *
 * Prints one line:
 *   requests=N errors=E seconds=S rps=R p50_ms=A p99_ms=B full=F resumed=R
 * (latency = connect() to the server's close, per connection).
 *
 * wrk -H 'Connection: close' is not a new-handshake test: it keeps the
 * session across reconnects and resumes it whenever the server sent a
 * ticket. openssl s_time -new does one handshake at a time from one
 * connection, which measures round trips more than the server.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct slot {
    int fd;
    SSL *ssl;
    SSL_SESSION *sess;                          /* -k: the previous connection's session */
    enum { HANDSHAKE, WRITING, READING } state; /* connect() completes inside the handshake */
    size_t sent;
    size_t got;
    char head[16];
    double t0;
};

static SSL_CTX *ctx;
static int ep, port, resume;
static char req[4096];
static size_t reqlen;
static uint64_t done, errors, n_full, n_resumed;
static double *lat;
static size_t nlat, caplat;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what)
{
    fprintf(stderr, "tlsload: %s: %s\n", what, strerror(errno));
    exit(2);
}

static void start(struct slot *s)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    s->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s->fd < 0)
        die("socket");
    int one = 1;
    setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    s->t0 = now();
    s->state = HANDSHAKE;
    s->sent = s->got = 0;
    if (connect(s->fd, (struct sockaddr *)&sa, sizeof sa) < 0 && errno != EINPROGRESS)
        die("connect");
    s->ssl = SSL_new(ctx);
    if (!s->ssl)
        die("SSL_new");
    SSL_set_fd(s->ssl, s->fd);
    SSL_set_tlsext_host_name(s->ssl, "localhost");
    if (resume && s->sess)
        SSL_set_session(s->ssl, s->sess);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLET, .data.ptr = s};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, s->fd, &ev) < 0)
        die("epoll_ctl");
}

static void finish(struct slot *s, int ok)
{
    if (ok) {
        done++;
        if (SSL_session_reused(s->ssl))
            n_resumed++;
        else
            n_full++;
        if (nlat == caplat) {
            caplat = caplat ? caplat * 2 : 65536;
            lat = realloc(lat, caplat * sizeof *lat);
            if (!lat)
                die("realloc");
        }
        lat[nlat++] = now() - s->t0;
        if (resume) {
            SSL_SESSION *ns = SSL_get1_session(s->ssl);
            if (ns) {
                if (s->sess)
                    SSL_SESSION_free(s->sess);
                s->sess = ns;
            }
        }
    } else {
        errors++;
        ERR_clear_error();
    }
    if (ok) /* a clean end keeps the session resumable */
        SSL_set_shutdown(s->ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
    SSL_free(s->ssl);
    s->ssl = NULL;
    close(s->fd); /* also removes it from the epoll set */
    s->fd = -1;
}

/* After a failed SSL call: 0 when it only waits for the socket, else ends the connection (1). */
static int blocked_or_failed(struct slot *s, int r)
{
    int e = SSL_get_error(s->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return 0;
    finish(s, 0);
    return 1;
}

/* Drives one connection as far as it goes; returns 1 when it ended. */
static int step(struct slot *s)
{
    for (;;) {
        int r, e;
        switch (s->state) {
        case HANDSHAKE:
            r = SSL_connect(s->ssl);
            if (r == 1) {
                s->state = WRITING;
                continue;
            }
            return blocked_or_failed(s, r);
        case WRITING:
            r = SSL_write(s->ssl, req + s->sent, (int)(reqlen - s->sent));
            if (r > 0) {
                s->sent += (size_t)r;
                if (s->sent == reqlen)
                    s->state = READING;
                continue;
            }
            return blocked_or_failed(s, r);
        case READING: {
            char buf[16384];
            r = SSL_read(s->ssl, buf, sizeof buf);
            if (r > 0) {
                size_t take = sizeof s->head - s->got;
                if (take > (size_t)r)
                    take = (size_t)r;
                memcpy(s->head + s->got, buf, take);
                s->got += take;
                continue;
            }
            e = SSL_get_error(s->ssl, r);
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
                return 0;
            /* closed: clean close_notify, or a plain TCP close after the answer */
            int ok = s->got >= 12 && memcmp(s->head, "HTTP/1.1 200", 12) == 0 &&
                     (e == SSL_ERROR_ZERO_RETURN || e == SSL_ERROR_SYSCALL);
            finish(s, ok);
            return 1;
        }
        }
    }
}

static long num(const char *s, const char *what)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end) {
        fprintf(stderr, "tlsload: %s: not a number: %s\n", what, s);
        exit(2);
    }
    return v;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    int conns = 64;
    double seconds = 5;
    char extra[2048] = "";
    size_t elen = 0;
    int opt;
    while ((opt = getopt(argc, argv, "p:c:d:H:k")) != -1) {
        switch (opt) {
        case 'p': port = (int)num(optarg, "-p"); break;
        case 'c': conns = (int)num(optarg, "-c"); break;
        case 'd': seconds = (double)num(optarg, "-d"); break;
        case 'k': resume = 1; break;
        case 'H': {
            int n = snprintf(extra + elen, sizeof extra - elen, "%s\r\n", optarg);
            if (n < 0 || (size_t)n >= sizeof extra - elen) {
                fprintf(stderr, "tlsload: headers too long\n");
                return 2;
            }
            elen += (size_t)n;
            break;
        }
        default:
            fprintf(stderr, "usage: tlsload -p PORT [-c CONNS] [-d SECONDS] [-H 'N: "
                            "v']... [-k]\n");
            return 2;
        }
    }
    if (port <= 0 || port > 65535 || conns <= 0 || conns > 10000 || seconds <= 0) {
        fprintf(stderr, "tlsload: need -p PORT (1-65535), -c 1..10000, -d > 0\n");
        return 2;
    }
    reqlen = (size_t)snprintf(req, sizeof req,
                              "GET / HTTP/1.1\r\nHost: localhost\r\n%sConnection: close\r\n\r\n", extra);

    ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx)
        die("SSL_CTX_new");
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
    if (!resume) {
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
        SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    } else {
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT);
    }

    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0)
        die("epoll_create1");
    struct slot *slots = calloc((size_t)conns, sizeof *slots);
    if (!slots)
        die("calloc");
    double t_start = now(), t_end = t_start + seconds;
    for (int i = 0; i < conns; i++)
        start(&slots[i]);

    struct epoll_event evs[256];
    for (;;) {
        double t = now();
        if (t >= t_end)
            break;
        int n = epoll_wait(ep, evs, 256, (int)((t_end - t) * 1000) + 1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("epoll_wait");
        }
        for (int i = 0; i < n; i++) {
            struct slot *s = evs[i].data.ptr;
            if (step(s) && now() < t_end)
                start(s);
        }
    }
    double elapsed = now() - t_start;
    qsort(lat, nlat, sizeof *lat, cmp);
    double p50 = nlat ? lat[nlat / 2] * 1e3 : 0, p99 = nlat ? lat[(nlat * 99) / 100] * 1e3 : 0;
    printf("requests=%llu errors=%llu seconds=%.3f rps=%.1f p50_ms=%.3f "
           "p99_ms=%.3f full=%llu "
           "resumed=%llu\n",
           (unsigned long long)done, (unsigned long long)errors, elapsed, (double)done / elapsed, p50, p99,
           (unsigned long long)n_full, (unsigned long long)n_resumed);
    return done ? 0 : 1;
}
