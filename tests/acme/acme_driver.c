/*
 * acme_driver: runs the ACME side thread outside the gateway, for the pebble
 * tests. It starts sy_acme with the configuration given on the command line
 * and a minimal plain HTTP listener that answers
 * /.well-known/acme-challenge/<token> with sy_acme_http01_answer(), the way
 * the gateway's plain listener does.
 *
 *   acme_driver --directory URL --storage DIR --domain NAME [--domain NAME...]
 *               [--email ADDR] [--ca PEM] [--http-port N] [--renew-before-ms N]
 *               [--start-delay-ms N] [--until cert|orders=N|time] [--timeout S]
 *
 * --until cert      exit 0 once the ACME thread sees a valid certificate in storage
 * --until orders=N  exit 0 once this process completed N valid orders
 * --until time      run for --timeout seconds, then exit 0
 * --start-delay-ms  sets SWITCHYARD_ACME_START_DELAY_MS (the listener starts at once)
 * Otherwise exits 2 at the timeout. The metrics text is printed on stdout at
 * exit. Log lines go to stderr; every challenge request is logged as
 * "driver: challenge <token> -> <status>".
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "acme/acme.h"
#include "core/alloc.h"
#include "core/log.h"

static int listen_fd = -1;
static pthread_rwlock_t live = PTHREAD_RWLOCK_INITIALIZER;

static void respond(int fd, int status, const char *body)
{
    char head[256];
    const char *reason = status == 200 ? "OK" : status == 404 ? "Not Found" : "Service Unavailable";
    int n = snprintf(head, sizeof(head),
                     "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n\r\n",
                     status, reason, strlen(body));
    if (write(fd, head, (size_t)n) < 0 || write(fd, body, strlen(body)) < 0)
        return;
}

static void serve(struct sy_acme *a, int fd)
{
    char req[4096];
    size_t len = 0;
    static const char prefix[] = "GET /.well-known/acme-challenge/";
    while (len < sizeof(req) - 1) {
        ssize_t n = read(fd, req + len, sizeof(req) - 1 - len);
        if (n <= 0)
            break;
        len += (size_t)n;
        req[len] = '\0';
        if (strstr(req, "\r\n\r\n"))
            break;
    }
    req[len] = '\0';
    if (strncmp(req, prefix, sizeof(prefix) - 1) != 0) {
        respond(fd, 404, "not found\n");
        return;
    }
    const char *tok = req + sizeof(prefix) - 1;
    const char *sp = strchr(tok, ' ');
    if (sp == NULL) {
        respond(fd, 404, "not found\n");
        return;
    }
    char out[SY_ACME_HTTP01_MAX];
    ssize_t r = sy_acme_http01_answer(a, sy_str_make(tok, (size_t)(sp - tok)), out, sizeof(out));
    int status = r > 0 ? 200 : r == 0 ? 404 : 503;
    sy_log_info("driver", "challenge %.*s -> %d", (int)(sp - tok), tok, status);
    respond(fd, status, r > 0 ? out : r == 0 ? "not found\n" : "no account key yet\n");
}

static void *http_main(void *arg)
{
    struct sy_acme **ap = arg;
    for (;;) {
        int fd = accept(listen_fd, NULL, NULL);
        if (fd < 0) {
            if (errno == EINTR)
                continue;
            return NULL;
        }
        struct timeval tv = {5, 0};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        pthread_rwlock_rdlock(&live);
        struct sy_acme *a = __atomic_load_n(ap, __ATOMIC_ACQUIRE);
        if (a)
            serve(a, fd);
        else
            respond(fd, 503, "not running\n");
        pthread_rwlock_unlock(&live);
        close(fd);
    }
}

static void usage(void)
{
    fprintf(stderr, "usage: acme_driver --directory URL --storage DIR --domain NAME [...]\n");
    exit(64);
}

static long num(const char *s)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (*end || v < 0)
        usage();
    return v;
}

int main(int argc, char **argv)
{
    struct sy_acme_conf conf;
    const char *until = "cert";
    long port = 0, delay_ms = 0, timeout_s = 120, want_orders = 0;
    memset(&conf, 0, sizeof(conf));
    conf.enabled = 1;
    conf.domains = sy_calloc((size_t)argc, sizeof(char *));
    signal(SIGPIPE, SIG_IGN);
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (v == NULL)
            usage();
        i++;
        if (strcmp(o, "--directory") == 0)
            conf.directory = (char *)v;
        else if (strcmp(o, "--storage") == 0)
            conf.storage = (char *)v;
        else if (strcmp(o, "--domain") == 0)
            conf.domains[conf.ndomains++] = (char *)v;
        else if (strcmp(o, "--email") == 0)
            conf.email = (char *)v;
        else if (strcmp(o, "--ca") == 0)
            conf.ca = (char *)v;
        else if (strcmp(o, "--http-port") == 0)
            port = num(v);
        else if (strcmp(o, "--renew-before-ms") == 0)
            conf.renew_before_ms = (uint32_t)num(v);
        else if (strcmp(o, "--start-delay-ms") == 0)
            delay_ms = num(v);
        else if (strcmp(o, "--until") == 0)
            until = v;
        else if (strcmp(o, "--timeout") == 0)
            timeout_s = num(v);
        else
            usage();
    }
    if (strncmp(until, "orders=", 7) == 0)
        want_orders = num(until + 7);
    else if (strcmp(until, "cert") != 0 && strcmp(until, "time") != 0)
        usage();

    static struct sy_acme *shared;
    pthread_t http;
    if (port > 0) {
        struct sockaddr_in sin;
        int one = 1;
        memset(&sin, 0, sizeof(sin));
        sin.sin_family = AF_INET;
        sin.sin_port = htons((uint16_t)port);
        sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        setsockopt(listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(listen_fd, (struct sockaddr *)&sin, sizeof(sin)) < 0 ||
            listen(listen_fd, 64) < 0) {
            fprintf(stderr, "driver: cannot listen on port %ld: %s\n", port, strerror(errno));
            return 1;
        }
        sy_log_info("driver", "listening on 127.0.0.1:%ld", port);
    }
    if (delay_ms > 0) {
        /* The listener answers at once; only the ACME thread's first step waits. */
        char v[32];
        snprintf(v, sizeof(v), "%ld", delay_ms);
        setenv("SWITCHYARD_ACME_START_DELAY_MS", v, 1);
    }
    struct sy_acme *a = sy_acme_start(&conf);
    if (a == NULL)
        return 1;
    __atomic_store_n(&shared, a, __ATOMIC_RELEASE);
    /* Accept only now: a connection made earlier waits in the backlog instead of getting
     * "not running" (and a reset, its request unread). */
    if (port > 0) {
        pthread_create(&http, NULL, http_main, &shared);
        pthread_detach(http);
    }

    int rc = 2;
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        struct sy_acme_status st;
        sy_acme_get_status(a, &st);
        if (strcmp(until, "cert") == 0 && st.cert_expiry > 0) {
            rc = 0;
            break;
        }
        if (want_orders > 0 && st.orders_valid >= (uint64_t)want_orders) {
            rc = 0;
            break;
        }
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec - start.tv_sec >= timeout_s) {
            rc = strcmp(until, "time") == 0 ? 0 : 2;
            break;
        }
        struct timespec ts = {0, 100 * 1000000};
        nanosleep(&ts, NULL);
    }
    /* Leave the listener answering: stop the ACME thread only after the last check. */
    char buf[2048];
    size_t n = sy_acme_metrics(a, buf, sizeof(buf));
    fwrite(buf, 1, n, stdout);
    fflush(stdout);
    sy_log_info("driver", "exiting with %d", rc);
    pthread_rwlock_wrlock(&live);
    __atomic_store_n(&shared, NULL, __ATOMIC_RELEASE);
    pthread_rwlock_unlock(&live);
    sy_acme_stop(a);
    sy_free(conf.domains);
    return rc;
}
