/*
 * fuzz_util.h: what several fuzz targets share. Header only: fuzz.sh builds
 * each target from its one .c file.
 */
#ifndef SY_FUZZ_UTIL_H
#define SY_FUZZ_UTIL_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "core/alloc.h"
#include "http/h1.h"

/* The target's configuration; a broken one is a bug of the target. */
static inline struct sy_config *fuzz_config(const char *yaml, size_t len)
{
    char *err = NULL;
    struct sy_config *cfg = sy_config_load_string("fuzz", yaml, len, &err);
    if (!cfg)
        abort();
    return cfg;
}

/*
 * The next field of an input made of [name length][name][value length][value]
 * (lengths one byte; a value cut short by the end is what is left). The name
 * and value are exact-size copies, so that any over-read hits the ASan
 * redzone: free both with sy_free. 0 at the end of the input.
 */
static inline int fuzz_next_field(const uint8_t *data, size_t size, size_t *pos, uint8_t **name,
                                  size_t *nl, uint8_t **value, size_t *vl)
{
    size_t p = *pos;
    if (p >= size)
        return 0;
    *nl = data[p++];
    if (p + *nl >= size)
        return 0;
    *name = sy_malloc(*nl ? *nl : 1);
    memcpy(*name, data + p, *nl);
    p += *nl;
    *vl = data[p++];
    if (p + *vl > size)
        *vl = size - p;
    *value = sy_malloc(*vl ? *vl : 1);
    memcpy(*value, data + p, *vl);
    *pos = p + *vl;
    return 1;
}

static inline int fuzz_count_headers(const struct sy_h1_header *h, size_t n, const char *name)
{
    int k = 0;
    for (size_t i = 0; i < n; i++)
        if (sy_str_caseeq_cstr(h[i].name, name))
            k++;
    return k;
}

/*
 * The differential check both request-path targets make on the head the gateway built for the
 * upstream (x): it parses back as exactly one complete head, with the method, the target and the
 * body framing the gateway decided. Aborts otherwise. Fills r (with room for `cap` fields in its
 * header array) and f for the target's own further checks.
 */
static inline void fuzz_reparse_upstream_head(const struct sy_h1_request *x,
                                              const struct sy_h1_framing *xf, const char *out,
                                              size_t len, struct sy_h1_request *r, size_t cap,
                                              struct sy_h1_framing *f)
{
    struct sy_h1_limits lim = {.max_head = len, .max_headers = cap, .max_uri = len};
    int status = 0;
    if (sy_h1_parse_request(out, len, r, &lim, &status) != (int)len)
        abort(); /* not one complete head: the gateway wrote what it would not accept */
    if (!sy_str_eq(r->method, x->method) || !sy_str_eq(r->target, x->target))
        abort();
    if (sy_h1_request_framing(r, f, &status) != 0)
        abort();
    if (f->body != xf->body || (f->body == SY_H1_BODY_LENGTH && f->length != xf->length))
        abort(); /* body framing changed on the way: smuggling */
}

#endif
