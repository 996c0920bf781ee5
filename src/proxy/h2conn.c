/*
 * h2conn.c: the HTTP/2 client side (see h2conn.h), over libnghttp2.
 *
 * nghttp2 does the framing, HPACK and flow-control bookkeeping; this file
 * feeds it the bytes read from TLS (nghttp2_session_mem_recv), writes what it
 * serializes (nghttp2_session_mem_send) and turns each request stream into an
 * exchange. It never calls into nghttp2's receive or send path from a seam
 * callback: only the connection's pump does, so no stream or buffer the
 * exchange holds can go away under it.
 *
 * Request direction: a header block is collected per connection (blocks are
 * contiguous on the wire), checked strictly (RFC 9113 §8.2, §8.3; the
 * h2-to-h1 smuggling surface), then becomes an HTTP/1.1 request head: Host
 * from :authority, the cookie fields joined with "; ", Transfer-Encoding:
 * chunked when a body comes without content-length. DATA payload goes to the
 * stream's input buffer; in_peek() frames it as chunks when the request is
 * chunked, its trailers (checked and filtered by sy_h2_trailers_add()) in
 * the last one. A byte is acknowledged (nghttp2_session_consume, WINDOW_UPDATE)
 * only when the exchange consumed it, i.e. wrote it upstream: the stream
 * window (H2_WINDOW) is the buffer.
 *
 * Response direction: out_head() translates the response head into HEADERS;
 * out_write() takes HTTP/1.1-framed body bytes (de-chunked when chunked) into
 * the stream's output buffer, from which nghttp2's data provider pulls DATA
 * frames as the client's windows allow; a chunked answer's trailer section
 * follows them as a trailing HEADERS frame. A full output buffer makes
 * out_write() take nothing, so the exchange stops reading the upstream:
 * memory per stream is one buffer each way plus the upstream's.
 *
 * WebSockets (RFC 8441): SETTINGS_ENABLE_CONNECT_PROTOCOL is advertised; an
 * extended CONNECT becomes an Upgrade GET with a key of ours (h2.c), its 101
 * becomes :status 200 once the accept matches the key, and the exchange's
 * tunnel then moves DATA payload both ways through the same calls and the
 * same buffers; END_STREAM is the end of input, the upstream's end finish().
 *
 * Freeing: a stream that ends (nghttp2's close callback, or the connection
 * closing) goes to the worker's h2_dead list with its exchange and buffers,
 * freed by sy_h2_reap() at the end of the loop iteration.
 */
#include <errno.h>
#include <nghttp2/nghttp2.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "core/alloc.h"
#include "core/log.h"
#include "http/h2.h"
#include "proxy/conn.h"
#include "proxy/h2conn.h"
#include "tls/tls.h"

/* Receive window of a stream: the most request payload it holds before the exchange takes it. */
#define H2_WINDOW 65535
/* Room before the payload for a chunk-size line, after it for CRLF and the last chunk. */
#define IN_HEADROOM 8
#define IN_CAP (H2_WINDOW + 64)
/* The connection's receive window: every stream's, up to this. */
#define CONN_WINDOW_MAX (16u << 20)
/* Abuse budgets, per connection and per 10 s. */
#define BUDGET_MS 10000
#define MAX_CONTROL 500             /* SETTINGS, PING, PRIORITY, empty DATA */
/* After the session ended, how long the client's last bytes are read and dropped. */
#define LINGER_MS 2000
#define MAX_CONTINUATIONS 32        /* CONTINUATION frames in one header block */

/* Incremental de-chunker for response bytes already validated by the exchange. */
enum { DC_SIZE = 0, DC_EXT, DC_DATA, DC_DATA_END, DC_TRAILER, DC_TRAILER_LINE, DC_TRAILER_END,
       DC_DONE };

struct dechunk {
    int state;
    uint64_t left;
};

/* The worker's scratch array takes a translated head: its fields and the ones added. */
_Static_assert(SY_H2_MAX_FIELDS + 4 <= SY_MAX_HEADERS_CAP, "w->hdrs too small for HTTP/2");

struct sy_h2conn {
    struct sy_conn *c;
    nghttp2_session *sess;
    struct sy_list streams;        /* open streams (struct sy_h2stream.link) */
    struct sy_list ready;          /* streams whose exchange may move (.rlink) */
    struct sy_list wlink;          /* in the worker's h2_woken list: pump at the iteration's end */
    uint32_t nstreams;

    struct sy_h2_head head;        /* the header block being received */
    uint32_t ncont;                /* its CONTINUATION frames */

    /* Bytes to the client: ob[ooff, olen), then what nghttp2 gave and ob could not take. */
    char *ob;
    uint32_t ooff, olen;
    const uint8_t *pend;
    size_t npend;
    uint64_t t_write;              /* last write progress, loop ms */

    uint64_t budget_start;
    uint32_t nresets, ncontrol;
    uint64_t notice_at;            /* drain: when the shutdown notice went out */
    uint64_t t_settings;           /* when our SETTINGS went out (loop ms) */
    unsigned goaway : 1;           /* the final GOAWAY is submitted */
    unsigned notice : 1;           /* the drain's shutdown notice is submitted */
    unsigned lingering : 1, settings_acked : 1, idle : 1, calm : 1;
};

/* The PING that follows the shutdown notice: its ACK says the notice arrived. */
static const uint8_t DRAIN_PING[8] = {'s', 'y', '-', 'd', 'r', 'a', 'i', 'n'};

struct sy_h2stream {
    struct sy_list link;           /* the connection's streams, then the worker's h2_dead */
    struct sy_list rlink;          /* the connection's ready list */
    struct sy_h2conn *h;
    struct sy_worker *w;
    int32_t id;
    struct sy_exchange *x;         /* from the request's start until reaped */
    struct sy_wsnap *ws;           /* the view the exchange runs with (a reference) */
    char *head;                    /* the request head bytes: the exchange's slices point here */


    /* Request payload: ib[istart, ifend) framed and offered, [ifend, iplen) raw, not yet. */
    char *ib;
    uint32_t istart, ifend, iplen;
    uint32_t plo, phi;             /* the payload inside the framed part */
    uint64_t unconsumed;           /* payload received and not yet acknowledged */

    struct sy_h2_trailers trl;     /* the request's trailers, for the last chunk */

    /* Response payload: ob[ooff, olen) for DATA frames. */
    char *ob;
    uint32_t ooff, olen;
    struct dechunk dc;
    /* The answer's trailer section: its lines as received, then HEADERS fields. */
    char *rt;
    uint32_t rtlen;
    nghttp2_nv *tnv;
    size_t ntnv;

    uint64_t t_last;               /* last progress on the client's side of the stream */
    unsigned in_eof : 1, last_framed : 1, chunked : 1, x_over : 1, dead : 1;
    unsigned out_eof : 1, deferred : 1, rst_after : 1, submitted : 1;
    unsigned websocket : 1;        /* an extended CONNECT (RFC 8441) */
    char ws_key[SY_H2_WS_KEY_LEN]; /* the Sec-WebSocket-Key we sent upstream */
};

static const struct sy_client_ops h2_ops;

static inline uint64_t now_ms(struct sy_h2conn *h)
{
    return sy_loop_now(h->c->w->loop);
}

/* The worker's current configuration: a reload applies to the next stream and timer. */
static inline const struct sy_config *cfg_of(struct sy_h2conn *h)
{
    return sy_wsnap_get(h->c->w)->snap->cfg;
}

static inline struct sy_metrics *metrics_of(struct sy_h2conn *h)
{
    return &h->c->w->metrics;
}

static void count_defence(struct sy_h2conn *h, enum sy_h2_defence d)
{
    sy_counter_add(&metrics_of(h)->h2_defences[d], 1);
}

static void stream_ready(struct sy_h2stream *s)
{
    if (!s->dead && !sy_list_linked(&s->rlink))
        sy_list_insert_tail(&s->h->ready, &s->rlink);
}

/* ---- stream end ---- */

/* The exchange is over (answered, finished or aborted): it is not pumped again. */
static void x_over(struct sy_h2stream *s)
{
    s->x_over = 1;
    if (sy_list_linked(&s->rlink))
        sy_list_remove(&s->rlink);
}

/* The stream ended: what its exchange still runs is closed; freed at the end of the iteration. */
static void stream_dead(struct sy_h2stream *s)
{
    if (s->dead)
        return;
    if (s->x && !s->x_over)
        sy_exchange_close(s->x); /* logs it (499 when the client left first), closes upstream */
    s->x_over = 1;
    s->dead = 1;
    struct sy_h2conn *h = s->h;
    if (s->unconsumed && h->sess)
        nghttp2_session_consume_connection(h->sess, (size_t)s->unconsumed);
    s->unconsumed = 0;
    if (sy_list_linked(&s->rlink))
        sy_list_remove(&s->rlink);
    sy_list_remove(&s->link);
    sy_list_insert_tail(&s->w->h2_dead, &s->link);
    /* An idle connection keeps no field array (6 KiB) for its next header block. */
    if (--h->nstreams == 0)
        sy_h2_head_free(&h->head);
}

void sy_h2_reap(struct sy_worker *w)
{
    while (!sy_list_empty(&w->h2_dead)) {
        struct sy_h2stream *s = SY_CONTAINER_OF(w->h2_dead.next, struct sy_h2stream, link);
        sy_list_remove(&s->link);
        if (s->x)
            sy_exchange_put(s->x);
        if (s->ws)
            sy_wsnap_unref(s->ws);
        if (s->ib)
            sy_free(s->ib);
        if (s->ob)
            sy_worker_buf_put(w, s->ob);
        sy_h2_trailers_free(&s->trl);
        sy_free(s->rt);
        sy_free(s->tnv);
        sy_free(s->head);
        sy_free(s);
    }
}

/* ---- the client interface of the exchange ---- */

/*
 * Chunked request: frames the raw payload [ifend, iplen) as one chunk (its
 * size line written in the consumed room before it, CRLF after it), and the
 * last chunk with the trailer lines once the stream ended. Only called when
 * everything framed before was consumed (istart == ifend).
 */
static void frame_chunk(struct sy_h2stream *s)
{
    if (s->iplen > s->ifend) {
        char line[16];
        uint32_t n = s->iplen - s->ifend;
        int hl = snprintf(line, sizeof(line), "%x\r\n", (unsigned)n);
        memcpy(s->ib + s->ifend - hl, line, (size_t)hl);
        s->plo = s->ifend;
        s->phi = s->iplen;
        s->istart = s->ifend - (uint32_t)hl;
        memcpy(s->ib + s->iplen, "\r\n", 2);
        s->ifend = s->iplen = s->iplen + 2;
    }
    if (s->in_eof && !s->last_framed) {
        uint32_t tl = s->trl.len;
        if (tl) /* no DATA after the end: the room the window kept may grow */
            s->ib = sy_realloc(s->ib, IN_CAP + tl);
        memcpy(s->ib + s->ifend, "0\r\n", 3);
        if (tl)
            memcpy(s->ib + s->ifend + 3, s->trl.buf, tl);
        memcpy(s->ib + s->ifend + 3 + tl, "\r\n", 2);
        if (s->istart == s->ifend)
            s->plo = s->phi = s->ifend;
        s->ifend = s->iplen = s->ifend + 5 + tl;
        s->last_framed = 1;
        sy_h2_trailers_free(&s->trl);
    }
}

static void in_ensure(struct sy_h2stream *s)
{
    if (!s->ib) {
        s->ib = sy_malloc(IN_CAP);
        s->istart = s->ifend = s->iplen = s->plo = s->phi = IN_HEADROOM;
    }
}

static size_t h2_in_peek(struct sy_exchange *x, const char **p)
{
    struct sy_h2stream *s = x->client;
    if (s->chunked) {
        if (s->istart == s->ifend && (s->iplen > s->ifend || (s->in_eof && !s->last_framed))) {
            in_ensure(s);
            frame_chunk(s);
        }
        *p = s->ib ? s->ib + s->istart : NULL;
        return s->ifend - s->istart;
    }
    *p = s->ib ? s->ib + s->istart : NULL;
    return s->iplen - s->istart;
}

static void h2_in_consume(struct sy_exchange *x, size_t n)
{
    struct sy_h2stream *s = x->client;
    uint32_t from = s->istart, to = s->istart + (uint32_t)n;
    uint32_t payload = (uint32_t)n;
    if (s->chunked) {
        uint32_t lo = from > s->plo ? from : s->plo;
        uint32_t hi = to < s->phi ? to : s->phi;
        payload = hi > lo ? hi - lo : 0;
    }
    s->istart = to;
    if (s->istart == s->iplen) /* all taken: start again at the front */
        s->istart = s->ifend = s->iplen = s->plo = s->phi = IN_HEADROOM;
    if (payload) {
        s->unconsumed -= payload;
        nghttp2_session_consume(s->h->sess, s->id, payload);
    }
    s->t_last = now_ms(s->h);
}

static int h2_in_read(struct sy_exchange *x)
{
    struct sy_h2stream *s = x->client;
    /* Bytes come with the connection's reads; the end of the stream is the end of input. */
    return s->in_eof ? SY_RD_EOF : SY_RD_BLOCKED;
}

static int h2_in_full(struct sy_exchange *x)
{
    (void)x;
    return 0;
}

static void h2_send_continue(struct sy_exchange *x)
{
    struct sy_h2stream *s = x->client;
    nghttp2_nv nv = {(uint8_t *)":status", (uint8_t *)"100", 7, 3, NGHTTP2_NV_FLAG_NONE};
    nghttp2_submit_headers(s->h->sess, NGHTTP2_FLAG_NONE, s->id, NULL, &nv, 1, NULL);
}

static ssize_t data_read(nghttp2_session *sess, int32_t id, uint8_t *buf, size_t length,
                         uint32_t *flags, nghttp2_data_source *src, void *ud)
{
    (void)id;
    (void)ud;
    struct sy_h2stream *s = src->ptr;
    size_t avail = s->olen - s->ooff;
    if (!avail && !s->out_eof) {
        s->deferred = 1;
        return NGHTTP2_ERR_DEFERRED;
    }
    size_t n = avail < length ? avail : length;
    if (n) {
        memcpy(buf, s->ob + s->ooff, n);
        s->ooff += (uint32_t)n;
        if (s->ooff == s->olen)
            s->ooff = s->olen = 0;
        s->t_last = now_ms(s->h);
        if (!s->x_over)
            stream_ready(s); /* room again: the exchange may read its upstream */
    }
    if (s->out_eof && s->ooff == s->olen) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        if (s->ntnv && nghttp2_submit_trailer(sess, s->id, s->tnv, s->ntnv) == 0)
            *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
        s->ntnv = 0;
    }
    return (ssize_t)n;
}

static void resume(struct sy_h2stream *s)
{
    if (s->deferred) {
        s->deferred = 0;
        nghttp2_session_resume_data(s->h->sess, s->id);
    }
}

static void ob_ensure(struct sy_h2stream *s)
{
    if (!s->ob) {
        s->ob = sy_worker_buf_get(s->w);
        s->ooff = s->olen = 0;
    }
}

/* Lower-cased names for HPACK; values as they are. */
struct nvlist {
    nghttp2_nv *nv;
    size_t n, max;
    char *buf;
    size_t len, cap;
    int overflow;
};

static void nv_add(void *arg, struct sy_str name, struct sy_str value)
{
    struct nvlist *l = arg;
    if (l->n == l->max || l->len + name.len + value.len > l->cap) {
        l->overflow = 1;
        return;
    }
    /* Copied: some values live on the caller's stack (the pin cookie). */
    char *p = l->buf + l->len;
    for (size_t i = 0; i < name.len; i++) {
        char ch = name.p[i];
        p[i] = (ch >= 'A' && ch <= 'Z') ? (char)(ch + 32) : ch;
    }
    memcpy(p + name.len, value.p, value.len);
    l->len += name.len + value.len;
    l->nv[l->n++] = (nghttp2_nv){(uint8_t *)p, (uint8_t *)p + name.len, name.len, value.len,
                                 NGHTTP2_NV_FLAG_NONE};
}

static int submit(struct sy_h2stream *s, nghttp2_nv *nv, size_t n, int with_body)
{
    nghttp2_data_provider prd = {.source.ptr = s, .read_callback = data_read};
    s->submitted = 1;
    return nghttp2_submit_response(s->h->sess, s->id, nv, n, with_body ? &prd : NULL) == 0 ? 0
                                                                                         : -1;
}

/*
 * A 101 to an extended CONNECT becomes :status 200 (RFC 8441 §5) once its
 * Sec-WebSocket-Accept answers the key we sent; the fields of the HTTP/1.1
 * handshake stay behind.
 */
static void nv_add_ws(void *arg, struct sy_str name, struct sy_str value)
{
    if (sy_str_caseeq_cstr(name, "connection") || sy_str_caseeq_cstr(name, "upgrade") ||
        sy_str_caseeq_cstr(name, "sec-websocket-accept"))
        return;
    nv_add(arg, name, value);
}

static int h2_out_head(struct sy_exchange *x, const struct sy_h1_response *resp)
{
    struct sy_h2stream *s = x->client;
    int ws = s->websocket && resp->status == 101;
    if (ws) {
        const struct sy_h1_header *acc = sy_h1_find(resp->headers, resp->num_headers,
                                                    SY_STR_LIT("sec-websocket-accept"));
        if (!acc || !sy_h2_ws_accept_ok(s->ws_key, acc->value)) {
            sy_log_warn("h2", "upstream's Sec-WebSocket-Accept does not answer our key "
                        "(request %s)", x->reqid);
            return -1; /* 502 */
        }
    }
    nghttp2_nv nv[SY_MAX_HEADERS_CAP + 8];
    const struct sy_config *cfg = s->h->c->ws->snap->cfg;
    const struct sy_site_conf *site = x->route.site;
    size_t cap = 1024 + (cfg->tls.hsts ? strlen(cfg->tls.hsts) : 0) + /* HSTS, cookie, version */
                 (site && site->has_version ? strlen(site->version.header) : 0);
    for (size_t i = 0; i < resp->num_headers; i++)
        cap += resp->headers[i].name.len + resp->headers[i].value.len;
    int st = ws ? 200 : resp->status;
    char status[4] = {(char)('0' + st / 100 % 10), (char)('0' + st / 10 % 10),
                      (char)('0' + st % 10), 0};
    struct nvlist l = {nv, 0, sizeof(nv) / sizeof(nv[0]), sy_malloc(cap), 0, cap, 0};
    nv[l.n++] = (nghttp2_nv){(uint8_t *)":status", (uint8_t *)status, 7, 3, NGHTTP2_NV_FLAG_NONE};
    sy_response_fields(x, resp, ws ? nv_add_ws : nv_add, &l);
    int body = ws || x->sf.body != SY_H1_BODY_NONE; /* the tunnel's bytes are DATA */
    int r = l.overflow ? -1 : submit(s, nv, l.n, body);
    sy_free(l.buf);
    if (!body)
        s->out_eof = 1;
    return r;
}

static int h2_out_pending(struct sy_exchange *x)
{
    (void)x;
    return 0; /* the head went to nghttp2 whole */
}

/*
 * The answer's trailer lines, as the exchange validated them (header syntax,
 * SY_H1_TRAILERS_MAX bytes in all: the cap here only guards).
 */
static void trailer_byte(struct sy_h2stream *s, char ch)
{
    if (s->rtlen >= SY_H1_TRAILERS_MAX)
        return;
    if (!s->rt)
        s->rt = sy_malloc(SY_H1_TRAILERS_MAX);
    s->rt[s->rtlen++] = ch;
}

/*
 * The trailer section is complete: its lines become the fields of a trailing
 * HEADERS frame, names lower-cased, values without surrounding whitespace,
 * the fields no trailer may carry left out (sy_h2_trailer_allowed()), at most
 * limits.max_headers of them. data_read() submits them after the last DATA.
 */
static void trailers_ready(struct sy_h2stream *s)
{
    if (!s->rtlen)
        return;
    size_t max = cfg_of(s->h)->limits.max_headers, n = 0;
    s->tnv = sy_malloc(max * sizeof(*s->tnv));
    char *p = s->rt, *end = s->rt + s->rtlen;
    while (p < end && n < max) {
        char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol)
            break;
        char *colon = memchr(p, ':', (size_t)(eol - p));
        char *next = eol + 1;
        if (eol > p && eol[-1] == '\r')
            eol--;
        if (colon && colon > p) {
            for (char *q = p; q < colon; q++)
                if (*q >= 'A' && *q <= 'Z')
                    *q = (char)(*q + 32);
            char *v = colon + 1;
            while (v < eol && (*v == ' ' || *v == '\t'))
                v++;
            char *ve = eol;
            while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
                ve--;
            if (sy_h2_trailer_allowed(p, (size_t)(colon - p)))
                s->tnv[n++] = (nghttp2_nv){(uint8_t *)p, (uint8_t *)v, (size_t)(colon - p),
                                           (size_t)(ve - v), NGHTTP2_NV_FLAG_NONE};
        }
        p = next;
    }
    s->ntnv = n;
}

/* De-chunks validated chunked bytes into ob. Returns the input bytes taken. */
static size_t dechunk(struct sy_h2stream *s, const char *p, size_t n)
{
    struct dechunk *d = &s->dc;
    size_t i = 0;
    while (i < n) {
        char ch = p[i];
        switch (d->state) {
        case DC_SIZE:
            if (ch == ';' || ch == '\r') {
                d->state = DC_EXT;
            } else if (ch == '\n') {
                d->state = d->left ? DC_DATA : DC_TRAILER;
            } else {
                int v = ch <= '9' ? ch - '0' : (ch | 0x20) - 'a' + 10;
                d->left = d->left * 16 + (uint64_t)v;
            }
            i++;
            break;
        case DC_EXT:
            if (ch == '\n')
                d->state = d->left ? DC_DATA : DC_TRAILER;
            i++;
            break;
        case DC_DATA: {
            size_t room = SY_BUF_SIZE - s->olen;
            size_t m = n - i;
            if (m > d->left)
                m = (size_t)d->left;
            if (m > room)
                m = room;
            if (!m)
                return i; /* ob is full */
            memcpy(s->ob + s->olen, p + i, m);
            s->olen += (uint32_t)m;
            d->left -= m;
            i += m;
            if (!d->left)
                d->state = DC_DATA_END;
            break;
        }
        case DC_DATA_END:
            if (ch == '\n')
                d->state = DC_SIZE;
            i++;
            break;
        case DC_TRAILER: /* at the start of a trailer line, or the final CRLF */
            d->state = ch == '\r' ? DC_TRAILER_END : ch == '\n' ? DC_DONE : DC_TRAILER_LINE;
            if (d->state == DC_TRAILER_LINE)
                trailer_byte(s, ch);
            else if (d->state == DC_DONE)
                trailers_ready(s);
            i++;
            break;
        case DC_TRAILER_LINE:
            trailer_byte(s, ch);
            if (ch == '\n')
                d->state = DC_TRAILER;
            i++;
            break;
        case DC_TRAILER_END:
            d->state = DC_DONE;
            trailers_ready(s);
            i++;
            break;
        default:
            return n; /* nothing belongs to the message after its end */
        }
    }
    return i;
}

static ssize_t h2_out_write(struct sy_exchange *x, const char *p, size_t n)
{
    struct sy_h2stream *s = x->client;
    if (!n)
        return 0;
    ob_ensure(s);
    uint32_t before = s->olen;
    size_t taken;
    if (x->sf.body == SY_H1_BODY_CHUNKED) {
        taken = dechunk(s, p, n);
    } else {
        size_t room = SY_BUF_SIZE - s->olen;
        taken = n < room ? n : room;
        memcpy(s->ob + s->olen, p, taken);
        s->olen += (uint32_t)taken;
    }
    if (s->olen != before)
        resume(s);
    return (ssize_t)taken;
}

/* Splits "Name: value\r\n..." (the gateway's extra fields) into nv entries. */
static void extra_fields(const char *extra, struct nvlist *l)
{
    const char *p = extra;
    while (p && *p) {
        const char *eol = strstr(p, "\r\n");
        const char *colon = strchr(p, ':');
        if (!eol || !colon || colon > eol)
            break;
        const char *v = colon + 1;
        while (v < eol && *v == ' ')
            v++;
        nv_add(l, sy_str_make(p, (size_t)(colon - p)), sy_str_make(v, (size_t)(eol - v)));
        p = eol + 2;
    }
}

static void end_answer(struct sy_h2stream *s)
{
    struct sy_exchange *x = s->x;
    s->out_eof = 1;
    resume(s);
    /* The request body was not all read, or a WebSocket ended (refused, or its upstream
     * closed): the client may stop sending (RFC 9113 §8.1). */
    if ((!x->req_done || s->websocket) && !s->in_eof)
        s->rst_after = 1;
    x_over(s);
}

static int h2_respond(struct sy_exchange *x, int status, const char *extra, const char *body,
                      int close)
{
    (void)close; /* the connection goes on: only this stream ends */
    struct sy_h2stream *s = x->client;
    nghttp2_nv nv[24];
    char st[4] = {(char)('0' + status / 100 % 10), (char)('0' + status / 10 % 10),
                  (char)('0' + status % 10), 0};
    size_t blen = strlen(body);
    if (blen > SY_BUF_SIZE)
        blen = SY_BUF_SIZE; /* the gateway's answers are a line or two */
    char clen[24];
    snprintf(clen, sizeof(clen), "%zu", blen);
    size_t cap = (extra ? strlen(extra) : 0) + 128;
    struct nvlist l = {nv, 0, sizeof(nv) / sizeof(nv[0]), sy_malloc(cap), 0, cap, 0};
    nv_add(&l, SY_STR_LIT(":status"), sy_str_make(st, 3));
    nv_add(&l, SY_STR_LIT("content-type"), SY_STR_LIT("text/plain; charset=utf-8"));
    nv_add(&l, SY_STR_LIT("content-length"), sy_str_make(clen, strlen(clen)));
    extra_fields(extra, &l);
    ob_ensure(s);
    s->ooff = s->olen = 0;
    memcpy(s->ob, body, blen);
    s->olen = (uint32_t)blen;
    s->out_eof = 1;
    if (!s->submitted)
        submit(s, nv, l.n, 1);
    sy_free(l.buf);
    x->bytes_out += blen;
    sy_exchange_log(x);
    end_answer(s);
    return SY_P_PROGRESS;
}

static int h2_finish(struct sy_exchange *x)
{
    struct sy_h2stream *s = x->client;
    if (x->tunnel) {
        sy_exchange_close(x); /* the upstream ended the tunnel: END_STREAM after its bytes */
    } else {
        sy_exchange_log(x);
        sy_exchange_release_upstream(x);
    }
    end_answer(s);
    return SY_P_PROGRESS;
}

static int h2_abort(struct sy_exchange *x)
{
    struct sy_h2stream *s = x->client;
    sy_exchange_close(x);
    x_over(s);
    nghttp2_submit_rst_stream(s->h->sess, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_INTERNAL_ERROR);
    return SY_P_CLOSED;
}

/*
 * Only an extended CONNECT becomes a tunnel (Upgrade fields are refused on
 * HTTP/2 streams): its DATA goes on through in_peek/in_consume, the
 * upstream's bytes through out_write, until either side ends.
 */
static void h2_tunnel(struct sy_exchange *x)
{
    struct sy_h2stream *s = x->client;
    if (!s->websocket) {
        h2_abort(x);
        return;
    }
    stream_ready(s);
}

/*
 * An upstream socket of the stream moved. The connection is pumped once at the
 * end of the loop iteration (sy_h2_run_woken), not here: the answers of all
 * the streams whose upstreams came in the same epoll batch then leave in one
 * TLS record and one write(2), instead of one each.
 */
static void h2_wake(struct sy_exchange *x)
{
    struct sy_h2stream *s = x->client;
    if (s->dead || s->x_over)
        return;
    stream_ready(s);
    if (!sy_list_linked(&s->h->wlink))
        sy_list_insert_tail(&s->w->h2_woken, &s->h->wlink);
}

void sy_h2_run_woken(struct sy_worker *w)
{
    for (int guard = 0; !sy_list_empty(&w->h2_woken) && guard < 100000; guard++) {
        struct sy_h2conn *h = SY_CONTAINER_OF(w->h2_woken.next, struct sy_h2conn, wlink);
        sy_list_remove(&h->wlink);
        sy_conn_pump(h->c);
    }
}

static const struct sy_client_ops h2_ops = {
    .in_peek = h2_in_peek,
    .in_consume = h2_in_consume,
    .in_read = h2_in_read,
    .in_full = h2_in_full,
    .send_continue = h2_send_continue,
    .out_head = h2_out_head,
    .out_write = h2_out_write,
    .out_pending = h2_out_pending,
    .respond = h2_respond,
    .finish = h2_finish,
    .abort = h2_abort,
    .tunnel = h2_tunnel,
    .wake = h2_wake,
};

/* ---- request heads ---- */

static int on_begin_headers(nghttp2_session *sess, const nghttp2_frame *frame, void *ud)
{
    struct sy_h2conn *h = ud;
    h->ncont = 0;
    if (frame->hd.type != NGHTTP2_HEADERS)
        return 0;
    const struct sy_config *cfg = cfg_of(h);
    if (frame->headers.cat != NGHTTP2_HCAT_REQUEST) { /* trailers: as a head, and 16 KiB of lines */
        struct sy_h2stream *t = nghttp2_session_get_stream_user_data(sess, frame->hd.stream_id);
        if (t)
            sy_h2_trailers_reset(&t->trl, cfg->http2.max_header_list_size,
                                 SY_H1_TRAILERS_MAX - 2);
        return 0;
    }
    struct sy_h2stream *s = sy_calloc(1, sizeof(*s));
    s->h = h;
    s->w = h->c->w;
    s->id = frame->hd.stream_id;
    s->t_last = now_ms(h);
    sy_list_init(&s->rlink);
    sy_list_insert_tail(&h->streams, &s->link);
    h->nstreams++;
    sy_counter_add(&metrics_of(h)->h2_streams, 1);
    /* Header blocks are contiguous on the wire: one at a time per connection. */
    sy_h2_head_reset(&h->head, cfg->http2.max_header_list_size, cfg->limits.max_headers);
    nghttp2_session_set_stream_user_data(sess, s->id, s);
    return 0;
}

static int on_header(nghttp2_session *sess, const nghttp2_frame *frame, const uint8_t *name,
                     size_t nl, const uint8_t *value, size_t vl, uint8_t flags, void *ud)
{
    (void)flags;
    struct sy_h2conn *h = ud;
    if (frame->hd.type != NGHTTP2_HEADERS)
        return 0;
    int r;
    if (frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
        r = sy_h2_head_add(&h->head, name, nl, value, vl);
    } else {
        /* Counted even when nobody will read them: the size bounds hold for every block. */
        struct sy_h2stream *s = nghttp2_session_get_stream_user_data(sess, frame->hd.stream_id);
        if (!s)
            return 0;
        r = sy_h2_trailers_add(&s->trl, name, nl, value, vl);
    }
    if (r < 0) {
        sy_log_warn("h2", "client %s: header block far beyond http2.max_header_list_size; "
                    "closing the connection", h->c->peer_ip);
        count_defence(h, SY_H2_DEF_HEADER_LIST);
        nghttp2_session_terminate_session(sess, NGHTTP2_ENHANCE_YOUR_CALM);
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    return 0;
}

/* Fields nghttp2 itself finds invalid: the stream is malformed, never forwarded. */
static int on_invalid_header(nghttp2_session *sess, const nghttp2_frame *frame,
                             const uint8_t *name, size_t nl, const uint8_t *value, size_t vl,
                             uint8_t flags, void *ud)
{
    (void)sess, (void)frame, (void)name, (void)nl, (void)value, (void)vl, (void)flags, (void)ud;
    return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* RST_STREAM PROTOCOL_ERROR */
}

static void reset_stream(struct sy_h2stream *s, uint32_t code)
{
    x_over(s);
    nghttp2_submit_rst_stream(s->h->sess, NGHTTP2_FLAG_NONE, s->id, code);
}

static struct sy_exchange *stream_exchange(struct sy_h2stream *s)
{
    struct sy_conn *c = s->h->c;
    struct sy_exchange *x = sy_exchange_get(c->w);
    s->ws = sy_wsnap_get(c->w);
    s->ws->refs++;
    x->ws = s->ws;
    x->ops = &h2_ops;
    x->client = s;
    x->peer_ip = c->peer_ip;
    x->peer_port = c->peer_port;
    x->https = c->tls != NULL;
    x->h2 = 1;
    s->x = x;
    return x;
}

/* The request head is complete: refused, answered, or started as an exchange. */
static void stream_start(struct sy_h2stream *s, int end_stream)
{
    struct sy_h2conn *h = s->h;
    struct sy_h1_request req = {0};
    int chunked = 0;
    size_t head_len = h->head.len;
    s->in_eof = end_stream;
    if (h->head.protocol.set) {
        /* A fresh key per extended CONNECT: the upstream's accept must answer ours. */
        uint64_t r64[2] = {sy_worker_random(s->w), sy_worker_random(s->w)};
        uint8_t nonce[16];
        memcpy(nonce, r64, sizeof(nonce));
        sy_h2_ws_key(nonce, s->ws_key);
        memcpy(h->head.ws_key, s->ws_key, SY_H2_WS_KEY_LEN);
    }
    int r = sy_h2_head_finish(&h->head, end_stream, cfg_of(h)->limits.max_uri, &req, s->w->hdrs,
                              &s->head, &chunked);
    if (r < 0) {
        sy_log_debug("h2", "client %s stream %d: malformed request, reset", h->c->peer_ip,
                     (int)s->id);
        reset_stream(s, NGHTTP2_PROTOCOL_ERROR);
        return;
    }
    struct sy_exchange *x = stream_exchange(s);
    if (r > 0) {
        sy_exchange_reject(x, r, head_len);
        return;
    }
    s->chunked = chunked;
    s->websocket = h->head.websocket;
    x->req = req;
    if (sy_exchange_start(x, head_len) != SY_P_CLOSED && !s->x_over)
        stream_ready(s);
}

/*
 * The request's trailers ended it. A chunked request takes them in its last
 * chunk; one with content-length went upstream without chunked framing, so
 * its trailers are dropped (RFC 9110 §6.5.1 lets a recipient discard them).
 * Malformed fields reset the stream; too many bytes of them answer 431 or,
 * once the answer started, reset it.
 */
static void stream_trailers(struct sy_h2stream *s)
{
    s->in_eof = 1;
    if (s->x && !s->x_over && !s->trl.malformed && s->trl.too_big) {
        if (s->x->resp_started)
            h2_abort(s->x);
        else
            sy_exchange_answer_error(s->x, 431);
    } else if (s->trl.malformed && !s->x_over) {
        reset_stream(s, NGHTTP2_PROTOCOL_ERROR);
    }
    if (s->x_over || !s->chunked)
        sy_h2_trailers_free(&s->trl);
    stream_ready(s);
}

/* ---- other nghttp2 callbacks ---- */

/* Rapid Reset, SETTINGS/PING floods: a budget per connection and per BUDGET_MS. */
static int over_budget(struct sy_h2conn *h, int reset)
{
    uint64_t now = now_ms(h);
    if (h->calm)
        return 1; /* already over: what still arrives is neither logged nor counted again */
    if (now - h->budget_start >= BUDGET_MS) {
        h->budget_start = now;
        h->nresets = h->ncontrol = 0;
    }
    if (reset ? ++h->nresets > cfg_of(h)->http2.max_resets : ++h->ncontrol > MAX_CONTROL) {
        sy_log_warn("h2", "client %s: too many %s; closing the connection", h->c->peer_ip,
                    reset ? "stream resets" : "control frames");
        count_defence(h, reset ? SY_H2_DEF_RAPID_RESET : SY_H2_DEF_CONTROL_FLOOD);
        nghttp2_session_terminate_session(h->sess, NGHTTP2_ENHANCE_YOUR_CALM);
        h->calm = 1;
        return 1;
    }
    return 0;
}

static void final_goaway(struct sy_h2conn *h)
{
    if (h->goaway)
        return;
    h->goaway = 1;
    nghttp2_submit_goaway(h->sess, NGHTTP2_FLAG_NONE,
                          nghttp2_session_get_last_proc_stream_id(h->sess), NGHTTP2_NO_ERROR,
                          NULL, 0);
}

static int on_begin_frame(nghttp2_session *sess, const nghttp2_frame_hd *hd, void *ud)
{
    struct sy_h2conn *h = ud;
    if (hd->type == NGHTTP2_CONTINUATION && ++h->ncont > MAX_CONTINUATIONS) {
        sy_log_warn("h2", "client %s: CONTINUATION flood; closing the connection", h->c->peer_ip);
        count_defence(h, SY_H2_DEF_CONTINUATION);
        nghttp2_session_terminate_session(sess, NGHTTP2_ENHANCE_YOUR_CALM);
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    return 0;
}

static int on_frame_recv(nghttp2_session *sess, const nghttp2_frame *frame, void *ud)
{
    struct sy_h2conn *h = ud;
    struct sy_h2stream *s = frame->hd.stream_id
                                ? nghttp2_session_get_stream_user_data(sess, frame->hd.stream_id)
                                : NULL;
    int end = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
    switch (frame->hd.type) {
    case NGHTTP2_HEADERS:
        if (!s || s->dead)
            break;
        if (frame->headers.cat == NGHTTP2_HCAT_REQUEST && !s->x && !s->x_over) {
            stream_start(s, end);
        } else if (end) {
            stream_trailers(s);
        }
        break;
    case NGHTTP2_DATA:
        if (!end && frame->hd.length == 0)
            over_budget(h, 0);
        if (s && end) {
            s->in_eof = 1;
            stream_ready(s);
        }
        break;
    case NGHTTP2_RST_STREAM:
        sy_counter_add(&metrics_of(h)->h2_client_resets, 1);
        over_budget(h, 1);
        break;
    case NGHTTP2_SETTINGS:
        if (!(frame->hd.flags & NGHTTP2_FLAG_ACK))
            over_budget(h, 0);
        else
            h->settings_acked = 1;
        break;
    case NGHTTP2_PING:
        if (!(frame->hd.flags & NGHTTP2_FLAG_ACK))
            over_budget(h, 0);
        else if (h->notice && memcmp(frame->ping.opaque_data, DRAIN_PING, 8) == 0)
            final_goaway(h);
        break;
    case NGHTTP2_PRIORITY:
        over_budget(h, 0);
        break;
    default:
        break;
    }
    return 0;
}

static int on_data_chunk(nghttp2_session *sess, uint8_t flags, int32_t id, const uint8_t *data,
                         size_t len, void *ud)
{
    (void)flags;
    (void)ud;
    struct sy_h2stream *s = nghttp2_session_get_stream_user_data(sess, id);
    if (!s || s->dead || s->x_over || !s->x) {
        /* Nobody will read it: acknowledged at once. */
        nghttp2_session_consume(sess, id, len);
        return 0;
    }
    in_ensure(s);
    if (s->iplen + len + 7 > IN_CAP && s->istart > IN_HEADROOM) {
        uint32_t d = s->istart - IN_HEADROOM;
        memmove(s->ib + IN_HEADROOM, s->ib + s->istart, s->iplen - s->istart);
        s->istart -= d;
        s->ifend -= d;
        s->iplen -= d;
        s->plo = s->plo > d ? s->plo - d : IN_HEADROOM;
        s->phi = s->phi > d ? s->phi - d : IN_HEADROOM;
    }
    if (s->iplen + len + 7 > IN_CAP) { /* cannot happen within the window we announced */
        nghttp2_submit_rst_stream(sess, NGHTTP2_FLAG_NONE, id, NGHTTP2_FLOW_CONTROL_ERROR);
        nghttp2_session_consume(sess, id, len);
        return 0;
    }
    memcpy(s->ib + s->iplen, data, len);
    s->iplen += (uint32_t)len;
    s->unconsumed += len;
    s->t_last = now_ms(s->h);
    stream_ready(s);
    return 0;
}

/* The reason label of a GOAWAY we send. */
static enum sy_h2_goaway goaway_reason(struct sy_h2conn *h, uint32_t code)
{
    switch (code) {
    case NGHTTP2_NO_ERROR:
        return h->idle ? SY_H2_GOAWAY_IDLE : SY_H2_GOAWAY_DRAIN;
    case NGHTTP2_PROTOCOL_ERROR:
        return SY_H2_GOAWAY_PROTOCOL_ERROR;
    case NGHTTP2_FLOW_CONTROL_ERROR:
        return SY_H2_GOAWAY_FLOW_CONTROL_ERROR;
    case NGHTTP2_SETTINGS_TIMEOUT:
        return SY_H2_GOAWAY_SETTINGS_TIMEOUT;
    case NGHTTP2_COMPRESSION_ERROR:
        return SY_H2_GOAWAY_COMPRESSION_ERROR;
    case NGHTTP2_ENHANCE_YOUR_CALM:
        return SY_H2_GOAWAY_ENHANCE_YOUR_CALM;
    default:
        return SY_H2_GOAWAY_OTHER;
    }
}

static int on_frame_send(nghttp2_session *sess, const nghttp2_frame *frame, void *ud)
{
    struct sy_h2conn *h = ud;
    if (frame->hd.type == NGHTTP2_GOAWAY) {
        if (frame->goaway.last_stream_id != INT32_MAX) /* the drain's notice is not counted */
            sy_counter_add(&metrics_of(h)->h2_goaways[goaway_reason(h, frame->goaway.error_code)],
                           1);
        return 0;
    }
    /*
     * Streams the client made us reset (malformed requests, flow-control or
     * stream-state errors: MadeYouReset, CVE-2025-8671) cost what its own
     * resets cost, and share their budget.
     */
    if (frame->hd.type == NGHTTP2_RST_STREAM) {
        uint32_t code = frame->rst_stream.error_code;
        if (code == NGHTTP2_PROTOCOL_ERROR || code == NGHTTP2_FLOW_CONTROL_ERROR ||
            code == NGHTTP2_STREAM_CLOSED || code == NGHTTP2_FRAME_SIZE_ERROR)
            over_budget(h, 1);
        return 0;
    }
    if ((frame->hd.type == NGHTTP2_DATA || frame->hd.type == NGHTTP2_HEADERS) &&
        (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
        struct sy_h2stream *s = nghttp2_session_get_stream_user_data(sess, frame->hd.stream_id);
        if (s && s->rst_after && !s->in_eof)
            nghttp2_submit_rst_stream(sess, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_NO_ERROR);
    }
    return 0;
}

static int on_stream_close(nghttp2_session *sess, int32_t id, uint32_t code, void *ud)
{
    (void)code;
    (void)ud;
    struct sy_h2stream *s = nghttp2_session_get_stream_user_data(sess, id);
    if (s)
        stream_dead(s);
    return 0;
}

/* ---- the connection ---- */

int sy_h2_start(struct sy_conn *c)
{
    const struct sy_config *cfg = c->ws->snap->cfg;
    struct sy_h2conn *h = sy_calloc(1, sizeof(*h));
    h->c = c;
    sy_list_init(&h->streams);
    sy_list_init(&h->ready);
    sy_list_init(&h->wlink);
    h->budget_start = h->t_write = h->t_settings = sy_loop_now(c->w->loop);
    sy_counter_add(&c->w->metrics.h2_conns, 1);
    c->h2 = h;
    c->state = SY_ST_H2;

    nghttp2_session_callbacks *cb;
    nghttp2_session_callbacks_new(&cb);
    nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
    nghttp2_session_callbacks_set_on_invalid_header_callback(cb, on_invalid_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
    nghttp2_session_callbacks_set_on_frame_send_callback(cb, on_frame_send);
    nghttp2_session_callbacks_set_on_begin_frame_callback(cb, on_begin_frame);
    nghttp2_option *opt;
    nghttp2_option_new(&opt);
    nghttp2_option_set_no_auto_window_update(opt, 1);
    nghttp2_option_set_max_continuations(opt, MAX_CONTINUATIONS);
    int rv = nghttp2_session_server_new2(&h->sess, cb, h, opt);
    nghttp2_option_del(opt);
    nghttp2_session_callbacks_del(cb);
    if (rv != 0) {
        h->sess = NULL;
        sy_conn_close(c);
        return SY_P_CLOSED;
    }
    uint32_t streams = cfg->http2.max_concurrent_streams;
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, streams},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, H2_WINDOW},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, cfg->http2.max_header_list_size},
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
        {NGHTTP2_SETTINGS_ENABLE_CONNECT_PROTOCOL, 1}, /* WebSockets (RFC 8441) */
    };
    nghttp2_submit_settings(h->sess, NGHTTP2_FLAG_NONE, iv, sizeof(iv) / sizeof(iv[0]));
    uint64_t win = (uint64_t)H2_WINDOW * streams;
    if (win > CONN_WINDOW_MAX)
        win = CONN_WINDOW_MAX;
    if (win > NGHTTP2_INITIAL_CONNECTION_WINDOW_SIZE)
        nghttp2_session_set_local_window_size(h->sess, NGHTTP2_FLAG_NONE, 0, (int32_t)win);
    return SY_P_PROGRESS;
}

/* What nghttp2 has to send, into ob, then to the socket. -1 when the client is gone. */
static int flush(struct sy_h2conn *h, int *progress)
{
    struct sy_conn *c = h->c;
    for (;;) {
        if (!h->ob) {
            h->ob = sy_worker_buf_get(c->w);
            h->ooff = h->olen = 0;
        }
        while (h->olen < SY_BUF_SIZE) {
            if (!h->npend) {
                const uint8_t *p;
                ssize_t n = nghttp2_session_mem_send(h->sess, &p);
                if (n < 0)
                    return -1;
                if (n == 0)
                    break;
                h->pend = p;
                h->npend = (size_t)n;
            }
            size_t m = SY_BUF_SIZE - h->olen;
            if (m > h->npend)
                m = h->npend;
            memcpy(h->ob + h->olen, h->pend, m);
            h->olen += (uint32_t)m;
            h->pend += m;
            h->npend -= m;
        }
        if (h->ooff == h->olen) {
            sy_worker_buf_put(c->w, h->ob);
            h->ob = NULL;
            return 0;
        }
        if (!c->writable)
            return 0;
        struct iovec iov = {h->ob + h->ooff, h->olen - h->ooff};
        ssize_t n = sy__cwritev(c, &iov, 1);
        if (n == -1)
            return 0;
        if (n < 0)
            return -1;
        *progress = 1;
        h->t_write = now_ms(h);
        h->ooff += (uint32_t)n;
        if (h->ooff == h->olen)
            h->ooff = h->olen = 0;
    }
}

/* Runs the exchanges of the ready streams. */
static int pump_streams(struct sy_h2conn *h)
{
    int progress = 0;
    for (int guard = 0; !sy_list_empty(&h->ready) && guard < 10000; guard++) {
        struct sy_h2stream *s = SY_CONTAINER_OF(h->ready.next, struct sy_h2stream, rlink);
        sy_list_remove(&s->rlink);
        for (int i = 0; i < 64 && !s->x_over && s->x; i++) {
            int r = sy_exchange_pump(s->x);
            if (r != SY_P_PROGRESS)
                break;
            progress = 1;
        }
    }
    return progress;
}

static int output_blocked(struct sy_h2conn *h)
{
    return h->ob && h->olen - h->ooff >= SY_BUF_SIZE / 2 && !h->c->writable;
}

/*
 * The session is over (GOAWAY sent, every stream done): close_notify and a
 * FIN, then what the client still sends is read and dropped until it closes
 * too (or LINGER_MS), so that closing does not reset the last answers.
 */
static int end_conn(struct sy_conn *c)
{
    struct sy_h2conn *h = c->h2;
    if (c->tls)
        sy_tls_shutdown(c->tls);
    sy_loop_shutdown_wr(c->w->loop, &c->io);
    h->lingering = 1;
    c->t_client = now_ms(h);
    return sy_conn_linger(c);
}

int sy_h2_pump(struct sy_conn *c)
{
    struct sy_h2conn *h = c->h2;
    if (sy_list_linked(&h->wlink)) /* this pump runs the woken streams too */
        sy_list_remove(&h->wlink);
    if (h->lingering)
        return sy_conn_linger(c);
    for (int guard = 0; guard < 1000; guard++) {
        int progress = 0;
        /* Input, unless the client does not read what we have for it. */
        while ((c->readable || c->rlen > c->roff) && !c->rd_eof &&
               nghttp2_session_want_read(h->sess) && !output_blocked(h)) {
            const char *in;
            ssize_t n;
            if (c->rlen > c->roff) { /* cleartext: the preface was read as an HTTP/1.1 head */
                in = c->rbuf + c->roff;
                n = (ssize_t)(c->rlen - c->roff);
                c->roff = c->rlen = 0;
            } else {
                sy__rbuf_ensure(c);
                in = c->rbuf;
                n = sy__cread(c, c->rbuf, c->rcap);
            }
            if (n > 0) {
                c->t_client = now_ms(h);
                progress = 1;
                ssize_t r = nghttp2_session_mem_recv(h->sess, (const uint8_t *)in, (size_t)n);
                if (r < 0) {
                    sy_log_debug("h2", "client %s: %s", c->peer_ip, nghttp2_strerror((int)r));
                    if (r == NGHTTP2_ERR_FLOODED) {
                        count_defence(h, SY_H2_DEF_LIBRARY_FLOOD);
                        nghttp2_session_terminate_session(h->sess, NGHTTP2_ENHANCE_YOUR_CALM);
                    } else if (r == NGHTTP2_ERR_TOO_MANY_CONTINUATIONS) {
                        count_defence(h, SY_H2_DEF_CONTINUATION);
                        nghttp2_session_terminate_session(h->sess, NGHTTP2_ENHANCE_YOUR_CALM);
                    }
                    int ignored = 0;
                    flush(h, &ignored); /* a GOAWAY, when nghttp2 queued one */
                    return end_conn(c);
                }
                continue;
            }
            if (n == 0 || n == -2) {
                c->rd_eof = 1;
                break;
            }
            break;
        }
        c->roff = c->rlen = 0;
        sy__rbuf_release_if_empty(c);
        if (c->rd_eof) {
            sy_conn_close(c); /* open streams end as 499 */
            return SY_P_CLOSED;
        }
        if (sy_atomic_draining() && !h->notice)
            sy_h2_drain(c);
        if (pump_streams(h))
            progress = 1;
        if (c->state == SY_ST_CLOSED)
            return SY_P_CLOSED;
        if (flush(h, &progress) < 0) {
            sy_conn_close(c);
            return SY_P_CLOSED;
        }
        if (!nghttp2_session_want_read(h->sess) && !nghttp2_session_want_write(h->sess) &&
            !h->ob && !h->npend)
            return end_conn(c); /* GOAWAY sent and every stream done */
        if (!progress && sy_list_empty(&h->ready))
            break;
    }
    return SY_P_BLOCKED;
}

static uint64_t min64(uint64_t a, uint64_t b)
{
    return a < b ? a : b;
}

static uint64_t tunnel_last(struct sy_h2stream *s)
{
    return s->t_last > s->x->t_up ? s->t_last : s->x->t_up;
}

static int waiting_body(struct sy_h2stream *s)
{
    return !s->x->req_done && s->x->in_scanned == 0 && s->iplen == s->istart && !s->in_eof;
}

uint64_t sy_h2_deadline(struct sy_conn *c)
{
    struct sy_h2conn *h = c->h2;
    const struct sy_config *cfg = cfg_of(h);
    uint64_t d = UINT64_MAX;
    if (h->lingering)
        return c->t_client + LINGER_MS;
    if (h->notice && !h->goaway)
        d = h->notice_at + SY_DRAIN_IDLE_MS;
    if (!sy_list_empty(&h->ready))
        return now_ms(h); /* the pump yielded with work left: run it again from the timer */
    if (h->ob && h->ooff < h->olen)
        d = h->t_write + cfg->timeouts.client_body_ms;
    if (!h->settings_acked && !h->goaway)
        d = min64(d, h->t_settings + cfg->http2.settings_timeout_ms);
    if (!h->nstreams) {
        uint32_t idle = cfg->timeouts.keepalive_ms;
        if (sy_atomic_draining() && idle > SY_DRAIN_IDLE_MS)
            idle = SY_DRAIN_IDLE_MS;
        return min64(d, c->t_client + idle);
    }
    struct sy_list *n;
    for (n = h->streams.next; n != &h->streams; n = n->next) {
        struct sy_h2stream *s = SY_CONTAINER_OF(n, struct sy_h2stream, link);
        if (!s->x && !s->x_over) { /* its header block is not complete yet */
            d = min64(d, s->t_last + cfg->timeouts.client_header_ms);
            continue;
        }
        if (!s->x || s->x_over) {
            if (s->olen > s->ooff) /* our answer, waiting for the client's window */
                d = min64(d, s->t_last + cfg->timeouts.client_body_ms);
            continue;
        }
        if (s->x->tunnel) { /* both directions' idle time, as an HTTP/1.1 tunnel's */
            d = min64(d, tunnel_last(s) + cfg->timeouts.tunnel_idle_ms);
            continue;
        }
        d = min64(d, sy_exchange_deadline(s->x));
        if (s->x->connecting)
            continue;
        if (waiting_body(s) || s->olen > s->ooff)
            d = min64(d, s->t_last + cfg->timeouts.client_body_ms);
    }
    return d;
}

void sy_h2_timeout(struct sy_conn *c)
{
    struct sy_h2conn *h = c->h2;
    const struct sy_config *cfg = cfg_of(h);
    uint64_t now = now_ms(h);
    if (h->lingering) {
        sy_conn_close(c);
        return;
    }
    if (h->notice && !h->goaway && now >= h->notice_at + SY_DRAIN_IDLE_MS) {
        final_goaway(h); /* the client did not answer the PING */
        return;
    }
    if (h->ob && h->ooff < h->olen && now >= h->t_write + cfg->timeouts.client_body_ms) {
        count_defence(h, SY_H2_DEF_STALLED_READER);
        sy_conn_close(c); /* the client stopped reading the connection */
        return;
    }
    if (!h->settings_acked && !h->goaway &&
        now >= h->t_settings + cfg->http2.settings_timeout_ms) {
        sy_log_info("h2", "client %s: SETTINGS not acknowledged in time; closing the connection",
                    c->peer_ip);
        count_defence(h, SY_H2_DEF_SETTINGS_TIMEOUT);
        h->goaway = 1;
        nghttp2_session_terminate_session(h->sess, NGHTTP2_SETTINGS_TIMEOUT);
        return;
    }
    if (!h->nstreams) {
        if (!h->goaway) {
            h->goaway = 1;
            h->idle = 1;
            nghttp2_session_terminate_session(h->sess, NGHTTP2_NO_ERROR);
        } else {
            sy_conn_close(c);
        }
        return;
    }
    struct sy_list *n, *next;
    for (n = h->streams.next; n != &h->streams; n = next) {
        next = n->next;
        struct sy_h2stream *s = SY_CONTAINER_OF(n, struct sy_h2stream, link);
        if (!s->x && !s->x_over) {
            if (now >= s->t_last + cfg->timeouts.client_header_ms) {
                /* A header block left unfinished holds the whole connection. */
                count_defence(h, SY_H2_DEF_HEADER_TIMEOUT);
                nghttp2_session_terminate_session(h->sess, NGHTTP2_PROTOCOL_ERROR);
                return;
            }
            continue;
        }
        int slow = s->olen > s->ooff && now >= s->t_last + cfg->timeouts.client_body_ms;
        if (!s->x || s->x_over) {
            if (slow) {
                count_defence(h, SY_H2_DEF_STALLED_READER);
                nghttp2_submit_rst_stream(h->sess, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_CANCEL);
            }
            continue;
        }
        struct sy_exchange *x = s->x;
        if (x->tunnel) {
            if (now >= tunnel_last(s) + cfg->timeouts.tunnel_idle_ms) {
                sy_exchange_close(x); /* idle both ways: the tunnel ends */
                reset_stream(s, NGHTTP2_CANCEL);
            }
            continue;
        }
        if (x->connecting) {
            if (sy_exchange_deadline(x) <= now)
                sy_exchange_timeout(x);
        } else if (waiting_body(s) && now >= s->t_last + cfg->timeouts.client_body_ms) {
            if (!x->resp_started)
                sy_exchange_answer_error(x, 408);
            else
                h2_abort(x);
        } else if (sy_exchange_deadline(x) <= now) {
            sy_exchange_timeout(x);
        } else if (slow) {
            count_defence(h, SY_H2_DEF_STALLED_READER);
            h2_abort(x); /* this stream's reader stopped */
        }
        if (!s->x_over)
            stream_ready(s);
    }
}

/*
 * The drain is the graceful shutdown of RFC 9113 6.8: a GOAWAY with the
 * highest stream id (the notice: requests already on their way are still
 * taken), a PING, and when its ACK comes back (one round trip: whatever the
 * client sent before it saw the notice has arrived) or after
 * SY_DRAIN_IDLE_MS, the final GOAWAY naming the last stream taken. Streams
 * below it finish; the connection ends when they have.
 */
void sy_h2_drain(struct sy_conn *c)
{
    struct sy_h2conn *h = c->h2;
    if (h->notice || h->goaway)
        return;
    h->notice = 1;
    h->notice_at = now_ms(h);
    nghttp2_submit_shutdown_notice(h->sess);
    nghttp2_submit_ping(h->sess, NGHTTP2_FLAG_NONE, DRAIN_PING);
}

void sy_h2_close(struct sy_conn *c)
{
    struct sy_h2conn *h = c->h2;
    if (sy_list_linked(&h->wlink))
        sy_list_remove(&h->wlink);
    while (!sy_list_empty(&h->streams))
        stream_dead(SY_CONTAINER_OF(h->streams.next, struct sy_h2stream, link));
    if (h->ob) {
        sy_worker_buf_put(c->w, h->ob);
        h->ob = NULL;
    }
    h->npend = 0;
}

void sy_h2_free(struct sy_conn *c)
{
    struct sy_h2conn *h = c->h2;
    if (h->sess)
        nghttp2_session_del(h->sess);
    sy_h2_head_free(&h->head);
    sy_free(h);
    c->h2 = NULL;
}
