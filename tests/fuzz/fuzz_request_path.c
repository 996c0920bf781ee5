/*
 * fuzz_request_path.c: the whole request path on arbitrary bytes, without
 * sockets: parse the head, decide framing and the target form, find the site
 * and version, build the head sent upstream, scan a chunked body; then parse
 * an upstream response head, decide its framing and build the head sent to
 * the client.
 *
 * Both built heads are parsed again and must agree with what the gateway
 * decided (a differential check against smuggling and response splitting):
 * the upstream head parses completely, has the same method, the forwarded
 * target, exactly one Host equal to the client's, and the same body framing
 * (chunked stays chunked, a Content-Length keeps its value, no body stays
 * without one); the client head parses and frames its body the same way as
 * the upstream response was framed.
 *
 * Input: byte 0 holds flags (bit 0 https, bit 1 HTTP/1.0 client for the
 * response side); the rest is the request head and body, then optionally
 * "\n--\n" and the response head.
 *
 * fuzz-dict: http.dict
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "core/alloc.h"
#include "http/h1.h"
#include "proxy/conn.h"
#include "route/route.h"

#include "fuzz_util.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct sy_config *cfg;
static struct sy_snapshot snap;
static struct sy_wsnap wsnap;
static struct sy_conn conn;
static struct sy_exchange exch;

static const char yaml[] =
    "listen: {http: \":80\"}\n"
    "upstreams:\n"
    "  v1: {servers: [v1.local:80]}\n"
    "  v2: {servers: [v2.local:80]}\n"
    "sites:\n"
    "  - hosts: [retro.example.org, \"*.example.org\"]\n"
    "    version:\n"
    "      header: X-Postfacto-Version\n"
    "      query: postfacto_version\n"
    "      cookie: postfacto_version\n"
    "      routes: {\"4.1.0\": v1, \"4.2.0\": v2}\n"
    "      default: \"4.2.0\"\n"
    "  - hosts: [\"*\"]\n"
    "    upstream: v1\n"
    "tls: {hsts: max-age=60}\n";

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    cfg = fuzz_config(yaml, sizeof(yaml) - 1);
    snap.cfg = cfg;
    wsnap.snap = &snap;
    return 0;
}

static void check_upstream_head(struct sy_conn *c, const char *out, size_t len)
{
    static struct sy_h1_header h[SY_MAX_HEADERS_CAP + 16];
    struct sy_h1_request r = {.headers = h};
    struct sy_h1_framing f;

    fuzz_reparse_upstream_head(&c->x->req, &c->x->rf, out, len, &r, SY_MAX_HEADERS_CAP + 16, &f);
    if ((c->x->rf.host == NULL) != (f.host == NULL) ||
        (f.host && !sy_str_eq(f.host->value, c->x->rf.host->value)))
        abort();
    if (fuzz_count_headers(h, r.num_headers, "x-forwarded-for") != 1 ||
        fuzz_count_headers(h, r.num_headers, "x-forwarded-proto") != 1)
        abort();
}

static void response_side(struct sy_conn *c, const char *buf, size_t len, int http10)
{
    static struct sy_h1_header h[SY_MAX_HEADERS_CAP];
    static struct sy_h1_header h2[SY_MAX_HEADERS_CAP + 16];
    struct sy_h1_response resp = {.headers = h}, back = {.headers = h2};
    struct sy_h1_limits lim = {.max_head = SY_BUF_SIZE, .max_headers = SY_MAX_HEADERS_CAP,
                               .max_uri = SY_BUF_SIZE};
    struct sy_h1_framing sf, bf;
    char out[SY_BUF_SIZE + 4096];

    int r = sy_h1_parse_response(buf, len, &resp, &lim);
    if (r <= 0)
        return;
    if (resp.status < 200 || resp.status == 101)
        return; /* interim responses are dropped; 101 needs an upgrade request */
    if (sy_h1_response_framing(&resp, c->x->req.method, &sf) != 0)
        return;
    if (sf.body == SY_H1_BODY_CHUNKED && http10)
        return; /* the gateway answers 502 */
    c->x->req.minor_version = http10 ? 0 : 1;
    c->x->sf = sf;
    c->x->status = resp.status;
    c->resp_chunked_out = sf.body == SY_H1_BODY_CHUNKED;
    c->resp_close = !sf.keepalive || sf.body == SY_H1_BODY_EOF;
    size_t n = sy_build_response_head(c, &resp, out, sizeof(out));
    if (n == 0)
        return; /* too large: 502 */
    struct sy_h1_limits blim = {.max_head = n, .max_headers = SY_MAX_HEADERS_CAP + 16,
                                .max_uri = n};
    if (sy_h1_parse_response(out, n, &back, &blim) != (int)n)
        abort();
    if (back.status != resp.status)
        abort();
    if (sy_h1_response_framing(&back, c->x->req.method, &bf) != 0)
        abort();
    if (bf.body != sf.body || (sf.body == SY_H1_BODY_LENGTH && bf.length != sf.length))
        abort(); /* the client would frame the body differently: desync */
    if (sf.body == SY_H1_BODY_EOF && bf.keepalive)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct sy_h1_header hdrs[SY_MAX_HEADERS_CAP];
    static char up[4 * SY_BUF_SIZE];
    struct sy_conn *c = &conn;
    struct sy_h1_limits lim = {.max_head = 16384, .max_headers = 100, .max_uri = 8192};
    int status = 0;

    if (size < 1)
        return 0;
    int flags = data[0];
    size--;
    /* exact-size copy so any over-read hits the ASan redzone */
    char *buf = sy_malloc(size ? size : 1);
    memcpy(buf, data + 1, size);
    size_t reqlen = size;
    const char *resp = NULL;
    size_t resplen = 0;
    for (size_t i = 0; i + 4 <= size; i++) {
        if (memcmp(buf + i, "\n--\n", 4) == 0) {
            reqlen = i;
            resp = buf + i + 4;
            resplen = size - i - 4;
            break;
        }
    }

    memset(c, 0, sizeof(*c));
    memset(&exch, 0, sizeof(exch));
    c->x = &exch;
    c->ws = &wsnap;
    c->x->ws = c->ws; /* as x_get() does */
    c->https = flags & 1;
    memcpy(c->peer_ip, "192.0.2.1", 10);
    c->x->peer_ip = c->peer_ip;
    c->x->https = c->https;
    memcpy(c->x->reqid, "0123456789abcdef", 17);
    c->x->req.headers = hdrs;
    int r = sy_h1_parse_request(buf, reqlen, &c->x->req, &lim, &status);
    if (r > 0 && sy_h1_request_framing(&c->x->req, &c->x->rf, &status) == 0) {
        c->x->req.target = c->x->rf.target;
        struct sy_str host = c->x->rf.host ? c->x->rf.host->value : SY_STR_LIT("");
        const struct sy_site_conf *site = sy_route_find_site(cfg, host);
        if (site) {
            sy_route_select(site, c->x->req.target, c->x->req.headers, c->x->req.num_headers, &c->x->route);
            if (c->x->route.upstream >= cfg->nupstreams)
                abort();
        }
        c->x->upgrade = c->x->rf.upgrade && (c->x->rf.body == SY_H1_BODY_NONE ||
                                       (c->x->rf.body == SY_H1_BODY_LENGTH && c->x->rf.length == 0));
        size_t n = sy_build_upstream_head(c->x, up, sizeof(up));
        if (n > 0)
            check_upstream_head(c, up, n);
        if (c->x->rf.body == SY_H1_BODY_CHUNKED) {
            struct sy_h1_chunked ck;
            int done = 0;
            sy_h1_chunked_init(&ck);
            ssize_t k = sy_h1_chunked_scan(&ck, buf + r, reqlen - (size_t)r, &done);
            if (k > (ssize_t)(reqlen - (size_t)r))
                abort();
        }
        if (resp)
            response_side(c, resp, resplen, (flags >> 1) & 1);
    }
    sy_free(buf);
    return 0;
}
