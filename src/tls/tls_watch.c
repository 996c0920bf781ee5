/*
 * tls_watch.c: the certificate file watcher (a side thread).
 *
 * Two sources, because neither is enough alone:
 * - inotify on the DIRECTORIES holding the files (and holding their resolved
 *   targets): Kubernetes updates a mounted Secret by renaming a "..data"
 *   symlink, so the file itself is never written and a watch on it would
 *   stay on the old inode;
 * - polling every poll_ms: stat() of each file through its symlinks (device,
 *   inode, size, mtime), for network file systems that send no events.
 * Events are debounced: changed() runs once, debounce_ms after the last event
 * of a burst (at most 2 s after its first one), then a new baseline is taken.
 */
#include "tls/tls_int.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/config.h"
#include "core/alloc.h"
#include "core/log.h"

#define POLL_MS 5000
#define DEBOUNCE_MS 300
#define BURST_MAX_MS 2000
#define DIR_MASK                                                                                 \
    (IN_CREATE | IN_MOVED_TO | IN_MOVED_FROM | IN_CLOSE_WRITE | IN_DELETE | IN_ATTRIB |          \
     IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR)

struct wfile {
    char *path;
    int exists;
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime;
};

struct wdir {
    char *path;
    int wd;                    /* -1: not watched (missing directory, no inotify) */
    char **names;              /* basenames of interest in it */
    size_t nnames;
};

struct sy_tls_watch {
    void (*changed)(void *arg);
    void *arg;
    int use_inotify;
    unsigned poll_ms, debounce_ms;
    int efd;                   /* eventfd: wakes the thread for set and stop */
    pthread_t thread;

    pthread_mutex_t lock;      /* guards the three fields below */
    int stop;
    int have_new;
    char **new_paths;
    size_t nnew;

    /* Owned by the watcher thread. */
    struct wfile *files;
    size_t nfiles;
    struct wdir *dirs;
    size_t ndirs;
    int ifd;
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static char *dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        return sy_strdup(".");
    if (slash == path)
        return sy_strdup("/");
    return sy_strndup(path, (size_t)(slash - path));
}

static const char *base_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

static void file_stat(struct wfile *f)
{
    struct stat st;
    if (stat(f->path, &st) < 0) {
        f->exists = 0;
        f->dev = 0;
        f->ino = 0;
        f->size = 0;
        f->mtime.tv_sec = f->mtime.tv_nsec = 0;
        return;
    }
    f->exists = 1;
    f->dev = st.st_dev;
    f->ino = st.st_ino;
    f->size = st.st_size;
    f->mtime = st.st_mtim;
}

/* 1 when any file differs from its baseline (the baseline is not updated). */
static int files_changed(const struct sy_tls_watch *w)
{
    for (size_t i = 0; i < w->nfiles; i++) {
        struct wfile now = {.path = w->files[i].path};
        const struct wfile *old = &w->files[i];
        file_stat(&now);
        if (now.exists != old->exists || now.dev != old->dev || now.ino != old->ino ||
            now.size != old->size || now.mtime.tv_sec != old->mtime.tv_sec ||
            now.mtime.tv_nsec != old->mtime.tv_nsec)
            return 1;
    }
    return 0;
}

static void add_dir_name(struct sy_tls_watch *w, char *dir, const char *name)
{
    struct wdir *d = NULL;
    for (size_t i = 0; i < w->ndirs && !d; i++)
        if (strcmp(w->dirs[i].path, dir) == 0)
            d = &w->dirs[i];
    if (!d) {
        w->dirs = sy_realloc(w->dirs, (w->ndirs + 1) * sizeof(*w->dirs));
        d = &w->dirs[w->ndirs++];
        d->path = dir;
        d->wd = -1;
        d->names = NULL;
        d->nnames = 0;
    } else {
        sy_free(dir);
    }
    for (size_t i = 0; i < d->nnames; i++)
        if (strcmp(d->names[i], name) == 0)
            return;
    d->names = sy_realloc(d->names, (d->nnames + 1) * sizeof(*d->names));
    d->names[d->nnames++] = sy_strdup(name);
}

static void dirs_free(struct wdir *dirs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < dirs[i].nnames; j++)
            sy_free(dirs[i].names[j]);
        sy_free(dirs[i].names);
        sy_free(dirs[i].path);
    }
    sy_free(dirs);
}

static int read_events(int ifd, const struct wdir *dirs, size_t ndirs, int *rewatch);

/*
 * Takes a new baseline of the files, then re-creates the directory watches
 * on a new inotify instance before draining and closing the old one, so no
 * event is lost in between. Returns 1 when the old instance still held a
 * relevant event.
 */
static int rebuild(struct sy_tls_watch *w)
{
    int old_ifd = w->ifd;
    struct wdir *old_dirs = w->dirs;
    size_t old_n = w->ndirs;
    w->ifd = -1;
    w->dirs = NULL;
    w->ndirs = 0;
    for (size_t i = 0; i < w->nfiles; i++) {
        struct wfile *f = &w->files[i];
        file_stat(f);
        add_dir_name(w, dir_of(f->path), base_of(f->path));
        char real[PATH_MAX];
        if (realpath(f->path, real))
            add_dir_name(w, dir_of(real), base_of(real));
    }
    if (w->use_inotify && w->ndirs) {
        w->ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
        if (w->ifd < 0)
            sy_log_warn("tls", "watch: inotify unavailable (%s): polling only", strerror(errno));
        for (size_t i = 0; w->ifd >= 0 && i < w->ndirs; i++)
            w->dirs[i].wd = inotify_add_watch(w->ifd, w->dirs[i].path, DIR_MASK);
    }
    int hit = 0, ignored = 0;
    if (old_ifd >= 0) {
        hit = read_events(old_ifd, old_dirs, old_n, &ignored);
        close(old_ifd);
    }
    dirs_free(old_dirs, old_n);
    return hit;
}

static int missing_watch(const struct sy_tls_watch *w)
{
    if (!w->use_inotify || w->ifd < 0)
        return 0;
    for (size_t i = 0; i < w->ndirs; i++)
        if (w->dirs[i].wd < 0)
            return 1;
    return 0;
}

static void files_take(struct sy_tls_watch *w, char **paths, size_t n)
{
    for (size_t i = 0; i < w->nfiles; i++)
        sy_free(w->files[i].path);
    sy_free(w->files);
    w->files = sy_calloc(n ? n : 1, sizeof(*w->files));
    w->nfiles = n;
    for (size_t i = 0; i < n; i++)
        w->files[i].path = paths[i];
    sy_free(paths);
}

/* Reads queued inotify events; 1 when one of them concerns a watched name. */
static int read_events(int ifd, const struct wdir *dirs, size_t ndirs, int *rewatch)
{
    char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
    int hit = 0;
    for (;;) {
        ssize_t n = read(ifd, buf, sizeof(buf));
        if (n <= 0)
            return hit;
        for (char *p = buf; p < buf + n;) {
            const struct inotify_event *ev = (const struct inotify_event *)p;
            p += sizeof(*ev) + ev->len;
            if (ev->mask & (IN_Q_OVERFLOW | IN_IGNORED | IN_DELETE_SELF | IN_MOVE_SELF)) {
                hit = 1;
                *rewatch = 1;
                continue;
            }
            if (ev->len == 0)
                continue;
            for (size_t i = 0; i < ndirs; i++) {
                const struct wdir *d = &dirs[i];
                if (d->wd != ev->wd)
                    continue;
                /* "..data" and friends: the Kubernetes atomic writer. */
                if (strncmp(ev->name, "..", 2) == 0)
                    hit = 1;
                for (size_t j = 0; j < d->nnames && !hit; j++)
                    if (strcmp(d->names[j], ev->name) == 0)
                        hit = 1;
            }
        }
    }
}

static void *watch_main(void *arg)
{
    struct sy_tls_watch *w = arg;
    int64_t next_poll = now_ms() + w->poll_ms;
    int64_t first = 0, deadline = 0; /* deadline != 0: a burst is pending */
    for (;;) {
        int64_t now = now_ms();
        int64_t wake = next_poll;
        if (deadline && deadline < wake)
            wake = deadline;
        int timeout = wake > now ? (int)(wake - now) : 0;
        struct pollfd pfd[2] = {{.fd = w->efd, .events = POLLIN}, {.fd = w->ifd, .events = POLLIN}};
        int r = poll(pfd, w->ifd >= 0 ? 2 : 1, timeout);
        if (r < 0 && errno != EINTR)
            sy_log_warn("tls", "watch: poll: %s", strerror(errno));
        int event = 0, rewatch = 0;

        if (r > 0 && (pfd[0].revents & POLLIN)) {
            uint64_t v;
            if (read(w->efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
                sy_log_warn("tls", "watch: eventfd: %s", strerror(errno));
            pthread_mutex_lock(&w->lock);
            int stop = w->stop;
            char **paths = NULL;
            size_t n = 0;
            if (w->have_new) {
                paths = w->new_paths;
                n = w->nnew;
                w->new_paths = NULL;
                w->nnew = 0;
                w->have_new = 0;
            }
            pthread_mutex_unlock(&w->lock);
            if (stop)
                break;
            if (paths) {
                files_take(w, paths, n);
                /* A pending burst still fires: a spare reload is harmless. */
                if (rebuild(w))
                    event = 1;
            }
        }
        if (r > 0 && w->ifd >= 0 && (pfd[1].revents & POLLIN))
            event = read_events(w->ifd, w->dirs, w->ndirs, &rewatch);

        now = now_ms();
        if (now >= next_poll) {
            next_poll = now + w->poll_ms;
            if (files_changed(w))
                event = 1;
            if (missing_watch(w))
                rewatch = 1;
        }
        if (rewatch && rebuild(w)) /* a change it hides was flagged above */
            event = 1;
        if (event) {
            if (!deadline)
                first = now;
            deadline = now + w->debounce_ms;
            if (deadline > first + BURST_MAX_MS)
                deadline = first + BURST_MAX_MS;
        }
        if (deadline && now >= deadline) {
            deadline = 0;
            int again = rebuild(w);
            w->changed(w->arg);
            if (again) { /* it changed again as the burst ended */
                first = now;
                deadline = now + w->debounce_ms;
            }
        }
    }
    return NULL;
}

struct sy_tls_watch *sy__tls_watch_start_opts(void (*changed)(void *arg), void *arg,
                                              int use_inotify, unsigned poll_ms,
                                              unsigned debounce_ms)
{
    struct sy_tls_watch *w = sy_calloc(1, sizeof(*w));
    w->changed = changed;
    w->arg = arg;
    w->use_inotify = use_inotify;
    w->poll_ms = poll_ms ? poll_ms : POLL_MS;
    w->debounce_ms = debounce_ms;
    w->ifd = -1;
    w->files = sy_calloc(1, sizeof(*w->files));
    pthread_mutex_init(&w->lock, NULL);
    w->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (w->efd < 0 || pthread_create(&w->thread, NULL, watch_main, w) != 0) {
        sy_log_error("tls", "watch: cannot start the certificate watcher: %s", strerror(errno));
        if (w->efd >= 0)
            close(w->efd);
        pthread_mutex_destroy(&w->lock);
        sy_free(w->files);
        sy_free(w);
        return NULL;
    }
    return w;
}

struct sy_tls_watch *sy_tls_watch_start(void (*changed)(void *arg), void *arg)
{
    return sy__tls_watch_start_opts(changed, arg, 1, POLL_MS, DEBOUNCE_MS);
}

static void wake(struct sy_tls_watch *w)
{
    uint64_t one = 1;
    if (write(w->efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
        sy_log_warn("tls", "watch: eventfd: %s", strerror(errno));
}

static void push_path(char ***v, size_t *n, char *p)
{
    *v = sy_realloc(*v, (*n + 1) * sizeof(**v));
    (*v)[(*n)++] = p;
}

void sy_tls_watch_set(struct sy_tls_watch *w, const struct sy_config *cfg)
{
    char **paths = NULL;
    size_t n = 0;
    for (size_t i = 0; i < cfg->tls.ncerts; i++) {
        if (cfg->tls.certs[i].cert)
            push_path(&paths, &n, sy_strdup(cfg->tls.certs[i].cert));
        if (cfg->tls.certs[i].key)
            push_path(&paths, &n, sy_strdup(cfg->tls.certs[i].key));
    }
    char *crt, *key;
    if (cfg->tls.acme.enabled && sy_tls_acme_cert_paths(&cfg->tls.acme, &crt, &key) == 0) {
        push_path(&paths, &n, crt);
        push_path(&paths, &n, key);
    }
    if (!paths)
        paths = sy_calloc(1, sizeof(*paths)); /* "nothing to watch" is a new set too */
    pthread_mutex_lock(&w->lock);
    if (w->have_new) {
        for (size_t i = 0; i < w->nnew; i++)
            sy_free(w->new_paths[i]);
        sy_free(w->new_paths);
    }
    w->new_paths = paths;
    w->nnew = n;
    w->have_new = 1;
    pthread_mutex_unlock(&w->lock);
    wake(w);
}

void sy_tls_watch_stop(struct sy_tls_watch *w)
{
    if (!w)
        return;
    pthread_mutex_lock(&w->lock);
    w->stop = 1;
    pthread_mutex_unlock(&w->lock);
    wake(w);
    pthread_join(w->thread, NULL);
    if (w->have_new) {
        for (size_t i = 0; i < w->nnew; i++)
            sy_free(w->new_paths[i]);
        sy_free(w->new_paths);
    }
    files_take(w, NULL, 0);
    sy_free(w->files);
    dirs_free(w->dirs, w->ndirs);
    if (w->ifd >= 0)
        close(w->ifd);
    close(w->efd);
    pthread_mutex_destroy(&w->lock);
    sy_free(w);
}
