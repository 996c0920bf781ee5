/*
 * fuzz_route.c: query-string and cookie parsing, Host lookup and version
 * selection (with and without weights) on arbitrary request pieces.
 *
 * Input layout: the bytes are split at '\n' into up to 8 pieces:
 * [0] request-target, [1] Host value, [2] query parameter name,
 * [3..7] header lines "name:value" (a Cookie or the version header).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "core/alloc.h"
#include "route/route.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct sy_config *cfg;

static const char yaml[] =
    "listen: {http: \":80\"}\n"
    "upstreams:\n"
    "  v1: {servers: [v1.local:80]}\n"
    "  v2: {servers: [v2.local:80]}\n"
    "sites:\n"
    "  - hosts: [retro.example.org, \"*.example.org\", \"*.a.example.org\"]\n"
    "    version:\n"
    "      header: X-Postfacto-Version\n"
    "      query: postfacto_version\n"
    "      cookie: postfacto_version\n"
    "      routes: {\"4.1.0\": v1, \"4.2.0\": v2}\n"
    "      default: \"4.2.0\"\n"
    "  - hosts: [weighted.example.org]\n"
    "    version:\n"
    "      header: X-Postfacto-Version\n"
    "      query: postfacto_version\n"
    "      cookie: postfacto_version\n"
    "      routes: {\"4.1.0\": v1, \"4.2.0\": v2, \"4.3.0\": v1}\n"
    "      default: \"4.2.0\"\n"
    "      weights: {\"4.1.0\": 90, \"4.2.0\": 10}\n"
    "  - hosts: [\"*\", \"[::1]\"]\n"
    "    upstream: v1\n";

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char *err = NULL;

    cfg = sy_config_load_string("fuzz", yaml, sizeof(yaml) - 1, &err);
    if (!cfg)
        abort();
    sy_route_seed(1); /* reproducible weighted draws */
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sy_str piece[8] = {{0}};
    struct sy_h1_header hdrs[5];
    size_t npieces = 0, nhdrs = 0, start = 0;
    /* exact-size copy so any over-read hits the ASan redzone */
    char *buf = sy_malloc(size);

    memcpy(buf, data, size);
    for (size_t i = 0; i <= size && npieces < 8; i++) {
        if (i == size || buf[i] == '\n') {
            piece[npieces++] = sy_str_make(buf + start, i - start);
            start = i + 1;
        }
    }
    for (size_t i = 3; i < npieces; i++) {
        const char *colon = memchr(piece[i].p, ':', piece[i].len);
        size_t nl = colon ? (size_t)(colon - piece[i].p) : piece[i].len;
        hdrs[nhdrs].name = sy_str_make(piece[i].p, nl);
        hdrs[nhdrs].value = colon ? sy_str_make(colon + 1, piece[i].len - nl - 1)
                                  : sy_str_make(piece[i].p + nl, 0);
        nhdrs++;
    }

    char out[64];
    size_t outlen = 0;
    int rc = sy_route_query_param(piece[0], piece[2], out, sizeof(out), &outlen);
    if (rc < -1 || rc > 1 || outlen > sizeof(out))
        abort();

    struct sy_str v;
    if (sy_route_cookie(hdrs, nhdrs, piece[2], &v) == 1) {
        if (v.p < buf || v.p + v.len > buf + size)
            abort();
    }

    const struct sy_site_conf *site = sy_route_find_site(cfg, piece[1]);
    if (!site)
        abort(); /* the config has a catch-all */
    struct sy_route_result r;
    sy_route_select(site, piece[0], hdrs, nhdrs, &r);
    if (r.upstream >= cfg->nupstreams)
        abort();
    if (site->version.total_weight) {
        /* weights: never the default, never a clear; an assigned version has a weight and is
         * pinned, a pinned one stays as it is */
        if (r.source == SY_VSRC_DEFAULT || r.pin == SY_PIN_CLEAR)
            abort();
        if (r.source == SY_VSRC_WEIGHT && (r.route->weight == 0 || r.pin != SY_PIN_SET))
            abort();
        if (r.source == SY_VSRC_COOKIE && r.pin != SY_PIN_KEEP)
            abort();
    }
    if (r.route) {
        char line[256];
        size_t n = sy_route_pin_cookie(line, sizeof(line), "postfacto_version", r.route->version,
                                       1, r.pin == SY_PIN_CLEAR);
        if (n == 0 || n >= sizeof(line))
            abort();
    }
    sy_free(buf);
    return 0;
}
