/*
 * mirror_store.c: each worker's store of the differences its copies found
 * (grouped by site, method, path pattern and the two versions, with a count
 * and the latest example) and of the noise it learned (JSON paths and
 * headers that differ between two answers of the same version, per site and
 * endpoint). Both are bounded: the least recently seen entry makes room.
 *
 * The worker writes them when a comparison ends, at the end of a loop
 * iteration; /diffs reads every worker's under its lock. Examples never
 * hold a request header, and compared headers that carry credentials
 * (cookies, authorization) are shown without their values.
 */
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "admin/metrics.h"
#include "core/alloc.h"
#include "proxy/mirror_int.h"
#include "proxy/proxy.h"

struct sy_mirror_group {
    char *site, *method, *pattern, *from, *to;
    uint64_t count;
    uint64_t kinds[SY_DIFF_KIND_MAX];
    uint64_t last;                 /* wall-clock ms of the latest */
    uint64_t example_at;           /* wall-clock ms of the example */
    char *example;                 /* JSON object text */
};

struct sy_mirror_noise {
    char *site, *method, *pattern;
    uint64_t last;
    size_t npaths;
    char *paths[SY_MIRROR_NOISE_PATHS];   /* array indices as [*] */
    size_t nheaders;
    char *headers[SY_MIRROR_MAX_HEADERS];
};

static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void sy__mirror_store_init(struct sy_mirror_worker *mw)
{
    pthread_mutex_init(&mw->lock, NULL);
    mw->groups = sy_calloc(SY_MIRROR_GROUPS, sizeof(*mw->groups));
    mw->noise = sy_calloc(SY_MIRROR_NOISE_ENDPOINTS, sizeof(*mw->noise));
}

static int secret_header(const char *name)
{
    return !strcmp(name, "set-cookie") || !strcmp(name, "cookie") ||
           !strcmp(name, "authorization") || !strcmp(name, "proxy-authorization") ||
           !strcmp(name, "www-authenticate") || !strcmp(name, "x-auth-token");
}

/* ---- noise ---- */

struct sy_mirror_noise *sy__mirror_noise_find(struct sy_mirror_worker *mw, const char *site,
                                              const char *method, const char *pattern)
{
    for (size_t i = 0; i < mw->nnoise; i++) {
        struct sy_mirror_noise *n = &mw->noise[i];
        if (!strcmp(n->site, site) && !strcmp(n->method, method) && !strcmp(n->pattern, pattern))
            return n;
    }
    return NULL;
}

int sy__mirror_noise_has(const struct sy_mirror_noise *n, const char *path)
{
    for (size_t i = 0; i < n->npaths; i++)
        if (sy_mirror_path_match(n->paths[i], path))
            return 1;
    return 0;
}

int sy__mirror_noise_header(const struct sy_mirror_noise *n, const char *name)
{
    for (size_t i = 0; i < n->nheaders; i++)
        if (!strcmp(n->headers[i], name))
            return 1;
    return 0;
}

static void noise_clear(struct sy_mirror_noise *n)
{
    sy_free(n->site);
    sy_free(n->method);
    sy_free(n->pattern);
    for (size_t i = 0; i < n->npaths; i++)
        sy_free(n->paths[i]);
    for (size_t i = 0; i < n->nheaders; i++)
        sy_free(n->headers[i]);
    memset(n, 0, sizeof(*n));
}

/* "$.items[3].at" -> "$.items[*].at": noise in one element is noise in all. */
static char *generalize(const char *path)
{
    size_t len = strlen(path);
    char *out = sy_malloc(len * 2 + 1), *o = out;
    for (const char *p = path; *p;) {
        if (p[0] == '[' && p[1] >= '0' && p[1] <= '9') {
            p++;
            while (*p >= '0' && *p <= '9')
                p++;
            if (*p == ']')
                p++;
            memcpy(o, "[*]", 3);
            o += 3;
            continue;
        }
        *o++ = *p++;
    }
    *o = '\0';
    return out;
}

void sy__mirror_learn(struct sy_mirror_worker *mw, const struct sy_mirror_subject *s,
                      const struct sy_mirror_diff *d)
{
    if (!d->npaths && !d->headers)
        return;
    pthread_mutex_lock(&mw->lock);
    struct sy_mirror_noise *n = sy__mirror_noise_find(mw, s->site, s->method, s->pattern);
    if (!n) {
        if (mw->nnoise < SY_MIRROR_NOISE_ENDPOINTS) {
            n = &mw->noise[mw->nnoise++];
        } else {
            n = &mw->noise[0];
            for (size_t i = 1; i < mw->nnoise; i++)
                if (mw->noise[i].last < n->last)
                    n = &mw->noise[i];
            noise_clear(n);
        }
        n->site = sy_strdup(s->site);
        n->method = sy_strdup(s->method);
        n->pattern = sy_strdup(s->pattern);
    }
    n->last = wall_ms();
    for (size_t i = 0; i < d->npaths; i++) {
        char *g = generalize(d->paths[i]);
        if (n->npaths < SY_MIRROR_NOISE_PATHS && !sy__mirror_noise_has(n, g))
            n->paths[n->npaths++] = g;
        else
            sy_free(g);
    }
    for (size_t h = 0; h < s->conf->nheaders && h < SY_MIRROR_MAX_HEADERS; h++)
        if ((d->headers & (1u << h)) && !sy__mirror_noise_header(n, s->conf->headers[h]) &&
            n->nheaders < SY_MIRROR_MAX_HEADERS)
            n->headers[n->nheaders++] = sy_strdup(s->conf->headers[h]);
    pthread_mutex_unlock(&mw->lock);
}

/* ---- differences ---- */

static char *dump(const json_t *j, size_t flags);

static char *hex64(uint64_t v, char *out)
{
    snprintf(out, 17, "%016llx", (unsigned long long)v);
    return out;
}

/* The example of a difference, as JSON text: the request line, both answers, what differed. */
static char *example(const struct sy_mirror_subject *s, const struct sy_mirror_diff *d)
{
    char h1[17], h2[17];
    json_t *ex = json_object();
    json_object_set_new(ex, "request", json_string(s->request));
    json_object_set_new(ex, "status", json_pack("{s:i,s:i}", "from", s->a->status, "to",
                                                s->b->status));
    json_t *hs = json_array();
    for (size_t h = 0; h < s->conf->nheaders && h < SY_MIRROR_MAX_HEADERS; h++) {
        if (!(d->headers & (1u << h)))
            continue;
        const char *name = s->conf->headers[h];
        int secret = secret_header(name);
        json_t *e = json_pack("{s:s}", "name", name);
        const char *va = s->a->hv[h], *vb = s->b->hv[h];
        json_object_set_new(e, "from", va ? json_string(secret ? "[redacted]" : va) : json_null());
        json_object_set_new(e, "to", vb ? json_string(secret ? "[redacted]" : vb) : json_null());
        json_array_append_new(hs, e);
    }
    json_object_set_new(ex, "headers", hs);
    json_t *ps = json_array();
    for (size_t i = 0; i < d->npaths; i++)
        json_array_append_new(ps, json_string(d->paths[i]));
    json_object_set_new(ex, "paths", ps);
    json_object_set_new(ex, "more_paths", json_boolean(d->more_paths));
    if (d->body && !d->body_json)
        json_object_set_new(ex, "body",
                            json_pack("{s:I,s:I,s:s,s:s}", "from_length", (json_int_t)s->a->total,
                                      "to_length", (json_int_t)s->b->total, "from_hash",
                                      hex64(s->a->hash, h1), "to_hash", hex64(s->b->hash, h2)));
    char *out = dump(ex, JSON_COMPACT);
    json_decref(ex);
    return out;
}

static int dump_cb(const char *buf, size_t size, void *data)
{
    sy_textbuf_append(data, buf, size);
    return 0;
}

/* JSON text into memory of our allocator ("{}" for nothing). */
static char *dump(const json_t *j, size_t flags)
{
    struct sy_textbuf b = {0};
    if (json_dump_callback(j, dump_cb, &b, flags) < 0 || !b.p) {
        sy_textbuf_free(&b);
        return sy_strdup("{}");
    }
    return b.p;
}

static void group_clear(struct sy_mirror_group *g)
{
    sy_free(g->site);
    sy_free(g->method);
    sy_free(g->pattern);
    sy_free(g->from);
    sy_free(g->to);
    sy_free(g->example);
    memset(g, 0, sizeof(*g));
}

/* A group's example is renewed by a later difference at most this often (ms). */
#define EXAMPLE_RENEW_MS 1000

void sy__mirror_record(struct sy_mirror_worker *mw, const struct sy_mirror_subject *s,
                       const struct sy_mirror_diff *d)
{
    uint64_t now = wall_ms();
    pthread_mutex_lock(&mw->lock);
    struct sy_mirror_group *g = NULL;
    for (size_t i = 0; i < mw->ngroups && !g; i++) {
        struct sy_mirror_group *c = &mw->groups[i];
        if (!strcmp(c->site, s->site) && !strcmp(c->method, s->method) &&
            !strcmp(c->pattern, s->pattern) && !strcmp(c->from, s->from) && !strcmp(c->to, s->to))
            g = c;
    }
    if (!g) {
        if (mw->ngroups < SY_MIRROR_GROUPS) {
            g = &mw->groups[mw->ngroups++];
        } else {
            g = &mw->groups[0];
            for (size_t i = 1; i < mw->ngroups; i++)
                if (mw->groups[i].last < g->last)
                    g = &mw->groups[i];
            group_clear(g);
        }
        g->site = sy_strdup(s->site);
        g->method = sy_strdup(s->method);
        g->pattern = sy_strdup(s->pattern);
        g->from = sy_strdup(s->from);
        g->to = sy_strdup(s->to);
    }
    g->count++;
    g->kinds[SY_DIFF_STATUS] += d->status;
    g->kinds[SY_DIFF_HEADER] += d->headers != 0;
    g->kinds[SY_DIFF_BODY] += d->body;
    if (!g->example || now >= g->example_at + EXAMPLE_RENEW_MS) {
        /* under the lock: only /diffs waits for it, never a request */
        sy_free(g->example);
        g->example = example(s, d);
        g->example_at = now;
    }
    g->last = now;
    pthread_mutex_unlock(&mw->lock);
}

/* ---- rendering (/diffs, /diffs.html), any thread ---- */

static json_t *collect(void)
{
    json_t *groups = json_array(), *noise = json_array();
    for (unsigned w = 0; w < sy_proc.nworkers; w++) {
        struct sy_mirror_worker *mw = __atomic_load_n(&sy_proc.workers[w].mirror, __ATOMIC_ACQUIRE);
        if (!mw)
            continue;
        pthread_mutex_lock(&mw->lock);
        for (size_t i = 0; i < mw->ngroups; i++) {
            const struct sy_mirror_group *g = &mw->groups[i];
            json_t *found = NULL;
            size_t k;
            json_t *e;
            json_array_foreach(groups, k, e) {
                if (!strcmp(json_string_value(json_object_get(e, "site")), g->site) &&
                    !strcmp(json_string_value(json_object_get(e, "method")), g->method) &&
                    !strcmp(json_string_value(json_object_get(e, "pattern")), g->pattern) &&
                    !strcmp(json_string_value(json_object_get(e, "from")), g->from) &&
                    !strcmp(json_string_value(json_object_get(e, "to")), g->to)) {
                    found = e;
                    break;
                }
            }
            if (!found) {
                found = json_pack("{s:s,s:s,s:s,s:s,s:s,s:I,s:{s:I,s:I,s:I},s:I}", "site", g->site,
                                  "method", g->method, "pattern", g->pattern, "from", g->from,
                                  "to", g->to, "count", (json_int_t)0, "kinds", "status",
                                  (json_int_t)0, "header", (json_int_t)0, "body", (json_int_t)0,
                                  "last_seen_ms", (json_int_t)0);
                json_array_append_new(groups, found);
            }
            json_t *kinds = json_object_get(found, "kinds");
            static const char *const kn[SY_DIFF_KIND_MAX] = {"status", "header", "body"};
            json_object_set_new(found, "count",
                                json_integer(json_integer_value(json_object_get(found, "count")) +
                                             (json_int_t)g->count));
            for (int q = 0; q < SY_DIFF_KIND_MAX; q++)
                json_object_set_new(kinds, kn[q],
                                    json_integer(json_integer_value(json_object_get(kinds, kn[q])) +
                                                 (json_int_t)g->kinds[q]));
            if ((json_int_t)g->last >= json_integer_value(json_object_get(found, "last_seen_ms"))) {
                json_object_set_new(found, "last_seen_ms", json_integer((json_int_t)g->last));
                json_t *ex = json_loads(g->example, 0, NULL);
                json_object_set_new(found, "example", ex ? ex : json_object());
            }
        }
        for (size_t i = 0; i < mw->nnoise; i++) {
            const struct sy_mirror_noise *n = &mw->noise[i];
            json_t *ps = json_array(), *hs = json_array();
            for (size_t k = 0; k < n->npaths; k++)
                json_array_append_new(ps, json_string(n->paths[k]));
            for (size_t k = 0; k < n->nheaders; k++)
                json_array_append_new(hs, json_string(n->headers[k]));
            json_array_append_new(noise, json_pack("{s:s,s:s,s:s,s:I,s:o,s:o}", "site", n->site,
                                                   "method", n->method, "pattern", n->pattern,
                                                   "worker", (json_int_t)w, "paths", ps,
                                                   "headers", hs));
        }
        pthread_mutex_unlock(&mw->lock);
    }
    return json_pack("{s:o,s:o}", "groups", groups, "noise", noise);
}

static int by_recent(const void *a, const void *b)
{
    json_int_t x = json_integer_value(json_object_get(*(json_t *const *)a, "last_seen_ms"));
    json_int_t y = json_integer_value(json_object_get(*(json_t *const *)b, "last_seen_ms"));
    return (x < y) - (x > y);
}

/* Most recent first. */
static void sort_groups(json_t *groups)
{
    size_t n = json_array_size(groups);
    if (n < 2)
        return;
    json_t **v = sy_calloc(n, sizeof(*v));
    for (size_t i = 0; i < n; i++)
        v[i] = json_incref(json_array_get(groups, i));
    qsort(v, n, sizeof(*v), by_recent);
    json_array_clear(groups);
    for (size_t i = 0; i < n; i++)
        json_array_append_new(groups, v[i]);
    sy_free(v);
}

static void html_text(struct sy_textbuf *b, const char *s)
{
    for (; s && *s; s++) {
        switch (*s) {
        case '<':
            sy_textbuf_append(b, "&lt;", 4);
            break;
        case '>':
            sy_textbuf_append(b, "&gt;", 4);
            break;
        case '&':
            sy_textbuf_append(b, "&amp;", 5);
            break;
        case '"':
            sy_textbuf_append(b, "&quot;", 6);
            break;
        default:
            sy_textbuf_append(b, s, 1);
        }
    }
}

static void html_td(struct sy_textbuf *b, const char *s)
{
    sy_textbuf_append(b, "<td>", 4);
    html_text(b, s);
    sy_textbuf_append(b, "</td>", 5);
}

static void html_list(struct sy_textbuf *b, const json_t *arr, const char *field)
{
    size_t i;
    json_t *e;
    sy_textbuf_append(b, "<td>", 4);
    json_array_foreach(arr, i, e) {
        if (i)
            sy_textbuf_append(b, "<br>", 4);
        if (field) {
            html_text(b, json_string_value(json_object_get(e, field)));
            sy_textbuf_append(b, ": ", 2);
            const json_t *from = json_object_get(e, "from"), *to = json_object_get(e, "to");
            html_text(b, json_is_string(from) ? json_string_value(from) : "(none)");
            sy_textbuf_append(b, " &rarr; ", 8);
            html_text(b, json_is_string(to) ? json_string_value(to) : "(none)");
        } else {
            html_text(b, json_string_value(e));
        }
    }
    sy_textbuf_append(b, "</td>", 5);
}

static void render_html(struct sy_textbuf *b, const json_t *root)
{
    sy_textbuf_printf(b, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                         "<title>Switchyard: differences between versions</title><style>"
                         "body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse}"
                         "td,th{border:1px solid #999;padding:.3em .6em;text-align:left;"
                         "vertical-align:top}th{background:#eee}.n{text-align:right}"
                         "</style></head><body>\n<h1>Differences between versions</h1>\n"
                         "<p>Requests copied to another version whose answer differed from the "
                         "one the client got, most recent first.</p>\n");
    const json_t *groups = json_object_get(root, "groups");
    if (!json_array_size(groups)) {
        sy_textbuf_printf(b, "<p id=\"none\">No difference found so far.</p>\n");
    } else {
        sy_textbuf_printf(b, "<table id=\"diffs\"><tr><th>Site</th><th>Endpoint</th>"
                             "<th>Versions</th><th>Count</th><th>Example request</th>"
                             "<th>Status</th><th>Headers</th><th>JSON paths</th></tr>\n");
        size_t i;
        json_t *g;
        json_array_foreach(groups, i, g) {
            const json_t *ex = json_object_get(g, "example");
            char tmp[512];
            sy_textbuf_append(b, "<tr>", 4);
            html_td(b, json_string_value(json_object_get(g, "site")));
            snprintf(tmp, sizeof(tmp), "%s %s", json_string_value(json_object_get(g, "method")),
                     json_string_value(json_object_get(g, "pattern")));
            html_td(b, tmp);
            snprintf(tmp, sizeof(tmp), "%s → %s", json_string_value(json_object_get(g, "from")),
                     json_string_value(json_object_get(g, "to")));
            html_td(b, tmp);
            sy_textbuf_printf(b, "<td class=\"n\">%lld</td>",
                              (long long)json_integer_value(json_object_get(g, "count")));
            html_td(b, json_string_value(json_object_get(ex, "request")));
            const json_t *st = json_object_get(ex, "status");
            snprintf(tmp, sizeof(tmp), "%lld → %lld",
                     (long long)json_integer_value(json_object_get(st, "from")),
                     (long long)json_integer_value(json_object_get(st, "to")));
            html_td(b, tmp);
            html_list(b, json_object_get(ex, "headers"), "name");
            html_list(b, json_object_get(ex, "paths"), NULL);
            sy_textbuf_append(b, "</tr>\n", 6);
        }
        sy_textbuf_printf(b, "</table>\n");
    }
    const json_t *noise = json_object_get(root, "noise");
    sy_textbuf_printf(b, "<h2>Learned noise</h2>\n<p>What differs between two answers of the "
                         "same version: not reported as a difference.</p>\n");
    if (json_array_size(noise)) {
        sy_textbuf_printf(b, "<table id=\"noise\"><tr><th>Site</th><th>Endpoint</th>"
                             "<th>JSON paths</th><th>Headers</th></tr>\n");
        size_t i;
        json_t *n;
        json_array_foreach(noise, i, n) {
            char tmp[512];
            sy_textbuf_append(b, "<tr>", 4);
            html_td(b, json_string_value(json_object_get(n, "site")));
            snprintf(tmp, sizeof(tmp), "%s %s", json_string_value(json_object_get(n, "method")),
                     json_string_value(json_object_get(n, "pattern")));
            html_td(b, tmp);
            html_list(b, json_object_get(n, "paths"), NULL);
            html_list(b, json_object_get(n, "headers"), NULL);
            sy_textbuf_append(b, "</tr>\n", 6);
        }
        sy_textbuf_printf(b, "</table>\n");
    }
    sy_textbuf_printf(b, "</body></html>\n");
}

void sy_mirror_render(struct sy_textbuf *b, int html)
{
    json_t *root = collect();
    sort_groups(json_object_get(root, "groups"));
    if (html) {
        render_html(b, root);
    } else {
        json_dump_callback(root, dump_cb, b, JSON_INDENT(1));
        sy_textbuf_append(b, "\n", 1);
    }
    json_decref(root);
}
