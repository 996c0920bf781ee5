/*
 * store.c: the storage directory shared by the replicas: atomic writes and
 * the issuing lock (see acme_int.h for the protocol).
 */
#include "acme/acme_int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/log.h"

int64_t sy__acme_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint32_t rnd32(void)
{
    uint32_t v = 0;
    if (getrandom(&v, sizeof(v), GRND_NONBLOCK) != (ssize_t)sizeof(v))
        v = (uint32_t)sy__acme_now_ms() ^ (uint32_t)getpid() << 16;
    return v;
}

/* Directory part of path ("." when there is none), heap string. */
static char *dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (slash == NULL)
        return sy_strdup(".");
    if (slash == path)
        return sy_strdup("/");
    return sy_strndup(path, (size_t)(slash - path));
}

static int fsync_dir(const char *path)
{
    char *dir = dir_of(path);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rc = -1;
    if (fd >= 0) {
        /* Some network file systems refuse fsync on a directory: not fatal. */
        if (fsync(fd) == 0 || errno == EINVAL || errno == ENOTSUP)
            rc = 0;
        close(fd);
    }
    if (rc < 0)
        sy_log_warn("acme", "fsync of directory %s failed: %s", dir, strerror(errno));
    sy_free(dir);
    return rc;
}

static int write_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Creates and fills a temp file next to path; returns its heap name or NULL. */
static char *write_temp(const char *path, const void *data, size_t len, mode_t mode)
{
    char *dir = dir_of(path);
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    char *tmp = sy_asprintf("%s/.%s.tmp.%ld.%08" PRIx32, dir, base, (long)getpid(), rnd32());
    sy_free(dir);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0) {
        sy_log_error("acme", "cannot create %s: %s", tmp, strerror(errno));
        sy_free(tmp);
        return NULL;
    }
    if (fchmod(fd, mode) < 0 || write_all(fd, data, len) < 0 || fsync(fd) < 0) {
        int e = errno;
        sy_log_error("acme", "cannot write %s: %s", tmp, strerror(e));
        close(fd);
        unlink(tmp);
        sy_free(tmp);
        errno = e;
        return NULL;
    }
    if (close(fd) < 0) {
        sy_log_error("acme", "cannot write %s: %s", tmp, strerror(errno));
        unlink(tmp);
        sy_free(tmp);
        return NULL;
    }
    return tmp;
}

int sy__acme_write_atomic(const char *path, const void *data, size_t len, mode_t mode)
{
    char *tmp = write_temp(path, data, len, mode);
    if (tmp == NULL)
        return -1;
    if (rename(tmp, path) < 0) {
        int e = errno;
        sy_log_error("acme", "cannot rename %s to %s: %s", tmp, path, strerror(e));
        unlink(tmp);
        sy_free(tmp);
        errno = e;
        return -1;
    }
    sy_free(tmp);
    fsync_dir(path);
    return 0;
}

int sy__acme_write_excl(const char *path, const void *data, size_t len, mode_t mode)
{
    char *tmp = write_temp(path, data, len, mode);
    int rc = 0;
    if (tmp == NULL)
        return -1;
    if (link(tmp, path) < 0) {
        if (errno == EEXIST) {
            rc = 1;
        } else {
            sy_log_error("acme", "cannot link %s to %s: %s", tmp, path, strerror(errno));
            rc = -1;
        }
    }
    unlink(tmp);
    sy_free(tmp);
    if (rc == 0)
        fsync_dir(path);
    return rc;
}

char *sy__acme_read_file(const char *path, size_t max, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    char *buf = sy_malloc(max + 1);
    size_t got = 0;
    for (;;) {
        ssize_t n = read(fd, buf + got, max + 1 - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            close(fd);
            sy_free(buf);
            return NULL;
        }
        if (n == 0)
            break;
        got += (size_t)n;
        if (got > max) {
            close(fd);
            sy_free(buf);
            errno = EFBIG;
            return NULL;
        }
    }
    close(fd);
    buf[got] = '\0';
    if (len)
        *len = got;
    return buf;
}

/* ---- the lock ---- */

/* Fixed width so that a heartbeat rewrites the record in place without truncating it. */
#define LOCK_TS_FMT "%020" PRId64

void sy__acme_lock_init(struct sy__acme_lock *l, const char *path, int64_t stale_ms)
{
    char host[64] = "host";
    memset(l, 0, sizeof(*l));
    l->path = sy_strdup(path);
    l->stale_ms = stale_ms;
    gethostname(host, sizeof(host) - 1);
    host[sizeof(host) - 1] = '\0';
    for (char *p = host; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '-'))
            *p = '-';
    l->id = sy_asprintf("%s.%ld.%08" PRIx32, host, (long)getpid(), rnd32());
}

void sy__acme_lock_dispose(struct sy__acme_lock *l)
{
    if (l->held)
        sy__acme_lock_release(l);
    sy_free_null(&l->path);
    sy_free_null(&l->id);
}

/*
 * Parses "<id> <ms>\n". Returns 0 with heap *id, or -1 (a lock file just
 * created whose content is not written yet, or garbage).
 */
static int lock_parse(const char *text, char **id, int64_t *ts)
{
    const char *sp = strchr(text, ' ');
    if (sp == NULL || sp == text)
        return -1;
    char *end;
    errno = 0;
    long long v = strtoll(sp + 1, &end, 10);
    if (errno || end == sp + 1 || (*end != '\n' && *end != '\0'))
        return -1;
    *id = sy_strndup(text, (size_t)(sp - text));
    *ts = v;
    return 0;
}

/* Reads a lock file: 0 parsed, 1 unparsable (ts = mtime), -1 absent. */
static int lock_read(const char *path, char **id, int64_t *ts)
{
    struct stat st;
    size_t len;
    *id = NULL;
    char *text = sy__acme_read_file(path, 512, &len);
    if (text == NULL)
        return -1;
    int rc = 0;
    if (lock_parse(text, id, ts) < 0) {
        rc = 1;
        *ts = stat(path, &st) == 0 ? (int64_t)st.st_mtim.tv_sec * 1000 : 0;
    }
    sy_free(text);
    return rc;
}

static int lock_create(struct sy__acme_lock *l, int64_t now_ms)
{
    int fd = open(l->path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0)
        return errno == EEXIST ? 1 : -1;
    char *rec = sy_asprintf("%s " LOCK_TS_FMT "\n", l->id, now_ms);
    int rc = write_all(fd, rec, strlen(rec));
    if (rc == 0)
        rc = fsync(fd);
    close(fd);
    sy_free(rec);
    if (rc < 0) {
        unlink(l->path);
        return -1;
    }
    fsync_dir(l->path);
    l->held = 1;
    l->beat_ms = now_ms;
    return 0;
}

enum sy__acme_lock_res sy__acme_lock_acquire(struct sy__acme_lock *l, int64_t now_ms,
                                             char **holder)
{
    if (holder)
        *holder = NULL;
    if (l->held)
        return SY_ACME_LOCK_TAKEN;
    for (int round = 0; round < 2; round++) {
        int rc = lock_create(l, now_ms);
        if (rc == 0)
            return SY_ACME_LOCK_TAKEN;
        if (rc < 0) {
            sy_log_error("acme", "cannot create lock %s: %s", l->path, strerror(errno));
            return SY_ACME_LOCK_ERROR;
        }
        char *id;
        int64_t ts;
        int r = lock_read(l->path, &id, &ts);
        if (r < 0)
            continue; /* vanished between create and read: try again */
        if (now_ms - ts <= l->stale_ms) {
            if (holder)
                *holder = id ? id : sy_strdup("(unreadable)");
            else
                sy_free(id);
            return SY_ACME_LOCK_BUSY;
        }
        /*
         * Stale. Move it aside under a name only we use: of several takers at
         * most one rename succeeds. Then make sure what we moved is the lock
         * we judged (not a fresh lock another taker created meanwhile).
         */
        char *aside = sy_asprintf("%s.stale.%s", l->path, l->id);
        if (rename(l->path, aside) < 0) {
            sy_free(aside);
            sy_free(id);
            continue;
        }
        char *id2;
        int64_t ts2;
        int r2 = lock_read(aside, &id2, &ts2);
        int same = r2 == r && ts2 == ts &&
                   ((id == NULL && id2 == NULL) || (id && id2 && strcmp(id, id2) == 0));
        if (!same) {
            /* Not the lock we judged: put it back unless a newer one appeared. */
            if (link(aside, l->path) < 0 && errno != EEXIST)
                sy_log_warn("acme", "cannot restore lock %s: %s", l->path, strerror(errno));
            unlink(aside);
            sy_free(aside);
            sy_free(id);
            sy_free(id2);
            continue;
        }
        sy_log_warn("acme", "taking over stale lock held by %s (last heartbeat %" PRId64
                    " ms ago)", id ? id : "(unreadable)", now_ms - ts);
        unlink(aside);
        sy_free(aside);
        sy_free(id);
        sy_free(id2);
    }
    if (holder)
        *holder = sy_strdup("(contended)");
    return SY_ACME_LOCK_BUSY;
}

int sy__acme_lock_heartbeat(struct sy__acme_lock *l, int64_t now_ms)
{
    if (!l->held)
        return -1;
    char *id;
    int64_t ts;
    int fd = -1;
    if (lock_read(l->path, &id, &ts) != 0 || strcmp(id, l->id) != 0) {
        sy_free(id);
        goto lost;
    }
    sy_free(id);
    fd = open(l->path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        goto lost;
    char *rec = sy_asprintf("%s " LOCK_TS_FMT "\n", l->id, now_ms);
    ssize_t n = pwrite(fd, rec, strlen(rec), 0);
    int ok = n == (ssize_t)strlen(rec);
    sy_free(rec);
    if (ok)
        fsync(fd);
    close(fd);
    if (!ok)
        goto lost;
    l->beat_ms = now_ms;
    return 0;
lost:
    sy_log_error("acme", "lost lock %s (taken over by another replica)", l->path);
    l->held = 0;
    return -1;
}

void sy__acme_lock_release(struct sy__acme_lock *l)
{
    char *id;
    int64_t ts;
    if (!l->held)
        return;
    l->held = 0;
    if (lock_read(l->path, &id, &ts) == 0 && strcmp(id, l->id) == 0) {
        unlink(l->path);
        fsync_dir(l->path);
    }
    sy_free(id);
}
