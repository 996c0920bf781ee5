/*
 * test_h2.c: HTTP/2 request heads checked and translated into the HTTP/1.1 form.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "core/alloc.h"
#include "http/h2.h"

struct fld {
    const char *n, *v;
};

static struct sy_h1_header hv[SY_H2_MAX_FIELDS + 4];

/* Feeds the fields (a NULL name ends them) and finishes: the result of sy_h2_head_finish. */
static int run(const struct fld *f, int end_stream, struct sy_h1_request *req, char **bytes,
               int *chunked)
{
    static struct sy_h2_head h;
    sy_h2_head_reset(&h, 16384, 100);
    for (; f->n; f++)
        cr_assert_eq(sy_h2_head_add(&h, (const uint8_t *)f->n, strlen(f->n),
                                    (const uint8_t *)f->v, strlen(f->v)), 0);
    return sy_h2_head_finish(&h, end_stream, 64, req, hv, bytes, chunked);
}

static int status_of(const struct fld *f, int end_stream)
{
    struct sy_h1_request req;
    char *bytes = NULL;
    int chunked;
    int r = run(f, end_stream, &req, &bytes, &chunked);
    sy_free(bytes);
    return r;
}

#define BASE {":method", "GET"}, {":scheme", "https"}, {":path", "/p?q=1"}, \
             {":authority", "a.test"}

Test(h2, translates_to_the_h1_form)
{
    const struct fld f[] = {BASE, {"cookie", "a=1"}, {"accept", "*/*"},
                            {"cookie", "postfacto_version=4.1.0"}, {"host", "a.test"}, {NULL, NULL}};
    struct sy_h1_request req;
    char *bytes = NULL;
    int chunked = -1;
    cr_assert_eq(run(f, 0, &req, &bytes, &chunked), 0);
    cr_assert(sy_str_eq(req.method, SY_STR_LIT("GET")));
    cr_assert(sy_str_eq(req.target, SY_STR_LIT("/p?q=1")));
    cr_assert_eq(req.minor_version, 1);
    cr_assert_eq(chunked, 1);
    cr_assert_eq(req.num_headers, 4);
    cr_assert(sy_str_eq(hv[0].name, SY_STR_LIT("host")) && sy_str_eq(hv[0].value, SY_STR_LIT("a.test")));
    cr_assert(sy_str_eq(hv[1].name, SY_STR_LIT("cookie")));
    cr_assert(sy_str_eq(hv[1].value, SY_STR_LIT("a=1; postfacto_version=4.1.0")));
    cr_assert(sy_str_eq(hv[2].name, SY_STR_LIT("accept")));
    cr_assert(sy_str_eq(hv[3].name, SY_STR_LIT("transfer-encoding")) &&
              sy_str_eq(hv[3].value, SY_STR_LIT("chunked")));
    sy_free(bytes);

    const struct fld g[] = {BASE, {"content-length", "3"}, {NULL, NULL}};
    cr_assert_eq(run(g, 0, &req, &bytes, &chunked), 0);
    cr_assert_eq(chunked, 0);
    cr_assert_eq(req.num_headers, 2);
    sy_free(bytes);
    const struct fld e[] = {BASE, {NULL, NULL}};
    cr_assert_eq(run(e, 1, &req, &bytes, &chunked), 0);
    cr_assert_eq(chunked, 0);
    cr_assert_eq(req.num_headers, 1);
    sy_free(bytes);
}

Test(h2, refuses_malformed_heads)
{
    const struct fld bad[][8] = {
        {BASE, {"connection", "close"}, {NULL, NULL}},
        {BASE, {"te", "gzip"}, {NULL, NULL}},
        {BASE, {"X-Up", "1"}, {NULL, NULL}},
        {BASE, {"x-a", "1\r\nx-b: 2"}, {NULL, NULL}},
        {BASE, {"x-a", " 1"}, {NULL, NULL}},
        {BASE, {":path", "/again"}, {NULL, NULL}},
        {BASE, {":protocol", "websocket"}, {NULL, NULL}},
        {{":method", "GET"}, {"x-a", "1"}, {":scheme", "https"}, {":path", "/"}, {NULL, NULL}},
        {{":method", "GET"}, {":scheme", "https"}, {":path", "http://a/"}, {NULL, NULL}},
        {{":method", "GET"}, {":scheme", "https"}, {":path", "*"}, {NULL, NULL}},
        {{":method", "GET"}, {":scheme", "https"}, {":path", "/a b"}, {NULL, NULL}},
        {{":method", "CONNECT"}, {":scheme", "https"}, {":path", "/"}, {NULL, NULL}},
        {{":method", "GET"}, {":path", "/"}, {NULL, NULL}},
        {BASE, {"host", "b.test"}, {NULL, NULL}},
        {BASE, {"content-length", "1"}, {"content-length", "1"}, {NULL, NULL}},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_eq(status_of(bad[i], 0), -1, "case %zu", i);
    const struct fld cl[] = {BASE, {"content-length", "4"}, {NULL, NULL}};
    cr_assert_eq(status_of(cl, 1), -1);
    const struct fld cl0[] = {BASE, {"content-length", "0"}, {NULL, NULL}};
    cr_assert_eq(status_of(cl0, 1), 0);
    const struct fld te[] = {BASE, {"te", "trailers"}, {NULL, NULL}};
    cr_assert_eq(status_of(te, 1), 0);
    const struct fld star[] = {{":method", "OPTIONS"}, {":scheme", "https"}, {":path", "*"},
                               {NULL, NULL}};
    cr_assert_eq(status_of(star, 1), 0);
}

Test(h2, limits)
{
    const struct fld long_path[] = {{":method", "GET"}, {":scheme", "https"},
        {":path", "/0123456789012345678901234567890123456789012345678901234567890123456789"},
        {NULL, NULL}};
    cr_assert_eq(status_of(long_path, 1), 414);

    static struct sy_h2_head h;
    sy_h2_head_reset(&h, 1024, 100);
    char v[200];
    memset(v, 'v', sizeof(v));
    int r = 0;
    for (int i = 0; i < 8 && r == 0; i++)
        r = sy_h2_head_add(&h, (const uint8_t *)"x-a", 3, (const uint8_t *)v, sizeof(v));
    cr_assert_eq(r, 0);
    cr_assert_eq(h.status, 431);
    /* far beyond: the connection should end */
    for (int i = 0; i < 1000 && r == 0; i++)
        r = sy_h2_head_add(&h, (const uint8_t *)"x-a", 3, (const uint8_t *)v, sizeof(v));
    cr_assert_eq(r, -1);
    sy_h2_head_free(&h);

    sy_h2_head_reset(&h, 16384, 2);
    for (int i = 0; i < 3; i++)
        sy_h2_head_add(&h, (const uint8_t *)"x-a", 3, (const uint8_t *)"1", 1);
    cr_assert_eq(h.status, 431);
    sy_h2_head_free(&h);
}

#define WS_CONNECT {":method", "CONNECT"}, {":protocol", "websocket"}, {":scheme", "https"}, \
                   {":path", "/cable"}, {":authority", "a.test"}

/* RFC 8441: an extended CONNECT becomes an Upgrade GET with our key, the client's dropped. */
Test(h2, extended_connect_becomes_an_upgrade_get)
{
    const struct fld f[] = {WS_CONNECT, {"sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="},
                            {"sec-websocket-version", "13"}, {"cookie", "a=1"},
                            {"cookie", "b=2"}, {NULL, NULL}};
    static struct sy_h2_head h;
    sy_h2_head_reset(&h, 16384, 100);
    for (const struct fld *p = f; p->n; p++)
        cr_assert_eq(sy_h2_head_add(&h, (const uint8_t *)p->n, strlen(p->n),
                                    (const uint8_t *)p->v, strlen(p->v)), 0);
    cr_assert(h.protocol.set);
    const uint8_t nonce[16] = {0};
    sy_h2_ws_key(nonce, h.ws_key);
    cr_assert_eq(memcmp(h.ws_key, "AAAAAAAAAAAAAAAAAAAAAA==", SY_H2_WS_KEY_LEN), 0);
    struct sy_h1_request req;
    char *bytes = NULL;
    int chunked = -1;
    cr_assert_eq(sy_h2_head_finish(&h, 0, 64, &req, hv, &bytes, &chunked), 0);
    cr_assert_eq(h.websocket, 1);
    cr_assert_eq(chunked, 0);
    cr_assert(sy_str_eq(req.method, SY_STR_LIT("GET")));
    cr_assert(sy_str_eq(req.target, SY_STR_LIT("/cable")));
    cr_assert_eq(req.num_headers, 6);
    cr_assert(sy_str_eq(hv[0].name, SY_STR_LIT("host")) && sy_str_eq(hv[0].value, SY_STR_LIT("a.test")));
    cr_assert(sy_str_eq(hv[1].name, SY_STR_LIT("Upgrade")) &&
              sy_str_eq(hv[1].value, SY_STR_LIT("websocket")));
    cr_assert(sy_str_eq(hv[2].name, SY_STR_LIT("Connection")) &&
              sy_str_eq(hv[2].value, SY_STR_LIT("Upgrade")));
    cr_assert(sy_str_eq(hv[3].name, SY_STR_LIT("Sec-WebSocket-Key")) &&
              sy_str_eq(hv[3].value, SY_STR_LIT("AAAAAAAAAAAAAAAAAAAAAA==")));
    cr_assert(sy_str_eq(hv[4].name, SY_STR_LIT("sec-websocket-version")));
    cr_assert(sy_str_eq(hv[5].value, SY_STR_LIT("a=1; b=2")));
    sy_free(bytes);
    sy_h2_head_free(&h);
}

Test(h2, extended_connect_refusals)
{
    const struct fld other[] = {{":method", "CONNECT"}, {":protocol", "connect-udp"},
                                {":scheme", "https"}, {":path", "/"}, {":authority", "a.test"},
                                {NULL, NULL}};
    cr_assert_eq(status_of(other, 0), 501);
    const struct fld bad[][8] = {
        {{":method", "GET"}, {":protocol", "websocket"}, {":scheme", "https"}, {":path", "/"},
         {":authority", "a.test"}, {NULL, NULL}},
        {{":method", "CONNECT"}, {":protocol", "websocket"}, {":scheme", "https"},
         {":path", "/"}, {NULL, NULL}},
        {{":method", "CONNECT"}, {":protocol", "websocket"}, {":scheme", "https"},
         {":authority", "a.test"}, {NULL, NULL}},
        {WS_CONNECT, {"content-length", "0"}, {NULL, NULL}},
        {WS_CONNECT, {":protocol", "websocket"}, {NULL, NULL}},
        {{":method", "CONNECT"}, {":authority", "a.test:443"}, {NULL, NULL}},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_eq(status_of(bad[i], 0), -1, "case %zu", i);
}

/* RFC 6455 §1.3's example. */
Test(h2, websocket_accept)
{
    cr_assert(sy_h2_ws_accept_ok("dGhlIHNhbXBsZSBub25jZQ==",
                                 SY_STR_LIT("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")));
    cr_assert(!sy_h2_ws_accept_ok("dGhlIHNhbXBsZSBub25jZQ==",
                                  SY_STR_LIT("s3pPLMBiTxaQ9kYGzzhZRbK+xOo")));
    cr_assert(!sy_h2_ws_accept_ok("dGhlIHNhbXBsZSBub25jZQ==",
                                  SY_STR_LIT("t3pPLMBiTxaQ9kYGzzhZRbK+xOo=")));
}

static int trl_add(struct sy_h2_trailers *t, const char *n, const char *v)
{
    return sy_h2_trailers_add(t, (const uint8_t *)n, strlen(n), (const uint8_t *)v, strlen(v));
}

Test(h2, trailers)
{
    struct sy_h2_trailers t = {0};
    sy_h2_trailers_reset(&t, 16384, 16382);
    trl_add(&t, "x-checksum", "abc");
    trl_add(&t, "content-length", "5");   /* dropped: framing */
    trl_add(&t, "host", "evil.test");     /* dropped: routing */
    trl_add(&t, "x-forwarded-for", "1.2.3.4");
    trl_add(&t, "te", "trailers");
    trl_add(&t, "grpc-status", "0");
    cr_assert_eq(t.malformed, 0);
    cr_assert_eq(t.too_big, 0);
    cr_assert_eq(t.len, strlen("x-checksum: abc\r\ngrpc-status: 0\r\n"));
    cr_assert(memcmp(t.buf, "x-checksum: abc\r\ngrpc-status: 0\r\n", t.len) == 0);

    static const struct fld bad[] = {{":path", "/"}, {"X-Up", "1"}, {"x-a", "1\r\nx-b: 2"},
                                     {"x-a", " 1"}, {"connection", "close"}, {"te", "gzip"},
                                     {"x a", "1"}, {"", "1"}};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        sy_h2_trailers_reset(&t, 16384, 16382);
        trl_add(&t, bad[i].n, bad[i].v);
        cr_assert_eq(t.malformed, 1, "%s: %s", bad[i].n, bad[i].v);
        cr_assert_eq(t.len, 0);
    }

    /* over the lines' room (the HTTP/1.1 trailer section), then over the RFC 7541 size */
    char v[1000];
    memset(v, 'v', sizeof(v));
    sy_h2_trailers_reset(&t, 1 << 20, 2048);
    int r = 0;
    for (int i = 0; i < 3 && r == 0; i++)
        r = sy_h2_trailers_add(&t, (const uint8_t *)"x-a", 3, (const uint8_t *)v, sizeof(v));
    cr_assert_eq(r, 0);
    cr_assert_eq(t.too_big, 1);
    cr_assert(t.len <= 2048);
    sy_h2_trailers_reset(&t, 1024, 16382);
    for (int i = 0; i < 1000 && r == 0; i++)
        r = sy_h2_trailers_add(&t, (const uint8_t *)"x-a", 3, (const uint8_t *)v, sizeof(v));
    cr_assert_eq(r, -1);
    sy_h2_trailers_free(&t);

    cr_assert_eq(sy_h2_trailer_allowed("X-Checksum", 10), 1);
    cr_assert_eq(sy_h2_trailer_allowed("Set-Cookie", 10), 0);
    cr_assert_eq(sy_h2_trailer_allowed("CONTENT-LENGTH", 14), 0);
    cr_assert_eq(sy_h2_trailer_allowed(":status", 7), 0);
}
