/*
 * fuzz_chunked.c: the chunked body scanner. The first two input bytes choose
 * a split position; the rest is the body. Scanning in one call, in two calls
 * at that split and one byte at a time must give the same verdict, the same
 * message length and the same payload count.
 * fuzz-dict: http.dict
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/h1.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct outcome {
    int err;
    int done;
    size_t consumed;
    uint64_t data_bytes;
};

/* Feeds buf in pieces: first `split` bytes, then the rest in `step`-byte calls (0: one call). */
static struct outcome scan(const char *buf, size_t len, size_t split, size_t step)
{
    struct sy_h1_chunked c;
    struct outcome o = {0, 0, 0, 0};
    size_t off = 0;

    sy_h1_chunked_init(&c);
    while (off < len) {
        size_t n = off < split ? split - off : (step ? step : len - off);
        int done = 0;
        ssize_t r;
        if (n > len - off)
            n = len - off;
        r = sy_h1_chunked_scan(&c, buf + off, n, &done);
        if (r < 0) {
            o.err = 1;
            break;
        }
        if ((size_t)r > n || (!done && (size_t)r != n))
            abort();
        o.consumed += (size_t)r;
        if (done) {
            o.done = 1;
            /* a finished scanner takes nothing more */
            if (sy_h1_chunked_scan(&c, buf, len, &done) != 0 || !done)
                abort();
            break;
        }
        off += n;
    }
    o.data_bytes = c.data_bytes;
    if (!o.err && o.data_bytes > o.consumed)
        abort();
    return o;
}

static void same(struct outcome a, struct outcome b)
{
    if (a.err != b.err)
        abort();
    if (!a.err && (a.done != b.done || a.consumed != b.consumed || a.data_bytes != b.data_bytes))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf;
    size_t split;
    struct outcome whole;

    if (size < 2)
        return 0;
    split = (size_t)data[0] | (size_t)data[1] << 8;
    buf = (const char *)data + 2;
    size -= 2;
    if (size != 0)
        split %= size + 1;

    whole = scan(buf, size, 0, 0);
    same(whole, scan(buf, size, split, 0));
    if (size <= 4096)
        same(whole, scan(buf, size, 0, 1));
    return 0;
}
