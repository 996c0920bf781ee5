/*
 * tls.c: the SSL_CTX of a config snapshot, server connections and counters.
 */
#include "tls/tls_int.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>

#include "config/config.h"
#include "core/alloc.h"
#include "core/log.h"

/*
 * Mozilla "intermediate" (v5.7): TLS 1.2 with ECDHE + AEAD only (no DHE,
 * so no DH parameters to carry), TLS 1.3 with its default suites. The
 * server's order wins (SSL_OP_CIPHER_SERVER_PREFERENCE): a client offering
 * AES-256 or ChaCha20 first still gets AES-128-GCM when it supports it, and
 * scanners (testssl.sh "Has server cipher order?") rate that as required.
 */
#define TLS12_CIPHERS                                                                            \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"                                 \
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"                                 \
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
#define TLS13_SUITES "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"
#define TLS_GROUPS "X25519:P-256:P-384"
#define SESSION_ID_CONTEXT "switchyard"
/* A ticket stays valid while its key can decrypt it (see tls_ticket.c). */
#define SESSION_TIMEOUT_S (2 * SY_TLS_TICKET_ROTATE_S)

struct sy_tls_conn {
    SSL *ssl;
    struct sy_tls *tls;
    const struct sy_tls_io_ops *ops; /* NULL: a socket BIO on the fd */
    void *arg;
    int fatal;                 /* an error happened: no close_notify, no more I/O */
    int rd_short;              /* the last read emptied the socket (or the caller's queue) */
    int rd_eof;                /* ops->read said the stream ended (BIO_CTRL_EOF) */
};

/* Handshake failure reasons, in metrics order. */
enum fail_reason {
    FAIL_PROTOCOL_VERSION = 0,
    FAIL_NO_SHARED_CIPHER,
    FAIL_HTTP_REQUEST,
    FAIL_BAD_RECORD,
    FAIL_PEER_ALERT,
    FAIL_CLOSED,
    FAIL_TIMEOUT,
    FAIL_OTHER,
    FAIL_COUNT
};

static const char *const fail_names[FAIL_COUNT] = {
    "protocol_version", "no_shared_cipher", "http_request", "bad_record",
    "peer_alert",       "closed",           "timeout",      "other",
};

/* Process-wide, relaxed: one cache line touched per handshake. */
static atomic_uint_least64_t n_handshakes, n_resumed, n_failures[FAIL_COUNT];

static void count(atomic_uint_least64_t *c)
{
    atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
}

int sy_tls_conn_h2(const struct sy_tls_conn *c)
{
    const unsigned char *p;
    unsigned int n;
    SSL_get0_alpn_selected(c->ssl, &p, &n);
    return n == 2 && p[0] == 'h' && p[1] == '2';
}

void sy_tls_sha1(const void *p, size_t n, unsigned char out[20])
{
    unsigned int len = 20;
    if (EVP_Digest(p, n, out, &len, EVP_sha1(), NULL) != 1)
        memset(out, 0, 20); /* never matches a real accept value */
}

void sy_tls_count_handshake_timeout(void)
{
    count(&n_failures[FAIL_TIMEOUT]);
}

static const unsigned char alpn_http11[] = "\x08http/1.1";
static const unsigned char alpn_h2_http11[] = "\x02h2\x08http/1.1";

/* The server's order wins: h2 when the client offers it and http2.enabled, else http/1.1. */
static int alpn_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                   const unsigned char *in, unsigned int inlen, void *arg)
{
    (void)ssl;
    const struct sy_tls *t = arg;
    unsigned char *sel;
    const unsigned char *ours = t->h2 ? alpn_h2_http11 : alpn_http11;
    unsigned int ourlen = t->h2 ? sizeof(alpn_h2_http11) - 1 : sizeof(alpn_http11) - 1;
    if (SSL_select_next_proto(&sel, outlen, ours, ourlen, in, inlen) != OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK; /* e.g. h2 only with http2 off: go on without ALPN */
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

static SSL_CTX *make_ctx(struct sy_tls *t, const long pair[2], int main_ctx)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx)
        return NULL;
    int ok = SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) == 1 &&
             SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) == 1 &&
             SSL_CTX_set_cipher_list(ctx, TLS12_CIPHERS) == 1 &&
             SSL_CTX_set_ciphersuites(ctx, TLS13_SUITES) == 1 &&
             SSL_CTX_set1_groups_list(ctx, TLS_GROUPS) == 1 &&
             SSL_CTX_set_session_id_context(ctx, (const unsigned char *)SESSION_ID_CONTEXT,
                                            sizeof(SESSION_ID_CONTEXT) - 1) == 1 &&
             SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, sy__tls_ticket_cb) == 1;
    if (!ok) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_clear_options(ctx, SSL_OP_NO_TICKET);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
    /* Read whatever the socket holds in one read(2) instead of a header read and a body read per
     * record. The caller reads until WANT_READ, so nothing is left behind in the buffer. */
    SSL_CTX_set_read_ahead(ctx, 1);
    /* Stateless tickets only: nothing to share between threads or replicas. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_timeout(ctx, SESSION_TIMEOUT_S);
    SSL_CTX_set_alpn_select_cb(ctx, alpn_cb, t);
    if (main_ctx)
        SSL_CTX_set_tlsext_servername_callback(ctx, sy__tls_sni_cb);
    if (main_ctx)
        SSL_CTX_set_tlsext_servername_arg(ctx, t);
    for (int i = 0; i < 2; i++) {
        if (pair[i] < 0)
            continue;
        const struct sy__tls_cert *c = &t->certs[pair[i]];
        if (SSL_CTX_use_cert_and_key(ctx, c->x509, c->key, c->chain, 1) != 1) {
            SSL_CTX_free(ctx);
            return NULL;
        }
    }
    return ctx;
}

static void add_pair(struct sy_tls *t, const char *host)
{
    long e, o;
    sy__tls_select(t, host, &e, &o);
    for (size_t i = 0; i < t->npairs; i++)
        if (t->pairs[i][0] == e && t->pairs[i][1] == o)
            return;
    t->pairs = sy_realloc(t->pairs, (t->npairs + 1) * sizeof(*t->pairs));
    t->pairs[t->npairs][0] = e;
    t->pairs[t->npairs][1] = o;
    t->npairs++;
}

/*
 * The selections worth a context of their own: the default one, then the one
 * of every name the certificates carry (a wildcard stands for a host that
 * only it matches). Others are served by installing certificates per
 * connection (sy__tls_sni_cb).
 */
static int make_ctxs(struct sy_tls *t)
{
    add_pair(t, NULL);
    for (size_t i = 0; i < t->ncerts; i++) {
        for (size_t k = 0; k < t->certs[i].nnames; k++) {
            const char *n = t->certs[i].names[k];
            if (n[0] == '*' && n[1] == '.') {
                char *h = sy_asprintf("sy-wildcard%s", n + 1);
                add_pair(t, h);
                sy_free(h);
            } else {
                add_pair(t, n);
            }
        }
    }
    t->ctxs = sy_calloc(t->npairs, sizeof(*t->ctxs));
    for (size_t i = 0; i < t->npairs; i++) {
        t->ctxs[i] = make_ctx(t, t->pairs[i], i == 0);
        if (!t->ctxs[i])
            return -1;
    }
    t->ctx = t->ctxs[0];
    return 0;
}

static void free_ctxs(struct sy_tls *t)
{
    for (size_t i = 0; i < t->npairs; i++)
        if (t->ctxs && t->ctxs[i])
            SSL_CTX_free(t->ctxs[i]);
    sy_free(t->ctxs);
    sy_free(t->pairs);
    t->ctxs = NULL;
    t->pairs = NULL;
    t->npairs = 0;
    t->ctx = NULL;
}

static struct sy_tls *tls_new(const struct sy_config *cfg, int initial, char **err)
{
    *err = NULL;
    if (cfg->tls.ncerts == 0 && !cfg->tls.acme.enabled) {
        if (cfg->listen_https.set)
            *err = sy_asprintf("%s:%d: listen.https is set but tls has no certificates and no acme",
                               cfg->file ? cfg->file : "(config)", cfg->listen_https.line);
        return NULL;
    }
    struct sy_tls *t = sy_calloc(1, sizeof(*t));
    atomic_init(&t->refs, 1);
    t->h2 = cfg->http2.enabled;
    if (sy__tls_certs_load(t, cfg, initial, err) < 0)
        goto fail;
    if (make_ctxs(t) < 0) {
        char why[256];
        ERR_error_string_n(ERR_peek_last_error(), why, sizeof(why));
        ERR_clear_error();
        *err = sy_asprintf("%s:%d: cannot set up TLS: %s", cfg->file ? cfg->file : "(config)",
                           cfg->listen_https.line, why);
        goto fail;
    }
    return t;
fail:
    free_ctxs(t);
    sy__tls_certs_free(t);
    sy_free(t);
    return NULL;
}

struct sy_tls *sy_tls_new(const struct sy_config *cfg, char **err)
{
    return tls_new(cfg, 0, err);
}

struct sy_tls *sy_tls_new_initial(const struct sy_config *cfg, char **err)
{
    return tls_new(cfg, 1, err);
}

void sy_tls_ref(struct sy_tls *t)
{
    atomic_fetch_add_explicit(&t->refs, 1, memory_order_relaxed);
}

void sy_tls_unref(struct sy_tls *t)
{
    if (!t || atomic_fetch_sub_explicit(&t->refs, 1, memory_order_acq_rel) != 1)
        return;
    free_ctxs(t);
    sy__tls_certs_free(t);
    sy_free(t);
}

size_t sy_tls_cert_count(const struct sy_tls *t)
{
    return t ? t->ncerts : 0;
}

/*
 * Watches the socket BIO's reads: a read(2) that returned less than OpenSSL
 * asked for (with read-ahead, the free room of its record buffer) or nothing
 * at all left the socket empty. sy_tls_drained() uses it to spare the caller
 * one more SSL_read() that would only end in EAGAIN.
 */
static long watch_reads(BIO *b, int oper, const char *argp, size_t len, int argi, long argl, int ret,
                        size_t *processed)
{
    (void)argp;
    (void)argi;
    (void)argl;
    if (oper == (BIO_CB_READ | BIO_CB_RETURN)) {
        struct sy_tls_conn *c = (struct sy_tls_conn *)BIO_get_callback_arg(b);
        c->rd_short = ret <= 0 || !processed || *processed < len;
    }
    return ret;
}

struct sy_tls_conn *sy_tls_conn_new(struct sy_tls *t, int fd)
{
    SSL *ssl = SSL_new(t->ctx);
    if (!ssl || SSL_set_fd(ssl, fd) != 1) {
        SSL_free(ssl);
        ERR_clear_error();
        return NULL;
    }
    SSL_set_accept_state(ssl);
    struct sy_tls_conn *c = sy_calloc(1, sizeof(*c));
    BIO *rbio = SSL_get_rbio(ssl);
    BIO_set_callback_arg(rbio, (char *)c);
    BIO_set_callback_ex(rbio, watch_reads);
    c->ssl = ssl;
    c->tls = t;
    sy_tls_ref(t);
    return c;
}

/*
 * The BIO of sy_tls_conn_new_io: a source/sink whose reads and writes are the
 * caller's callbacks. OpenSSL's record layer reads its records straight out
 * of the caller's receive queue (under completion I/O, the provided buffers
 * the kernel filled) and writes them straight into the caller's send buffer:
 * one copy each way, as with read(2)/write(2), where a pair of memory BIOs
 * would add a second. Its flags mean what the socket BIO's mean, so
 * SSL_get_error() gives WANT_READ on "nothing yet", WANT_WRITE on "full",
 * SSL_ERROR_SYSCALL on an error (classified "closed", as a reset socket is),
 * and an end of stream is the socket's EOF (BIO_CTRL_EOF: SY_TLS_CLOSED).
 */
static int io_bio_read(BIO *b, char *buf, size_t len, size_t *readbytes)
{
    struct sy_tls_conn *c = BIO_get_data(b);
    int drained = 0;
    BIO_clear_retry_flags(b);
    *readbytes = 0;
    ssize_t n = c->ops->read(c->arg, buf, len, &drained);
    c->rd_short = n <= 0 || drained;
    if (n > 0) {
        *readbytes = (size_t)n;
        return 1;
    }
    if (n == -1) {
        BIO_set_retry_read(b);
    } else if (n == 0) {
        c->rd_eof = 1;
    } else {
        ERR_raise_data(ERR_LIB_SYS, errno, "reading from the connection");
    }
    return 0;
}

static int io_bio_write(BIO *b, const char *buf, size_t len, size_t *written)
{
    struct sy_tls_conn *c = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    *written = 0;
    if (len == 0)
        return 1;
    ssize_t n = c->ops->write(c->arg, buf, len);
    if (n > 0) {
        *written = (size_t)n;
        return 1;
    }
    if (n == -1)
        BIO_set_retry_write(b);
    else
        ERR_raise_data(ERR_LIB_SYS, errno, "writing to the connection");
    return 0;
}

static long io_bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)num;
    (void)ptr;
    const struct sy_tls_conn *c = BIO_get_data(b);
    switch (cmd) {
    case BIO_CTRL_FLUSH:
        return 1; /* the bytes written are the caller's to send */
    case BIO_CTRL_EOF:
        return c && c->rd_eof;
    case BIO_CTRL_PUSH:
    case BIO_CTRL_POP:
        return 0; /* a buffering BIO put in front of it for the handshake: nothing to do */
    default:
        return 0; /* no pending bytes, no kTLS, no close flag: the caller owns the socket */
    }
}

static BIO_METHOD *io_method;
static pthread_once_t io_method_once = PTHREAD_ONCE_INIT;

/* Made once per process, by whichever worker needs it first; kept until exit. */
static void io_method_make(void)
{
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "switchyard io");
    if (!m)
        return;
    if (BIO_meth_set_read_ex(m, io_bio_read) != 1 || BIO_meth_set_write_ex(m, io_bio_write) != 1 ||
        BIO_meth_set_ctrl(m, io_bio_ctrl) != 1) {
        BIO_meth_free(m);
        return;
    }
    io_method = m;
}

struct sy_tls_conn *sy_tls_conn_new_io(struct sy_tls *t, const struct sy_tls_io_ops *ops,
                                       void *arg)
{
    pthread_once(&io_method_once, io_method_make);
    SSL *ssl = io_method ? SSL_new(t->ctx) : NULL;
    BIO *bio = ssl ? BIO_new(io_method) : NULL;
    if (!bio) {
        SSL_free(ssl);
        ERR_clear_error();
        return NULL;
    }
    struct sy_tls_conn *c = sy_calloc(1, sizeof(*c));
    c->ssl = ssl;
    c->tls = t;
    c->ops = ops;
    c->arg = arg;
    BIO_set_data(bio, c);
    BIO_set_init(bio, 1);
    SSL_set_bio(ssl, bio, bio); /* one reference, for both directions */
    SSL_set_accept_state(ssl);
    sy_tls_ref(t);
    return c;
}

void sy_tls_conn_free(struct sy_tls_conn *c)
{
    if (!c)
        return;
    SSL_free(c->ssl);
    sy_tls_unref(c->tls);
    sy_free(c);
}

static enum fail_reason classify(int ssl_err)
{
    if (ssl_err == SSL_ERROR_ZERO_RETURN || ssl_err == SSL_ERROR_SYSCALL)
        return FAIL_CLOSED;
    unsigned long e = ERR_peek_last_error();
    if (ERR_GET_LIB(e) != ERR_LIB_SSL)
        return FAIL_OTHER;
    int r = ERR_GET_REASON(e);
    if (r >= SSL_AD_REASON_OFFSET)
        return FAIL_PEER_ALERT; /* SSL_R_SSLV3_ALERT_* and SSL_R_TLSV1_ALERT_* */
    switch (r) {
    case SSL_R_UNSUPPORTED_PROTOCOL:
    case SSL_R_VERSION_TOO_LOW:
    case SSL_R_VERSION_TOO_HIGH:
    case SSL_R_WRONG_SSL_VERSION:
    case SSL_R_UNKNOWN_PROTOCOL:
    case SSL_R_INAPPROPRIATE_FALLBACK:
    case SSL_R_UNSUPPORTED_SSL_VERSION:
        return FAIL_PROTOCOL_VERSION;
    case SSL_R_NO_SHARED_CIPHER:
    case SSL_R_NO_SHARED_GROUPS:
    case SSL_R_NO_SUITABLE_KEY_SHARE:
    case SSL_R_NO_SHARED_SIGNATURE_ALGORITHMS:
    case SSL_R_NO_SUITABLE_SIGNATURE_ALGORITHM:
    case SSL_R_NO_CIPHERS_AVAILABLE:
        return FAIL_NO_SHARED_CIPHER;
    case SSL_R_HTTP_REQUEST:
    case SSL_R_HTTPS_PROXY_REQUEST:
        return FAIL_HTTP_REQUEST;
    case SSL_R_WRONG_VERSION_NUMBER:
    case SSL_R_PACKET_LENGTH_TOO_LONG:
    case SSL_R_RECORD_LENGTH_MISMATCH:
    case SSL_R_UNEXPECTED_MESSAGE:
    case SSL_R_UNEXPECTED_RECORD:
    case SSL_R_LENGTH_MISMATCH:
    case SSL_R_BAD_PACKET_LENGTH:
    case SSL_R_LENGTH_TOO_SHORT:
    case SSL_R_BAD_PACKET:
    case SSL_R_BAD_EXTENSION:
    case SSL_R_BAD_LENGTH:
    case SSL_R_DECRYPTION_FAILED_OR_BAD_RECORD_MAC:
    case SSL_R_ENCRYPTED_LENGTH_TOO_LONG:
    case SSL_R_EXCESSIVE_MESSAGE_SIZE:
        return FAIL_BAD_RECORD;
    case SSL_R_UNEXPECTED_EOF_WHILE_READING:
        return FAIL_CLOSED;
    default:
        return FAIL_OTHER;
    }
}

int sy_tls_handshake(struct sy_tls_conn *c)
{
    if (c->fatal)
        return SY_TLS_ERROR;
    ERR_clear_error();
    int r = SSL_do_handshake(c->ssl);
    if (r == 1) {
        count(&n_handshakes);
        if (SSL_session_reused(c->ssl))
            count(&n_resumed);
        return SY_TLS_DONE;
    }
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ)
        return SY_TLS_WANT_READ;
    if (e == SSL_ERROR_WANT_WRITE)
        return SY_TLS_WANT_WRITE;
    enum fail_reason why = classify(e);
    count(&n_failures[why]);
    if (sy_log_level >= SY_LOG_DEBUG) {
        char buf[256];
        ERR_error_string_n(ERR_peek_last_error(), buf, sizeof(buf));
        sy_log_debug("tls", "handshake failed (%s): %s", fail_names[why], buf);
    }
    ERR_clear_error();
    c->fatal = 1;
    return SY_TLS_ERROR;
}

/* Maps a failed SSL_read_ex/SSL_write_ex. */
static ssize_t io_fail(struct sy_tls_conn *c, int r, int *io)
{
    int e = SSL_get_error(c->ssl, r);
    switch (e) {
    case SSL_ERROR_WANT_READ:
        *io = SY_TLS_WANT_READ;
        return -1;
    case SSL_ERROR_WANT_WRITE:
        *io = SY_TLS_WANT_WRITE;
        return -1;
    case SSL_ERROR_ZERO_RETURN:
        *io = SY_TLS_CLOSED;
        return 0;
    default:
        ERR_clear_error();
        c->fatal = 1;
        *io = SY_TLS_ERROR;
        return -1;
    }
}

ssize_t sy_tls_read(struct sy_tls_conn *c, void *buf, size_t len, int *io)
{
    size_t n = 0;
    if (c->fatal || len == 0) {
        *io = c->fatal ? SY_TLS_ERROR : SY_TLS_DONE;
        return c->fatal ? -1 : 0;
    }
    ERR_clear_error();
    int r = SSL_read_ex(c->ssl, buf, len, &n);
    if (r == 1) {
        *io = SY_TLS_DONE;
        return (ssize_t)n;
    }
    return io_fail(c, r, io);
}

size_t sy_tls_pending(const struct sy_tls_conn *c)
{
    int n = SSL_pending(c->ssl);
    return n > 0 ? (size_t)n : 0;
}

int sy_tls_drained(const struct sy_tls_conn *c)
{
    return c->rd_short && !SSL_has_pending(c->ssl);
}

ssize_t sy_tls_write(struct sy_tls_conn *c, const void *buf, size_t len, int *io)
{
    size_t n = 0;
    if (c->fatal || len == 0) {
        *io = c->fatal ? SY_TLS_ERROR : SY_TLS_DONE;
        return c->fatal ? -1 : 0;
    }
    ERR_clear_error();
    int r = SSL_write_ex(c->ssl, buf, len, &n);
    if (r == 1) {
        *io = SY_TLS_DONE;
        return (ssize_t)n;
    }
    ssize_t rc = io_fail(c, r, io);
    if (rc == 0) { /* the peer closed: nothing more can be written */
        *io = SY_TLS_CLOSED;
        return 0;
    }
    return rc;
}

int sy_tls_shutdown(struct sy_tls_conn *c)
{
    if (c->fatal || !SSL_is_init_finished(c->ssl))
        return SY_TLS_DONE;
    if (SSL_get_shutdown(c->ssl) & SSL_SENT_SHUTDOWN)
        return SY_TLS_DONE;
    ERR_clear_error();
    int r = SSL_shutdown(c->ssl);
    if (r >= 0)
        return SY_TLS_DONE; /* 0: sent, the peer's close_notify is not awaited */
    int e = SSL_get_error(c->ssl, r);
    ERR_clear_error();
    if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ)
        return SY_TLS_WANT_WRITE;
    c->fatal = 1;
    return SY_TLS_ERROR;
}

const char *sy_tls_conn_sni(const struct sy_tls_conn *c)
{
    return SSL_get_servername(c->ssl, TLSEXT_NAMETYPE_host_name);
}

const char *sy_tls_conn_version(const struct sy_tls_conn *c)
{
    return SSL_get_version(c->ssl);
}

/* snprintf-style appender: len counts everything, buf holds what fits. */
struct out {
    char *buf;
    size_t cap, len;
};

__attribute__((format(printf, 2, 3))) static void put(struct out *o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *dst = o->len < o->cap ? o->buf + o->len : NULL;
    size_t room = o->len < o->cap ? o->cap - o->len : 0;
    int n = vsnprintf(dst, room, fmt, ap);
    va_end(ap);
    if (n > 0)
        o->len += (size_t)n;
}

/* A Prometheus label value: backslash, double quote and newline escaped. */
static void put_label(struct out *o, const char *s)
{
    for (; *s; s++) {
        if (*s == '\\' || *s == '"')
            put(o, "\\%c", *s);
        else if (*s == '\n')
            put(o, "\\n");
        else
            put(o, "%c", *s);
    }
}

static uint64_t load(atomic_uint_least64_t *c)
{
    return atomic_load_explicit(c, memory_order_relaxed);
}

size_t sy_tls_metrics(const struct sy_tls *t, char *buf, size_t cap)
{
    struct out o = {buf, cap, 0};
    if (cap)
        buf[0] = '\0';
    put(&o, "# HELP switchyard_tls_handshakes_total TLS handshakes completed.\n"
            "# TYPE switchyard_tls_handshakes_total counter\n"
            "switchyard_tls_handshakes_total %llu\n",
        (unsigned long long)load(&n_handshakes));
    put(&o, "# HELP switchyard_tls_resumed_handshakes_total TLS handshakes that resumed a "
            "session.\n"
            "# TYPE switchyard_tls_resumed_handshakes_total counter\n"
            "switchyard_tls_resumed_handshakes_total %llu\n",
        (unsigned long long)load(&n_resumed));
    put(&o, "# HELP switchyard_tls_handshake_failures_total TLS handshakes that failed, by "
            "reason.\n"
            "# TYPE switchyard_tls_handshake_failures_total counter\n");
    for (int i = 0; i < FAIL_COUNT; i++)
        put(&o, "switchyard_tls_handshake_failures_total{reason=\"%s\"} %llu\n", fail_names[i],
            (unsigned long long)load(&n_failures[i]));
    if (t && t->ncerts) {
        put(&o, "# HELP switchyard_tls_certificate_expiry_timestamp_seconds End of validity of "
                "each served certificate (Unix time).\n"
                "# TYPE switchyard_tls_certificate_expiry_timestamp_seconds gauge\n");
        for (size_t i = 0; i < t->ncerts; i++) {
            const struct sy__tls_cert *c = &t->certs[i];
            put(&o, "switchyard_tls_certificate_expiry_timestamp_seconds{cert=\"");
            put_label(&o, c->label);
            put(&o, "\",subject=\"");
            put_label(&o, c->subject);
            put(&o, "\",serial=\"%s\"} %lld\n", c->serial, (long long)c->not_after);
        }
    }
    if (cap && o.len >= cap)
        buf[cap - 1] = '\0';
    return o.len;
}
