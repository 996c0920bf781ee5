/*
 * route.c: site lookup by Host and version selection (see route.h).
 *
 * Runs on every request: no allocation, no I/O, bounded work. The site
 * index (sy_config.hostidx) is prepared by the config loader. Weighted
 * assignment draws from a per-thread generator (see sy_route_draw).
 */
#include "route/route.h"

#include <string.h>
#include <sys/random.h>
#include <time.h>

/* Longest DNS name (RFC 1035), without a trailing dot. */
#define HOST_MAX 253

static int entry_cmp(const char *name, size_t len, const struct sy_host_entry *e)
{
    if (len != e->len)
        return len < e->len ? -1 : 1;
    return memcmp(name, e->name, len);
}

static const struct sy_host_entry *lookup(const struct sy_host_entry *v, size_t n,
                                          const char *name, size_t len)
{
    size_t lo = 0, hi = n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int r = entry_cmp(name, len, &v[mid]);
        if (r == 0)
            return &v[mid];
        if (r < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

/* Drops ":port" (digits only) and brackets-aware: "[::1]:80" -> "[::1]". */
static struct sy_str strip_port(struct sy_str h)
{
    size_t i;

    if (h.len && h.p[0] == '[') {
        const char *close = memchr(h.p, ']', h.len);
        if (close)
            h.len = (size_t)(close - h.p) + 1;
        return h;
    }
    for (i = h.len; i > 0; i--) {
        char c = h.p[i - 1];
        if (c == ':') {
            h.len = i - 1;
            break;
        }
        if (c < '0' || c > '9')
            break;
    }
    return h;
}

const struct sy_site_conf *sy_route_find_site(const struct sy_config *cfg, struct sy_str host)
{
    const struct sy_host_index *idx = &cfg->hostidx;
    const struct sy_host_entry *e;
    char name[HOST_MAX];
    struct sy_str h = strip_port(host);

    if (h.len && h.p[h.len - 1] == '.')
        h.len--;
    if (h.len == 0 || h.len > HOST_MAX)
        goto CatchAll;
    for (size_t i = 0; i < h.len; i++)
        name[i] = (char)sy_lower((unsigned char)h.p[i]);

    e = lookup(idx->exact, idx->nexact, name, h.len);
    if (e)
        return &cfg->sites[e->site];
    /* Wildcards are stored as ".suffix"; try the longest suffix first. */
    if (idx->nwild) {
        for (size_t i = 1; i < h.len; i++) {
            if (name[i] != '.')
                continue;
            e = lookup(idx->wild, idx->nwild, name + i, h.len - i);
            if (e)
                return &cfg->sites[e->site];
        }
    }
CatchAll:
    return idx->has_catchall ? &cfg->sites[idx->catchall] : NULL;
}

static const struct sy_version_route *find_route(const struct sy_site_conf *site, const char *v,
                                                 size_t len)
{
    for (size_t i = 0; i < site->version.nroutes; i++) {
        const struct sy_version_route *r = &site->version.routes[i];
        if (strlen(r->version) == len && memcmp(r->version, v, len) == 0)
            return r;
    }
    return NULL;
}

void sy_route_select(const struct sy_site_conf *site, struct sy_str target,
                     const struct sy_h1_header *hdrs, size_t nhdrs, struct sy_route_result *out)
{
    const struct sy_version_route *r = NULL;
    enum sy_vsrc src = SY_VSRC_DEFAULT;
    int clear = 0;

    out->site = site;
    out->route = NULL;
    out->source = SY_VSRC_NONE;
    out->pin = SY_PIN_KEEP;
    if (!site->has_version) {
        out->upstream = site->upstream;
        return;
    }

    if (site->version.header) {
        struct sy_str hname = sy_str_cstr(site->version.header);
        for (size_t i = 0; i < nhdrs && !r; i++)
            if (sy_str_caseeq(hdrs[i].name, hname))
                r = find_route(site, hdrs[i].value.p, hdrs[i].value.len);
        if (r)
            src = SY_VSRC_HEADER;
    }
    if (!r && site->version.query) {
        char buf[SY_VERSION_MAX];
        size_t len;
        int rc = sy_route_query_param(target, sy_str_cstr(site->version.query), buf, sizeof(buf),
                                      &len);
        if (rc == 1 && len == 0) {
            clear = 1;
        } else if (rc == 1) {
            r = find_route(site, buf, len);
            if (r)
                src = SY_VSRC_QUERY;
        }
    }
    if (!r && !clear && site->version.cookie) {
        struct sy_str v;
        if (sy_route_cookie(hdrs, nhdrs, sy_str_cstr(site->version.cookie), &v)) {
            r = find_route(site, v.p, v.len);
            if (r)
                src = SY_VSRC_COOKIE;
        }
    }
    if (!r && site->version.total_weight) {
        uint64_t ticket = sy_route_draw(site->version.total_weight);
        r = &site->version.routes[sy_route_weighted(site, ticket)];
        src = SY_VSRC_WEIGHT;
    }
    if (!r)
        r = &site->version.routes[site->version.default_route];

    out->route = r;
    out->upstream = r->upstream;
    out->source = src;
    if (site->version.cookie) {
        if (src == SY_VSRC_HEADER || src == SY_VSRC_QUERY || src == SY_VSRC_WEIGHT)
            out->pin = SY_PIN_SET;
        else if (clear)
            out->pin = SY_PIN_CLEAR;
    }
}

size_t sy_route_weighted(const struct sy_site_conf *site, uint64_t ticket)
{
    size_t last = 0;

    for (size_t i = 0; i < site->version.nroutes; i++) {
        uint32_t w = site->version.routes[i].weight;
        if (ticket < w)
            return i;
        ticket -= w;
        if (w)
            last = i;
    }
    return last; /* past the total: the last route with a weight */
}

/* ---- the weighted-assignment generator ---------------------------------------------------- */

/* xorshift128+ state of the calling thread; all zero until the first draw seeds it. */
static _Thread_local uint64_t rng[2];

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void sy_route_seed(uint64_t seed)
{
    rng[0] = splitmix64(&seed);
    rng[1] = splitmix64(&seed);
    if (!rng[0] && !rng[1])
        rng[1] = 1;
}

static uint64_t next_random(void)
{
    uint64_t a = rng[0], b = rng[1];

    if (!a && !b) {
        uint64_t seed;
        if (getrandom(&seed, sizeof(seed), GRND_NONBLOCK) != (ssize_t)sizeof(seed)) {
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            seed = ((uint64_t)ts.tv_sec << 30) ^ (uint64_t)ts.tv_nsec ^ (uint64_t)(uintptr_t)&seed;
        }
        sy_route_seed(seed);
        a = rng[0];
        b = rng[1];
    }
    rng[0] = b;
    a ^= a << 23;
    rng[1] = a ^ b ^ (a >> 17) ^ (b >> 26);
    return rng[1] + b;
}

/*
 * Lemire's multiply-shift: the high half of random * bound is uniform in
 * [0, bound) once the low half is kept out of the first (2^64 mod bound)
 * values, which a draw hits with probability bound / 2^64.
 */
uint64_t sy_route_draw(uint64_t bound)
{
    unsigned __int128 m = (unsigned __int128)next_random() * bound;
    uint64_t low = (uint64_t)m;

    if (low < bound) {
        uint64_t threshold = -bound % bound;
        while (low < threshold) {
            m = (unsigned __int128)next_random() * bound;
            low = (uint64_t)m;
        }
    }
    return (uint64_t)(m >> 64);
}

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (unsigned char)sy_lower(c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/*
 * Decodes the next byte of a query component at *i (percent escapes, '+' as
 * space). Returns the byte, or -1 on a bad escape.
 */
static int next_decoded(const char *p, size_t len, size_t *i)
{
    unsigned char c = (unsigned char)p[*i];

    if (c == '+') {
        (*i)++;
        return ' ';
    }
    if (c != '%') {
        (*i)++;
        return c;
    }
    if (len - *i < 3)
        return -1;
    int hi = hexval((unsigned char)p[*i + 1]), lo = hexval((unsigned char)p[*i + 2]);
    if (hi < 0 || lo < 0)
        return -1;
    *i += 3;
    return hi * 16 + lo;
}

static int name_matches(const char *p, size_t len, struct sy_str name)
{
    size_t i = 0, j = 0;

    while (i < len) {
        int c = next_decoded(p, len, &i);
        if (c < 0 || j == name.len || (unsigned char)name.p[j] != c)
            return 0;
        j++;
    }
    return j == name.len;
}

int sy_route_query_param(struct sy_str target, struct sy_str name, char *out, size_t outcap,
                         size_t *outlen)
{
    const char *q, *end, *hash;

    *outlen = 0;
    if (!target.len)
        return 0;
    end = target.p + target.len;
    hash = memchr(target.p, '#', target.len);
    if (hash)
        end = hash;
    q = memchr(target.p, '?', (size_t)(end - target.p));
    if (!q)
        return 0;
    q++;

    while (q < end) {
        const char *amp = memchr(q, '&', (size_t)(end - q));
        const char *pe = amp ? amp : end;
        const char *eq = memchr(q, '=', (size_t)(pe - q));
        const char *ne = eq ? eq : pe;

        if (name_matches(q, (size_t)(ne - q), name)) {
            size_t i = 0, n = 0, vlen = eq ? (size_t)(pe - eq - 1) : 0;
            const char *v = eq ? eq + 1 : pe;
            while (i < vlen) {
                int c = next_decoded(v, vlen, &i);
                if (c < 0 || n == outcap)
                    return -1;
                out[n++] = (char)c;
            }
            *outlen = n;
            return 1;
        }
        q = amp ? amp + 1 : end;
    }
    return 0;
}

static int is_ows(char c)
{
    return c == ' ' || c == '\t';
}

int sy_route_cookie(const struct sy_h1_header *hdrs, size_t n, struct sy_str name,
                    struct sy_str *value)
{
    for (size_t h = 0; h < n; h++) {
        const char *p, *end;
        if (!sy_str_caseeq_cstr(hdrs[h].name, "cookie"))
            continue;
        p = hdrs[h].value.p;
        end = p + hdrs[h].value.len;
        while (p < end) {
            const char *semi = memchr(p, ';', (size_t)(end - p));
            const char *pe = semi ? semi : end;
            const char *eq = memchr(p, '=', (size_t)(pe - p));
            if (eq) {
                struct sy_str nm = sy_str_trim(sy_str_make(p, (size_t)(eq - p)));
                if (sy_str_eq(nm, name)) {
                    struct sy_str v = sy_str_trim(sy_str_make(eq + 1, (size_t)(pe - eq - 1)));
                    if (v.len >= 2 && v.p[0] == '"' && v.p[v.len - 1] == '"') {
                        v.p++;
                        v.len -= 2;
                    }
                    *value = v;
                    return 1;
                }
            }
            p = semi ? semi + 1 : end;
            while (p < end && is_ows(*p))
                p++;
        }
    }
    return 0;
}

/* Appends s to buf at *off when it fits; the total is tracked either way. */
static void put(char *buf, size_t cap, size_t *off, const char *s)
{
    size_t n = strlen(s);

    if (*off + n <= cap)
        memcpy(buf + *off, s, n);
    *off += n;
}

size_t sy_route_pin_cookie(char *buf, size_t cap, const char *cookie_name, const char *version,
                           int secure, int clear)
{
    size_t off = 0;

    put(buf, cap, &off, "Set-Cookie: ");
    put(buf, cap, &off, cookie_name);
    put(buf, cap, &off, "=");
    if (!clear)
        put(buf, cap, &off, version);
    put(buf, cap, &off, "; Path=/; HttpOnly; SameSite=Lax");
    if (secure)
        put(buf, cap, &off, "; Secure");
    if (clear)
        put(buf, cap, &off, "; Max-Age=0");
    put(buf, cap, &off, "\r\n");
    if (off > cap)
        return 0;
    if (off < cap)
        buf[off] = '\0';
    return off;
}

const char *sy_vsrc_name(enum sy_vsrc s)
{
    switch (s) {
    case SY_VSRC_HEADER:
        return "header";
    case SY_VSRC_QUERY:
        return "query";
    case SY_VSRC_COOKIE:
        return "cookie";
    case SY_VSRC_DEFAULT:
        return "default";
    case SY_VSRC_WEIGHT:
        return "weight";
    case SY_VSRC_NONE:
    default:
        return "none";
    }
}
