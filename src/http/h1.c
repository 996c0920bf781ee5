/*
 * h1.c: strict HTTP/1.1 head parsing, message framing and chunked scanning
 * (RFC 9110, RFC 9112).
 *
 * The head parsers are stateless over a growing buffer: each call re-parses
 * from the first byte, touches nothing but the caller's arrays and never reads
 * past buf + len. Scanning uses lookup tables and, on x86-64, SSE2 to skip
 * runs of ordinary bytes 16 at a time.
 *
 * Decisions taken where the RFCs leave room (all on the strict side):
 *   - the request-target may only hold visible ASCII (0x21-0x7E); a raw
 *     byte >= 0x80 there is 400 (clients percent-encode);
 *   - a response status line without the SP after the status code
 *     ("HTTP/1.1 200\r\n") is accepted with an empty reason: the CRLF
 *     delimits it unambiguously, and old servers send it;
 *   - requests: any repeated Content-Length (several lines or a list, even
 *     of identical values) is 400; responses: identical values are
 *     collapsed (RFC 9112 section 6.3, item 5), different ones are invalid;
 *   - empty elements of a Transfer-Encoding list are ignored (RFC 9110
 *     section 5.6.1.2) but the list must name at least one coding.
 */
#include "http/h1.h"

#include <string.h>

#ifdef __SSE2__
#include <emmintrin.h>
#endif

#define H1_BAD(code)                                                                             \
    do {                                                                                         \
        *status = (code);                                                                        \
        return SY_H1_INVALID;                                                                    \
    } while (0)

/* 1 for a tchar (RFC 9110 section 5.6.2) */
static const unsigned char tchar_tab[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 1, 0, 1, 1, 1, 1, 1, 0, 0, 1, 1, 0, 1, 1, 0,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0,
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 0, 1, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
};

/* 1 for a byte allowed inside a field value: field-vchar, SP, HTAB, obs-text */
static const unsigned char value_tab[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
};

int sy_h1_is_tchar(unsigned char c)
{
    return tchar_tab[c];
}

/* Returns the first byte at or after p that cannot appear in a field value, or end. */
static const char *scan_value(const char *p, const char *end)
{
#ifdef __SSE2__
    const __m128i ctl = _mm_set1_epi8(0x1f);
    const __m128i del = _mm_set1_epi8(0x7f);

    while (end - p >= 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
        __m128i low = _mm_cmpeq_epi8(_mm_min_epu8(v, ctl), v); /* v <= 0x1f */
        int mask = _mm_movemask_epi8(_mm_or_si128(low, _mm_cmpeq_epi8(v, del)));
        if (mask == 0) {
            p += 16;
            continue;
        }
        p += __builtin_ctz((unsigned)mask);
        if (*p != '\t')
            return p;
        p++;
    }
#endif
    while (p < end && value_tab[(unsigned char)*p])
        p++;
    return p;
}

/* Returns the first byte at or after p that is not visible ASCII (0x21-0x7e), or end. */
static const char *scan_target(const char *p, const char *end)
{
#ifdef __SSE2__
    const __m128i sp = _mm_set1_epi8(0x20);
    const __m128i tilde = _mm_set1_epi8(0x7e);

    while (end - p >= 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
        __m128i low = _mm_cmpeq_epi8(_mm_min_epu8(v, sp), v);    /* v <= 0x20 */
        __m128i high = _mm_cmpeq_epi8(_mm_max_epu8(v, tilde), v); /* v >= 0x7e */
        high = _mm_andnot_si128(_mm_cmpeq_epi8(v, tilde), high);  /* v >= 0x7f */
        int mask = _mm_movemask_epi8(_mm_or_si128(low, high));
        if (mask != 0)
            return p + __builtin_ctz((unsigned)mask);
        p += 16;
    }
#endif
    while (p < end && (unsigned char)*p > 0x20 && (unsigned char)*p < 0x7f)
        p++;
    return p;
}

static const char *scan_token(const char *p, const char *end)
{
    while (p < end && tchar_tab[(unsigned char)*p])
        p++;
    return p;
}

/*
 * Parses header lines from *pp up to and including the empty line. Returns 0
 * with *pp past the empty line, SY_H1_PARTIAL, or SY_H1_INVALID with *status.
 */
static int parse_headers(const char **pp, const char *end, struct sy_h1_header *hdrs,
                         size_t *num, size_t max, int *status)
{
    const char *p = *pp;
    size_t n = 0;

    for (;;) {
        const char *name, *value, *vend;

        if (p == end)
            return SY_H1_PARTIAL;
        if (*p == '\r') {
            if (p + 1 == end)
                return SY_H1_PARTIAL;
            if (p[1] != '\n')
                H1_BAD(400);
            *pp = p + 2;
            *num = n;
            return 0;
        }
        if (n == max)
            H1_BAD(431);
        /* A line starting with SP/HTAB is obs-fold (or whitespace after the start line). */
        name = p;
        p = scan_token(p, end);
        if (p == end)
            return SY_H1_PARTIAL;
        if (p == name || *p != ':')
            H1_BAD(400);
        hdrs[n].name = sy_str_make(name, (size_t)(p - name));
        p++;
        while (p < end && (*p == ' ' || *p == '\t'))
            p++;
        value = p;
        p = scan_value(p, end);
        if (p == end)
            return SY_H1_PARTIAL;
        if (*p != '\r')
            H1_BAD(400);
        if (p + 1 == end)
            return SY_H1_PARTIAL;
        if (p[1] != '\n')
            H1_BAD(400);
        vend = p;
        while (vend > value && (vend[-1] == ' ' || vend[-1] == '\t'))
            vend--;
        hdrs[n].value = sy_str_make(value, (size_t)(vend - value));
        n++;
        p += 2;
    }
}

/*
 * Checks `HTTP/D.D` followed by CRLF at p. Returns 0 with *minor set and *pp
 * past the CRLF, SY_H1_PARTIAL while what is there is a valid prefix, or
 * SY_H1_INVALID with 400 (garbage) or 505 (a well-formed other version).
 */
static int parse_request_version(const char **pp, const char *end, int *minor, int *status)
{
    static const char pattern[] = "HTTP/0.0\r\n"; /* '0' stands for any digit */
    const char *p = *pp;
    size_t avail = (size_t)(end - p), i;

    for (i = 0; i < sizeof(pattern) - 1; i++) {
        unsigned char c;
        if (i == avail)
            return SY_H1_PARTIAL;
        c = (unsigned char)p[i];
        if (pattern[i] == '0' ? (c < '0' || c > '9') : c != (unsigned char)pattern[i])
            H1_BAD(400);
    }
    if (p[5] != '1' || (p[7] != '0' && p[7] != '1'))
        H1_BAD(505);
    *minor = p[7] - '0';
    *pp = p + sizeof(pattern) - 1;
    return 0;
}

static int parse_request(const char *buf, const char *end, struct sy_h1_request *req,
                         const struct sy_h1_limits *lim, int *status)
{
    const char *p = buf, *method, *target, *tend;
    int r;

    if (p == end)
        return SY_H1_PARTIAL;
    /* RFC 9112 section 2.2: one empty line before the request line is ignored. */
    if (*p == '\r') {
        if (p + 1 == end)
            return SY_H1_PARTIAL;
        if (p[1] != '\n')
            H1_BAD(400);
        p += 2;
    }

    method = p;
    p = scan_token(p, end);
    if (p == end)
        return SY_H1_PARTIAL;
    if (p == method || *p != ' ')
        H1_BAD(400);
    req->method = sy_str_make(method, (size_t)(p - method));
    p++;

    target = p;
    tend = end;
    if ((size_t)(end - target) > lim->max_uri)
        tend = target + lim->max_uri + 1;
    p = scan_target(p, tend);
    if ((size_t)(p - target) > lim->max_uri)
        H1_BAD(414);
    if (p == end)
        return SY_H1_PARTIAL;
    if (p == target || *p != ' ')
        H1_BAD(400);
    req->target = sy_str_make(target, (size_t)(p - target));
    p++;

    if ((r = parse_request_version(&p, end, &req->minor_version, status)) != 0)
        return r;
    if ((r = parse_headers(&p, end, req->headers, &req->num_headers, lim->max_headers,
                           status)) != 0)
        return r;
    return (int)(p - buf);
}

int sy_h1_parse_request(const char *buf, size_t len, struct sy_h1_request *req,
                        const struct sy_h1_limits *lim, int *status)
{
    size_t scan = len < lim->max_head ? len : lim->max_head;
    int r;

    *status = 0;
    req->num_headers = 0;
    r = parse_request(buf, buf + scan, req, lim, status);
    if (r == SY_H1_PARTIAL && len > lim->max_head) {
        *status = 431;
        return SY_H1_INVALID;
    }
    return r;
}

static int parse_response(const char *buf, const char *end, struct sy_h1_response *resp,
                          const struct sy_h1_limits *lim, int *status)
{
    static const char pattern[] = "HTTP/1.0 000"; /* '0' stands for any digit */
    const char *p = buf, *reason;
    size_t avail = (size_t)(end - p), i;
    int r;

    for (i = 0; i < sizeof(pattern) - 1; i++) {
        unsigned char c;
        if (i == avail)
            return SY_H1_PARTIAL;
        c = (unsigned char)p[i];
        if (pattern[i] == '0' ? (c < '0' || c > '9') : c != (unsigned char)pattern[i])
            H1_BAD(502);
    }
    if (p[7] != '0' && p[7] != '1')
        H1_BAD(502);
    resp->minor_version = p[7] - '0';
    resp->status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
    if (resp->status < 100)
        H1_BAD(502);
    p += sizeof(pattern) - 1;
    if (p == end)
        return SY_H1_PARTIAL;
    if (*p == ' ')
        p++;
    else if (*p != '\r')
        H1_BAD(502);
    reason = p;
    p = scan_value(p, end);
    if (p == end)
        return SY_H1_PARTIAL;
    if (*p != '\r')
        H1_BAD(502);
    if (p + 1 == end)
        return SY_H1_PARTIAL;
    if (p[1] != '\n')
        H1_BAD(502);
    resp->reason = sy_str_make(reason, (size_t)(p - reason));
    p += 2;
    if ((r = parse_headers(&p, end, resp->headers, &resp->num_headers, lim->max_headers,
                           status)) != 0)
        return r;
    return (int)(p - buf);
}

int sy_h1_parse_response(const char *buf, size_t len, struct sy_h1_response *resp,
                         const struct sy_h1_limits *lim)
{
    size_t scan = len < lim->max_head ? len : lim->max_head;
    int status = 0, r;

    resp->num_headers = 0;
    r = parse_response(buf, buf + scan, resp, lim, &status);
    if (r == SY_H1_PARTIAL && len > lim->max_head)
        return SY_H1_INVALID;
    return r;
}

/* ---- list-valued fields ------------------------------------------------------------------ */

int sy_h1_next_list_elem(struct sy_str value, size_t *pos, struct sy_str *elem)
{
    size_t i = *pos, start;
    int quoted = 0;

    if (i == 0 && sy_str_trim(value).len == 0)
        return 0;
    if (i > value.len)
        return 0;
    start = i;
    for (; i < value.len; i++) {
        char c = value.p[i];
        if (quoted) {
            if (c == '\\' && i + 1 < value.len)
                i++;
            else if (c == '"')
                quoted = 0;
        } else if (c == '"') {
            quoted = 1;
        } else if (c == ',') {
            break;
        }
    }
    *elem = sy_str_trim(sy_str_make(value.p + start, i - start));
    *pos = i + 1; /* past the comma; value.len + 1 once the last element is out */
    return 1;
}

const struct sy_h1_header *sy_h1_find(const struct sy_h1_header *h, size_t n, struct sy_str name)
{
    for (size_t i = 0; i < n; i++)
        if (sy_str_caseeq(h[i].name, name))
            return &h[i];
    return NULL;
}

/* ---- framing ----------------------------------------------------------------------------- */

/* Length of a quoted-string at p (which starts with '"'), or 0 when malformed. */
static size_t quoted_string_len(const char *p, const char *end)
{
    const char *q = p + 1;

    while (q < end) {
        unsigned char c = (unsigned char)*q;
        if (c == '"')
            return (size_t)(q + 1 - p);
        if (c == '\\') {
            if (q + 1 == end || !value_tab[(unsigned char)q[1]])
                return 0;
            q += 2;
            continue;
        }
        if (!value_tab[c])
            return 0;
        q++;
    }
    return 0;
}

/* Validates *( OWS ";" OWS token "=" ( token / quoted-string ) ). */
static int params_valid(const char *p, const char *end)
{
    while (p < end) {
        const char *t;
        while (p < end && (*p == ' ' || *p == '\t'))
            p++;
        if (p == end || *p != ';')
            return 0;
        p++;
        while (p < end && (*p == ' ' || *p == '\t'))
            p++;
        t = p;
        p = scan_token(p, end);
        if (p == t || p == end || *p != '=')
            return 0;
        p++;
        if (p < end && *p == '"') {
            size_t q = quoted_string_len(p, end);
            if (q == 0)
                return 0;
            p += q;
        } else {
            t = p;
            p = scan_token(p, end);
            if (p == t)
                return 0;
        }
    }
    return 1;
}

struct te_state {
    unsigned lines;           /* Transfer-Encoding field lines */
    unsigned codings;         /* non-empty list elements */
    unsigned chunked;         /* how many of them are "chunked" */
    unsigned other;           /* codings we do not implement */
    int malformed;
    int last_chunked;         /* the last coding seen is chunked */
};

static void te_add(struct te_state *te, struct sy_str value)
{
    struct sy_str e;
    size_t pos = 0;

    te->lines++;
    while (sy_h1_next_list_elem(value, &pos, &e)) {
        const char *tend;
        if (e.len == 0)
            continue;
        te->codings++;
        tend = scan_token(e.p, e.p + e.len);
        if (tend == e.p) {
            te->malformed = 1;
            te->last_chunked = 0;
        } else if (sy_str_caseeq_cstr(sy_str_make(e.p, (size_t)(tend - e.p)), "chunked")) {
            te->chunked++;
            te->last_chunked = 1;
            if (tend != e.p + e.len) /* chunked takes no parameters */
                te->malformed = 1;
        } else {
            te->other++;
            te->last_chunked = 0;
            if (!params_valid(tend, e.p + e.len))
                te->malformed = 1;
        }
    }
}

/* 1 when v is 1*DIGIT not above INT64_MAX; sets *out. */
static int parse_content_length(struct sy_str v, uint64_t *out)
{
    uint64_t n = 0;

    if (v.len == 0)
        return 0;
    for (size_t i = 0; i < v.len; i++) {
        unsigned d = (unsigned)(unsigned char)v.p[i] - '0';
        if (d > 9)
            return 0;
        if (n > ((uint64_t)INT64_MAX - d) / 10)
            return 0;
        n = n * 10 + d;
    }
    *out = n;
    return 1;
}

struct conn_tokens {
    int close;
    int keep_alive;
    int upgrade;
};

static void connection_add(struct conn_tokens *ct, struct sy_str value)
{
    struct sy_str e;
    size_t pos = 0;

    while (sy_h1_next_list_elem(value, &pos, &e)) {
        if (sy_str_caseeq_cstr(e, "close"))
            ct->close = 1;
        else if (sy_str_caseeq_cstr(e, "keep-alive"))
            ct->keep_alive = 1;
        else if (sy_str_caseeq_cstr(e, "upgrade"))
            ct->upgrade = 1;
    }
}

static int keepalive_of(int minor_version, const struct conn_tokens *ct)
{
    if (ct->close)
        return 0;
    return minor_version >= 1 || ct->keep_alive;
}

static int is_unreserved_or_subdelim(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return 1;
    return c != 0 && strchr("-._~!$&'()*+,;=", c) != NULL;
}

static int is_hex(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/*
 * Host = uri-host [ ":" port ] (RFC 9110 section 7.2). uri-host is an
 * IP-literal in brackets or a reg-name (which covers IPv4 addresses); the
 * value may be empty when the target has no authority.
 */
static int host_valid(struct sy_str v)
{
    const unsigned char *p = (const unsigned char *)v.p, *end = p + v.len;

    if (p < end && *p == '[') {
        p++;
        while (p < end && (is_unreserved_or_subdelim(*p) || *p == ':'))
            p++;
        if (p == end || *p != ']')
            return 0;
        p++;
    } else {
        while (p < end) {
            if (*p == '%') {
                if (end - p < 3 || !is_hex(p[1]) || !is_hex(p[2]))
                    return 0;
                p += 3;
            } else if (is_unreserved_or_subdelim(*p)) {
                p++;
            } else {
                break;
            }
        }
    }
    if (p < end) {
        if (*p != ':')
            return 0;
        for (p++; p < end; p++)
            if (*p < '0' || *p > '9')
                return 0;
    }
    return 1;
}

/*
 * Checks the request-target form and sets f->target to what is forwarded
 * (see h1.h). Returns 0 or an HTTP status.
 */
static int target_form(const struct sy_h1_request *req, const struct sy_h1_header *host,
                       struct sy_h1_framing *f)
{
    struct sy_str t = req->target;
    size_t skip;

    if (sy_str_eq(req->method, SY_STR_LIT("CONNECT")))
        return 501;
    if (t.len > 0 && t.p[0] == '/') {
        f->target = t;
        return 0;
    }
    if (t.len == 1 && t.p[0] == '*') {
        if (!sy_str_eq(req->method, SY_STR_LIT("OPTIONS")))
            return 400;
        f->target = t;
        return 0;
    }
    if (t.len > 7 && sy_str_caseeq_cstr(sy_str_make(t.p, 7), "http://"))
        skip = 7;
    else if (t.len > 8 && sy_str_caseeq_cstr(sy_str_make(t.p, 8), "https://"))
        skip = 8;
    else
        return 400;
    const char *a = t.p + skip, *end = t.p + t.len, *e = a;
    while (e < end && *e != '/' && *e != '?' && *e != '#')
        e++;
    struct sy_str auth = sy_str_make(a, (size_t)(e - a));
    if (auth.len == 0 || !host_valid(auth) || host == NULL || !sy_str_caseeq(auth, host->value))
        return 400;
    if (e == end)
        f->target = SY_STR_LIT("/");
    else if (*e == '/')
        f->target = sy_str_make(e, (size_t)(end - e));
    else
        return 400;
    return 0;
}

int sy_h1_request_framing(const struct sy_h1_request *req, struct sy_h1_framing *f, int *status)
{
    struct te_state te = {0};
    struct conn_tokens ct = {0};
    const struct sy_h1_header *host = NULL, *cl = NULL;
    unsigned nhost = 0, ncl = 0;
    int has_upgrade = 0, expect_100 = 0, expect_other = 0;

    memset(f, 0, sizeof(*f));
    *status = 0;
    for (size_t i = 0; i < req->num_headers; i++) {
        const struct sy_h1_header *h = &req->headers[i];
        switch (h->name.len) {
        case 4:
            if (sy_str_caseeq_cstr(h->name, "host")) {
                host = h;
                nhost++;
            }
            break;
        case 6:
            if (sy_str_caseeq_cstr(h->name, "expect")) {
                struct sy_str e;
                size_t pos = 0;
                while (sy_h1_next_list_elem(h->value, &pos, &e)) {
                    if (sy_str_caseeq_cstr(e, "100-continue"))
                        expect_100 = 1;
                    else if (e.len != 0)
                        expect_other = 1;
                }
            }
            break;
        case 7:
            if (sy_str_caseeq_cstr(h->name, "upgrade"))
                has_upgrade = 1;
            break;
        case 10:
            if (sy_str_caseeq_cstr(h->name, "connection"))
                connection_add(&ct, h->value);
            break;
        case 14:
            if (sy_str_caseeq_cstr(h->name, "content-length")) {
                cl = h;
                ncl++;
            }
            break;
        case 17:
            if (sy_str_caseeq_cstr(h->name, "transfer-encoding"))
                te_add(&te, h->value);
            break;
        default:
            break;
        }
    }

    if (te.lines != 0 && req->minor_version == 0)
        H1_BAD(400);
    if (nhost > 1 || (nhost == 0 && req->minor_version >= 1))
        H1_BAD(400);
    if (host != NULL && !host_valid(host->value))
        H1_BAD(400);
    if (ncl > 1)
        H1_BAD(400);
    if (cl != NULL && !parse_content_length(cl->value, &f->length))
        H1_BAD(400);
    if (te.lines != 0) {
        if (cl != NULL)
            H1_BAD(400);
        if (te.malformed || te.codings == 0 || te.chunked > 1 || (te.chunked && !te.last_chunked))
            H1_BAD(400);
        if (te.other != 0)
            H1_BAD(501);
        f->body = SY_H1_BODY_CHUNKED;
    } else if (cl != NULL) {
        f->body = SY_H1_BODY_LENGTH;
    }
    if (expect_other)
        H1_BAD(417);
    {
        int t = target_form(req, host, f);
        if (t != 0)
            H1_BAD(t);
    }
    /* RFC 9110 section 10.1.1: ignore 100-continue from an HTTP/1.0 client. */
    f->expect_continue = expect_100 && req->minor_version >= 1;
    /* RFC 9110 section 7.8: ignore Upgrade in an HTTP/1.0 request. */
    f->upgrade = ct.upgrade && has_upgrade && req->minor_version >= 1;
    f->keepalive = keepalive_of(req->minor_version, &ct);
    f->host = host;
    return 0;
}

int sy_h1_response_framing(const struct sy_h1_response *resp, struct sy_str req_method,
                           struct sy_h1_framing *f)
{
    struct te_state te = {0};
    struct conn_tokens ct = {0};
    uint64_t length = 0;
    unsigned ncl = 0;
    int has_upgrade = 0;

    memset(f, 0, sizeof(*f));
    for (size_t i = 0; i < resp->num_headers; i++) {
        const struct sy_h1_header *h = &resp->headers[i];
        switch (h->name.len) {
        case 7:
            if (sy_str_caseeq_cstr(h->name, "upgrade"))
                has_upgrade = 1;
            break;
        case 10:
            if (sy_str_caseeq_cstr(h->name, "connection"))
                connection_add(&ct, h->value);
            break;
        case 14:
            if (sy_str_caseeq_cstr(h->name, "content-length")) {
                struct sy_str e;
                size_t pos = 0;
                int any = 0;
                while (sy_h1_next_list_elem(h->value, &pos, &e)) {
                    uint64_t v;
                    if (!parse_content_length(e, &v) || (ncl != 0 && v != length))
                        return SY_H1_INVALID;
                    length = v;
                    ncl++;
                    any = 1;
                }
                if (!any)
                    return SY_H1_INVALID;
            }
            break;
        case 17:
            if (sy_str_caseeq_cstr(h->name, "transfer-encoding"))
                te_add(&te, h->value);
            break;
        default:
            break;
        }
    }

    if (te.lines != 0) {
        /* RFC 9112 section 6.1: TE in HTTP/1.0 or together with CL is faulty framing. */
        if (resp->minor_version == 0 || ncl != 0)
            return SY_H1_INVALID;
        if (te.malformed || te.codings == 0 || te.chunked > 1)
            return SY_H1_INVALID;
    }
    f->keepalive = keepalive_of(resp->minor_version, &ct);
    f->upgrade = resp->status == 101 && has_upgrade;

    if (sy_str_eq(req_method, SY_STR_LIT("HEAD")) || resp->status < 200 || resp->status == 204 ||
        resp->status == 304 ||
        (resp->status < 300 && sy_str_eq(req_method, SY_STR_LIT("CONNECT")))) {
        f->body = SY_H1_BODY_NONE;
    } else if (te.lines != 0) {
        if (te.last_chunked) {
            f->body = SY_H1_BODY_CHUNKED;
        } else {
            f->body = SY_H1_BODY_EOF;
            f->keepalive = 0;
        }
    } else if (ncl != 0) {
        f->body = SY_H1_BODY_LENGTH;
        f->length = length;
    } else {
        f->body = SY_H1_BODY_EOF;
        f->keepalive = 0;
    }
    return 0;
}

/* ---- chunked transfer coding ------------------------------------------------------------- */

/*
 * Scanner states. The chunk-size line states come first and the trailer
 * states last so that the line counters can be applied by range.
 */
enum {
    CK_SIZE_START = 0,        /* first hex digit of chunk-size */
    CK_SIZE,                  /* more hex digits, ';' or CR */
    CK_EXT_NAME_START,        /* after ';' */
    CK_EXT_NAME,
    CK_EXT_VAL_START,         /* after '=' */
    CK_EXT_VAL_TOKEN,
    CK_EXT_QUOTED,
    CK_EXT_QUOTED_ESC,
    CK_EXT_AFTER_QUOTED,
    CK_SIZE_LF,
    CK_DATA,
    CK_DATA_CR,
    CK_DATA_LF,
    CK_TRAILER_START,         /* trailer field line or the final CRLF */
    CK_TRAILER_NAME,
    CK_TRAILER_VALUE,
    CK_TRAILER_LF,
    CK_FINAL_LF,
    CK_DONE,
    CK_ERROR
};

void sy_h1_chunked_init(struct sy_h1_chunked *c)
{
    memset(c, 0, sizeof(*c));
    c->state = CK_SIZE_START;
}

static int hex_value(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

ssize_t sy_h1_chunked_scan(struct sy_h1_chunked *c, const char *buf, size_t len, int *done)
{
    const unsigned char *p = (const unsigned char *)buf, *end = p + len;
    int st = c->state;

    *done = 0;
    if (st == CK_DONE) {
        *done = 1;
        return 0;
    }
    while (p < end && st != CK_ERROR) {
        unsigned char ch;
        int d;

        if (st == CK_DATA) {
            size_t n = (size_t)(end - p);
            if ((uint64_t)n > c->remaining)
                n = (size_t)c->remaining;
            p += n;
            c->remaining -= n;
            c->data_bytes += n;
            if (c->remaining == 0)
                st = CK_DATA_CR;
            continue;
        }
        ch = *p++;
        if (st < CK_DATA) {
            if (++c->line > SY_H1_CHUNK_LINE_MAX)
                goto bad;
        } else if (st >= CK_TRAILER_START) {
            if (++c->line > SY_H1_TRAILERS_MAX)
                goto bad;
        }
        switch (st) {
        case CK_SIZE_START:
            if ((d = hex_value(ch)) < 0)
                goto bad;
            c->remaining = (uint64_t)d;
            st = CK_SIZE;
            break;
        case CK_SIZE:
            if ((d = hex_value(ch)) >= 0) {
                if (c->line > 16) /* this is the 17th digit */
                    goto bad;
                c->remaining = c->remaining << 4 | (uint64_t)d;
            } else if (ch == ';') {
                st = CK_EXT_NAME_START;
            } else if (ch == '\r') {
                st = CK_SIZE_LF;
            } else {
                goto bad;
            }
            break;
        case CK_EXT_NAME_START:
            if (!tchar_tab[ch])
                goto bad;
            st = CK_EXT_NAME;
            break;
        case CK_EXT_NAME:
        case CK_EXT_VAL_TOKEN:
            if (tchar_tab[ch])
                break;
            if (ch == '=' && st == CK_EXT_NAME)
                st = CK_EXT_VAL_START;
            else if (ch == ';')
                st = CK_EXT_NAME_START;
            else if (ch == '\r')
                st = CK_SIZE_LF;
            else
                goto bad;
            break;
        case CK_EXT_VAL_START:
            if (ch == '"')
                st = CK_EXT_QUOTED;
            else if (tchar_tab[ch])
                st = CK_EXT_VAL_TOKEN;
            else
                goto bad;
            break;
        case CK_EXT_QUOTED:
            if (ch == '"')
                st = CK_EXT_AFTER_QUOTED;
            else if (ch == '\\')
                st = CK_EXT_QUOTED_ESC;
            else if (!value_tab[ch])
                goto bad;
            break;
        case CK_EXT_QUOTED_ESC:
            if (!value_tab[ch])
                goto bad;
            st = CK_EXT_QUOTED;
            break;
        case CK_EXT_AFTER_QUOTED:
            if (ch == ';')
                st = CK_EXT_NAME_START;
            else if (ch == '\r')
                st = CK_SIZE_LF;
            else
                goto bad;
            break;
        case CK_SIZE_LF:
            if (ch != '\n' || c->remaining > (uint64_t)INT64_MAX)
                goto bad;
            c->line = 0;
            st = c->remaining == 0 ? CK_TRAILER_START : CK_DATA;
            break;
        case CK_DATA_CR:
            if (ch != '\r')
                goto bad;
            st = CK_DATA_LF;
            break;
        case CK_DATA_LF:
            if (ch != '\n')
                goto bad;
            c->line = 0;
            st = CK_SIZE_START;
            break;
        case CK_TRAILER_START:
            if (ch == '\r')
                st = CK_FINAL_LF;
            else if (tchar_tab[ch])
                st = CK_TRAILER_NAME;
            else
                goto bad;
            break;
        case CK_TRAILER_NAME:
            if (ch == ':')
                st = CK_TRAILER_VALUE;
            else if (!tchar_tab[ch])
                goto bad;
            break;
        case CK_TRAILER_VALUE:
            if (ch == '\r')
                st = CK_TRAILER_LF;
            else if (!value_tab[ch])
                goto bad;
            break;
        case CK_TRAILER_LF:
            if (ch != '\n')
                goto bad;
            st = CK_TRAILER_START;
            break;
        case CK_FINAL_LF:
            if (ch != '\n')
                goto bad;
            c->state = CK_DONE;
            *done = 1;
            return (ssize_t)(p - (const unsigned char *)buf);
        default:
            goto bad;
        }
    }
    if (st == CK_ERROR)
        return -1;
    c->state = st;
    return (ssize_t)(p - (const unsigned char *)buf);

bad:
    c->state = CK_ERROR;
    return -1;
}
