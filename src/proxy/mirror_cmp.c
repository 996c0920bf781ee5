/*
 * mirror_cmp.c: what a copy keeps of an answer, and how two answers are
 * compared (see mirror.h).
 *
 * A capture holds the status, the compared headers and the body: all of it
 * is hashed (FNV-1a) and counted, its first mirror.max_response bytes are
 * kept. Body bytes arrive in HTTP/1.1 framing; chunked ones are de-chunked
 * here (the exchange already validated the framing, so this decoder only
 * has to follow it).
 *
 * Two bodies that are both JSON (by Content-Type) and both kept whole are
 * compared structurally with jansson, which yields the paths that differ
 * ("$.retro.items[3].done"); others by length and hash.
 */
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "proxy/mirror.h"

#define FNV_OFFSET 0xcbf29ce484222325ULL
#define FNV_PRIME 0x100000001b3ULL
/* Longest header value kept for comparing. */
#define HEADER_VALUE_MAX 512

enum { CH_SIZE = 0, CH_EXT, CH_DATA, CH_DATA_END, CH_DONE };

void sy_mirror_cap_head(struct sy_mirror_cap *c, const struct sy_mirror_conf *mc,
                        const struct sy_h1_response *resp, int chunked)
{
    c->status = resp->status;
    c->chunked = chunked ? 1 : 0;
    c->hash = FNV_OFFSET;
    for (size_t i = 0; i < mc->nheaders && i < SY_MIRROR_MAX_HEADERS; i++) {
        const struct sy_h1_header *h =
            sy_h1_find(resp->headers, resp->num_headers, sy_str_cstr(mc->headers[i]));
        if (h)
            c->hv[i] = sy_strndup(h->value.p,
                                  h->value.len < HEADER_VALUE_MAX ? h->value.len : HEADER_VALUE_MAX);
    }
    const struct sy_h1_header *ct =
        sy_h1_find(resp->headers, resp->num_headers, SY_STR_LIT("content-type"));
    if (ct) {
        /* application/json, application/problem+json, ...; before any parameter */
        struct sy_str v = ct->value;
        const char *semi = memchr(v.p, ';', v.len);
        size_t n = semi ? (size_t)(semi - v.p) : v.len;
        for (size_t i = 0; i + 4 <= n; i++)
            if (sy_str_caseeq(sy_str_make(v.p + i, 4), SY_STR_LIT("json")))
                c->json = 1;
    }
}

static void keep(struct sy_mirror_cap *c, const struct sy_mirror_conf *mc, const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        c->hash ^= (unsigned char)p[i];
        c->hash *= FNV_PRIME;
    }
    c->total += n;
    size_t room = mc->max_response > c->blen ? (size_t)mc->max_response - c->blen : 0;
    if (n > room) {
        c->truncated = 1;
        n = room;
    }
    if (!n)
        return;
    if (c->blen + n > c->bcap) {
        size_t cap = c->bcap ? c->bcap : 4096;
        while (cap < c->blen + n)
            cap *= 2;
        if (cap > mc->max_response)
            cap = (size_t)mc->max_response;
        c->body = sy_realloc(c->body, cap);
        c->bcap = cap;
    }
    memcpy(c->body + c->blen, p, n);
    c->blen += n;
}

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    ch = (char)sy_lower((unsigned char)ch);
    return ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
}

void sy_mirror_cap_body(struct sy_mirror_cap *c, const struct sy_mirror_conf *mc, const char *p,
                        size_t n)
{
    if (!c->chunked) {
        keep(c, mc, p, n);
        return;
    }
    size_t i = 0;
    while (i < n && c->cstate != CH_DONE) {
        switch (c->cstate) {
        case CH_SIZE: {
            int v = hexval(p[i]);
            if (v >= 0) {
                c->crem = c->crem * 16 + (uint64_t)v;
                i++;
                break;
            }
            c->cstate = CH_EXT;
            break;
        }
        case CH_EXT:
            if (p[i++] == '\n')
                c->cstate = c->crem ? CH_DATA : CH_DONE; /* trailers are not compared */
            break;
        case CH_DATA: {
            size_t k = n - i < c->crem ? n - i : (size_t)c->crem;
            keep(c, mc, p + i, k);
            i += k;
            c->crem -= k;
            if (!c->crem)
                c->cstate = CH_DATA_END;
            break;
        }
        case CH_DATA_END:
            if (p[i++] == '\n')
                c->cstate = CH_SIZE;
            break;
        }
    }
}

void sy_mirror_cap_free(struct sy_mirror_cap *c)
{
    for (size_t i = 0; i < SY_MIRROR_MAX_HEADERS; i++)
        sy_free_null(&c->hv[i]);
    sy_free_null(&c->body);
}

/* ---- JSON paths ---- */

int sy_mirror_path_match(const char *pat, const char *path)
{
    while (*pat) {
        if (pat[0] == '[' && pat[1] == '*' && pat[2] == ']') {
            if (path[0] == '[' && path[1] == '*' && path[2] == ']') { /* a pattern itself */
                path += 3;
                pat += 3;
                continue;
            }
            if (*path != '[')
                return 0;
            path++;
            while (*path >= '0' && *path <= '9')
                path++;
            if (*path++ != ']')
                return 0;
            pat += 3;
        } else if (pat[0] == '.' && pat[1] == '*') {
            if (*path != '.')
                return 0;
            path++;
            while (*path && *path != '.' && *path != '[')
                path++;
            pat += 2;
        } else if (*pat++ != *path++) {
            return 0;
        }
    }
    return *path == '\0' || *path == '.' || *path == '[';
}

struct walk {
    struct sy_mirror_diff *d;
    int (*ignore)(void *, const char *);
    void *arg;
};

static void found(struct walk *wk, const char *path)
{
    if (wk->ignore && wk->ignore(wk->arg, path))
        return;
    struct sy_mirror_diff *d = wk->d;
    d->body = 1;
    if (d->npaths < SY_MIRROR_MAX_PATHS)
        d->paths[d->npaths++] = sy_strdup(path);
    else
        d->more_paths = 1;
}

static int ident(const char *k)
{
    if (!*k)
        return 0;
    for (; *k; k++)
        if (!((*k >= 'a' && *k <= 'z') || (*k >= 'A' && *k <= 'Z') || (*k >= '0' && *k <= '9') ||
              *k == '_' || *k == '-'))
            return 0;
    return 1;
}

/* Paths deeper than this are compared as a whole. */
#define MAX_DEPTH 32

static void walk(struct walk *wk, const json_t *a, const json_t *b, char *path, size_t len,
                 size_t cap, int depth)
{
    if (json_equal((json_t *)a, (json_t *)b))
        return;
    if (!a || !b || json_typeof(a) != json_typeof(b) || depth >= MAX_DEPTH ||
        (!json_is_object(a) && !json_is_array(a))) {
        found(wk, path);
        return;
    }
    if (json_is_array(a)) {
        size_t na = json_array_size(a), nb = json_array_size(b);
        for (size_t i = 0; i < na || i < nb; i++) {
            int k = snprintf(path + len, cap - len, "[%zu]", i);
            if (k < 0 || (size_t)k >= cap - len) {
                path[len] = '\0';
                found(wk, path);
                return;
            }
            walk(wk, json_array_get(a, i), json_array_get(b, i), path, len + (size_t)k, cap,
                 depth + 1);
        }
        path[len] = '\0';
        return;
    }
    /* Objects: the keys of a in order, then those only b has. */
    for (int side = 0; side < 2; side++) {
        const json_t *o = side ? b : a, *other = side ? a : b;
        const char *key;
        json_t *v;
        json_object_foreach((json_t *)o, key, v) {
            if (side && json_object_get(other, key))
                continue;
            int k = ident(key) ? snprintf(path + len, cap - len, ".%s", key)
                               : snprintf(path + len, cap - len, "[\"%s\"]", key);
            if (k < 0 || (size_t)k >= cap - len) {
                path[len] = '\0';
                found(wk, path);
                return;
            }
            const json_t *va = side ? json_object_get(a, key) : v;
            const json_t *vb = side ? v : json_object_get(b, key);
            walk(wk, va, vb, path, len + (size_t)k, cap, depth + 1);
        }
    }
    path[len] = '\0';
}

static int same_value(const char *a, const char *b)
{
    if (!a || !b)
        return a == b;
    return strcmp(a, b) == 0;
}

void sy_mirror_compare(const struct sy_mirror_conf *mc, const struct sy_mirror_cap *a,
                       const struct sy_mirror_cap *b, int (*ignore)(void *, const char *),
                       void *arg, struct sy_mirror_diff *d)
{
    memset(d, 0, sizeof(*d));
    d->status = a->status != b->status;
    if (a->gateway || b->gateway)
        return; /* one side is the gateway's own answer: only the status tells */
    for (size_t i = 0; i < mc->nheaders && i < SY_MIRROR_MAX_HEADERS; i++)
        if (!same_value(a->hv[i], b->hv[i]))
            d->headers |= 1u << i;
    if (a->json && b->json && !a->truncated && !b->truncated && a->blen && b->blen) {
        json_t *ja = json_loadb(a->body, a->blen, JSON_DECODE_ANY, NULL);
        json_t *jb = json_loadb(b->body, b->blen, JSON_DECODE_ANY, NULL);
        if (ja && jb) {
            char path[512] = "$";
            struct walk wk = {d, ignore, arg};
            d->body_json = 1;
            walk(&wk, ja, jb, path, 1, sizeof(path), 0);
        }
        json_decref(ja);
        json_decref(jb);
        if (d->body_json)
            return;
    }
    d->body = a->total != b->total || a->hash != b->hash;
}

void sy_mirror_diff_free(struct sy_mirror_diff *d)
{
    for (size_t i = 0; i < d->npaths; i++)
        sy_free_null(&d->paths[i]);
    d->npaths = 0;
}

/* ---- path patterns ---- */

/* An identifier-like segment: all digits, or a long run of hex digits and dashes (a UUID). */
static int id_segment(const char *s, size_t n)
{
    size_t digits = 0, hex = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] >= '0' && s[i] <= '9')
            digits++;
        else if (hexval(s[i]) >= 0 || s[i] == '-')
            hex++;
        else
            return 0;
    }
    return n && (digits == n || (n >= 16 && digits));
}

void sy_mirror_pattern(const char *t, size_t len, char *out, size_t cap)
{
    size_t o = 0;
    const char *q = memchr(t, '?', len);
    if (q)
        len = (size_t)(q - t);
    size_t i = 0;
    while (i < len && o + 1 < cap) {
        if (t[i] == '/') {
            out[o++] = t[i++];
            continue;
        }
        size_t j = i;
        while (j < len && t[j] != '/')
            j++;
        const char *seg = id_segment(t + i, j - i) ? ":id" : NULL;
        size_t n = seg ? 3 : j - i;
        if (o + n >= cap)
            break;
        memcpy(out + o, seg ? seg : t + i, n);
        o += n;
        i = j;
    }
    out[o] = '\0';
}
