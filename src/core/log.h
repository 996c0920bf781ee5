/*
 * log.h: error and event logging to stderr (access logs go to stdout, see
 * proxy/accesslog).
 */
#ifndef SY_CORE_LOG_H
#define SY_CORE_LOG_H

enum sy_log_level { SY_LOG_ERROR = 0, SY_LOG_WARN, SY_LOG_INFO, SY_LOG_DEBUG };

extern enum sy_log_level sy_log_level;

void sy_log(enum sy_log_level level, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

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
