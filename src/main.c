/*
 * main.c: command line, start-up, signals, reload, upstream name resolution
 * and graceful shutdown. The main thread never touches a client connection.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <malloc.h>
#include <getopt.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "acme/acme.h"
#include "config/config.h"
#include "core/alloc.h"
#include "core/log.h"
#include "core/logq.h"
#include "proxy/proxy.h"
#include "tls/tls.h"

static const char usage[] =
    "Usage: switchyard -c FILE        run with the configuration FILE\n"
    "       switchyard -t -c FILE     check FILE (and its certificates) and exit\n"
    "       switchyard --version      print the version\n"
    "       switchyard --help         this text\n"
    "Options: --io-backend=epoll|io_uring|auto\n"
    "                                 the event loops' system interface; overrides the\n"
    "                                 io_backend key (default auto) and the\n"
    "                                 SWITCHYARD_IO_BACKEND environment variable. auto:\n"
    "                                 io_uring when the kernel and the sandbox allow it,\n"
    "                                 else epoll (logged); io_uring: fail if refused\n"
    "\n"
    "Switchyard is an HTTP/1.1, HTTP/2 and HTTPS gateway that sends each request to the\n"
    "version of an application it asks for (by header, query parameter or pin\n"
    "cookie). Signals: SIGHUP reloads FILE (a bad file is refused and the running\n"
    "configuration keeps serving); SIGTERM or SIGINT stop accepting, finish the\n"
    "requests in flight within timeouts.drain (new connections are still taken\n"
    "during timeouts.drain_grace), and exit 0.\n"
    "Access log: JSON lines on stdout. Errors: stderr. A stalled reader never blocks\n"
    "requests: lines beyond the buffers are dropped whole and counted in /metrics.\n"
    "See docs/configuration.md.\n";

#define LOG_FLUSH_MS 2000 /* at exit, the longest wait for stdout and stderr readers */

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- upstream name resolution (main thread only) ---- */

static int parse_literal(const char *host, uint16_t port, union sy_addr *out)
{
    memset(out, 0, sizeof(*out));
    if (inet_pton(AF_INET, host, &out->in.sin_addr) == 1) {
        out->in.sin_family = AF_INET;
        out->in.sin_port = htons(port);
        return 1;
    }
    if (inet_pton(AF_INET6, host, &out->in6.sin6_addr) == 1) {
        out->in6.sin6_family = AF_INET6;
        out->in6.sin6_port = htons(port);
        return 1;
    }
    return 0;
}

static void publish_addrs(struct sy_server_rt *rt, const union sy_addr *a, uint32_t n)
{
    atomic_fetch_add_explicit(&rt->seq, 1, memory_order_acq_rel);
    atomic_thread_fence(memory_order_release);
    memcpy(rt->addrs, a, n * sizeof(*a));
    rt->naddrs = n;
    atomic_thread_fence(memory_order_release);
    atomic_fetch_add_explicit(&rt->seq, 1, memory_order_acq_rel);
}

static int addr_cmp(const void *a, const void *b)
{
    return memcmp(a, b, sizeof(union sy_addr));
}

/*
 * Resolves one server. Keeps the previous addresses when resolution fails.
 * The addresses are sorted, so that an answer in another order is no change,
 * and every replica keeps the same ones when there are more than
 * SY_MAX_ADDRS. Returns 1 when a new list was published.
 */
static int resolve_server(struct sy_server_rt *rt)
{
    const struct sy_server_conf *sc = rt->conf;
    rt->resolved_at = mono_ms();
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    char port[8];
    snprintf(port, sizeof(port), "%u", sc->port);
    int rc = getaddrinfo(sc->host, port, &hints, &res);
    if (rc != 0) {
        sy_log_warn("resolver", "cannot resolve %s: %s%s", sc->name, gai_strerror(rc),
                    rt->naddrs ? " (keeping the previous addresses)" : "");
        return 0;
    }
    union sy_addr a[SY_MAX_ADDRS];
    uint32_t n = 0, over = 0;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        if ((ai->ai_family != AF_INET && ai->ai_family != AF_INET6) ||
            ai->ai_addrlen > sizeof(a[0]))
            continue;
        union sy_addr one;
        memset(&one, 0, sizeof(one));
        memcpy(&one, ai->ai_addr, ai->ai_addrlen);
        int dup = 0;
        for (uint32_t k = 0; k < n && !dup; k++)
            dup = !memcmp(&a[k], &one, sizeof(one));
        if (dup)
            continue;
        if (n < SY_MAX_ADDRS) {
            a[n++] = one;
        } else {
            /* Keep the lowest addresses, as every replica will. */
            qsort(a, n, sizeof(a[0]), addr_cmp);
            if (memcmp(&one, &a[n - 1], sizeof(one)) < 0)
                a[n - 1] = one;
            over++;
        }
    }
    freeaddrinfo(res);
    qsort(a, n, sizeof(a[0]), addr_cmp);
    if (over != rt->over_limit && over)
        sy_log_warn("resolver", "%s resolves to %u addresses; only the first %u are "
                    "used (the limit per server name)", sc->name, SY_MAX_ADDRS + over,
                    SY_MAX_ADDRS);
    rt->over_limit = over;
    if (n == rt->naddrs && memcmp(a, rt->addrs, n * sizeof(a[0])) == 0)
        return 0;
    if (rt->naddrs)
        sy_log_info("resolver", "%s now resolves to %u address(es)", sc->name, n);
    publish_addrs(rt, a, n);
    return 1;
}

static struct sy_snapshot *snapshot_new(struct sy_config *cfg, struct sy_tls *tls,
                                        const struct sy_snapshot *prev)
{
    static uint64_t generation;
    struct sy_snapshot *s = sy_calloc(1, sizeof(*s));
    atomic_init(&s->refs, 1);
    s->generation = ++generation;
    s->cfg = cfg;
    s->tls = tls;
    s->ups = sy_calloc(cfg->nupstreams ? cfg->nupstreams : 1, sizeof(*s->ups));
    for (size_t i = 0; i < cfg->nupstreams; i++) {
        const struct sy_upstream_conf *uc = &cfg->upstreams[i];
        s->ups[i].conf = uc;
        atomic_init(&s->ups[i].gen, 0);
        s->ups[i].servers = sy_calloc(uc->nservers, sizeof(struct sy_server_rt));
        for (size_t k = 0; k < uc->nservers; k++) {
            struct sy_server_rt *rt = &s->ups[i].servers[k];
            rt->conf = &uc->servers[k];
            atomic_init(&rt->seq, 0);
            union sy_addr a;
            if (parse_literal(rt->conf->host, rt->conf->port, &a)) {
                rt->literal = 1;
                rt->addrs = sy_calloc(1, sizeof(*rt->addrs));
                publish_addrs(rt, &a, 1);
                continue;
            }
            rt->addrs = sy_calloc(SY_MAX_ADDRS, sizeof(*rt->addrs));
            /* Same name in the previous snapshot: start from its addresses. */
            int copied = 0;
            for (size_t pi = 0; prev && pi < prev->cfg->nupstreams && !copied; pi++)
                for (size_t pk = 0; pk < prev->cfg->upstreams[pi].nservers; pk++) {
                    struct sy_server_rt *p = &prev->ups[pi].servers[pk];
                    if (!p->literal && p->naddrs && !strcmp(p->conf->name, rt->conf->name)) {
                        publish_addrs(rt, p->addrs, p->naddrs);
                        rt->resolved_at = p->resolved_at;
                        copied = 1;
                        break;
                    }
                }
            if (!copied)
                resolve_server(rt);
        }
    }
    return s;
}

/* Resolves the names that are due. Returns the milliseconds until the next one (at most 1000). */
static int resolve_due(struct sy_snapshot *s)
{
    uint64_t now = mono_ms();
    uint64_t next = now + 1000;
    for (size_t i = 0; i < s->cfg->nupstreams; i++) {
        uint32_t every = s->cfg->upstreams[i].resolve_interval_ms;
        for (size_t k = 0; k < s->cfg->upstreams[i].nservers; k++) {
            struct sy_server_rt *rt = &s->ups[i].servers[k];
            if (rt->literal)
                continue;
            /* Unresolved names are retried every second. */
            uint64_t due = rt->resolved_at + (rt->naddrs ? every : 1000);
            if (now >= due) {
                if (resolve_server(rt))
                    atomic_fetch_add_explicit(&s->ups[i].gen, 1, memory_order_release);
                due = rt->resolved_at + (rt->naddrs ? every : 1000);
            }
            if (due < next)
                next = due;
        }
    }
    return next > now ? (int)(next - now) : 0;
}

/* ---- configuration ---- */

static struct sy_config *load_checked(const char *path, struct sy_tls **tls, int initial,
                                      char **err)
{
    struct sy_config *cfg = sy_config_load(path, err);
    if (!cfg)
        return NULL;
    if (cfg->tls.acme.enabled && sy_acme_check_conf(&cfg->tls.acme, err) < 0) {
        char *e = sy_asprintf("%s:%d: %s", cfg->file, cfg->tls.acme.line, *err);
        sy_free(*err);
        *err = e;
        sy_config_free(cfg);
        return NULL;
    }
    *tls = NULL;
    if (cfg->listen_https.set || cfg->tls.ncerts || cfg->tls.acme.enabled) {
        *tls = initial ? sy_tls_new_initial(cfg, err) : sy_tls_new(cfg, err);
        if (!*tls && *err) {
            sy_config_free(cfg);
            return NULL;
        }
    }
    return cfg;
}

static int same_listen(const struct sy_listen_addr *a, const struct sy_listen_addr *b)
{
    if (a->set != b->set)
        return 0;
    return !a->set || (a->len == b->len && !memcmp(&a->ss, &b->ss, a->len));
}

static int str_same(const char *a, const char *b)
{
    return (!a && !b) || (a && b && !strcmp(a, b));
}

/* The ACME client is started once; a changed tls.acme block needs a restart. */
static int acme_same(const struct sy_acme_conf *a, const struct sy_acme_conf *b)
{
    if (a->enabled != b->enabled || a->ndomains != b->ndomains ||
        a->renew_before_ms != b->renew_before_ms || !str_same(a->directory, b->directory) ||
        !str_same(a->email, b->email) || !str_same(a->storage, b->storage) ||
        !str_same(a->ca, b->ca))
        return 0;
    for (size_t i = 0; i < a->ndomains; i++)
        if (!str_same(a->domains[i], b->domains[i]))
            return 0;
    return 1;
}

static struct sy_tls_watch *watcher;
static int watch_efd = -1;

static void certs_changed(void *arg)
{
    (void)arg;
    uint64_t one = 1;
    ssize_t r = write(watch_efd, &one, sizeof(one));
    (void)r;
}

static void reload(const char *path, const char *why)
{
    struct sy_snapshot *cur = atomic_load(&sy_proc.current);
    char *err = NULL;
    struct sy_tls *tls = NULL;
    struct sy_config *cfg = load_checked(path, &tls, 0, &err);
    if (cfg && (!same_listen(&cfg->listen_http, &cur->cfg->listen_http) ||
                !same_listen(&cfg->listen_https, &cur->cfg->listen_https) ||
                !same_listen(&cfg->listen_admin, &cur->cfg->listen_admin))) {
        err = sy_asprintf("%s: listen addresses cannot change on reload (restart instead)", path);
        if (tls)
            sy_tls_unref(tls);
        sy_config_free(cfg);
        cfg = NULL;
    }
    if (!cfg) {
        sy_log_error("reload", "reload refused (%s), still serving the previous configuration: %s",
                     why, err ? err : "unknown error");
        sy_free(err);
        atomic_fetch_add(&sy_proc.reloads_failed, 1);
        return;
    }
    if (cfg->log.level >= 0)
        sy_log_level = (enum sy_log_level)cfg->log.level;
    if (!acme_same(&cfg->tls.acme, &cur->cfg->tls.acme))
        sy_log_warn("reload", "tls.acme changed: the ACME client keeps its previous settings "
                              "until the next restart");
    struct sy_snapshot *s = snapshot_new(cfg, tls, cur);
    for (unsigned i = 0; i < sy_proc.nworkers; i++)
        sy_worker_deliver(&sy_proc.workers[i], s);
    atomic_store(&sy_proc.current, s);
    sy_snapshot_unref(cur);
    atomic_fetch_add(&sy_proc.reloads_ok, 1);
    if (watcher)
        sy_tls_watch_set(watcher, cfg);
    sy_log_info("reload", "configuration reloaded (%s): %s, generation %llu", why, path,
                (unsigned long long)s->generation);
}

/* ---- main ---- */

static unsigned cpu_count(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 && n < 256 ? (unsigned)n : 1;
}

static void raise_nofile(uint32_t want)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return;
    rlim_t need = (rlim_t)want * 2 + 64;
    if (rl.rlim_cur >= need)
        return;
    rl.rlim_cur = need < rl.rlim_max ? need : rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
}

static void drain_and_exit(void)
{
    struct sy_snapshot *cur = atomic_load(&sy_proc.current);
    uint64_t start = mono_ms();
    uint64_t until = start + cur->cfg->timeouts.drain_ms;
    uint64_t grace = cur->cfg->timeouts.drain_grace_ms;
    /* Not ready from now on: /readyz answers 503 before this line is logged. */
    atomic_store(&sy_proc.draining, 1);
    sy_log_info("main", "draining: finishing requests in flight (up to %u ms)%s",
                cur->cfg->timeouts.drain_ms,
                grace ? ", still accepting during timeouts.drain_grace" : ", no new connections");
    for (unsigned i = 0; i < sy_proc.nworkers; i++)
        sy_worker_drain(&sy_proc.workers[i], 1);
    if (grace) {
        uint64_t stop_at = start + grace < until ? start + grace : until;
        while (mono_ms() < stop_at)
            usleep(10000);
        sy_log_info("main", "draining: no new connections");
    }
    for (unsigned i = 0; i < sy_proc.nworkers; i++)
        sy_worker_drain(&sy_proc.workers[i], 2);
    for (;;) {
        uint32_t open = 0;
        for (unsigned i = 0; i < sy_proc.nworkers; i++) {
            if (!atomic_load(&sy_proc.workers[i].drain_ack))
                open++; /* not yet stopped accepting: its count is not known */
            open += __atomic_load_n(&sy_proc.workers[i].nconns_pub, __ATOMIC_RELAXED);
        }
        if (open == 0 || mono_ms() >= until) {
            if (open)
                sy_log_warn("main", "drain timeout: closing %u connection(s)", open);
            break;
        }
        usleep(20000);
    }
    atomic_store(&sy_proc.draining, 2);
    for (unsigned i = 0; i < sy_proc.nworkers; i++) {
        sy_loop_wake(sy_proc.workers[i].loop);
        pthread_join(sy_proc.workers[i].thread, NULL);
    }
    if (watcher)
        sy_tls_watch_stop(watcher);
    sy_acme_stop(sy_proc.acme);
    sy_log_info("main", "stopped");
    /* Write out what the workers queued, but never wait long for a reader that stopped. */
    sy_logq_flush(LOG_FLUSH_MS);
    _exit(0);
}

/*
 * The event loops' backend, once for the process: `want` from the command
 * line, the environment or the io_backend key. auto takes io_uring when a
 * probe ring works (a seccomp profile may refuse it) and says why it did not;
 * io_uring asked for explicitly and refused is an error.
 */
static int choose_backend(enum sy_loop_backend want)
{
    sy_proc.io_backend = SY_LOOP_EPOLL;
    if (want == SY_LOOP_EPOLL)
        return 0;
    int rc = sy_loop_uring_probe();
    if (rc == 0) {
        sy_proc.io_backend = SY_LOOP_URING;
        return 0;
    }
    if (want == SY_LOOP_URING) {
        fprintf(stderr, "switchyard: io_backend io_uring: io_uring is not available here: %s\n",
                strerror(-rc));
        return -1;
    }
    sy_log_info("main", "io_uring is not available here (%s): the event loops use epoll",
                strerror(-rc));
    return 0;
}

int main(int argc, char **argv)
{
    const char *path = NULL;
    int test_only = 0;
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"test", no_argument, NULL, 't'},
        {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {"io-backend", required_argument, NULL, 'B'},
        {NULL, 0, NULL, 0},
    };
    const char *backend_arg = NULL;
    int ch;
    while ((ch = getopt_long(argc, argv, "c:tVvh", opts, NULL)) != -1) {
        switch (ch) {
        case 'c':
            path = optarg;
            break;
        case 't':
            test_only = 1;
            break;
        case 'V':
        case 'v':
            printf("switchyard %s\n", SY_VERSION);
            return 0;
        case 'h':
            fputs(usage, stdout);
            return 0;
        case 'B':
            backend_arg = optarg;
            break;
        default:
            fputs(usage, stderr);
            return 2;
        }
    }
    if (!path || optind != argc) {
        fputs(usage, stderr);
        return 2;
    }
    const char *env_backend = getenv("SWITCHYARD_IO_BACKEND");
    enum sy_loop_backend forced = SY_LOOP_AUTO;
    int have_forced = 0;
    if (backend_arg || (env_backend && *env_backend)) {
        const char *v = backend_arg ? backend_arg : env_backend;
        if (sy_loop_backend_parse(v, &forced) < 0) {
            fprintf(stderr, "switchyard: %s: unknown I/O backend \"%s\" (auto, epoll, io_uring)\n",
                    backend_arg ? "--io-backend" : "SWITCHYARD_IO_BACKEND", v);
            return 2;
        }
        have_forced = 1;
    }

    char *err = NULL;
    struct sy_tls *tls = NULL;
    struct sy_config *cfg = load_checked(path, &tls, 1, &err);
    if (!cfg) {
        fprintf(stderr, "%s\n", err ? err : "cannot load configuration");
        sy_free(err);
        return 1;
    }
    if (test_only) {
        fprintf(stderr, "%s: configuration ok\n", path);
        if (tls)
            sy_tls_unref(tls);
        sy_config_free(cfg);
        return 0;
    }
    if (cfg->log.level >= 0)
        sy_log_level = (enum sy_log_level)cfg->log.level;

    signal(SIGPIPE, SIG_IGN);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    int sfd = signalfd(-1, &set, SFD_CLOEXEC);
    /* From here on, log lines go through bounded rings and writer threads (they inherit the
     * signal mask): a stdout or stderr reader that pauses never blocks a worker. */
    if (sy_logq_start() < 0) {
        fprintf(stderr, "switchyard: cannot start the log writers\n");
        return 1;
    }
    watch_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);

    if (choose_backend(have_forced ? forced : (enum sy_loop_backend)cfg->io_backend) < 0)
        return 1;
    raise_nofile(cfg->limits.max_connections);
    sy_proc.start_time = (uint64_t)time(NULL);
    sy_proc.nworkers = cfg->workers ? cfg->workers : cpu_count();
    sy_proc.workers = sy_calloc(sy_proc.nworkers, sizeof(struct sy_worker));
    for (unsigned i = 0; i < sy_proc.nworkers; i++) {
        struct sy_worker *w = &sy_proc.workers[i];
        w->id = i;
        if (sy_worker_open_listeners(w, cfg, &err) < 0) {
            fprintf(stderr, "%s: %s\n", path, err);
            return 1;
        }
    }
    struct sy_snapshot *s = snapshot_new(cfg, tls, NULL);
    atomic_store(&sy_proc.current, s);
    if (cfg->tls.acme.enabled) {
        sy_proc.acme = sy_acme_start(&cfg->tls.acme);
        if (!sy_proc.acme)
            sy_log_error("main", "ACME could not start; certificates will not be issued");
    }
    for (unsigned i = 0; i < sy_proc.nworkers; i++) {
        if (sy_worker_start(&sy_proc.workers[i], s) < 0) {
            fprintf(stderr, "switchyard: cannot start worker %u\n", i);
            return 1;
        }
    }
    if (tls || cfg->tls.acme.enabled) {
        watcher = sy_tls_watch_start(certs_changed, NULL);
        if (watcher)
            sy_tls_watch_set(watcher, cfg);
    }
    sy_log_info("main", "switchyard %s serving %s%s%s%s%s with %u worker(s), %s", SY_VERSION,
                cfg->listen_http.set ? "http " : "",
                cfg->listen_http.set ? cfg->listen_http.text : "",
                cfg->listen_https.set ? " https " : "",
                cfg->listen_https.set ? cfg->listen_https.text : "",
                cfg->listen_admin.set ? " (admin on the admin listener)" : "", sy_proc.nworkers,
                sy_loop_backend_name(sy_proc.io_backend));

    uint64_t last_trim = mono_ms();
    int wait_ms = 1000;
    for (;;) {
        struct pollfd pfd[2] = {{sfd, POLLIN, 0}, {watch_efd, POLLIN, 0}};
        int n = poll(pfd, 2, wait_ms);
        if (n < 0 && errno != EINTR)
            break;
        if (pfd[0].revents & POLLIN) {
            struct signalfd_siginfo si;
            if (read(sfd, &si, sizeof(si)) == sizeof(si)) {
                if (si.ssi_signo == SIGHUP)
                    reload(path, "SIGHUP");
                else
                    drain_and_exit();
            }
        }
        if (pfd[1].revents & POLLIN) {
            uint64_t v;
            if (read(watch_efd, &v, sizeof(v)) == sizeof(v))
                reload(path, "certificate files changed");
        }
        wait_ms = resolve_due(atomic_load(&sy_proc.current));
        /* Give memory freed after a burst back to the system (off the request path). */
        uint64_t now = mono_ms();
        if (now - last_trim >= 5000) {
            malloc_trim(256 * 1024);
            last_trim = now;
        }
    }
    return 1;
}
