/*
 * route.h: which site and which version serve a request.
 *
 * Pure functions over a config snapshot and the parsed request head: no I/O,
 * no allocation, safe from any worker thread. Every struct sy_str result
 * points into the caller's buffers or into the snapshot. The one piece of
 * state is the generator behind weighted assignment: one per thread (so one
 * per worker, no lock), seeded from getrandom() on its first draw.
 */
#ifndef SY_ROUTE_ROUTE_H
#define SY_ROUTE_ROUTE_H

#include <stddef.h>

#include "config/config.h"
#include "core/str.h"
#include "http/h1.h"

/* Where the version came from. */
enum sy_vsrc {
    SY_VSRC_NONE = 0,
    SY_VSRC_HEADER,
    SY_VSRC_QUERY,
    SY_VSRC_COOKIE,
    SY_VSRC_DEFAULT,
    SY_VSRC_WEIGHT /* a new visitor assigned by version.weights */
};

/* What to do with the pin cookie in the response. */
enum sy_pin { SY_PIN_KEEP = 0, SY_PIN_SET, SY_PIN_CLEAR };

struct sy_route_result {
    const struct sy_site_conf *site;
    size_t upstream;                     /* index into sy_config.upstreams */
    const struct sy_version_route *route; /* NULL for plain (upstream:) sites */
    enum sy_vsrc source;                 /* SY_VSRC_NONE for plain sites */
    enum sy_pin pin;
};

/*
 * Finds the site for a Host header value. `host` may carry ":port", may be
 * "[v6]:port", may end in one dot and may use any case. Exact names beat
 * wildcards, a longer wildcard suffix beats a shorter one, "*" comes last.
 * An empty host matches only "*". Returns NULL when no site matches.
 * O(log n) per label of the host.
 */
const struct sy_site_conf *sy_route_find_site(const struct sy_config *cfg, struct sy_str host);

/*
 * Chooses the version for a request on `site` (target = the request-target
 * as sent, hdrs = all request headers). Order:
 *   1. the version header (name case-insensitive; the first occurrence whose
 *      value is a known version; unknown values count as absent);
 *   2. the query parameter: a known value wins; an EMPTY value (or the bare
 *      name) clears the pin and selects the default, skipping the cookie;
 *      unknown, malformed or over-long values count as absent;
 *   3. the pin cookie with a known value;
 *   4. with version.weights: a route drawn by weight (SY_VSRC_WEIGHT), also
 *      after an empty query value, which then means "assign afresh";
 *   5. the default route.
 * pin is SET when the header, the query or the weights chose, CLEAR on an
 * empty query value without weights, KEEP otherwise; SET and CLEAR only when
 * the site names a cookie (always the case with weights).
 * Plain sites give route NULL and SY_VSRC_NONE. out->site is always `site`.
 */
void sy_route_select(const struct sy_site_conf *site, struct sy_str target,
                     const struct sy_h1_header *hdrs, size_t nhdrs, struct sy_route_result *out);

/*
 * The route index that owns `ticket` (0 <= ticket < version.total_weight):
 * the routes, in file order, own consecutive runs of tickets as long as
 * their weights, so a route of weight 0 owns none. Bounded by nroutes.
 */
size_t sy_route_weighted(const struct sy_site_conf *site, uint64_t ticket);

/*
 * A uniform draw in [0, bound) (bound > 0) from the calling thread's
 * xorshift128+ generator, exactly unbiased (multiply-shift with rejection).
 * No lock and no system call, except getrandom() once per thread.
 */
uint64_t sy_route_draw(uint64_t bound);

/* Seeds the calling thread's generator: reproducible draws for tests and fuzzing. */
void sy_route_seed(uint64_t seed);

/*
 * Looks up parameter `name` in the query of a request-target (after the
 * first '?', before '#'); '&' separates parameters, names are compared after
 * percent-decoding. The first match wins. Its value is percent-decoded
 * with '+' as space into out (not NUL-terminated), length in *outlen.
 * Returns 1 found (also with an empty value or no '='), 0 absent, -1 when
 * the value has a bad %-escape or does not fit in outcap.
 */
int sy_route_query_param(struct sy_str target, struct sy_str name, char *out, size_t outcap,
                         size_t *outlen);

/*
 * Finds cookie `name` (case-sensitive) in all Cookie headers, in order; the
 * first match wins. Tolerates spaces around names, values and separators,
 * strips one pair of double quotes around the value. Returns 1 and sets
 * *value (pointing into the header) when found, else 0.
 */
int sy_route_cookie(const struct sy_h1_header *hdrs, size_t n, struct sy_str name,
                    struct sy_str *value);

/*
 * Writes "Set-Cookie: NAME=VERSION; Path=/; HttpOnly; SameSite=Lax[; Secure]\r\n",
 * or with clear set "Set-Cookie: NAME=; Path=/; HttpOnly; SameSite=Lax[; Secure]; Max-Age=0\r\n"
 * (version ignored). Returns the number of bytes written (a NUL follows when
 * there is room for it), or 0 when cap is too small.
 */
size_t sy_route_pin_cookie(char *buf, size_t cap, const char *cookie_name, const char *version,
                           int secure, int clear);

/* "header", "query", "cookie", "default", "weight" or "none". */
const char *sy_vsrc_name(enum sy_vsrc s);

#endif
