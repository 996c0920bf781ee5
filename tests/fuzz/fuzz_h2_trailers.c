/*
 * fuzz_h2_trailers.c: an HTTP/2 request's trailer fields (as HPACK would
 * decode them) checked, filtered and written as the trailer section of the
 * last chunk (sy_h2_trailers_*). Whatever the fields, the last chunk the
 * upstream gets must scan as one complete chunked ending with the HTTP/1.1
 * scanner the exchange uses, consuming every byte (no field can end the
 * section early or smuggle bytes after it), with one line per field kept,
 * each of a name that may be a trailer.
 *
 * Input: fields, each as [name length][name][value length][value] (lengths
 * one byte); byte 0 picks the size limit (small or the default).
 *
 * fuzz-dict: h2.dict
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "http/h1.h"
#include "http/h2.h"

#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct sy_h2_trailers t;

    if (size < 1)
        return 0;
    sy_h2_trailers_reset(&t, data[0] & 1 ? 256 : 16384, SY_H1_TRAILERS_MAX - 2);
    size_t pos = 1, kept = 0, nl, vl;
    uint8_t *name, *value;
    while (fuzz_next_field(data, size, &pos, &name, &nl, &value, &vl)) {
        uint32_t before = t.len;
        int r = sy_h2_trailers_add(&t, name, nl, value, vl);
        if (t.len != before) {
            if (!sy_h2_trailer_allowed((const char *)name, nl))
                abort();
            kept++;
        }
        sy_free(name);
        sy_free(value);
        if (r < 0)
            break;
    }
    if (t.malformed || t.too_big)
        return 0;

    size_t n = 3 + t.len + 2;
    char *last = sy_malloc(n);
    memcpy(last, "0\r\n", 3);
    if (t.len)
        memcpy(last + 3, t.buf, t.len);
    memcpy(last + 3 + t.len, "\r\n", 2);
    struct sy_h1_chunked c;
    sy_h1_chunked_init(&c);
    int done = 0;
    ssize_t used = sy_h1_chunked_scan(&c, last, n, &done);
    if (used != (ssize_t)n || !done)
        abort();
    size_t lines = 0;
    for (size_t i = 0; i + 1 < n; i++)
        if (last[i] == '\r' && last[i + 1] == '\n')
            lines++;
    if (lines != kept + 2) /* the size line and the final CRLF */
        abort();
    sy_free(last);
    return 0;
}
