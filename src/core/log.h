/*
 * log.h: error and event logging to stderr (access logs go to stdout, see
 * proxy/accesslog).
 *
 * Once the log writers run (core/logq.h), a line is queued in a bounded ring
 * and written by another thread: a stderr reader that stops reading never
 * blocks the caller; lines that do not fit are dropped whole and counted
 * (sy_logq_dropped(STDERR_FILENO)).
 */
#ifndef SY_CORE_LOG_H
#define SY_CORE_LOG_H

enum sy_log_level { SY_LOG_ERROR = 0, SY_LOG_WARN, SY_LOG_INFO, SY_LOG_DEBUG };

extern enum sy_log_level sy_log_level;

/* Logs one line. Any thread; never blocks once the writers run. Returns 0 when the line was
 * written, queued or filtered out by the level, -1 when it was dropped (stderr not keeping up). */
int sy_log(enum sy_log_level level, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Gives the calling thread its own error log ring, so that it never waits for the lock of the
 * ring other threads share. Workers call it when they start. */
void sy_log_own_ring(void);

#define sy_log_error(mod, ...) sy_log(SY_LOG_ERROR, mod, __VA_ARGS__)
#define sy_log_warn(mod, ...) sy_log(SY_LOG_WARN, mod, __VA_ARGS__)
#define sy_log_info(mod, ...) sy_log(SY_LOG_INFO, mod, __VA_ARGS__)
#define sy_log_debug(mod, ...)                                                                   \
    do {                                                                                         \
        if (sy_log_level >= SY_LOG_DEBUG)                                                        \
            sy_log(SY_LOG_DEBUG, mod, __VA_ARGS__);                                              \
    } while (0)

/*
 * SY_BUG_ON(cond): a broken internal rule (not a bad input). Logs where and
 * aborts, in every build: continuing would corrupt memory or state.
 */
void sy_bug(const char *file, int line, const char *cond) __attribute__((noreturn));
#define SY_BUG_ON(cond)                                                                          \
    do {                                                                                         \
        if (__builtin_expect(!!(cond), 0))                                                       \
            sy_bug(__FILE__, __LINE__, #cond);                                                   \
    } while (0)

#endif
