/*
 * fuzz_util.h: what several fuzz targets share. Header only: fuzz.sh builds
 * each target from its one .c file.
 */
#ifndef SY_FUZZ_UTIL_H
#define SY_FUZZ_UTIL_H

#include <stdlib.h>

#include "config/config.h"
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

static inline int fuzz_count_headers(const struct sy_h1_header *h, size_t n, const char *name)
{
    int k = 0;
    for (size_t i = 0; i < n; i++)
        if (sy_str_caseeq_cstr(h[i].name, name))
            k++;
    return k;
}

#endif
