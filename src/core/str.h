/*
 * str.h: non-owning byte slices.
 *
 * A struct sy_str points into memory owned by someone else (usually a
 * connection's read buffer) and is never NUL-terminated by contract.
 */
#ifndef SY_CORE_STR_H
#define SY_CORE_STR_H

#include <stddef.h>
#include <string.h>
#include <strings.h>

struct sy_str {
    const char *p;
    size_t len;
};

#define SY_STR_LIT(s) ((struct sy_str){(s), sizeof(s) - 1})
#define SY_STR_NULL ((struct sy_str){NULL, 0})

static inline struct sy_str sy_str_make(const char *p, size_t len)
{
    struct sy_str s = {p, len};
    return s;
}

static inline struct sy_str sy_str_cstr(const char *p)
{
    return sy_str_make(p, p ? strlen(p) : 0);
}

static inline int sy_str_eq(struct sy_str a, struct sy_str b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.p, b.p, a.len) == 0);
}

static inline int sy_lower(int c)
{
    return (c >= 'A' && c <= 'Z') ? c + ('a' - 'A') : c;
}

/* ASCII case-insensitive equality (header names, host names). */
static inline int sy_str_caseeq(struct sy_str a, struct sy_str b)
{
    if (a.len != b.len)
        return 0;
    for (size_t i = 0; i < a.len; i++)
        if (sy_lower((unsigned char)a.p[i]) != sy_lower((unsigned char)b.p[i]))
            return 0;
    return 1;
}

static inline int sy_str_caseeq_cstr(struct sy_str a, const char *b)
{
    return sy_str_caseeq(a, sy_str_cstr(b));
}

/* Strip optional whitespace (SP / HTAB) from both ends. */
static inline struct sy_str sy_str_trim(struct sy_str s)
{
    while (s.len && (s.p[0] == ' ' || s.p[0] == '\t')) {
        s.p++;
        s.len--;
    }
    while (s.len && (s.p[s.len - 1] == ' ' || s.p[s.len - 1] == '\t'))
        s.len--;
    return s;
}

#endif
