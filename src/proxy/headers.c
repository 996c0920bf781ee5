/*
 * headers.c: the heads the gateway writes: the request to the upstream, the
 * response to the client, and its own small responses.
 *
 * Hop-by-hop fields (RFC 9110 §7.6.1) are dropped in both directions, with
 * every name listed in Connection. Upgrade requests and 101 responses keep
 * Connection and Upgrade exactly as sent: some applications compare them
 * byte for byte.
 */
#include <stdio.h>
#include <string.h>

#include "proxy/conn.h"
#include "tls/tls.h"

struct wbuf {
    char *p;
    size_t len, cap;
    int overflow;
};

static void put(struct wbuf *b, const char *s, size_t n)
{
    if (b->overflow || b->len + n > b->cap) {
        b->overflow = 1;
        return;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

static void puts_(struct wbuf *b, const char *s)
{
    put(b, s, strlen(s));
}

static void putstr(struct wbuf *b, struct sy_str s)
{
    put(b, s.p, s.len);
}

static void put_header(struct wbuf *b, struct sy_str name, struct sy_str value)
{
    putstr(b, name);
    put(b, ": ", 2);
    putstr(b, value);
    put(b, "\r\n", 2);
}

#define MAX_CONN_NAMES 16

struct hop {
    struct sy_str names[MAX_CONN_NAMES];
    size_t n;
};

/* Collects the names listed in every Connection field. */
static void collect_connection(const struct sy_h1_header *h, size_t n, struct hop *hop)
{
    hop->n = 0;
    for (size_t i = 0; i < n; i++) {
        if (!sy_str_caseeq_cstr(h[i].name, "connection"))
            continue;
        size_t pos = 0;
        struct sy_str e;
        while (sy_h1_next_list_elem(h[i].value, &pos, &e))
            if (e.len && hop->n < MAX_CONN_NAMES)
                hop->names[hop->n++] = e;
    }
}

/*
 * 1 when Connection lists this field. Content-Length and Host are never
 * dropped that way: without Content-Length the peer would read the body that
 * follows as the next message (request smuggling, response desync), and
 * without Host the upstream cannot route.
 */
static int listed(const struct hop *hop, struct sy_str name)
{
    if ((name.len == 14 && sy_str_caseeq_cstr(name, "content-length")) ||
        (name.len == 4 && sy_str_caseeq_cstr(name, "host")))
        return 0;
    for (size_t i = 0; i < hop->n; i++)
        if (sy_str_caseeq(hop->names[i], name))
            return 1;
    return 0;
}

static int is_hop_by_hop(struct sy_str name)
{
    switch (name.len) {
    case 2:
        return sy_str_caseeq_cstr(name, "te");
    case 7:
        return sy_str_caseeq_cstr(name, "trailer") || sy_str_caseeq_cstr(name, "upgrade");
    case 10:
        return sy_str_caseeq_cstr(name, "connection") || sy_str_caseeq_cstr(name, "keep-alive");
    case 16:
        return sy_str_caseeq_cstr(name, "proxy-connection");
    case 17:
        return sy_str_caseeq_cstr(name, "transfer-encoding");
    case 14:
        return sy_str_caseeq_cstr(name, "http2-settings");
    default:
        return 0;
    }
}

size_t sy_build_upstream_head(struct sy_exchange *x, char *out, size_t cap)
{
    struct wbuf b = {out, 0, cap, 0};
    const struct sy_h1_request *r = &x->req;
    struct hop hop;
    collect_connection(r->headers, r->num_headers, &hop);

    putstr(&b, r->method);
    put(&b, " ", 1);
    putstr(&b, r->target);
    puts_(&b, r->minor_version == 0 ? " HTTP/1.0\r\n" : " HTTP/1.1\r\n");

    struct sy_str xff[8];
    size_t nxff = 0;
    for (size_t i = 0; i < r->num_headers; i++) {
        const struct sy_h1_header *h = &r->headers[i];
        if (x->upgrade && (sy_str_caseeq_cstr(h->name, "connection") ||
                           sy_str_caseeq_cstr(h->name, "upgrade"))) {
            put_header(&b, h->name, h->value);
            continue;
        }
        if (is_hop_by_hop(h->name) || listed(&hop, h->name))
            continue;
        if (h->name.len == 6 && sy_str_caseeq_cstr(h->name, "expect"))
            continue; /* answered by the gateway */
        if (h->name.len == 15 && sy_str_caseeq_cstr(h->name, "x-forwarded-for")) {
            if (nxff < 8 && h->value.len)
                xff[nxff++] = h->value;
            continue;
        }
        if ((h->name.len == 17 && sy_str_caseeq_cstr(h->name, "x-forwarded-proto")) ||
            (h->name.len == 16 && sy_str_caseeq_cstr(h->name, "x-forwarded-host")))
            continue;
        put_header(&b, h->name, h->value);
    }
    /* X-Forwarded-For: the received list (all fields, in order), then this client. */
    put(&b, "X-Forwarded-For: ", 17);
    for (size_t i = 0; i < nxff; i++) {
        putstr(&b, xff[i]);
        put(&b, ", ", 2);
    }
    puts_(&b, x->peer_ip);
    put(&b, "\r\n", 2);
    puts_(&b, x->https ? "X-Forwarded-Proto: https\r\n" : "X-Forwarded-Proto: http\r\n");
    if (x->rf.host)
        put_header(&b, SY_STR_LIT("X-Forwarded-Host"), x->rf.host->value);
    if (!x->reqid_in.p) {
        put(&b, "X-Request-Id: ", 14);
        puts_(&b, x->reqid);
        put(&b, "\r\n", 2);
    }
    if (x->rf.body == SY_H1_BODY_CHUNKED)
        puts_(&b, "Transfer-Encoding: chunked\r\n");
    if (r->minor_version == 0 && !x->upgrade)
        puts_(&b, "Connection: keep-alive\r\n");
    put(&b, "\r\n", 2);
    return b.overflow ? 0 : b.len;
}

const char *sy_status_reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 417: return "Expectation Failed";
    case 421: return "Misdirected Request";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}

/* Inlined into each caller, so HTTP/1.1's emit becomes a direct call. */
static inline void response_fields(const struct sy_exchange *x, const struct sy_h1_response *resp,
                                   void (*emit)(void *arg, struct sy_str name,
                                                struct sy_str value),
                                   void *arg)
{
    const struct sy_config *cfg = x->ws->snap->cfg;
    const struct sy_site_conf *site = x->route.site;
    const char *vheader = site && site->has_version ? site->version.header : NULL;
    struct hop hop;
    collect_connection(resp->headers, resp->num_headers, &hop);
    int upgrade = resp->status == 101;
    int has_sts = 0;

    for (size_t i = 0; i < resp->num_headers; i++) {
        const struct sy_h1_header *h = &resp->headers[i];
        if (upgrade && (sy_str_caseeq_cstr(h->name, "connection") ||
                        sy_str_caseeq_cstr(h->name, "upgrade"))) {
            emit(arg, h->name, h->value);
            continue;
        }
        if (is_hop_by_hop(h->name) || listed(&hop, h->name))
            continue;
        if (vheader && sy_str_caseeq_cstr(h->name, vheader))
            continue;
        if (h->name.len == 25 && sy_str_caseeq_cstr(h->name, "strict-transport-security"))
            has_sts = 1;
        emit(arg, h->name, h->value);
    }
    if (resp->status >= 200 || upgrade) {
        if (vheader && x->route.route)
            emit(arg, sy_str_make(vheader, strlen(vheader)),
                 sy_str_make(x->route.route->version, strlen(x->route.route->version)));
        if (site && site->has_version && site->version.cookie && x->route.pin != SY_PIN_KEEP) {
            char ck[512];
            size_t m = sy_route_pin_cookie(ck, sizeof(ck), site->version.cookie,
                                           x->route.route ? x->route.route->version : "",
                                           x->https, x->route.pin == SY_PIN_CLEAR);
            /* "Set-Cookie: " value "\r\n" */
            if (m > 14)
                emit(arg, SY_STR_LIT("Set-Cookie"), sy_str_make(ck + 12, m - 14));
        }
        if (x->https && cfg->tls.hsts && !has_sts)
            emit(arg, SY_STR_LIT("Strict-Transport-Security"),
                 sy_str_make(cfg->tls.hsts, strlen(cfg->tls.hsts)));
    }
}

void sy_response_fields(const struct sy_exchange *x, const struct sy_h1_response *resp,
                        void (*emit)(void *arg, struct sy_str name, struct sy_str value), void *arg)
{
    response_fields(x, resp, emit, arg);
}

static void emit_h1(void *arg, struct sy_str name, struct sy_str value)
{
    put_header(arg, name, value);
}

size_t sy_build_response_head(struct sy_conn *c, const struct sy_h1_response *resp, char *out,
                              size_t cap)
{
    struct wbuf b = {out, 0, cap, 0};
    int upgrade = resp->status == 101;

    char line[16] = "HTTP/1.1 000 ";
    line[9] = (char)('0' + resp->status / 100 % 10);
    line[10] = (char)('0' + resp->status / 10 % 10);
    line[11] = (char)('0' + resp->status % 10);
    put(&b, line, 13);
    putstr(&b, resp->reason);
    put(&b, "\r\n", 2);
    response_fields(c->x, resp, emit_h1, &b);
    if (!upgrade && resp->status >= 200) {
        if (c->resp_chunked_out)
            puts_(&b, "Transfer-Encoding: chunked\r\n");
        if (c->resp_close)
            puts_(&b, "Connection: close\r\n");
        else if (c->x->req.minor_version == 0)
            puts_(&b, "Connection: keep-alive\r\n");
    }
    put(&b, "\r\n", 2);
    return b.overflow ? 0 : b.len;
}

size_t sy_build_simple_response(char *out, size_t cap, int status, const char *extra_headers,
                                const char *body, int close)
{
    int n = snprintf(out, cap,
                     "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
                     "Content-Length: %zu\r\n%s%s\r\n%s",
                     status, sy_status_reason(status), strlen(body), extra_headers ? extra_headers : "",
                     close ? "Connection: close\r\n" : "", body);
    if (n < 0 || (size_t)n >= cap)
        return 0;
    return (size_t)n;
}
