/*
 * test_h1.c: the strict HTTP/1.1 parser, framing decisions and the chunked
 * scanner. Every parser input is copied to the end of a read-only mapping
 * that is followed by a PROT_NONE page, so reading one byte too far crashes.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "http/h1.h"

/* ---- guard-page buffers ---------------------------------------------------------------------- */

#define MAX_GUARDED 64

static struct {
    char *map;
    size_t len;
} guarded[MAX_GUARDED];
static size_t nguarded;

static void release_all(void)
{
    for (size_t i = 0; i < nguarded; i++)
        munmap(guarded[i].map, guarded[i].len);
    nguarded = 0;
}

TestSuite(h1, .fini = release_all);

/* Copies s to the very end of a readable region followed by an inaccessible page. */
static const char *guard(const void *s, size_t len)
{
    size_t pg = (size_t)sysconf(_SC_PAGESIZE);
    size_t data = (len + pg - 1) / pg * pg;
    char *m;

    if (data == 0)
        data = pg;
    if (nguarded == MAX_GUARDED) /* only reached by loops that keep no slices */
        release_all();
    m = mmap(NULL, data + pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    cr_assert(m != MAP_FAILED);
    memcpy(m + data - len, s, len);
    cr_assert(mprotect(m, data, PROT_READ) == 0);
    cr_assert(mprotect(m + data, pg, PROT_NONE) == 0);
    guarded[nguarded].map = m;
    guarded[nguarded].len = data + pg;
    nguarded++;
    return m + data - len;
}

/* ---- test utilities -------------------------------------------------------------------------- */

#define NHDRS 64
static struct sy_h1_header hdrs[NHDRS];
static struct sy_h1_request req;
static struct sy_h1_response resp;
static const struct sy_h1_limits lim_default = {8192, NHDRS, 2048};

static int parse_req_lim(const char *s, size_t len, const struct sy_h1_limits *lim, int *status)
{
    memset(&req, 0, sizeof(req));
    req.headers = hdrs;
    return sy_h1_parse_request(guard(s, len), len, &req, lim, status);
}

static int parse_req(const char *s, int *status)
{
    return parse_req_lim(s, strlen(s), &lim_default, status);
}

static int parse_resp_lim(const char *s, size_t len, const struct sy_h1_limits *lim)
{
    memset(&resp, 0, sizeof(resp));
    resp.headers = hdrs;
    return sy_h1_parse_response(guard(s, len), len, &resp, lim);
}

static int parse_resp(const char *s)
{
    return parse_resp_lim(s, strlen(s), &lim_default);
}

static int sv_eq(struct sy_str s, const char *c)
{
    return s.len == strlen(c) && memcmp(s.p, c, s.len) == 0;
}

/* The request must be rejected with `code`; len lets inputs hold NUL bytes. */
static void reject_req_n(const char *s, size_t len, int code)
{
    int status = -7;
    int r = parse_req_lim(s, len, &lim_default, &status);
    cr_assert_eq(r, SY_H1_INVALID, "expected rejection of %.*s, got %d", (int)len, s, r);
    cr_assert_eq(status, code, "status %d, expected %d for %.*s", status, code, (int)len, s);
}

static void reject_req(const char *s, int code)
{
    reject_req_n(s, strlen(s), code);
}

/* The request must parse to its full length, and every proper prefix must be partial. */
static void accept_req(const char *s)
{
    size_t len = strlen(s);
    int status;

    for (size_t i = 0; i < len; i++) {
        int r = parse_req_lim(s, i, &lim_default, &status);
        cr_assert_eq(r, SY_H1_PARTIAL, "prefix %zu of %s gave %d", i, s, r);
        release_all();
    }
    cr_assert_eq(parse_req(s, &status), (int)len, "rejected %s (status %d)", s, status);
}

static void accept_resp(const char *s)
{
    size_t len = strlen(s);

    for (size_t i = 0; i < len; i++) {
        cr_assert_eq(parse_resp_lim(s, i, &lim_default), SY_H1_PARTIAL, "prefix %zu of %s", i, s);
        release_all();
    }
    cr_assert_eq(parse_resp(s), (int)len, "rejected %s", s);
}

/* Parses a request and decides its framing; returns the framing result and *status. */
static int req_framing(const char *s, struct sy_h1_framing *f, int *status)
{
    int r = parse_req(s, status);
    cr_assert_gt(r, 0, "head rejected: %s (status %d)", s, *status);
    return sy_h1_request_framing(&req, f, status);
}

static void reject_framing(const char *s, int code)
{
    struct sy_h1_framing f;
    int status = -7;
    cr_assert_eq(req_framing(s, &f, &status), -1, "framing accepted: %s", s);
    cr_assert_eq(status, code, "status %d, expected %d for %s", status, code, s);
}

static struct sy_h1_framing accept_framing(const char *s)
{
    struct sy_h1_framing f;
    int status = -7;
    cr_assert_eq(req_framing(s, &f, &status), 0, "framing rejected (%d): %s", status, s);
    cr_assert_eq(status, 0);
    return f;
}

static int resp_framing(const char *s, const char *method, struct sy_h1_framing *f)
{
    cr_assert_gt(parse_resp(s), 0, "response head rejected: %s", s);
    return sy_h1_response_framing(&resp, sy_str_cstr(method), f);
}

/* ---- request line ---------------------------------------------------------------------------- */

Test(h1, simple_get)
{
    const char *s = "GET /index.html?q=1 HTTP/1.1\r\nHost: example.org\r\nAccept: */*\r\n\r\n";
    int status;
    cr_assert_eq(parse_req(s, &status), (int)strlen(s));
    cr_assert(sv_eq(req.method, "GET"));
    cr_assert(sv_eq(req.target, "/index.html?q=1"));
    cr_assert_eq(req.minor_version, 1);
    cr_assert_eq(req.num_headers, 2);
    cr_assert(sv_eq(req.headers[0].name, "Host"));
    cr_assert(sv_eq(req.headers[0].value, "example.org"));
    cr_assert(sv_eq(req.headers[1].name, "Accept"));
    cr_assert(sv_eq(req.headers[1].value, "*/*"));
}

Test(h1, http10_no_headers)
{
    int status;
    cr_assert_eq(parse_req("GET / HTTP/1.0\r\n\r\n", &status), 18);
    cr_assert_eq(req.minor_version, 0);
    cr_assert_eq(req.num_headers, 0);
}

Test(h1, every_prefix_is_partial)
{
    accept_req("POST /api/retros HTTP/1.1\r\nHost: a\r\nX-AUTH-TOKEN: abc.def\r\n"
               "Content-Length: 2\r\n\r\n");
    accept_req("GET / HTTP/1.0\r\n\r\n");
    accept_req("\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n");
    accept_req("OPTIONS * HTTP/1.1\r\nHost: x\r\nEmpty:\r\nTab:\tv\t\r\n\r\n");
}

Test(h1, value_trimmed_and_inner_space_kept)
{
    int status;
    cr_assert_gt(parse_req("GET / HTTP/1.1\r\nX:  \t a  b \t \r\nY:c\r\n\r\n", &status), 0);
    cr_assert(sv_eq(req.headers[0].value, "a  b"));
    cr_assert(sv_eq(req.headers[1].value, "c"));
}

Test(h1, empty_values)
{
    int status;
    cr_assert_gt(parse_req("GET / HTTP/1.1\r\nA:\r\nB: \r\nC:\t \t\r\n\r\n", &status), 0);
    cr_assert_eq(req.num_headers, 3);
    for (size_t i = 0; i < 3; i++)
        cr_assert_eq(req.headers[i].value.len, 0);
}

Test(h1, obs_text_and_htab_in_value)
{
    int status;
    cr_assert_gt(parse_req("GET / HTTP/1.1\r\nX: caf\xc3\xa9\x80\xff\tz\r\n\r\n", &status), 0);
    cr_assert(sv_eq(req.headers[0].value, "caf\xc3\xa9\x80\xff\tz"));
}

Test(h1, long_value_through_vector_path)
{
    /* Long enough to use the 16-byte scan, with stop bytes at every alignment. */
    char buf[512];
    int status;
    for (int pos = 0; pos < 40; pos++) {
        char v[64];
        memset(v, 'v', sizeof(v));
        v[63] = '\0';
        v[pos] = '\t';
        snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nX: %s\r\n\r\n", v);
        cr_assert_gt(parse_req(buf, &status), 0, "tab at %d", pos);
        v[pos] = '\x01';
        snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nX: %s\r\n\r\n", v);
        reject_req(buf, 400);
        v[pos] = '\x7f';
        snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nX: %s\r\n\r\n", v);
        reject_req(buf, 400);
        release_all();
    }
}

Test(h1, long_target_through_vector_path)
{
    char buf[512];
    int status;
    for (int pos = 0; pos < 40; pos++) {
        char t[64];
        memset(t, 'a', sizeof(t));
        t[0] = '/';
        t[63] = '\0';
        snprintf(buf, sizeof(buf), "GET %s HTTP/1.1\r\nHost: a\r\n\r\n", t);
        cr_assert_gt(parse_req(buf, &status), 0);
        cr_assert_eq(req.target.len, 63);
        if (pos == 0)
            continue;
        t[pos] = '\x7f';
        snprintf(buf, sizeof(buf), "GET %s HTTP/1.1\r\nHost: a\r\n\r\n", t);
        reject_req(buf, 400);
        t[pos] = '\x80';
        snprintf(buf, sizeof(buf), "GET %s HTTP/1.1\r\nHost: a\r\n\r\n", t);
        reject_req(buf, 400);
        release_all();
    }
}

Test(h1, one_leading_crlf_skipped)
{
    int status;
    cr_assert_eq(parse_req("\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", &status), 29);
    cr_assert(sv_eq(req.method, "GET"));
}

Test(h1, two_leading_crlf_rejected)
{
    reject_req("\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 400);
}

Test(h1, leading_bare_lf_rejected)
{
    reject_req("\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    reject_req("\r\rGET / HTTP/1.1\r\nHost: a\r\n\r\n", 400);
}

Test(h1, pipelined_head_length)
{
    const char *s = "GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\nGET";
    int status, n1, n2;
    n1 = parse_req(s, &status);
    cr_assert_eq(n1, 28);
    cr_assert(sv_eq(req.target, "/a"));
    n2 = parse_req(s + n1, &status);
    cr_assert_eq(n2, 28);
    cr_assert(sv_eq(req.target, "/b"));
    cr_assert_eq(parse_req(s + n1 + n2, &status), SY_H1_PARTIAL);
}

Test(h1, target_forms)
{
    int status;
    cr_assert_gt(parse_req("GET http://a.example/x?y HTTP/1.1\r\nHost: a.example\r\n\r\n",
                           &status), 0);
    cr_assert(sv_eq(req.target, "http://a.example/x?y"));
    cr_assert_gt(parse_req("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", &status), 0);
    cr_assert_gt(parse_req("CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n",
                           &status), 0);
    cr_assert(sv_eq(req.target, "a.example:443"));
}

Test(h1, extension_methods_are_tokens)
{
    int status;
    cr_assert_gt(parse_req("M-SEARCH * HTTP/1.1\r\nHost: a\r\n\r\n", &status), 0);
    cr_assert(sv_eq(req.method, "M-SEARCH"));
    cr_assert_gt(parse_req("get / HTTP/1.1\r\nHost: a\r\n\r\n", &status), 0);
    cr_assert(sv_eq(req.method, "get"));
}

Test(h1, method_not_token)
{
    reject_req("GE(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    reject_req("GET\x7f / HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    reject_req("G\xc3\xa9T / HTTP/1.1\r\nHost: a\r\n\r\n", 400);
}

Test(h1, empty_method)
{
    reject_req(" / HTTP/1.1\r\nHost: a\r\n\r\n", 400);
}

Test(h1, extra_spaces_in_request_line)
{
    reject_req("GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    reject_req("GET /  HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    reject_req("GET / HTTP/1.1 \r\nHost: a\r\n\r\n", 400);
    reject_req("GET / HTTP/1.1\t\r\nHost: a\r\n\r\n", 400);
}

Test(h1, tab_as_separator)
{
    reject_req("GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    reject_req("GET /\tHTTP/1.1\r\nHost: a\r\n\r\n", 400);
}

Test(h1, ctl_in_target)
{
    reject_req("GET /a\x01 HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    reject_req("GET /a\x7f HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    reject_req_n("GET /a\0b HTTP/1.1\r\nHost: a\r\n\r\n", 31, 400);
}

Test(h1, obs_text_in_target)
{
    reject_req("GET /caf\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n", 400);
}

Test(h1, http09_request_line)
{
    reject_req("GET /\r\n\r\n", 400);
    reject_req("GET\r\n\r\n", 400);
}

Test(h1, version_garbage_is_400)
{
    reject_req("GET / http/1.1\r\nHost: a\r\n\r\n", 400);
    reject_req("GET / HTTP/1\r\nHost: a\r\n\r\n", 400);
    reject_req("GET / HTTP/1.10\r\nHost: a\r\n\r\n", 400);
    reject_req("GET / HTTP/11.1\r\nHost: a\r\n\r\n", 400);
    reject_req("GET / HTTP/1.x\r\nHost: a\r\n\r\n", 400);
    reject_req("GET / HTTPS/1.1\r\nHost: a\r\n\r\n", 400);
}

Test(h1, other_versions_are_505)
{
    reject_req("GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505);
    reject_req("GET / HTTP/1.2\r\nHost: a\r\n\r\n", 505);
    reject_req("GET / HTTP/0.9\r\nHost: a\r\n\r\n", 505);
    reject_req("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505);
}

Test(h1, garbage_rejected_before_head_is_complete)
{
    int status;
    cr_assert_eq(parse_req("GET / HTX", &status), SY_H1_INVALID);
    cr_assert_eq(status, 400);
    cr_assert_eq(parse_req("\x16\x03\x01\x02\x00", &status), SY_H1_INVALID); /* TLS hello */
    cr_assert_eq(status, 400);
    cr_assert_eq(parse_req("GET / HTTP/1.1\r\nHost: a\r\nX\x01", &status), SY_H1_INVALID);
    cr_assert_eq(status, 400);
}

Test(h1, bare_lf_line_endings)
{
    reject_req("GET / HTTP/1.1\nHost: a\r\n\r\n", 400);
    reject_req("GET / HTTP/1.1\r\nHost: a\n\r\n", 400);
    reject_req("GET / HTTP/1.1\r\nHost: a\r\n\n", 400);
    reject_req("GET / HTTP/1.1\n\n", 400);
}

Test(h1, bare_cr)
{
    reject_req("GET / HTTP/1.1\rHost: a\r\n\r\n", 400);
    reject_req("GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n", 400);
    reject_req("GET / HTTP/1.1\r\nHost: a\r\n\rX", 400);
    reject_req("GET /\r HTTP/1.1\r\nHost: a\r\n\r\n", 400);
}

Test(h1, nul_rejected)
{
    static const char v[] = "GET / HTTP/1.1\r\nX: a\0b\r\n\r\n";
    static const char n[] = "GET / HTTP/1.1\r\nX\0: ab\r\n\r\n";
    reject_req_n(v, sizeof(v) - 1, 400);
    reject_req_n(n, sizeof(n) - 1, 400);
}

Test(h1, ctl_in_value)
{
    reject_req("GET / HTTP/1.1\r\nX: a\x01\r\n\r\n", 400);
    reject_req("GET / HTTP/1.1\r\nX: a\x1f\r\n\r\n", 400);
    reject_req("GET / HTTP/1.1\r\nX: a\x7f\r\n\r\n", 400);
    reject_req("GET / HTTP/1.1\r\nX: \x0b\r\n\r\n", 400);
}

Test(h1, whitespace_before_colon)
{
    reject_req("GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400);
    reject_req("GET / HTTP/1.1\r\nHost\t: a\r\n\r\n", 400);
}

Test(h1, empty_or_bad_header_name)
{
    reject_req("GET / HTTP/1.1\r\n: a\r\n\r\n", 400);
    reject_req("GET / HTTP/1.1\r\nX(y): a\r\n\r\n", 400);
    reject_req("GET / HTTP/1.1\r\nX y: a\r\n\r\n", 400);
    reject_req("GET / HTTP/1.1\r\nX\xc3\xa9: a\r\n\r\n", 400);
    reject_req("GET / HTTP/1.1\r\nno-colon\r\n\r\n", 400);
}

Test(h1, obs_fold_rejected)
{
    reject_req("GET / HTTP/1.1\r\nX: a\r\n b\r\nHost: a\r\n\r\n", 400);
    reject_req("GET / HTTP/1.1\r\nX: a\r\n\tb\r\nHost: a\r\n\r\n", 400);
    /* whitespace between the start line and the first field (RFC 9112 section 2.2) */
    reject_req("GET / HTTP/1.1\r\n Host: a\r\n\r\n", 400);
}

/* ---- limits ---------------------------------------------------------------------------------- */

Test(h1, max_head_boundary)
{
    const char *s = "GET / HTTP/1.1\r\nHost: a\r\n\r\n"; /* 27 bytes */
    struct sy_h1_limits lim = {27, 8, 100};
    int status;
    cr_assert_eq(parse_req_lim(s, 27, &lim, &status), 27);
    lim.max_head = 26;
    cr_assert_eq(parse_req_lim(s, 27, &lim, &status), SY_H1_INVALID);
    cr_assert_eq(status, 431);
}

Test(h1, max_head_incomplete)
{
    const char *s = "GET / HTTP/1.1\r\nHost: a\r\nX-Long: aaaaaaaaaaaaaaaa";
    struct sy_h1_limits lim = {40, 8, 100};
    int status;
    cr_assert_eq(parse_req_lim(s, 40, &lim, &status), SY_H1_PARTIAL);
    cr_assert_eq(parse_req_lim(s, 41, &lim, &status), SY_H1_INVALID);
    cr_assert_eq(status, 431);
}

Test(h1, max_head_ignores_pipelined_bytes)
{
    const char *s = "GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /next HTTP/1.1\r\n";
    struct sy_h1_limits lim = {30, 8, 100};
    int status;
    cr_assert_eq(parse_req_lim(s, strlen(s), &lim, &status), 27);
}

Test(h1, max_headers)
{
    const char *s = "GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
    struct sy_h1_limits lim = {8192, 3, 100};
    int status;
    cr_assert_eq(parse_req_lim(s, strlen(s), &lim, &status), (int)strlen(s));
    cr_assert_eq(req.num_headers, 3);
    lim.max_headers = 2;
    cr_assert_eq(parse_req_lim(s, strlen(s), &lim, &status), SY_H1_INVALID);
    cr_assert_eq(status, 431);
    /* decided as soon as the extra line starts */
    cr_assert_eq(parse_req_lim(s, 30, &lim, &status), SY_H1_INVALID);
    cr_assert_eq(status, 431);
}

Test(h1, max_uri)
{
    const char *s = "GET /abcdefgh HTTP/1.1\r\nHost: a\r\n\r\n"; /* target of 9 bytes */
    struct sy_h1_limits lim = {8192, 8, 9};
    int status;
    cr_assert_gt(parse_req_lim(s, strlen(s), &lim, &status), 0);
    lim.max_uri = 8;
    cr_assert_eq(parse_req_lim(s, strlen(s), &lim, &status), SY_H1_INVALID);
    cr_assert_eq(status, 414);
}

Test(h1, max_uri_incomplete)
{
    const char *s = "GET /abcdefghijklmnop";
    struct sy_h1_limits lim = {8192, 8, 8};
    int status;
    cr_assert_eq(parse_req_lim(s, 12, &lim, &status), SY_H1_PARTIAL); /* "/abcdefg" */
    cr_assert_eq(parse_req_lim(s, 13, &lim, &status), SY_H1_INVALID);
    cr_assert_eq(status, 414);
    cr_assert_eq(parse_req_lim(s, strlen(s), &lim, &status), SY_H1_INVALID);
    cr_assert_eq(status, 414);
}

/* ---- responses ------------------------------------------------------------------------------- */

Test(h1, response_simple)
{
    const char *s = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nServer: x\r\n\r\nhello";
    cr_assert_eq(parse_resp(s), (int)strlen(s) - 5);
    cr_assert_eq(resp.minor_version, 1);
    cr_assert_eq(resp.status, 200);
    cr_assert(sv_eq(resp.reason, "OK"));
    cr_assert_eq(resp.num_headers, 2);
    cr_assert(sv_eq(resp.headers[1].value, "x"));
}

Test(h1, response_every_prefix_is_partial)
{
    accept_resp("HTTP/1.0 404 Not Found\r\nA: b\r\n\r\n");
    accept_resp("HTTP/1.1 200\r\n\r\n");
}

Test(h1, response_reason_forms)
{
    cr_assert_gt(parse_resp("HTTP/1.1 204 \r\n\r\n"), 0);
    cr_assert_eq(resp.reason.len, 0);
    cr_assert_gt(parse_resp("HTTP/1.1 200\r\n\r\n"), 0);
    cr_assert_eq(resp.reason.len, 0);
    cr_assert_gt(parse_resp("HTTP/1.1 500 Internal \tServer \xe9rror\r\n\r\n"), 0);
    cr_assert(sv_eq(resp.reason, "Internal \tServer \xe9rror"));
    cr_assert_eq(parse_resp("HTTP/1.1 200 O\x01K\r\n\r\n"), SY_H1_INVALID);
    cr_assert_eq(parse_resp("HTTP/1.1 200X\r\n\r\n"), SY_H1_INVALID);
}

Test(h1, response_status_range)
{
    cr_assert_gt(parse_resp("HTTP/1.1 100 Continue\r\n\r\n"), 0);
    cr_assert_gt(parse_resp("HTTP/1.1 999 Odd\r\n\r\n"), 0);
    cr_assert_eq(resp.status, 999);
    cr_assert_eq(parse_resp("HTTP/1.1 099 Low\r\n\r\n"), SY_H1_INVALID);
    cr_assert_eq(parse_resp("HTTP/1.1 20 OK\r\n\r\n"), SY_H1_INVALID);
    cr_assert_eq(parse_resp("HTTP/1.1 2000 OK\r\n\r\n"), SY_H1_INVALID);
    cr_assert_eq(parse_resp("HTTP/1.1 2x0 OK\r\n\r\n"), SY_H1_INVALID);
}

Test(h1, response_version)
{
    cr_assert_gt(parse_resp("HTTP/1.0 200 OK\r\n\r\n"), 0);
    cr_assert_eq(resp.minor_version, 0);
    cr_assert_eq(parse_resp("HTTP/2.0 200 OK\r\n\r\n"), SY_H1_INVALID);
    cr_assert_eq(parse_resp("HTTP/1.2 200 OK\r\n\r\n"), SY_H1_INVALID);
    cr_assert_eq(parse_resp("http/1.1 200 OK\r\n\r\n"), SY_H1_INVALID);
    cr_assert_eq(parse_resp("HTTP/1.1  200 OK\r\n\r\n"), SY_H1_INVALID);
    cr_assert_eq(parse_resp("\r\nHTTP/1.1 200 OK\r\n\r\n"), SY_H1_INVALID);
}

Test(h1, response_header_strictness)
{
    cr_assert_eq(parse_resp("HTTP/1.1 200 OK\nA: b\r\n\r\n"), SY_H1_INVALID);
    cr_assert_eq(parse_resp("HTTP/1.1 200 OK\r\nA: b\n\r\n"), SY_H1_INVALID);
    cr_assert_eq(parse_resp("HTTP/1.1 200 OK\r\nA: b\r\n c\r\n\r\n"), SY_H1_INVALID);
    cr_assert_eq(parse_resp("HTTP/1.1 200 OK\r\nA : b\r\n\r\n"), SY_H1_INVALID);
    cr_assert_eq(parse_resp("HTTP/1.1 200 OK\r\nA: b\rc\r\n\r\n"), SY_H1_INVALID);
}

Test(h1, response_limits)
{
    const char *s = "HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\n\r\n";
    struct sy_h1_limits lim = {strlen(s), 2, 0};
    cr_assert_eq(parse_resp_lim(s, strlen(s), &lim), (int)strlen(s));
    lim.max_headers = 1;
    cr_assert_eq(parse_resp_lim(s, strlen(s), &lim), SY_H1_INVALID);
    lim.max_headers = 2;
    lim.max_head = strlen(s) - 1;
    cr_assert_eq(parse_resp_lim(s, strlen(s), &lim), SY_H1_INVALID);
    cr_assert_eq(parse_resp_lim(s, strlen(s) - 1, &lim), SY_H1_PARTIAL);
}

/* ---- request framing ------------------------------------------------------------------------- */

Test(h1, framing_no_body)
{
    struct sy_h1_framing f = accept_framing("GET / HTTP/1.1\r\nHost: retro.example.org\r\n\r\n");
    cr_assert_eq(f.body, SY_H1_BODY_NONE);
    cr_assert_eq(f.keepalive, 1);
    cr_assert_eq(f.upgrade, 0);
    cr_assert_eq(f.expect_continue, 0);
    cr_assert_not_null(f.host);
    cr_assert(sv_eq(f.host->value, "retro.example.org"));
}

Test(h1, framing_content_length)
{
    struct sy_h1_framing f;
    f = accept_framing("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 42\r\n\r\n");
    cr_assert_eq(f.body, SY_H1_BODY_LENGTH);
    cr_assert_eq(f.length, 42);
    f = accept_framing("POST / HTTP/1.1\r\nHost: a\r\ncontent-length: 0\r\n\r\n");
    cr_assert_eq(f.body, SY_H1_BODY_LENGTH);
    cr_assert_eq(f.length, 0);
    f = accept_framing("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0007\r\n\r\n");
    cr_assert_eq(f.length, 7);
    f = accept_framing("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9223372036854775807\r\n\r\n");
    cr_assert_eq(f.length, 9223372036854775807ull);
}

Test(h1, framing_content_length_invalid)
{
    static const char *bad[] = {"+5", "-5", "5 5", "0x10", "", "5,5", "5, 5", "1e3", "5;",
                                "9223372036854775808", "18446744073709551616",
                                "99999999999999999999999"};
    char buf[256];
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(buf, sizeof(buf), "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: %s\r\n\r\n",
                 bad[i]);
        reject_framing(buf, 400);
    }
}

Test(h1, framing_duplicate_content_length)
{
    reject_framing("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
                   400);
    reject_framing("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
                   400);
}

Test(h1, framing_chunked)
{
    struct sy_h1_framing f;
    f = accept_framing("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n");
    cr_assert_eq(f.body, SY_H1_BODY_CHUNKED);
    cr_assert_eq(f.keepalive, 1);
    f = accept_framing("POST / HTTP/1.1\r\nHost: a\r\ntransfer-encoding: ChUnKeD\r\n\r\n");
    cr_assert_eq(f.body, SY_H1_BODY_CHUNKED);
    f = accept_framing("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: , chunked,\r\n\r\n");
    cr_assert_eq(f.body, SY_H1_BODY_CHUNKED);
}

Test(h1, framing_te_and_cl)
{
    reject_framing("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                   "Content-Length: 5\r\n\r\n", 400);
    reject_framing("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
                   "Transfer-Encoding: chunked\r\n\r\n", 400);
}

Test(h1, framing_unknown_coding_is_501)
{
    reject_framing("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501);
    reject_framing("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n", 501);
    reject_framing("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 501);
    reject_framing("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n"
                   "Transfer-Encoding: chunked\r\n\r\n", 501);
    reject_framing("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: x;q=\"a,b\", chunked\r\n\r\n",
                   501);
}

Test(h1, framing_chunked_not_last_or_repeated)
{
    reject_framing("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 400);
    reject_framing("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
                   400);
    reject_framing("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                   "Transfer-Encoding: chunked\r\n\r\n", 400);
    reject_framing("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                   "Transfer-Encoding: gzip\r\n\r\n", 400);
}

Test(h1, framing_te_malformed)
{
    reject_framing("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n\r\n", 400);
    reject_framing("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: ,\r\n\r\n", 400);
    reject_framing("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked;a=b\r\n\r\n", 400);
    reject_framing("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: @chunked\r\n\r\n", 400);
    reject_framing("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked x\r\n\r\n", 400);
    reject_framing("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip;q\r\n\r\n", 400);
    reject_framing("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \"chunked\"\r\n\r\n", 400);
}

Test(h1, framing_te_on_http10)
{
    reject_framing("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400);
}

Test(h1, framing_host_count)
{
    struct sy_h1_framing f;
    reject_framing("GET / HTTP/1.1\r\n\r\n", 400);
    reject_framing("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 400);
    reject_framing("GET / HTTP/1.0\r\nHost: a\r\nhost: b\r\n\r\n", 400);
    f = accept_framing("GET / HTTP/1.0\r\n\r\n");
    cr_assert_null(f.host);
    f = accept_framing("GET / HTTP/1.1\r\nhOsT: a\r\n\r\n");
    cr_assert_not_null(f.host);
    cr_assert_eq(f.host, &req.headers[0]);
}

Test(h1, framing_host_syntax)
{
    static const char *good[] = {"example.org", "example.org:443", "127.0.0.1:8080", "[::1]",
                                 "[::1]:8443", "a.example:", "", "xn--caf-dma.example",
                                 "a%20b"};
    static const char *bad[] = {"a b", "a/b", "a@b", "a:b", "[::1", "a?b", "a#b", "a\\b",
                                "a%2", "[::1]x", "a:80:80", "\"a\""};
    char buf[256];
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", good[i]);
        accept_framing(buf);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", bad[i]);
        reject_framing(buf, 400);
    }
}

Test(h1, framing_keepalive)
{
    cr_assert_eq(accept_framing("GET / HTTP/1.1\r\nHost: a\r\n\r\n").keepalive, 1);
    cr_assert_eq(accept_framing("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
                     .keepalive, 0);
    cr_assert_eq(accept_framing("GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, CLOSE\r\n\r\n")
                     .keepalive, 0);
    cr_assert_eq(accept_framing("GET / HTTP/1.1\r\nHost: a\r\nConnection: foo\r\n"
                                "Connection: close\r\n\r\n").keepalive, 0);
    cr_assert_eq(accept_framing("GET / HTTP/1.0\r\n\r\n").keepalive, 0);
    cr_assert_eq(accept_framing("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keepalive, 1);
    cr_assert_eq(accept_framing("GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n")
                     .keepalive, 0);
    cr_assert_eq(accept_framing("GET / HTTP/1.1\r\nHost: a\r\nConnection: closed\r\n\r\n")
                     .keepalive, 1);
}

Test(h1, framing_upgrade)
{
    cr_assert_eq(accept_framing("GET /cable HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\n"
                                "Upgrade: websocket\r\n\r\n").upgrade, 1);
    cr_assert_eq(accept_framing("GET /cable HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, UPGRADE\r\n"
                                "Upgrade: websocket\r\n\r\n").upgrade, 1);
    cr_assert_eq(accept_framing("GET /cable HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\n\r\n")
                     .upgrade, 0);
    cr_assert_eq(accept_framing("GET /cable HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n")
                     .upgrade, 0);
    cr_assert_eq(accept_framing("GET /cable HTTP/1.1\r\nHost: a\r\nConnection: upgraded\r\n"
                                "Upgrade: websocket\r\n\r\n").upgrade, 0);
    cr_assert_eq(accept_framing("GET /cable HTTP/1.0\r\nConnection: Upgrade\r\n"
                                "Upgrade: websocket\r\n\r\n").upgrade, 0);
}

Test(h1, framing_expect)
{
    struct sy_h1_framing f;
    f = accept_framing("POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\n"
                       "Content-Length: 3\r\n\r\n");
    cr_assert_eq(f.expect_continue, 1);
    f = accept_framing("POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n");
    cr_assert_eq(f.expect_continue, 0);
    reject_framing("POST / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\n\r\n", 417);
    reject_framing("POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue, x\r\n\r\n", 417);
    reject_framing("POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue=1\r\n\r\n", 417);
}

/* ---- response framing ------------------------------------------------------------------------ */

Test(h1, resp_framing_length_and_chunked)
{
    struct sy_h1_framing f;
    cr_assert_eq(resp_framing("HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n", "GET", &f), 0);
    cr_assert_eq(f.body, SY_H1_BODY_LENGTH);
    cr_assert_eq(f.length, 12);
    cr_assert_eq(f.keepalive, 1);
    cr_assert_eq(resp_framing("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "GET", &f),
                 0);
    cr_assert_eq(f.body, SY_H1_BODY_CHUNKED);
    cr_assert_eq(f.keepalive, 1);
}

Test(h1, resp_framing_eof)
{
    struct sy_h1_framing f;
    cr_assert_eq(resp_framing("HTTP/1.1 200 OK\r\n\r\n", "GET", &f), 0);
    cr_assert_eq(f.body, SY_H1_BODY_EOF);
    cr_assert_eq(f.keepalive, 0);
    cr_assert_eq(resp_framing("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", "GET", &f), 0);
    cr_assert_eq(f.body, SY_H1_BODY_EOF);
    cr_assert_eq(f.keepalive, 0);
    cr_assert_eq(resp_framing("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", "GET",
                              &f), 0);
    cr_assert_eq(f.body, SY_H1_BODY_EOF);
}

Test(h1, resp_framing_no_body_cases)
{
    struct sy_h1_framing f;
    cr_assert_eq(resp_framing("HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n", "HEAD", &f), 0);
    cr_assert_eq(f.body, SY_H1_BODY_NONE);
    cr_assert_eq(f.keepalive, 1);
    cr_assert_eq(resp_framing("HTTP/1.1 204 No Content\r\n\r\n", "GET", &f), 0);
    cr_assert_eq(f.body, SY_H1_BODY_NONE);
    cr_assert_eq(f.keepalive, 1);
    cr_assert_eq(resp_framing("HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n", "GET", &f),
                 0);
    cr_assert_eq(f.body, SY_H1_BODY_NONE);
    cr_assert_eq(resp_framing("HTTP/1.1 100 Continue\r\n\r\n", "POST", &f), 0);
    cr_assert_eq(f.body, SY_H1_BODY_NONE);
    cr_assert_eq(resp_framing("HTTP/1.1 200 Connection established\r\n\r\n", "CONNECT", &f), 0);
    cr_assert_eq(f.body, SY_H1_BODY_NONE);
    cr_assert_eq(resp_framing("HTTP/1.1 407 Auth\r\nContent-Length: 3\r\n\r\n", "CONNECT", &f), 0);
    cr_assert_eq(f.body, SY_H1_BODY_LENGTH);
    cr_assert_eq(resp_framing("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", "head", &f), 0);
    cr_assert_eq(f.body, SY_H1_BODY_LENGTH); /* methods are case-sensitive */
}

Test(h1, resp_framing_conflicts)
{
    struct sy_h1_framing f;
    cr_assert_eq(resp_framing("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n"
                              "Transfer-Encoding: chunked\r\n\r\n", "GET", &f), -1);
    cr_assert_eq(resp_framing("HTTP/1.1 204 OK\r\nContent-Length: 3\r\n"
                              "Transfer-Encoding: chunked\r\n\r\n", "GET", &f), -1);
    cr_assert_eq(resp_framing("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "GET", &f),
                 -1);
    cr_assert_eq(resp_framing("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
                              "GET", &f), -1);
    cr_assert_eq(resp_framing("HTTP/1.1 200 OK\r\nTransfer-Encoding:\r\n\r\n", "GET", &f), -1);
}

Test(h1, resp_framing_content_length_duplicates)
{
    struct sy_h1_framing f;
    cr_assert_eq(resp_framing("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
                              "GET", &f), 0);
    cr_assert_eq(f.length, 5);
    cr_assert_eq(resp_framing("HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\n", "GET", &f), 0);
    cr_assert_eq(f.length, 5);
    cr_assert_eq(resp_framing("HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\n", "GET", &f), -1);
    cr_assert_eq(resp_framing("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
                              "GET", &f), -1);
    cr_assert_eq(resp_framing("HTTP/1.1 200 OK\r\nContent-Length: 5,\r\n\r\n", "GET", &f), -1);
    cr_assert_eq(resp_framing("HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n", "GET", &f), -1);
    cr_assert_eq(resp_framing("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "GET", &f), -1);
}

Test(h1, resp_framing_keepalive_and_upgrade)
{
    struct sy_h1_framing f;
    cr_assert_eq(resp_framing("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", "GET", &f), 0);
    cr_assert_eq(f.keepalive, 0);
    cr_assert_eq(resp_framing("HTTP/1.0 200 OK\r\nContent-Length: 1\r\nConnection: keep-alive\r\n"
                              "\r\n", "GET", &f), 0);
    cr_assert_eq(f.keepalive, 1);
    cr_assert_eq(resp_framing("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: close\r\n\r\n",
                              "GET", &f), 0);
    cr_assert_eq(f.keepalive, 0);
    cr_assert_eq(resp_framing("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                              "Upgrade: websocket\r\n\r\n", "GET", &f), 0);
    cr_assert_eq(f.upgrade, 1);
    cr_assert_eq(f.body, SY_H1_BODY_NONE);
    cr_assert_eq(resp_framing("HTTP/1.1 200 OK\r\nUpgrade: websocket\r\nContent-Length: 0\r\n\r\n",
                              "GET", &f), 0);
    cr_assert_eq(f.upgrade, 0);
}

/* ---- chunked --------------------------------------------------------------------------------- */

struct ck_result {
    int err;
    int done;
    size_t consumed;
    uint64_t data;
};

/* Feeds s in pieces of `step` bytes (0 = at `split` only) through guarded buffers. */
static struct ck_result ck_run(const char *s, size_t len, size_t split, size_t step)
{
    struct sy_h1_chunked c;
    struct ck_result res = {0, 0, 0, 0};
    size_t off = 0;

    sy_h1_chunked_init(&c);
    while (off < len || (off == len && len == 0)) {
        size_t n = step ? step : (off < split ? split - off : len - off);
        int done = 0;
        ssize_t r;
        if (n > len - off)
            n = len - off;
        r = sy_h1_chunked_scan(&c, guard(s + off, n), n, &done);
        if (r < 0) {
            res.err = 1;
            break;
        }
        cr_assert_leq((size_t)r, n);
        res.consumed += (size_t)r;
        if (done) {
            res.done = 1;
            break;
        }
        cr_assert_eq((size_t)r, n, "stopped early without being done");
        off += n;
        if (len == 0)
            break;
    }
    res.data = c.data_bytes;
    release_all();
    return res;
}

struct ck_vector {
    const char *in;
    size_t len;       /* 0: strlen(in) */
    int expect;       /* 1 done, 0 needs more, -1 invalid */
    size_t consumed;  /* when done */
    uint64_t data;    /* when done */
};

#define CKV(s, e, c, d) {s, sizeof(s) - 1, e, c, d}

static const struct ck_vector ck_vectors[] = {
    CKV("0\r\n\r\n", 1, 5, 0),
    CKV("5\r\nhello\r\n0\r\n\r\n", 1, 15, 5),
    CKV("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\nGET / HTTP/1.1\r\n", 1, 26, 11),
    CKV("A\r\n0123456789\r\n0\r\n\r\n", 1, 20, 10),
    CKV("a\r\n0123456789\r\n00\r\n\r\n", 1, 21, 10),
    CKV("5;ext\r\nhello\r\n0;a=b;c=\"q\\\"x y\"\r\n\r\n", 1, 34, 5),
    CKV("1;n=tok\r\nx\r\n0\r\nTrailer: v\r\nX-Sum: 1 2\r\n\r\n", 1, 41, 1),
    CKV("0\r\nT:\r\n\r\n", 1, 9, 0),
    CKV("5\r\nhel", 0, 0, 0),
    CKV("0\r\nTrailer: v\r\n", 0, 0, 0),
    CKV("fffffff\r\n", 0, 0, 0),
    CKV("7fffffffffffffff\r\n", 0, 0, 0),
    CKV("0000000000000005\r\nhello\r\n0\r\n\r\n", 1, 30, 5),
    CKV("", 0, 0, 0),
    /* invalid */
    CKV("8000000000000000\r\n", -1, 0, 0),
    CKV("00000000000000001\r\n", -1, 0, 0),
    CKV("\r\n", -1, 0, 0),
    CKV(" 5\r\nhello\r\n0\r\n\r\n", -1, 0, 0),
    CKV("5 \r\nhello\r\n0\r\n\r\n", -1, 0, 0),
    CKV("5 ;a\r\nhello\r\n0\r\n\r\n", -1, 0, 0),
    CKV("5; a\r\nhello\r\n0\r\n\r\n", -1, 0, 0),
    CKV("5;a =b\r\nhello\r\n0\r\n\r\n", -1, 0, 0),
    CKV("5;\r\nhello\r\n0\r\n\r\n", -1, 0, 0),
    CKV("5;a=\r\nhello\r\n0\r\n\r\n", -1, 0, 0),
    CKV("5;a=\"x\r\nhello\r\n0\r\n\r\n", -1, 0, 0),
    CKV("5;a=\"x\"y\r\nhello\r\n0\r\n\r\n", -1, 0, 0),
    CKV("5;a=b=c\r\nhello\r\n0\r\n\r\n", -1, 0, 0),
    CKV("0x5\r\nhello\r\n0\r\n\r\n", -1, 0, 0),
    CKV("-5\r\nhello\r\n0\r\n\r\n", -1, 0, 0),
    CKV("g\r\n", -1, 0, 0),
    CKV("5\nhello\r\n0\r\n\r\n", -1, 0, 0),
    CKV("5\r\nhello\n0\r\n\r\n", -1, 0, 0),
    CKV("5\r\nhelloX\r\n0\r\n\r\n", -1, 0, 0),
    CKV("5\r\nhello\r\n0\r\n\n", -1, 0, 0),
    CKV("5\r\nhello\r\n0\r\r\n", -1, 0, 0),
    CKV("0\r\n folded: x\r\n\r\n", -1, 0, 0),
    CKV("0\r\nNo-Colon\r\n\r\n", -1, 0, 0),
    CKV("0\r\nA : b\r\n\r\n", -1, 0, 0),
    CKV("0\r\nA: b\x01\r\n\r\n", -1, 0, 0),
    CKV("0\r\nA: b\nC: d\r\n\r\n", -1, 0, 0),
    CKV("0\r\n: b\r\n\r\n", -1, 0, 0),
    CKV("5\r\nhello\r\n\r\n", -1, 0, 0),
    {"5\r\nhel\0o\r\n0\r\n\0\r\n", 16, -1, 0, 0},
};

static void ck_check(const struct ck_vector *v, struct ck_result r, const char *how)
{
    if (v->expect < 0) {
        cr_assert_eq(r.err, 1, "%s: accepted invalid %s", how, v->in);
        return;
    }
    cr_assert_eq(r.err, 0, "%s: rejected %s", how, v->in);
    cr_assert_eq(r.done, v->expect, "%s: done=%d for %s", how, r.done, v->in);
    if (v->expect == 1) {
        cr_assert_eq(r.consumed, v->consumed, "%s: consumed %zu for %s", how, r.consumed, v->in);
        cr_assert_eq(r.data, v->data, "%s: data %llu for %s", how, (unsigned long long)r.data,
                     v->in);
    } else {
        cr_assert_eq(r.consumed, v->len);
    }
}

Test(h1, chunked_vectors_whole)
{
    for (size_t i = 0; i < sizeof(ck_vectors) / sizeof(ck_vectors[0]); i++) {
        const struct ck_vector *v = &ck_vectors[i];
        ck_check(v, ck_run(v->in, v->len, v->len, 0), "whole");
    }
}

Test(h1, chunked_vectors_every_split)
{
    for (size_t i = 0; i < sizeof(ck_vectors) / sizeof(ck_vectors[0]); i++) {
        const struct ck_vector *v = &ck_vectors[i];
        struct ck_result whole = ck_run(v->in, v->len, v->len, 0);
        for (size_t split = 0; split <= v->len; split++) {
            struct ck_result r = ck_run(v->in, v->len, split, 0);
            ck_check(v, r, "split");
            cr_assert_eq(r.err, whole.err);
            if (r.err)
                continue; /* bytes before the error are accepted per call: totals differ */
            cr_assert_eq(r.done, whole.done);
            cr_assert_eq(r.consumed, whole.consumed, "split %zu of %s", split, v->in);
            cr_assert_eq(r.data, whole.data);
        }
    }
}

Test(h1, chunked_vectors_byte_by_byte)
{
    for (size_t i = 0; i < sizeof(ck_vectors) / sizeof(ck_vectors[0]); i++) {
        const struct ck_vector *v = &ck_vectors[i];
        ck_check(v, ck_run(v->in, v->len, 0, 1), "bytewise");
        ck_check(v, ck_run(v->in, v->len, 0, 3), "3 bytes");
    }
}

Test(h1, chunked_stops_at_message_end)
{
    const char *s = "3\r\nabc\r\n0\r\n\r\nHTTP/1.1 200 OK\r\n";
    struct sy_h1_chunked c;
    int done;
    sy_h1_chunked_init(&c);
    cr_assert_eq(sy_h1_chunked_scan(&c, guard(s, strlen(s)), strlen(s), &done), 13);
    cr_assert_eq(done, 1);
    cr_assert_eq(c.data_bytes, 3);
    /* once done, nothing more belongs to the message */
    cr_assert_eq(sy_h1_chunked_scan(&c, guard("0\r\n", 3), 3, &done), 0);
    cr_assert_eq(done, 1);
}

Test(h1, chunked_error_is_sticky)
{
    struct sy_h1_chunked c;
    int done;
    sy_h1_chunked_init(&c);
    cr_assert_eq(sy_h1_chunked_scan(&c, guard("x", 1), 1, &done), -1);
    cr_assert_eq(sy_h1_chunked_scan(&c, guard("0\r\n\r\n", 5), 5, &done), -1);
    cr_assert_eq(done, 0);
}

Test(h1, chunked_large_chunk_counts_data)
{
    static char body[70000];
    struct sy_h1_chunked c;
    int done;
    size_t n = 0;
    n += (size_t)snprintf(body, sizeof(body), "%x\r\n", 65536);
    memset(body + n, 'z', 65536);
    n += 65536;
    memcpy(body + n, "\r\n0\r\n\r\n", 7);
    n += 7;
    sy_h1_chunked_init(&c);
    cr_assert_eq(sy_h1_chunked_scan(&c, guard(body, 1000), 1000, &done), 1000);
    cr_assert_eq(done, 0);
    cr_assert_eq(sy_h1_chunked_scan(&c, guard(body + 1000, n - 1000), n - 1000, &done),
                 (ssize_t)(n - 1000));
    cr_assert_eq(done, 1);
    cr_assert_eq(c.data_bytes, 65536);
}

Test(h1, chunked_line_limit)
{
    static char line[SY_H1_CHUNK_LINE_MAX + 16];
    struct sy_h1_chunked c;
    int done;
    /* "1;" + "a" * k + "\r\n" is exactly SY_H1_CHUNK_LINE_MAX bytes */
    size_t k = SY_H1_CHUNK_LINE_MAX - 4;
    memcpy(line, "1;", 2);
    memset(line + 2, 'a', k);
    memcpy(line + 2 + k, "\r\n", 2);
    sy_h1_chunked_init(&c);
    cr_assert_eq(sy_h1_chunked_scan(&c, guard(line, k + 4), k + 4, &done), (ssize_t)(k + 4));
    memcpy(line + 2 + k, "a\r\n", 3);
    sy_h1_chunked_init(&c);
    cr_assert_eq(sy_h1_chunked_scan(&c, guard(line, k + 5), k + 5, &done), -1);
    /* decided before the line ends: no CR in sight after SY_H1_CHUNK_LINE_MAX bytes */
    memset(line + 2, 'a', SY_H1_CHUNK_LINE_MAX);
    sy_h1_chunked_init(&c);
    cr_assert_eq(sy_h1_chunked_scan(&c, guard(line, SY_H1_CHUNK_LINE_MAX + 1),
                                    SY_H1_CHUNK_LINE_MAX + 1, &done), -1);
    sy_h1_chunked_init(&c);
    cr_assert_eq(sy_h1_chunked_scan(&c, guard(line, SY_H1_CHUNK_LINE_MAX),
                                    SY_H1_CHUNK_LINE_MAX, &done), SY_H1_CHUNK_LINE_MAX);
}

Test(h1, chunked_trailer_limit)
{
    static char t[SY_H1_TRAILERS_MAX + 64];
    struct sy_h1_chunked c;
    int done;
    size_t n = 0, body;
    /* trailer section: "X: " + v + "\r\n" + "\r\n" == SY_H1_TRAILERS_MAX bytes */
    size_t vlen = SY_H1_TRAILERS_MAX - 7;
    memcpy(t, "0\r\nX: ", 6);
    n = 6;
    memset(t + n, 'v', vlen);
    n += vlen;
    memcpy(t + n, "\r\n\r\n", 4);
    n += 4;
    sy_h1_chunked_init(&c);
    cr_assert_eq(sy_h1_chunked_scan(&c, guard(t, n), n, &done), (ssize_t)n);
    cr_assert_eq(done, 1);
    body = n;
    memcpy(t + body - 4, "v\r\n\r\n", 5);
    sy_h1_chunked_init(&c);
    cr_assert_eq(sy_h1_chunked_scan(&c, guard(t, body + 1), body + 1, &done), -1);
}

Test(h1, chunked_size_overflow)
{
    struct sy_h1_chunked c;
    int done;
    sy_h1_chunked_init(&c);
    cr_assert_eq(sy_h1_chunked_scan(&c, guard("ffffffffffffffff\r\n", 18), 18, &done), -1);
    sy_h1_chunked_init(&c);
    cr_assert_eq(sy_h1_chunked_scan(&c, guard("1ffffffffffffffff", 17), 17, &done), -1);
}

/* ---- header lookup, lists, tchar ------------------------------------------------------------- */

Test(h1, find_header)
{
    int status;
    cr_assert_gt(parse_req("GET / HTTP/1.1\r\nHost: a\r\nX-Postfacto-Version: 4.1.0\r\n\r\n",
                           &status), 0);
    const struct sy_h1_header *h =
        sy_h1_find(req.headers, req.num_headers, SY_STR_LIT("x-postfacto-version"));
    cr_assert_not_null(h);
    cr_assert(sv_eq(h->value, "4.1.0"));
    cr_assert_null(sy_h1_find(req.headers, req.num_headers, SY_STR_LIT("x-postfacto")));
    cr_assert_null(sy_h1_find(req.headers, 0, SY_STR_LIT("host")));
}

static size_t list_elems(const char *v, struct sy_str *out, size_t max)
{
    size_t pos = 0, n = 0;
    struct sy_str e;
    while (sy_h1_next_list_elem(sy_str_cstr(v), &pos, &e)) {
        cr_assert_lt(n, max);
        out[n++] = e;
    }
    return n;
}

Test(h1, list_elements)
{
    struct sy_str e[8];
    cr_assert_eq(list_elems("a, b ,\tc", e, 8), 3);
    cr_assert(sv_eq(e[0], "a") && sv_eq(e[1], "b") && sv_eq(e[2], "c"));
    cr_assert_eq(list_elems("a,,b", e, 8), 3);
    cr_assert(sv_eq(e[0], "a") && e[1].len == 0 && sv_eq(e[2], "b"));
    cr_assert_eq(list_elems("a,", e, 8), 2);
    cr_assert_eq(e[1].len, 0);
    cr_assert_eq(list_elems("", e, 8), 0);
    cr_assert_eq(list_elems("  ", e, 8), 0);
    cr_assert_eq(list_elems("x;q=\"a,b\", y", e, 8), 2);
    cr_assert(sv_eq(e[0], "x;q=\"a,b\""));
    cr_assert(sv_eq(e[1], "y"));
    cr_assert_eq(list_elems("\"a\\\",b\",c", e, 8), 2);
    cr_assert(sv_eq(e[0], "\"a\\\",b\""));
}

Test(h1, tchar_table)
{
    for (int c = 0; c < 256; c++) {
        int expect = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                     (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
        cr_assert_eq(sy_h1_is_tchar((unsigned char)c), expect, "byte 0x%02x", c);
    }
}
