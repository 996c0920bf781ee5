/*
 * fuzz_h2_request.c: the h2-to-h1 edge on arbitrary header fields: an HTTP/2
 * request head (as HPACK would decode it) is checked and translated
 * (sy_h2_head_*), framed as the exchange does, and the head sent upstream is
 * built and parsed again. It must agree with what the gateway decided (a
 * differential check against request smuggling through HTTP/2): it parses
 * completely as one HTTP/1.1 head, with the same method and target, exactly
 * one Host equal to :authority (or host), the same body framing (chunked
 * exactly when the stream has a body without content-length), and no field
 * the client did not send but the gateway's own. An extended CONNECT (RFC
 * 8441) must come out as a GET upgrade without body framing, with exactly one
 * Upgrade: websocket, one Connection: Upgrade and one Sec-WebSocket-Key, the
 * gateway's; any other request must not come out as an upgrade.
 *
 * Input: byte 0 holds flags (bit 0: END_STREAM with the head); then fields,
 * each as [name length][name][value length][value] (lengths one byte).
 *
 * fuzz-dict: h2.dict
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "core/alloc.h"
#include "http/h1.h"
#include "http/h2.h"
#include "proxy/conn.h"

#include "fuzz_util.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct sy_config *cfg;
static struct sy_snapshot snap;
static struct sy_wsnap wsnap;
static struct sy_exchange exch;

static const char yaml[] =
    "listen: {https: \":443\"}\n"
    "upstreams:\n"
    "  v1: {servers: [v1.local:80]}\n"
    "sites:\n"
    "  - hosts: [\"*\"]\n"
    "    upstream: v1\n"
    "tls: {certificates: [{cert: /dev/null, key: /dev/null}]}\n";

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    cfg = fuzz_config(yaml, sizeof(yaml) - 1);
    snap.cfg = cfg;
    wsnap.snap = &snap;
    return 0;
}

static const char ws_key[SY_H2_WS_KEY_LEN] = "ZnV6ei1rZXktMDEyMzQ1Ng==";

static int one_field(const struct sy_h1_header *h, size_t n, const char *name, const char *value)
{
    const struct sy_h1_header *f = sy_h1_find(h, n, sy_str_make(name, strlen(name)));
    return fuzz_count_headers(h, n, name) == 1 &&
           sy_str_eq(f->value, sy_str_make(value, strlen(value)));
}

static void check_websocket(const struct sy_h1_request *r, const struct sy_h1_framing *f)
{
    char key[SY_H2_WS_KEY_LEN + 1];
    memcpy(key, ws_key, SY_H2_WS_KEY_LEN);
    key[SY_H2_WS_KEY_LEN] = '\0';
    if (!sy_str_eq(r->method, SY_STR_LIT("GET")) || !f->upgrade || f->body != SY_H1_BODY_NONE)
        abort();
    if (!one_field(r->headers, r->num_headers, "upgrade", "websocket") ||
        !one_field(r->headers, r->num_headers, "connection", "Upgrade") ||
        !one_field(r->headers, r->num_headers, "sec-websocket-key", key))
        abort();
}

static void check_upstream_head(struct sy_exchange *x, size_t fields_in, int chunked,
                                int websocket, const char *out, size_t len)
{
    static struct sy_h1_header h[SY_MAX_HEADERS_CAP + 16];
    struct sy_h1_request r = {.headers = h};
    struct sy_h1_framing f;

    fuzz_reparse_upstream_head(&x->req, &x->rf, out, len, &r, SY_MAX_HEADERS_CAP + 16, &f);
    if ((f.body == SY_H1_BODY_CHUNKED) != chunked)
        abort();
    if (fuzz_count_headers(h, r.num_headers, "host") != 1 || !x->rf.host ||
        !sy_str_eq(f.host->value, x->rf.host->value))
        abort();
    if (websocket)
        check_websocket(&r, &f);
    else if (f.upgrade)
        abort(); /* upgrade and connection are refused on HTTP/2 */
    /* Each field the client sent is one line at most; the gateway adds X-Forwarded-For,
     * -Proto, -Host, X-Request-Id and Transfer-Encoding (chunked), or the three fields of
     * an upgrade. */
    if (r.num_headers > fields_in + 5 + (websocket ? 2 : 0))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct sy_h1_header hv[SY_MAX_HEADERS_CAP];
    static char up[4 * SY_BUF_SIZE];
    static struct sy_h2_head head;

    if (size < 1)
        return 0;
    int end_stream = data[0] & 1;
    sy_h2_head_reset(&head, 16384, 100);
    size_t pos = 1, nfields = 0, nl, vl;
    uint8_t *name, *value;
    while (fuzz_next_field(data, size, &pos, &name, &nl, &value, &vl)) {
        int r = sy_h2_head_add(&head, name, nl, value, vl);
        sy_free(name);
        sy_free(value);
        nfields++;
        if (r < 0)
            return 0;
    }

    struct sy_exchange *x = &exch;
    struct sy_h1_request req;
    char *bytes = NULL;
    int chunked = 0;
    if (head.protocol.set)
        memcpy(head.ws_key, ws_key, SY_H2_WS_KEY_LEN);
    int r = sy_h2_head_finish(&head, end_stream, 8192, &req, hv, &bytes, &chunked);
    if (r != 0) {
        if (r > 0 && r != 414 && r != 431 && r != 501)
            abort();
        return 0;
    }
    memset(x, 0, sizeof(*x));
    x->ws = &wsnap;
    x->peer_ip = "192.0.2.1";
    x->https = 1;
    x->h2 = 1;
    memcpy(x->reqid, "0123456789abcdef", 17);
    x->req = req;
    int status = 0;
    if (sy_h1_request_framing(&x->req, &x->rf, &status) == 0) {
        x->req.target = x->rf.target;
        if (x->rf.upgrade != head.websocket)
            abort(); /* upgrade and connection are refused on HTTP/2 but for RFC 8441 */
        x->req_done = x->rf.body == SY_H1_BODY_NONE;
        x->upgrade = x->rf.upgrade && x->req_done; /* as exchange.c's prepare() */
        size_t n = sy_build_upstream_head(x, up, sizeof(up));
        if (n > 0)
            check_upstream_head(x, nfields, chunked, head.websocket, up, n);
    }
    sy_free(bytes);
    return 0;
}
