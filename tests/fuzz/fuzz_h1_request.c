/*
 * fuzz_h1_request.c: request head parsing and framing, then the chunked body
 * scanner when the head announces one.
 * fuzz-dict: http.dict
 *
 * Beyond "no crash", it checks the parser contract: slices stay inside the
 * input, the head length is stable when the bytes after it are cut off,
 * shorter prefixes are incomplete, and statuses are the documented ones.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/h1.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_HDRS 32

static void check_slice(struct sy_str s, const char *buf, size_t len)
{
    if (s.len != 0 && (s.p < buf || s.p + s.len > buf + len))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const struct sy_h1_limits lim = {4096, MAX_HDRS, 1024};
    struct sy_h1_header hdrs[MAX_HDRS], hdrs2[MAX_HDRS];
    struct sy_h1_request req = {.headers = hdrs}, req2 = {.headers = hdrs2};
    struct sy_h1_framing f;
    const char *buf = (const char *)data;
    int status = 0, status2 = 0, r, r2;

    r = sy_h1_parse_request(buf, size, &req, &lim, &status);
    if (r == SY_H1_INVALID) {
        if (status != 400 && status != 414 && status != 431 && status != 505)
            abort();
        return 0;
    }
    if (r == SY_H1_PARTIAL) {
        if (size > lim.max_head)
            abort();
        return 0;
    }
    if (r <= 0 || (size_t)r > size || (size_t)r > lim.max_head || req.num_headers > MAX_HDRS)
        abort();
    check_slice(req.method, buf, (size_t)r);
    check_slice(req.target, buf, (size_t)r);
    if (req.method.len == 0 || req.target.len == 0 || req.target.len > lim.max_uri)
        abort();
    for (size_t i = 0; i < req.num_headers; i++) {
        check_slice(req.headers[i].name, buf, (size_t)r);
        check_slice(req.headers[i].value, buf, (size_t)r);
        if (req.headers[i].name.len == 0)
            abort();
    }

    /* Stateless over a growing buffer: the head alone gives the same answer ... */
    r2 = sy_h1_parse_request(buf, (size_t)r, &req2, &lim, &status2);
    if (r2 != r || req2.num_headers != req.num_headers || !sy_str_eq(req2.target, req.target))
        abort();
    /* ... and any shorter prefix is incomplete. */
    if (sy_h1_parse_request(buf, (size_t)r - 1, &req2, &lim, &status2) != SY_H1_PARTIAL)
        abort();
    if (sy_h1_parse_request(buf, (size_t)r / 2, &req2, &lim, &status2) != SY_H1_PARTIAL)
        abort();

    if (sy_h1_request_framing(&req, &f, &status) != 0) {
        if (status != 400 && status != 417 && status != 501)
            abort();
        return 0;
    }
    if (req.minor_version == 1 && f.host == NULL)
        abort();
    if (f.body == SY_H1_BODY_EOF)
        abort();
    if (f.body == SY_H1_BODY_CHUNKED) {
        struct sy_h1_chunked c;
        int done = 0;
        ssize_t n;
        sy_h1_chunked_init(&c);
        n = sy_h1_chunked_scan(&c, buf + r, size - (size_t)r, &done);
        if (n > (ssize_t)(size - (size_t)r) || (n >= 0 && c.data_bytes > (uint64_t)n))
            abort();
    }
    return 0;
}
