#include "core/log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "core/logq.h"

/* Error log rings (see core/logq.h): a worker owns one, so logging never takes a lock on the
 * request path; other threads (main, ACME, certificate watcher) share one under a mutex. */
#define OWN_RING_CAP (64 * 1024)
#define SHARED_RING_CAP (64 * 1024)

enum sy_log_level sy_log_level = SY_LOG_INFO;

static const char *level_names[] = {"error", "warn", "info", "debug"};

static _Thread_local struct sy_logq_ring *own_ring;
static struct sy_logq_ring *shared_ring;
static pthread_mutex_t shared_lock = PTHREAD_MUTEX_INITIALIZER;

void sy_log_own_ring(void)
{
    if (!own_ring)
        own_ring = sy_logq_ring_new(STDERR_FILENO, OWN_RING_CAP);
}

/* Queues one line for stderr, or writes it directly before the writer runs (start-up, -t). */
static int emit(const char *line, size_t n)
{
    if (own_ring)
        return sy_logq_put(own_ring, line, n) ? -1 : 0;
    if (!sy_logq_running(STDERR_FILENO)) {
        fwrite(line, 1, n, stderr);
        return 0;
    }
    pthread_mutex_lock(&shared_lock);
    if (!shared_ring)
        shared_ring = sy_logq_ring_new(STDERR_FILENO, SHARED_RING_CAP);
    int rc = sy_logq_put(shared_ring, line, n) ? -1 : 0;
    pthread_mutex_unlock(&shared_lock);
    return rc;
}

int sy_log(enum sy_log_level level, const char *module, const char *fmt, ...)
{
    if (level > sy_log_level)
        return 0;
    char line[2048];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ [%s] %s: ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     tm.tm_sec, ts.tv_nsec / 1000000, level_names[level], module);
    if (n < 0 || (size_t)n >= sizeof(line))
        n = 0;
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    va_end(ap);
    size_t total = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (total > sizeof(line) - 2)
        total = sizeof(line) - 2;
    line[total++] = '\n';
    /* One piece per line so lines from several threads never interleave. */
    return emit(line, total);
}
