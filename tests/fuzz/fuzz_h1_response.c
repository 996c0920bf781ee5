/*
 * fuzz_h1_response.c: response head parsing and framing. The first input byte
 * picks the request method the response answers (GET, HEAD, CONNECT, POST);
 * the rest is the upstream's bytes.
 * fuzz-dict: http.dict
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
    static const char *const methods[] = {"GET", "HEAD", "CONNECT", "POST"};
    static const struct sy_h1_limits lim = {4096, MAX_HDRS, 0};
    struct sy_h1_header hdrs[MAX_HDRS], hdrs2[MAX_HDRS];
    struct sy_h1_response resp = {.headers = hdrs}, resp2 = {.headers = hdrs2};
    struct sy_h1_framing f;
    const char *buf;
    struct sy_str method;
    int r;

    if (size == 0)
        return 0;
    method = sy_str_cstr(methods[data[0] & 3]);
    buf = (const char *)data + 1;
    size--;

    r = sy_h1_parse_response(buf, size, &resp, &lim);
    if (r == SY_H1_INVALID)
        return 0;
    if (r == SY_H1_PARTIAL) {
        if (size > lim.max_head)
            abort();
        return 0;
    }
    if (r <= 0 || (size_t)r > size || resp.num_headers > MAX_HDRS)
        abort();
    if (resp.status < 100 || resp.status > 999 || resp.minor_version < 0 || resp.minor_version > 1)
        abort();
    check_slice(resp.reason, buf, (size_t)r);
    for (size_t i = 0; i < resp.num_headers; i++) {
        check_slice(resp.headers[i].name, buf, (size_t)r);
        check_slice(resp.headers[i].value, buf, (size_t)r);
    }
    if (sy_h1_parse_response(buf, (size_t)r, &resp2, &lim) != r || resp2.status != resp.status)
        abort();
    if (sy_h1_parse_response(buf, (size_t)r - 1, &resp2, &lim) != SY_H1_PARTIAL)
        abort();

    if (sy_h1_response_framing(&resp, method, &f) != 0)
        return 0;
    if (f.body == SY_H1_BODY_EOF && f.keepalive)
        abort();
    if (f.body == SY_H1_BODY_CHUNKED) {
        struct sy_h1_chunked c;
        int done = 0;
        ssize_t n;
        sy_h1_chunked_init(&c);
        n = sy_h1_chunked_scan(&c, buf + r, size - (size_t)r, &done);
        if (n > (ssize_t)(size - (size_t)r))
            abort();
    }
    return 0;
}
