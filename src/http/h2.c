/*
 * h2.c: HTTP/2 request heads into the HTTP/1.1 request form (see h2.h).
 */
#include <string.h>

#include "core/alloc.h"
#include "http/h2.h"
#include "tls/tls.h"

#define FIELD_OVERHEAD 32          /* RFC 7541 §4.1 */

void sy_h2_head_reset(struct sy_h2_head *h, uint32_t max_size, uint32_t max_fields)
{
    char *buf = h->buf;
    uint32_t cap = h->cap;
    struct sy_h2_field *fields = h->fields;
    memset(h, 0, sizeof(*h));
    h->buf = buf;
    h->cap = cap;
    h->fields = fields;
    h->max_size = max_size;
    h->max_fields = max_fields < SY_H2_MAX_FIELDS ? max_fields : SY_H2_MAX_FIELDS;
}

void sy_h2_head_free(struct sy_h2_head *h)
{
    sy_free(h->buf);
    sy_free(h->fields);
    h->buf = NULL;
    h->fields = NULL;
    h->cap = h->len = 0;
}

static int name_is(const uint8_t *n, size_t nl, const char *lit)
{
    size_t ll = strlen(lit);
    return nl == ll && memcmp(n, lit, ll) == 0;
}

/* RFC 9113 §8.2.1: lower-case tchars only. */
static int valid_name(const uint8_t *n, size_t nl)
{
    if (!nl)
        return 0;
    for (size_t i = 0; i < nl; i++)
        if (!sy_h1_is_tchar(n[i]) || (n[i] >= 'A' && n[i] <= 'Z'))
            return 0;
    return 1;
}

/* No NUL, CR, LF or other control but HTAB; no leading or trailing SP or HTAB. */
static int valid_value(const uint8_t *v, size_t vl)
{
    if (vl && (v[0] == ' ' || v[0] == '\t' || v[vl - 1] == ' ' || v[vl - 1] == '\t'))
        return 0;
    for (size_t i = 0; i < vl; i++)
        if ((v[i] < 0x20 && v[i] != '\t') || v[i] == 0x7f)
            return 0;
    return 1;
}

/* RFC 9113 §8.2.2. */
static int connection_specific(const uint8_t *n, size_t nl, const uint8_t *v, size_t vl)
{
    if (name_is(n, nl, "te"))
        return !(vl == 8 && memcmp(v, "trailers", 8) == 0);
    return name_is(n, nl, "connection") || name_is(n, nl, "keep-alive") ||
           name_is(n, nl, "proxy-connection") || name_is(n, nl, "transfer-encoding") ||
           name_is(n, nl, "upgrade");
}

/* Room for n more bytes; h->buf may move (allocated even for n == 0: slices point here). */
static void reserve(struct sy_h2_head *h, size_t n)
{
    if (!h->buf || h->len + n > h->cap) {
        size_t cap = h->cap ? h->cap : 1024;
        while (cap < h->len + n)
            cap *= 2;
        h->buf = sy_realloc(h->buf, cap);
        h->cap = (uint32_t)cap;
    }
}

/* p must not point into h->buf (it may move). */
static struct sy_h2_slice append(struct sy_h2_head *h, const void *p, size_t n)
{
    reserve(h, n);
    memcpy(h->buf + h->len, p, n);
    struct sy_h2_slice s = {h->len, (uint32_t)n, 1};
    h->len += (uint32_t)n;
    return s;
}

static void set_pseudo(struct sy_h2_head *h, struct sy_h2_slice *dst, const uint8_t *v,
                       size_t vl)
{
    if (dst->set) {
        h->malformed = 1; /* repeated */
        return;
    }
    *dst = append(h, v, vl);
}

/*
 * Adds a field's RFC 7541 size to *size. 0 within max, 1 over it, -1 so far
 * beyond (4 times, plus 64 KiB) that the connection should end.
 */
static int add_size(uint32_t *size, uint32_t max, size_t nl, size_t vl)
{
    uint64_t sz = (uint64_t)*size + nl + vl + FIELD_OVERHEAD;
    *size = sz > UINT32_MAX ? UINT32_MAX : (uint32_t)sz;
    if (*size <= max)
        return 0;
    return (uint64_t)*size > 4 * (uint64_t)max + 65536 ? -1 : 1;
}

int sy_h2_head_add(struct sy_h2_head *h, const uint8_t *name, size_t nl, const uint8_t *value,
                   size_t vl)
{
    int over = add_size(&h->size, h->max_size, nl, vl);
    if (over) {
        h->status = 431;
        return over < 0 ? -1 : 0;
    }
    if (h->malformed || h->status)
        return 0;
    if (!valid_value(value, vl)) {
        h->malformed = 1;
        return 0;
    }
    if (nl && name[0] == ':') {
        if (h->nfields) { /* pseudo-headers come first */
            h->malformed = 1;
            return 0;
        }
        if (name_is(name, nl, ":method"))
            set_pseudo(h, &h->method, value, vl);
        else if (name_is(name, nl, ":scheme"))
            set_pseudo(h, &h->scheme, value, vl);
        else if (name_is(name, nl, ":authority"))
            set_pseudo(h, &h->authority, value, vl);
        else if (name_is(name, nl, ":path"))
            set_pseudo(h, &h->path, value, vl);
        else if (name_is(name, nl, ":protocol"))
            set_pseudo(h, &h->protocol, value, vl); /* extended CONNECT (RFC 8441) */
        else
            h->malformed = 1; /* :status, unknown */
        return 0;
    }
    if (!valid_name(name, nl) || connection_specific(name, nl, value, vl)) {
        h->malformed = 1;
        return 0;
    }
    if (h->nfields >= h->max_fields) {
        h->status = 431;
        return 0;
    }
    if (!h->fields)
        h->fields = sy_malloc(SY_H2_MAX_FIELDS * sizeof(*h->fields));
    struct sy_h2_field *f = &h->fields[h->nfields++];
    f->name = append(h, name, nl);
    f->value = append(h, value, vl);
    if (name_is(name, nl, "cookie")) {
        h->ncookies++;
    } else if (name_is(name, nl, "content-length")) {
        h->nlength++;
    } else if (name_is(name, nl, "host")) {
        if (h->host.set)
            h->malformed = 1;
        h->host = f->value;
    }
    return 0;
}

static struct sy_str str_of(const struct sy_h2_head *h, struct sy_h2_slice s)
{
    return sy_str_make(h->buf + s.o, s.l);
}

/* :path: origin-form (or "*" for OPTIONS), visible ASCII only: it becomes the request line. */
static int valid_path(struct sy_str path, struct sy_str method)
{
    if (!path.len)
        return 0;
    if (path.len == 1 && path.p[0] == '*')
        return sy_str_eq(method, SY_STR_LIT("OPTIONS"));
    if (path.p[0] != '/')
        return 0;
    for (size_t i = 0; i < path.len; i++)
        if ((unsigned char)path.p[i] < 0x21 || (unsigned char)path.p[i] > 0x7e)
            return 0;
    return 1;
}

static int valid_method(struct sy_str m)
{
    if (!m.len || sy_str_eq(m, SY_STR_LIT("CONNECT")))
        return 0;
    for (size_t i = 0; i < m.len; i++)
        if (!sy_h1_is_tchar((unsigned char)m.p[i]))
            return 0;
    return 1;
}

/*
 * RFC 8441 §4: CONNECT with :protocol, :scheme, :path and :authority, no
 * content-length (its DATA is tunnel bytes). 0, -1 malformed, 501 for a
 * protocol other than websocket.
 */
static int checked_extended_connect(struct sy_h2_head *h)
{
    if (!sy_str_eq(str_of(h, h->method), SY_STR_LIT("CONNECT")) || !h->authority.l ||
        h->nlength)
        return -1;
    if (!sy_str_caseeq_cstr(str_of(h, h->protocol), "websocket"))
        return 501;
    return 0;
}

static int checked(struct sy_h2_head *h, int end_stream)
{
    if (h->malformed)
        return -1;
    if (h->status)
        return h->status;
    if (!h->method.set || !h->scheme.set || !h->path.set || !h->scheme.l)
        return -1;
    struct sy_str method = str_of(h, h->method);
    if (h->protocol.set) {
        int r = checked_extended_connect(h);
        if (r)
            return r;
        method = SY_STR_LIT("GET"); /* what it becomes */
    }
    if (!valid_method(method) || !valid_path(str_of(h, h->path), method))
        return -1;
    if (h->authority.set && h->host.set &&
        !sy_str_eq(str_of(h, h->authority), str_of(h, h->host)))
        return -1;
    if (h->nlength > 1)
        return -1;
    if (end_stream && h->nlength) {
        /* No DATA to come: a content-length must say 0 (RFC 9113 §8.1.1). */
        for (uint32_t i = 0; i < h->nfields; i++) {
            struct sy_str n = str_of(h, h->fields[i].name);
            struct sy_str v = str_of(h, h->fields[i].value);
            if (sy_str_eq(n, SY_STR_LIT("content-length")) && !sy_str_eq(v, SY_STR_LIT("0")))
                return -1;
        }
    }
    return 0;
}

int sy_h2_head_finish(struct sy_h2_head *h, int end_stream, size_t max_uri,
                      struct sy_h1_request *req, struct sy_h1_header *hv, char **head,
                      int *chunked)
{
    int r = checked(h, end_stream);
    if (r)
        return r;
    if (h->path.l > max_uri)
        return 414;

    /* The joined cookie goes after the collected bytes. */
    struct sy_h2_slice cookie = {h->len, 0, 1};
    if (h->ncookies > 1) {
        size_t total = 0;
        for (uint32_t i = 0; i < h->nfields; i++)
            total += h->fields[i].value.l + 2;
        reserve(h, total); /* once: the values are copied from h->buf itself */
        int k = 0;
        for (uint32_t i = 0; i < h->nfields; i++) {
            struct sy_h2_field *f = &h->fields[i];
            if (!sy_str_eq(str_of(h, f->name), SY_STR_LIT("cookie")))
                continue;
            if (k++) {
                memcpy(h->buf + h->len, "; ", 2);
                h->len += 2;
            }
            memcpy(h->buf + h->len, h->buf + f->value.o, f->value.l);
            h->len += f->value.l;
        }
        cookie.l = h->len - cookie.o;
    }
    int ws = h->protocol.set;
    struct sy_h2_slice key = {0, 0, 0};
    if (ws)
        key = append(h, h->ws_key, SY_H2_WS_KEY_LEN);
    size_t n = 0;
    if (h->authority.set)
        hv[n++] = (struct sy_h1_header){SY_STR_LIT("host"), str_of(h, h->authority)};
    if (ws) {
        /* Exactly these: Rack::SSL and ActionCable compare them byte for byte. */
        hv[n++] = (struct sy_h1_header){SY_STR_LIT("Upgrade"), SY_STR_LIT("websocket")};
        hv[n++] = (struct sy_h1_header){SY_STR_LIT("Connection"), SY_STR_LIT("Upgrade")};
        hv[n++] = (struct sy_h1_header){SY_STR_LIT("Sec-WebSocket-Key"), str_of(h, key)};
    }
    int cookie_done = 0;
    for (uint32_t i = 0; i < h->nfields; i++) {
        struct sy_str name = str_of(h, h->fields[i].name);
        struct sy_str value = str_of(h, h->fields[i].value);
        if (h->authority.set && sy_str_eq(name, SY_STR_LIT("host")))
            continue; /* the same value as :authority, already there */
        if (ws && sy_str_eq(name, SY_STR_LIT("sec-websocket-key")))
            continue; /* ours replaces it: the upstream's accept is checked against ours */
        if (h->ncookies > 1 && sy_str_eq(name, SY_STR_LIT("cookie"))) {
            if (cookie_done++)
                continue;
            value = str_of(h, cookie);
        }
        hv[n++] = (struct sy_h1_header){name, value};
    }
    *chunked = !end_stream && !h->nlength && !ws;
    if (*chunked)
        hv[n++] = (struct sy_h1_header){SY_STR_LIT("transfer-encoding"), SY_STR_LIT("chunked")};
    h->websocket = ws;
    req->method = ws ? SY_STR_LIT("GET") : str_of(h, h->method);
    req->target = str_of(h, h->path);
    req->minor_version = 1;
    req->headers = hv;
    req->num_headers = n;
    *head = h->buf;
    h->buf = NULL;
    h->cap = h->len = 0;
    return 0;
}

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Standard base64 with padding: 4 * ceil(n / 3) characters, no NUL. */
static void base64(const uint8_t *in, size_t n, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < n)
            v |= in[i + 2];
        out[o++] = b64[v >> 18 & 63];
        out[o++] = b64[v >> 12 & 63];
        out[o++] = i + 1 < n ? b64[v >> 6 & 63] : '=';
        out[o++] = i + 2 < n ? b64[v & 63] : '=';
    }
}

void sy_h2_ws_key(const uint8_t nonce[16], char key[SY_H2_WS_KEY_LEN])
{
    base64(nonce, 16, key);
}

int sy_h2_ws_accept_ok(const char key[SY_H2_WS_KEY_LEN], struct sy_str accept)
{
    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    char in[SY_H2_WS_KEY_LEN + sizeof(guid) - 1];
    unsigned char sha[20];
    char want[SY_H2_WS_ACCEPT_LEN];
    memcpy(in, key, SY_H2_WS_KEY_LEN);
    memcpy(in + SY_H2_WS_KEY_LEN, guid, sizeof(guid) - 1);
    sy_tls_sha1(in, sizeof(in), sha);
    base64(sha, sizeof(sha), want);
    return accept.len == SY_H2_WS_ACCEPT_LEN && memcmp(accept.p, want, SY_H2_WS_ACCEPT_LEN) == 0;
}

/* ---- trailers ---- */

int sy_h2_trailer_allowed(const char *name, size_t nl)
{
    static const char *const denied[] = {
        /* connection-specific (RFC 9113 §8.2.2) and framing */
        "connection", "keep-alive", "proxy-connection", "te", "transfer-encoding", "upgrade",
        "trailer", "content-length",
        /* routing, the content as a whole, authentication, caching (RFC 9110 §6.5.1) */
        "host", "content-type", "content-encoding", "content-range", "content-location",
        "authorization", "proxy-authorization", "www-authenticate", "proxy-authenticate",
        "cookie", "set-cookie", "cache-control", "expect", "range", "if-match",
        "if-none-match", "if-modified-since", "if-unmodified-since", "if-range", "max-forwards",
        "location", "retry-after", "vary", "age", "expires", "date",
        /* set by the gateway */
        "forwarded", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host",
        "x-forwarded-port", "x-request-id", "x-real-ip",
    };
    if (!nl || name[0] == ':')
        return 0;
    for (size_t i = 0; i < sizeof(denied) / sizeof(denied[0]); i++) {
        size_t dl = strlen(denied[i]);
        if (dl != nl)
            continue;
        size_t k = 0;
        while (k < nl && (name[k] | (name[k] >= 'A' && name[k] <= 'Z' ? 0x20 : 0)) == denied[i][k])
            k++;
        if (k == nl)
            return 0;
    }
    return 1;
}

void sy_h2_trailers_reset(struct sy_h2_trailers *t, uint32_t max_size, uint32_t max_len)
{
    sy_h2_trailers_free(t);
    t->max_size = max_size;
    t->max_len = max_len;
}

int sy_h2_trailers_add(struct sy_h2_trailers *t, const uint8_t *name, size_t nl,
                       const uint8_t *value, size_t vl)
{
    int over = add_size(&t->size, t->max_size, nl, vl);
    if (over) {
        t->too_big = 1;
        return over < 0 ? -1 : 0;
    }
    if (t->malformed || t->too_big)
        return 0;
    if (!valid_name(name, nl) || !valid_value(value, vl) ||
        connection_specific(name, nl, value, vl)) {
        t->malformed = 1; /* pseudo-headers fail valid_name: ':' is no tchar */
        return 0;
    }
    if (!sy_h2_trailer_allowed((const char *)name, nl))
        return 0;
    size_t need = nl + 2 + vl + 2;
    if ((uint64_t)t->len + need > t->max_len) {
        t->too_big = 1;
        return 0;
    }
    if (t->len + need > t->cap) {
        size_t cap = t->cap ? t->cap : 256;
        while (cap < t->len + need)
            cap *= 2;
        t->buf = sy_realloc(t->buf, cap);
        t->cap = (uint32_t)cap;
    }
    char *p = t->buf + t->len;
    memcpy(p, name, nl);
    memcpy(p + nl, ": ", 2);
    memcpy(p + nl + 2, value, vl);
    memcpy(p + nl + 2 + vl, "\r\n", 2);
    t->len += (uint32_t)need;
    return 0;
}

void sy_h2_trailers_free(struct sy_h2_trailers *t)
{
    sy_free(t->buf);
    memset(t, 0, sizeof(*t));
}
