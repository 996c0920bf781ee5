#include "core/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <time.h>

enum sy_log_level sy_log_level = SY_LOG_INFO;

static const char *level_names[] = {"error", "warn", "info", "debug"};

void sy_log(enum sy_log_level level, const char *module, const char *fmt, ...)
{
    if (level > sy_log_level)
        return;
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
    /* One write per line so lines from several threads never interleave. */
    fwrite(line, 1, total, stderr);
}
