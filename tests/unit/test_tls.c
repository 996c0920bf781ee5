/*
 * test_tls.c: src/tls/ against a real OpenSSL client over a socketpair.
 * Certificates (a test CA and its leaves) are made here, at test time.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "config/config.h"
#include "core/alloc.h"
#include "tls/tls.h"
#include "tls/tls_int.h"

#define CONF_FILE "/etc/switchyard/switchyard.yaml"
#define DAY 86400L

static char dir[64];
static EVP_PKEY *ca_key;
static X509 *ca;

static void setup(void)
{
    signal(SIGPIPE, SIG_IGN);
    snprintf(dir, sizeof(dir), "/tmp/sy-tls-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    ca_key = EVP_EC_gen("P-256");
    ca = X509_new();
    X509_set_version(ca, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(ca), 1000);
    X509_gmtime_adj(X509_getm_notBefore(ca), -DAY);
    X509_gmtime_adj(X509_getm_notAfter(ca), 30 * DAY);
    X509_NAME *n = X509_get_subject_name(ca);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"Test CA", -1, -1, 0);
    X509_set_issuer_name(ca, n);
    X509_set_pubkey(ca, ca_key);
    X509_EXTENSION *ext =
        X509V3_EXT_conf_nid(NULL, NULL, NID_basic_constraints, "critical,CA:TRUE");
    X509_add_ext(ca, ext, -1);
    X509_EXTENSION_free(ext);
    cr_assert(X509_sign(ca, ca_key, EVP_sha256()) > 0);
}

static void free_certs(void);

static void teardown(void)
{
    free_certs();
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
    X509_free(ca);
    EVP_PKEY_free(ca_key);
}

TestSuite(tls, .init = setup, .fini = teardown, .timeout = 60);

static char *path(const char *name)
{
    return sy_asprintf("%s/%s", dir, name);
}

/* A leaf signed by the test CA. sans: comma-separated "DNS:x" list or NULL. */
static X509 *leaf(EVP_PKEY *key, const char *cn, const char *sans, long serial, long from,
                  long to)
{
    X509 *x = X509_new();
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial);
    X509_gmtime_adj(X509_getm_notBefore(x), from);
    X509_gmtime_adj(X509_getm_notAfter(x), to);
    X509_NAME *n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, X509_get_subject_name(ca));
    X509_set_pubkey(x, key);
    if (sans) {
        X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, NULL, NID_subject_alt_name, sans);
        cr_assert_not_null(ext);
        X509_add_ext(x, ext, -1);
        X509_EXTENSION_free(ext);
    }
    cr_assert(X509_sign(x, ca_key, EVP_sha256()) > 0);
    return x;
}

static void write_cert(const char *file, X509 *x)
{
    FILE *f = fopen(file, "w");
    cr_assert_not_null(f);
    PEM_write_X509(f, x);
    PEM_write_X509(f, ca); /* full chain */
    fclose(f);
}

static void write_key(const char *file, EVP_PKEY *k)
{
    FILE *f = fopen(file, "w");
    cr_assert_not_null(f);
    PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL);
    fclose(f);
}

/* Writes <name>.crt and <name>.key and returns the config entry. */
static struct sy_tls_cert_conf pair(const char *name, int ec, const char *cn, const char *sans,
                                    long serial, int line)
{
    EVP_PKEY *k = ec ? EVP_EC_gen("P-256") : EVP_RSA_gen(2048);
    cr_assert_not_null(k);
    X509 *x = leaf(k, cn, sans, serial, -DAY, 30 * DAY);
    struct sy_tls_cert_conf c = {.line = line};
    char *base = path(name);
    c.cert = sy_asprintf("%s.crt", base);
    c.key = sy_asprintf("%s.key", base);
    sy_free(base);
    write_cert(c.cert, x);
    write_key(c.key, k);
    X509_free(x);
    EVP_PKEY_free(k);
    return c;
}

static struct sy_tls_cert_conf certs[8];
static struct sy_config cfg;

static void cert_conf_free(struct sy_tls_cert_conf *c)
{
    sy_free(c->cert);
    sy_free(c->key);
    c->cert = c->key = NULL;
}

static void free_certs(void)
{
    for (size_t i = 0; i < sizeof(certs) / sizeof(certs[0]); i++)
        cert_conf_free(&certs[i]);
}

static void use_certs(size_t n)
{
    memset(&cfg, 0, sizeof(cfg));
    cfg.file = CONF_FILE;
    cfg.listen_https.set = 1;
    cfg.listen_https.line = 3;
    cfg.tls.certs = certs;
    cfg.tls.ncerts = n;
}

static struct sy_tls *tls_ok(void)
{
    char *err = NULL;
    struct sy_tls *t = sy_tls_new(&cfg, &err);
    cr_assert_not_null(t, "sy_tls_new: %s", err ? err : "(null)");
    cr_assert_null(err);
    return t;
}

static char *tls_err(void)
{
    char *err = NULL;
    struct sy_tls *t = sy_tls_new(&cfg, &err);
    cr_assert_null(t);
    cr_assert_not_null(err);
    return err;
}

/* ---- client side ---- */

static SSL_CTX *client_ctx(void)
{
    SSL_CTX *c = SSL_CTX_new(TLS_client_method());
    cr_assert_not_null(c);
    X509_STORE_add_cert(SSL_CTX_get_cert_store(c), ca);
    SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_CLIENT);
    return c;
}

/*
 * The ciphertext of a sy_tls_conn_new_io connection, moved over the server
 * end of the socket pair the way the event loop's completion I/O moves it:
 * reads say "drained" when nothing is left after them, writes take at most
 * wcap bytes a call (0: "full"), and either can be made to fail.
 */
struct pipe_io {
    int fd;
    size_t wcap;
    int fail_read, fail_write; /* errno to fail with, 0: none */
    int reads, writes;         /* calls */
};

static ssize_t pipe_read(void *arg, char *buf, size_t len, int *drained)
{
    struct pipe_io *p = arg;
    p->reads++;
    if (p->fail_read) {
        errno = p->fail_read;
        return -2;
    }
    ssize_t n = recv(p->fd, buf, len, MSG_DONTWAIT);
    if (n < 0 && errno == EAGAIN) {
        *drained = 1;
        return -1;
    }
    int left = 0;
    if (n > 0 && ioctl(p->fd, FIONREAD, &left) == 0 && left == 0)
        *drained = 1;
    return n < 0 ? -2 : n;
}

static ssize_t pipe_write(void *arg, const char *buf, size_t len)
{
    struct pipe_io *p = arg;
    p->writes++;
    if (p->fail_write) {
        errno = p->fail_write;
        return -2;
    }
    if (!p->wcap)
        return -1;
    ssize_t n = send(p->fd, buf, len < p->wcap ? len : p->wcap, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n < 0)
        return errno == EAGAIN ? -1 : -2;
    return n;
}

static const struct sy_tls_io_ops pipe_ops = {pipe_read, pipe_write};

/* 1: links and raw handshakes use sy_tls_conn_new_io (each test runs in its own process). */
static int via_io;

static struct sy_tls_conn *server_conn(struct sy_tls *t, int fd, struct pipe_io *p)
{
    if (!via_io)
        return sy_tls_conn_new(t, fd);
    memset(p, 0, sizeof(*p));
    p->fd = fd;
    p->wcap = 1000; /* a record is taken in several pieces */
    return sy_tls_conn_new_io(t, &pipe_ops, p);
}

struct link {
    int fd[2];
    SSL *cli;
    struct sy_tls_conn *srv;
    int server_rc;
    struct pipe_io pio;        /* via_io */
};

static void link_open(struct link *l, struct sy_tls *t, SSL_CTX *cctx, const char *sni,
                      SSL_SESSION *sess)
{
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, l->fd), 0);
    for (int i = 0; i < 2; i++)
        fcntl(l->fd[i], F_SETFL, O_NONBLOCK);
    l->cli = SSL_new(cctx);
    SSL_set_fd(l->cli, l->fd[0]);
    SSL_set_connect_state(l->cli);
    if (sni)
        SSL_set_tlsext_host_name(l->cli, sni);
    if (sess)
        SSL_set_session(l->cli, sess);
    l->srv = server_conn(t, l->fd[1], &l->pio);
    cr_assert_not_null(l->srv);
}

/* Runs both ends until both finish or one fails. Returns 1 when both completed. */
static int link_handshake(struct link *l)
{
    int cdone = 0, sdone = 0;
    for (int i = 0; i < 1000 && !(cdone && sdone); i++) {
        if (!cdone) {
            int r = SSL_do_handshake(l->cli);
            if (r == 1) {
                cdone = 1;
            } else {
                int e = SSL_get_error(l->cli, r);
                if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
                    cdone = -1;
            }
        }
        if (!sdone) {
            l->server_rc = sy_tls_handshake(l->srv);
            if (l->server_rc == SY_TLS_DONE)
                sdone = 1;
            else if (l->server_rc == SY_TLS_ERROR)
                sdone = -1;
        }
        if (cdone < 0 || sdone < 0)
            break;
    }
    ERR_clear_error();
    return cdone == 1 && sdone == 1;
}

static void link_close(struct link *l)
{
    /* A client SSL freed without close_notify marks its session not resumable. */
    if (SSL_is_init_finished(l->cli))
        SSL_shutdown(l->cli);
    ERR_clear_error();
    SSL_free(l->cli);
    sy_tls_conn_free(l->srv);
    close(l->fd[0]);
    close(l->fd[1]);
}

/* Server sends bytes so that the client also reads the TLS 1.3 tickets. */
static SSL_SESSION *link_session(struct link *l)
{
    int io;
    cr_assert_eq(sy_tls_write(l->srv, "ping", 4, &io), 4);
    char buf[16];
    size_t n = 0;
    for (int i = 0; i < 100 && n == 0; i++)
        if (SSL_read_ex(l->cli, buf, sizeof(buf), &n) != 1)
            n = 0;
    cr_assert_eq(n, 4);
    SSL_SESSION *s = SSL_get1_session(l->cli);
    cr_assert_not_null(s);
    cr_assert(SSL_SESSION_is_resumable(s));
    return s;
}

static long peer_serial(struct link *l)
{
    X509 *x = SSL_get1_peer_certificate(l->cli);
    cr_assert_not_null(x);
    long s = ASN1_INTEGER_get(X509_get0_serialNumber(x));
    X509_free(x);
    return s;
}

/* Handshake with SNI, returns the serial the server presented. */
static long serial_for(struct sy_tls *t, SSL_CTX *cctx, const char *sni)
{
    struct link l;
    link_open(&l, t, cctx, sni, NULL);
    cr_assert(link_handshake(&l), "handshake for %s", sni ? sni : "(no SNI)");
    long s = peer_serial(&l);
    link_close(&l);
    return s;
}

static char *metrics(const struct sy_tls *t)
{
    size_t need = sy_tls_metrics(t, NULL, 0);
    char *buf = sy_malloc(need + 1);
    cr_assert_eq(sy_tls_metrics(t, buf, need + 1), need);
    cr_assert_eq(strlen(buf), need);
    return buf;
}

/* ---- selection ---- */

Test(tls, sni_picks_the_certificate)
{
    certs[0] = pair("a", 1, "a.example.org", "DNS:a.example.org", 1, 10);
    certs[1] = pair("b", 1, "b.example.org", "DNS:b.example.org,DNS:b2.example.org", 2, 11);
    use_certs(2);
    struct sy_tls *t = tls_ok();
    SSL_CTX *c = client_ctx();
    cr_assert_eq(serial_for(t, c, "a.example.org"), 1);
    cr_assert_eq(serial_for(t, c, "b.example.org"), 2);
    cr_assert_eq(serial_for(t, c, "B2.Example.ORG"), 2);

    struct link l;
    link_open(&l, t, c, "b.example.org", NULL);
    cr_assert(link_handshake(&l));
    cr_assert_str_eq(sy_tls_conn_sni(l.srv), "b.example.org");
    cr_assert_str_eq(sy_tls_conn_version(l.srv), "TLSv1.3");
    cr_assert_eq(SSL_get_verify_result(l.cli), X509_V_OK);
    link_close(&l);
    SSL_CTX_free(c);
    sy_tls_unref(t);
}

Test(tls, wildcard_covers_exactly_one_label)
{
    cr_assert_eq(sy__tls_name_match("*.example.org", "x.example.org"), 1);
    cr_assert_eq(sy__tls_name_match("*.example.org", "X.EXAMPLE.org"), 1);
    cr_assert_eq(sy__tls_name_match("*.example.org", "y.x.example.org"), 0);
    cr_assert_eq(sy__tls_name_match("*.example.org", "example.org"), 0);
    cr_assert_eq(sy__tls_name_match("*.example.org", ".example.org"), 0);
    cr_assert_eq(sy__tls_name_match("a.example.org", "A.example.org"), 2);
    cr_assert_eq(sy__tls_name_match("f*.example.org", "foo.example.org"), 0);

    certs[0] = pair("a", 1, "a.example.org", "DNS:a.example.org", 1, 10);
    certs[1] = pair("w", 1, "wild", "DNS:*.example.org", 3, 11);
    use_certs(2);
    struct sy_tls *t = tls_ok();
    SSL_CTX *c = client_ctx();
    cr_assert_eq(serial_for(t, c, "x.example.org"), 3);
    cr_assert_eq(serial_for(t, c, "a.example.org"), 1, "an exact name wins over a wildcard");
    cr_assert_eq(serial_for(t, c, "y.x.example.org"), 1, "two labels: the default");
    cr_assert_eq(serial_for(t, c, "example.org"), 1);
    SSL_CTX_free(c);
    sy_tls_unref(t);
}

Test(tls, default_is_the_first_certificate)
{
    certs[0] = pair("b", 1, "b.example.org", "DNS:b.example.org", 7, 10);
    certs[1] = pair("a", 1, "a.example.org", "DNS:a.example.org", 8, 11);
    use_certs(2);
    struct sy_tls *t = tls_ok();
    SSL_CTX *c = client_ctx();
    cr_assert_eq(serial_for(t, c, NULL), 7);
    cr_assert_eq(serial_for(t, c, "unknown.test"), 7);
    cr_assert_eq(serial_for(t, c, "a.example.org"), 8);
    SSL_CTX_free(c);
    sy_tls_unref(t);
}

Test(tls, ecdsa_or_rsa_by_client_support)
{
    certs[0] = pair("rsa", 0, "both.example.org", "DNS:both.example.org", 11, 10);
    certs[1] = pair("ec", 1, "both.example.org", "DNS:both.example.org", 10, 11);
    certs[2] = pair("other", 1, "other.example.org", "DNS:other.example.org", 12, 12);
    use_certs(3);
    struct sy_tls *t = tls_ok();
    SSL_CTX *c = client_ctx();
    cr_assert_eq(serial_for(t, c, "both.example.org"), 10, "ECDSA when the client can");
    cr_assert_eq(serial_for(t, c, NULL), 10, "the default keeps its ECDSA twin");
    SSL_CTX *rsa13 = client_ctx();
    cr_assert(SSL_CTX_set1_sigalgs_list(rsa13, "rsa_pss_rsae_sha256:rsa_pkcs1_sha256"));
    cr_assert_eq(serial_for(t, rsa13, "both.example.org"), 11);
    SSL_CTX *rsa12 = client_ctx();
    SSL_CTX_set_max_proto_version(rsa12, TLS1_2_VERSION);
    cr_assert(SSL_CTX_set_cipher_list(rsa12, "ECDHE-RSA-AES128-GCM-SHA256"));
    cr_assert_eq(serial_for(t, rsa12, "both.example.org"), 11);
    SSL_CTX *ec12 = client_ctx();
    SSL_CTX_set_max_proto_version(ec12, TLS1_2_VERSION);
    cr_assert(SSL_CTX_set_cipher_list(ec12, "ECDHE-ECDSA-AES256-GCM-SHA384"));
    cr_assert_eq(serial_for(t, ec12, "both.example.org"), 10);
    /* An RSA-only client asking for an ECDSA-only name fails, and is counted. */
    struct link l;
    link_open(&l, t, rsa12, "other.example.org", NULL);
    cr_assert_not(link_handshake(&l));
    link_close(&l);
    char *m = metrics(t);
    cr_assert_not_null(
        strstr(m, "switchyard_tls_handshake_failures_total{reason=\"no_shared_cipher\"} 1\n"),
        "%s", m);
    sy_free(m);
    SSL_CTX_free(c);
    SSL_CTX_free(rsa13);
    SSL_CTX_free(rsa12);
    SSL_CTX_free(ec12);
    sy_tls_unref(t);
}

/* ---- errors ---- */

static void assert_err(const char *err, const char *prefix, const char *part)
{
    cr_assert(strncmp(err, prefix, strlen(prefix)) == 0, "got: %s", err);
    cr_assert_not_null(strstr(err, part), "got: %s", err);
}

Test(tls, key_mismatch_is_an_error_with_its_line)
{
    certs[0] = pair("a", 1, "a.example.org", "DNS:a.example.org", 1, 10);
    certs[1] = pair("b", 1, "b.example.org", "DNS:b.example.org", 2, 17);
    char *k = certs[1].key;
    certs[1].key = certs[0].key;
    use_certs(2);
    char *err = tls_err();
    assert_err(err, CONF_FILE ":17: key ", "does not match certificate");
    sy_free(err);
    certs[1].key = k;
    struct sy_tls *t = tls_ok();
    sy_tls_unref(t);
}

Test(tls, expired_and_not_yet_valid_are_errors)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");
    certs[0] = pair("a", 1, "a.example.org", "DNS:a.example.org", 1, 10);
    X509 *old = leaf(k, "old.example.org", "DNS:old.example.org", 5, -3 * DAY, -DAY);
    char *crt = path("old.crt"), *key = path("old.key");
    write_cert(crt, old);
    write_key(key, k);
    certs[1] = (struct sy_tls_cert_conf){.cert = crt, .key = key, .line = 21};
    use_certs(2);
    char *err = tls_err();
    assert_err(err, CONF_FILE ":21: certificate ", "expired on");
    sy_free(err);

    X509 *young = leaf(k, "new.example.org", "DNS:new.example.org", 6, DAY, 3 * DAY);
    write_cert(crt, young);
    err = tls_err();
    assert_err(err, CONF_FILE ":21: certificate ", "not valid before");
    sy_free(err);
    X509_free(old);
    X509_free(young);
    EVP_PKEY_free(k);
}

Test(tls, missing_and_bad_files_are_errors)
{
    certs[0] = pair("a", 1, "a.example.org", "DNS:a.example.org", 1, 12);
    char *real = certs[0].cert;
    certs[0].cert = path("nope.crt");
    use_certs(1);
    char *err = tls_err();
    assert_err(err, CONF_FILE ":12: cannot read certificate ", "No such file or directory");
    sy_free(err);

    FILE *f = fopen(certs[0].cert, "w");
    fputs("this is not PEM\n", f);
    fclose(f);
    err = tls_err();
    assert_err(err, CONF_FILE ":12: no PEM certificate in ", "nope.crt");
    sy_free(err);

    sy_free(certs[0].cert);
    certs[0].cert = real;
    char *realkey = certs[0].key;
    certs[0].key = path("nope.key");
    err = tls_err();
    assert_err(err, CONF_FILE ":12: cannot read key ", "No such file");
    sy_free(err);
    sy_free(certs[0].key);
    certs[0].key = realkey;
    sy_tls_unref(tls_ok());
}

Test(tls, https_needs_a_certificate_or_acme)
{
    use_certs(0);
    char *err = tls_err();
    cr_assert_str_eq(err, CONF_FILE
                     ":3: listen.https is set but tls has no certificates and no acme");
    sy_free(err);
    cfg.listen_https.set = 0;
    err = (char *)"untouched";
    cr_assert_null(sy_tls_new(&cfg, &err));
    cr_assert_null(err, "no TLS at all is not an error");
}

/* ---- protocol ---- */

Test(tls, only_tls12_and_tls13)
{
    certs[0] = pair("a", 1, "a.example.org", "DNS:a.example.org", 1, 10);
    use_certs(1);
    struct sy_tls *t = tls_ok();
    int old[] = {TLS1_VERSION, TLS1_1_VERSION};
    for (int i = 0; i < 2; i++) {
        SSL_CTX *c = client_ctx();
        SSL_CTX_set_security_level(c, 0);
        SSL_CTX_set_min_proto_version(c, old[i]);
        SSL_CTX_set_max_proto_version(c, old[i]);
        cr_assert(SSL_CTX_set_cipher_list(c, "DEFAULT:@SECLEVEL=0"));
        struct link l;
        link_open(&l, t, c, "a.example.org", NULL);
        cr_assert_not(link_handshake(&l));
        cr_assert_eq(l.server_rc, SY_TLS_ERROR);
        link_close(&l);
        SSL_CTX_free(c);
    }
    int ok[] = {TLS1_2_VERSION, TLS1_3_VERSION};
    for (int i = 0; i < 2; i++) {
        SSL_CTX *c = client_ctx();
        SSL_CTX_set_max_proto_version(c, ok[i]);
        struct link l;
        link_open(&l, t, c, "a.example.org", NULL);
        cr_assert(link_handshake(&l));
        cr_assert_eq(SSL_version(l.cli), ok[i]);
        link_close(&l);
        SSL_CTX_free(c);
    }
    char *m = metrics(t);
    cr_assert_not_null(strstr(m, "{reason=\"protocol_version\"} 2\n"), "%s", m);
    cr_assert_not_null(strstr(m, "switchyard_tls_handshakes_total 2\n"), "%s", m);
    sy_free(m);
    sy_tls_unref(t);
}

static const char *alpn_of(struct sy_tls *t, const unsigned char *protos, unsigned len)
{
    SSL_CTX *c = client_ctx();
    cr_assert_eq(SSL_CTX_set_alpn_protos(c, protos, len), 0);
    struct link l;
    link_open(&l, t, c, "a.example.org", NULL);
    cr_assert(link_handshake(&l), "an unmatched ALPN must not fail the handshake");
    const unsigned char *p;
    unsigned n;
    SSL_get0_alpn_selected(l.cli, &p, &n);
    const char *r = n == 8 && memcmp(p, "http/1.1", 8) == 0 ? "http/1.1" : n ? "other" : "none";
    link_close(&l);
    SSL_CTX_free(c);
    return r;
}

Test(tls, alpn_selects_http11_and_tolerates_h2_only)
{
    certs[0] = pair("a", 1, "a.example.org", "DNS:a.example.org", 1, 10);
    use_certs(1);
    struct sy_tls *t = tls_ok();
    cr_assert_str_eq(alpn_of(t, (const unsigned char *)"\x02h2\x08http/1.1", 12), "http/1.1");
    cr_assert_str_eq(alpn_of(t, (const unsigned char *)"\x02h2", 3), "none");
    sy_tls_unref(t);
}

/* One certificate for a.example.org, a client context and a link whose handshake is done. */
static struct sy_tls *open_a(struct link *l, SSL_CTX **c)
{
    certs[0] = pair("a", 1, "a.example.org", "DNS:a.example.org", 1, 10);
    use_certs(1);
    struct sy_tls *t = tls_ok();
    *c = client_ctx();
    link_open(l, t, *c, "a.example.org", NULL);
    cr_assert(link_handshake(l));
    return t;
}

static void data_both_ways_and_close_notify(void)
{
    struct link l;
    SSL_CTX *c;
    struct sy_tls *t = open_a(&l, &c);
    int io;
    char buf[64];
    cr_assert_eq(sy_tls_read(l.srv, buf, sizeof(buf), &io), -1);
    cr_assert_eq(io, SY_TLS_WANT_READ);
    size_t n;
    cr_assert_eq(SSL_write_ex(l.cli, "GET / HTTP/1.1\r\n\r\n", 18, &n), 1);
    ssize_t r = sy_tls_read(l.srv, buf, 4, &io);
    cr_assert_eq(r, 4);
    cr_assert_eq(io, SY_TLS_DONE);
    cr_assert_eq(sy_tls_pending(l.srv), 14);
    cr_assert_not(sy_tls_drained(l.srv), "14 bytes are still buffered");
    cr_assert_eq(sy_tls_read(l.srv, buf + 4, sizeof(buf) - 4, &io), 14);
    cr_assert_eq(memcmp(buf, "GET / HTTP/1.1\r\n\r\n", 18), 0);
    cr_assert(sy_tls_drained(l.srv), "the socket was emptied by a short read");
    cr_assert_eq(sy_tls_read(l.srv, buf, sizeof(buf), &io), -1);
    cr_assert_eq(io, SY_TLS_WANT_READ);

    /* Fill the socket: the write must stop with WANT_WRITE, then resume. */
    static char big[4 << 20];
    for (size_t i = 0; i < sizeof(big); i++)
        big[i] = (char)(i * 7);
    size_t sent = 0, got = 0;
    while (sent < sizeof(big)) {
        r = sy_tls_write(l.srv, big + sent, sizeof(big) - sent, &io);
        if (r < 0)
            break;
        cr_assert_gt(r, 0);
        sent += (size_t)r;
    }
    cr_assert_lt(sent, sizeof(big), "4 MiB never filled a socketpair");
    cr_assert_eq(io, SY_TLS_WANT_WRITE);
    static char in[sizeof(big)];
    while (got < sizeof(big)) {
        while (SSL_read_ex(l.cli, in + got, sizeof(in) - got, &n) == 1)
            got += n;
        if (sent < sizeof(big)) {
            r = sy_tls_write(l.srv, big + sent, sizeof(big) - sent, &io);
            if (r > 0)
                sent += (size_t)r;
            else
                cr_assert_eq(io, SY_TLS_WANT_WRITE);
        }
    }
    cr_assert_eq(memcmp(in, big, sizeof(big)), 0);

    SSL_shutdown(l.cli);
    cr_assert_eq(sy_tls_read(l.srv, buf, sizeof(buf), &io), 0);
    cr_assert_eq(io, SY_TLS_CLOSED);
    cr_assert_eq(sy_tls_shutdown(l.srv), SY_TLS_DONE);
    link_close(&l);
    SSL_CTX_free(c);
    sy_tls_unref(t);
}

Test(tls, data_both_ways_and_close_notify)
{
    data_both_ways_and_close_notify();
}

Test(tls, data_both_ways_and_close_notify_io)
{
    via_io = 1;
    data_both_ways_and_close_notify();
}

static void eof_is_closed(void)
{
    struct link l;
    SSL_CTX *c;
    struct sy_tls *t = open_a(&l, &c);
    shutdown(l.fd[0], SHUT_WR); /* no close_notify */
    int io;
    char buf[16];
    cr_assert_eq(sy_tls_read(l.srv, buf, sizeof(buf), &io), 0);
    cr_assert_eq(io, SY_TLS_CLOSED);
    link_close(&l);
    SSL_CTX_free(c);
    sy_tls_unref(t);
}

Test(tls, eof_is_closed)
{
    eof_is_closed();
}

Test(tls, eof_is_closed_io)
{
    via_io = 1;
    eof_is_closed();
}

static int raw_handshake(struct sy_tls *t, const char *bytes, size_t len, int close_after)
{
    int fd[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, fd), 0);
    fcntl(fd[1], F_SETFL, O_NONBLOCK);
    cr_assert_eq(write(fd[0], bytes, len), (ssize_t)len);
    if (close_after)
        close(fd[0]);
    struct pipe_io pio;
    struct sy_tls_conn *s = server_conn(t, fd[1], &pio);
    int rc = sy_tls_handshake(s);
    sy_tls_conn_free(s);
    if (!close_after)
        close(fd[0]);
    close(fd[1]);
    return rc;
}

static void failures_are_counted_by_reason(void)
{
    certs[0] = pair("a", 1, "a.example.org", "DNS:a.example.org", 1, 10);
    use_certs(1);
    struct sy_tls *t = tls_ok();
    cr_assert_eq(raw_handshake(t, "GET / HTTP/1.1\r\nHost: a\r\n\r\n", 27, 0), SY_TLS_ERROR);
    cr_assert_eq(raw_handshake(t, "\x16\x09\x09\x00\x05hello", 10, 0), SY_TLS_ERROR);
    cr_assert_eq(raw_handshake(t, "\x16\x03", 2, 0), SY_TLS_WANT_READ);
    cr_assert_eq(raw_handshake(t, "\x16\x03", 2, 1), SY_TLS_ERROR);
    sy_tls_count_handshake_timeout();
    char *m = metrics(t);
    cr_assert_not_null(strstr(m, "{reason=\"http_request\"} 1\n"), "%s", m);
    cr_assert_not_null(strstr(m, "{reason=\"bad_record\"} 1\n"), "%s", m);
    cr_assert_not_null(strstr(m, "{reason=\"closed\"} 1\n"), "%s", m);
    cr_assert_not_null(strstr(m, "{reason=\"timeout\"} 1\n"), "%s", m);
    cr_assert_not_null(strstr(m, "{reason=\"other\"} 0\n"), "%s", m);
    cr_assert_not_null(strstr(m, "switchyard_tls_handshakes_total 0\n"), "%s", m);
    sy_free(m);
    sy_tls_unref(t);
}

Test(tls, failures_are_counted_by_reason)
{
    failures_are_counted_by_reason();
}

Test(tls, failures_are_counted_by_reason_io)
{
    via_io = 1;
    failures_are_counted_by_reason();
}

Test(tls, metrics_list_certificate_expiry)
{
    certs[0] = pair("a", 1, "a.example.org", "DNS:a.example.org", 0x1abc, 10);
    certs[1] = pair("b", 0, "B \"quoted\"", "DNS:b.example.org", 255, 11);
    use_certs(2);
    struct sy_tls *t = tls_ok();
    cr_assert_eq(sy_tls_cert_count(t), 2);
    char *m = metrics(t);
    char *want = sy_asprintf("switchyard_tls_certificate_expiry_timestamp_seconds{cert=\"%s\","
                             "subject=\"a.example.org\",serial=\"1ABC\"} ", certs[0].cert);
    char *at = strstr(m, want);
    cr_assert_not_null(at, "%s", m);
    long long ts = strtoll(at + strlen(want), NULL, 10);
    time_t now = time(NULL);
    cr_assert(ts > now + 29 * DAY && ts <= now + 30 * DAY + 5, "%lld", ts);
    cr_assert_not_null(strstr(m, "subject=\"B \\\"quoted\\\"\",serial=\"FF\"} "), "%s", m);
    cr_assert_not_null(
        strstr(m, "# TYPE switchyard_tls_certificate_expiry_timestamp_seconds gauge\n"));
    /* A short buffer is cut, NUL-terminated, and the full length is still reported. */
    char small[32];
    cr_assert_eq(sy_tls_metrics(t, small, sizeof(small)), strlen(m));
    cr_assert_eq(strlen(small), sizeof(small) - 1);
    sy_free(want);
    sy_free(m);
    sy_tls_unref(t);
}

/* ---- resumption ---- */

static int resumes(struct sy_tls *t, SSL_CTX *c, SSL_SESSION *s)
{
    struct link l;
    link_open(&l, t, c, "a.example.org", s);
    cr_assert(link_handshake(&l));
    int r = SSL_session_reused(l.cli);
    link_close(&l);
    return r;
}

static void resume_across_reload(int version)
{
    certs[0] = pair("a", 1, "a.example.org", "DNS:a.example.org", 1, 10);
    use_certs(1);
    struct sy_tls *t1 = tls_ok();
    SSL_CTX *c = client_ctx();
    SSL_CTX_set_max_proto_version(c, version);
    struct link l;
    link_open(&l, t1, c, "a.example.org", NULL);
    cr_assert(link_handshake(&l));
    cr_assert_not(SSL_session_reused(l.cli));
    SSL_SESSION *s = link_session(&l);
    link_close(&l);
    sy_tls_unref(t1);

    struct sy_tls *t2 = tls_ok(); /* a reload: new SSL_CTX, same process */
    cr_assert(resumes(t2, c, s), "ticket from the previous sy_tls resumed");
    char *m = metrics(t2);
    cr_assert_not_null(strstr(m, "switchyard_tls_resumed_handshakes_total 1\n"), "%s", m);
    sy_free(m);
    SSL_SESSION_free(s);
    SSL_CTX_free(c);
    sy_tls_unref(t2);
}

Test(tls, tickets_resume_after_reload_tls13)
{
    resume_across_reload(TLS1_3_VERSION);
}

Test(tls, tickets_resume_after_reload_tls12)
{
    resume_across_reload(TLS1_2_VERSION);
}

struct thread_job {
    struct sy_tls *t;
    SSL_CTX *c;
    SSL_SESSION *in;
    SSL_SESSION *out;
    int reused;
};

static void *thread_handshake(void *arg)
{
    struct thread_job *j = arg;
    struct link l;
    link_open(&l, j->t, j->c, "a.example.org", j->in);
    if (link_handshake(&l)) {
        j->reused = SSL_session_reused(l.cli);
        if (!j->in)
            j->out = link_session(&l);
    }
    link_close(&l);
    return NULL;
}

Test(tls, tickets_resume_on_another_thread)
{
    certs[0] = pair("a", 1, "a.example.org", "DNS:a.example.org", 1, 10);
    use_certs(1);
    struct sy_tls *t = tls_ok();
    SSL_CTX *c = client_ctx();
    struct thread_job a = {.t = t, .c = c}, b = {.t = t, .c = c};
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, thread_handshake, &a), 0);
    pthread_join(th, NULL);
    cr_assert_not_null(a.out);
    b.in = a.out;
    cr_assert_eq(pthread_create(&th, NULL, thread_handshake, &b), 0);
    pthread_join(th, NULL);
    cr_assert(b.reused);
    SSL_SESSION_free(a.out);
    SSL_CTX_free(c);
    sy_tls_unref(t);
}

Test(tls, ticket_keys_rotate_and_old_keys_expire)
{
    certs[0] = pair("a", 1, "a.example.org", "DNS:a.example.org", 1, 10);
    use_certs(1);
    struct sy_tls *t = tls_ok();
    SSL_CTX *c = client_ctx();
    SSL_CTX_set_max_proto_version(c, TLS1_2_VERSION); /* one ticket, no renewal noise */
    struct link l;
    link_open(&l, t, c, "a.example.org", NULL);
    cr_assert(link_handshake(&l));
    SSL_SESSION *s = link_session(&l);
    link_close(&l);
    sy__tls_ticket_rotate();
    sy__tls_ticket_rotate();
    cr_assert(resumes(t, c, s), "a key two rotations old still decrypts");
    sy__tls_ticket_rotate();
    cr_assert_not(resumes(t, c, s), "a key three rotations old is gone");
    SSL_SESSION_free(s);
    SSL_CTX_free(c);
    sy_tls_unref(t);
}

/* ---- ACME ---- */

static char *domains[] = {"retro.example.org", "www.retro.example.org"};

static void use_acme(size_t ncerts)
{
    use_certs(ncerts);
    cfg.tls.acme.enabled = 1;
    cfg.tls.acme.line = 30;
    cfg.tls.acme.domains = domains;
    cfg.tls.acme.ndomains = 2;
    cfg.tls.acme.storage = dir;
}

Test(tls, acme_paths)
{
    struct sy_acme_conf a = {.enabled = 1, .storage = "/var/lib/switchyard/",
                             .domains = (char *[]){"Retro.Example.org"}, .ndomains = 1};
    char *crt, *key;
    cr_assert_eq(sy_tls_acme_cert_paths(&a, &crt, &key), 0);
    cr_assert_str_eq(crt, "/var/lib/switchyard/certificates/retro.example.org.crt");
    cr_assert_str_eq(key, "/var/lib/switchyard/certificates/retro.example.org.key");
    sy_free(crt);
    sy_free(key);
    a.domains = (char *[]){"../../etc/passwd"};
    cr_assert_eq(sy_tls_acme_cert_paths(&a, &crt, &key), -1);
    a.ndomains = 0;
    cr_assert_eq(sy_tls_acme_cert_paths(&a, &crt, &key), -1);
}

Test(tls, acme_placeholder_until_the_certificate_is_stored)
{
    use_acme(0);
    struct sy_tls *t = tls_ok();
    SSL_CTX *c = client_ctx();
    struct link l;
    link_open(&l, t, c, "www.retro.example.org", NULL);
    cr_assert(link_handshake(&l));
    X509 *x = SSL_get1_peer_certificate(l.cli);
    cr_assert_not_null(x);
    cr_assert_eq(X509_check_host(x, "www.retro.example.org", 0, 0, NULL), 1);
    cr_assert_eq(X509_check_host(x, "retro.example.org", 0, 0, NULL), 1);
    cr_assert_eq(X509_check_issued(x, x), X509_V_OK, "self-signed");
    cr_assert_eq(EVP_PKEY_get_base_id(X509_get0_pubkey(x)), EVP_PKEY_EC);
    int days, secs;
    cr_assert(ASN1_TIME_diff(&days, &secs, NULL, X509_get0_notAfter(x)));
    cr_assert(days == 0 || (days == 1 && secs == 0), "valid one day: %d d %d s", days, secs);
    cr_assert_neq(SSL_get_verify_result(l.cli), X509_V_OK);
    X509_free(x);
    link_close(&l);
    char *m = metrics(t);
    cr_assert_not_null(
        strstr(m, "{cert=\"acme-placeholder\",subject=\"retro.example.org\","), "%s", m);
    sy_free(m);
    sy_tls_unref(t);

    /* The ACME code stores the real pair: the next snapshot serves it. */
    char *crt, *key, *cdir = path("certificates");
    cr_assert_eq(sy_tls_acme_cert_paths(&cfg.tls.acme, &crt, &key), 0);
    cr_assert_eq(mkdir(cdir, 0700), 0);
    EVP_PKEY *k = EVP_EC_gen("P-256");
    X509 *real = leaf(k, "retro.example.org", "DNS:retro.example.org,DNS:www.retro.example.org",
                      4242, -DAY, 90 * DAY);
    write_cert(crt, real);
    write_key(key, k);
    t = tls_ok();
    cr_assert_eq(serial_for(t, c, "retro.example.org"), 4242);
    sy_tls_unref(t);

    /* A stored key that does not match is refused (reload keeps the old snapshot). */
    EVP_PKEY *k2 = EVP_EC_gen("P-256");
    write_key(key, k2);
    char *err = tls_err();
    assert_err(err, CONF_FILE ":30: key ", "does not match");
    sy_free(err);

    /* An expired stored certificate falls back to the placeholder: ACME renews it. */
    X509 *old = leaf(k2, "retro.example.org", "DNS:retro.example.org", 4243, -3 * DAY, -DAY);
    write_cert(crt, old);
    t = tls_ok();
    cr_assert_neq(serial_for(t, c, "retro.example.org"), 4243);
    m = metrics(t);
    cr_assert_not_null(strstr(m, "cert=\"acme-placeholder\""), "%s", m);
    sy_free(m);
    sy_tls_unref(t);

    /* Static certificates come first: the ACME one is served by name. */
    certs[0] = pair("s", 1, "static.example.org", "DNS:static.example.org", 77, 10);
    write_cert(crt, real);
    write_key(key, k);
    use_acme(1);
    t = tls_ok();
    cr_assert_eq(sy_tls_cert_count(t), 2);
    cr_assert_eq(serial_for(t, c, NULL), 77);
    cr_assert_eq(serial_for(t, c, "www.retro.example.org"), 4242);
    sy_tls_unref(t);
    X509_free(real);
    X509_free(old);
    EVP_PKEY_free(k);
    EVP_PKEY_free(k2);
    sy_free(crt);
    sy_free(key);
    sy_free(cdir);
    SSL_CTX_free(c);
}

/* ---- watcher ---- */

static pthread_mutex_t hits_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t hits_cond = PTHREAD_COND_INITIALIZER;
static int hits;

static void on_change(void *arg)
{
    cr_assert_eq(arg, &hits);
    pthread_mutex_lock(&hits_lock);
    hits++;
    pthread_cond_broadcast(&hits_cond);
    pthread_mutex_unlock(&hits_lock);
}

/* Waits until hits >= n or ms pass; returns hits. */
static int wait_hits(int n, int ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (long)(ms % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&hits_lock);
    while (hits < n && pthread_cond_timedwait(&hits_cond, &hits_lock, &ts) == 0)
        ;
    int h = hits;
    pthread_mutex_unlock(&hits_lock);
    return h;
}

static void copy_file(const char *from, const char *to)
{
    char *cmd = sy_asprintf("cp '%s' '%s'", from, to);
    cr_assert_eq(system(cmd), 0);
    sy_free(cmd);
}

/* A Kubernetes Secret volume: tls.crt -> ..data/tls.crt, ..data -> ..v1. */
static void k8s_volume(const char *secret, const char *version, struct sy_tls_cert_conf *src)
{
    char *v = sy_asprintf("%s/%s", secret, version);
    cr_assert_eq(mkdir(v, 0755), 0);
    char *crt = sy_asprintf("%s/tls.crt", v), *key = sy_asprintf("%s/tls.key", v);
    copy_file(src->cert, crt);
    copy_file(src->key, key);
    char *tmp = sy_asprintf("%s/..data_tmp", secret), *data = sy_asprintf("%s/..data", secret);
    cr_assert_eq(symlink(version, tmp), 0);
    cr_assert_eq(rename(tmp, data), 0); /* the atomic swap */
    sy_free(v);
    sy_free(crt);
    sy_free(key);
    sy_free(tmp);
    sy_free(data);
}

Test(tls, watcher_fires_once_on_a_kubernetes_symlink_swap, .timeout = 30)
{
    struct sy_tls_cert_conf v1 = pair("v1", 1, "a.example.org", "DNS:a.example.org", 1, 10);
    struct sy_tls_cert_conf v2 = pair("v2", 1, "a.example.org", "DNS:a.example.org", 2, 10);
    char *secret = path("secret");
    cr_assert_eq(mkdir(secret, 0755), 0);
    k8s_volume(secret, "..2026_01", &v1);
    certs[0].cert = sy_asprintf("%s/tls.crt", secret);
    certs[0].key = sy_asprintf("%s/tls.key", secret);
    certs[0].line = 10;
    cr_assert_eq(symlink("..data/tls.crt", certs[0].cert), 0);
    cr_assert_eq(symlink("..data/tls.key", certs[0].key), 0);
    use_certs(1);
    struct sy_tls *t = tls_ok();
    SSL_CTX *c = client_ctx();
    cr_assert_eq(serial_for(t, c, "a.example.org"), 1);

    /* Long polling interval: only inotify can see this within the wait. */
    struct sy_tls_watch *w = sy__tls_watch_start_opts(on_change, &hits, 1, 60000, 300);
    cr_assert_not_null(w);
    sy_tls_watch_set(w, &cfg);
    usleep(200 * 1000);
    cr_assert_eq(wait_hits(1, 700), 0, "nothing changed yet");

    k8s_volume(secret, "..2026_02", &v2);
    char *cmd = sy_asprintf("rm -rf '%s/..2026_01'", secret); /* what kubelet does next */
    cr_assert_eq(system(cmd), 0);
    cr_assert_eq(wait_hits(1, 3000), 1);
    cr_assert_eq(wait_hits(2, 1000), 1, "one call per burst");

    sy_tls_unref(t);
    t = tls_ok(); /* the reload the callback asks for */
    cr_assert_eq(serial_for(t, c, "a.example.org"), 2);
    sy_tls_watch_set(w, &cfg);

    /* Watches follow the new target directory: a second swap fires again. */
    k8s_volume(secret, "..2026_03", &v1);
    cr_assert_eq(wait_hits(2, 3000), 2);
    sy_tls_watch_stop(w);
    sy_free(cmd);
    sy_free(secret);
    sy_tls_unref(t);
    SSL_CTX_free(c);
    cert_conf_free(&v1);
    cert_conf_free(&v2);
}

Test(tls, watcher_fires_on_a_plain_overwrite, .timeout = 30)
{
    certs[0] = pair("a", 1, "a.example.org", "DNS:a.example.org", 1, 10);
    struct sy_tls_cert_conf b = pair("b", 1, "a.example.org", "DNS:a.example.org", 2, 10);
    use_certs(1);
    struct sy_tls_watch *w = sy__tls_watch_start_opts(on_change, &hits, 1, 60000, 300);
    cr_assert_not_null(w);
    sy_tls_watch_set(w, &cfg);
    usleep(200 * 1000);
    /* Unrelated files in the same directory do not count. */
    char *other = path("notes.txt");
    FILE *f = fopen(other, "w");
    fputs("x", f);
    fclose(f);
    cr_assert_eq(wait_hits(1, 800), 0);

    copy_file(b.cert, certs[0].cert); /* in place: open, truncate, write */
    copy_file(b.key, certs[0].key);
    cr_assert_eq(wait_hits(1, 3000), 1);
    cr_assert_eq(wait_hits(2, 800), 1, "one call per burst");
    sy_tls_watch_stop(w);
    sy_free(other);
    cert_conf_free(&b);
}

Test(tls, watcher_polls_when_there_are_no_events, .timeout = 30)
{
    certs[0] = pair("a", 1, "a.example.org", "DNS:a.example.org", 1, 10);
    struct sy_tls_cert_conf b = pair("b", 1, "a.example.org", "DNS:a.example.org", 2, 10);
    use_acme(1); /* also the ACME pair, whose directory does not exist yet */
    struct sy_tls_watch *w = sy__tls_watch_start_opts(on_change, &hits, 0, 200, 100);
    cr_assert_not_null(w);
    sy_tls_watch_set(w, &cfg);
    usleep(300 * 1000);
    cr_assert_eq(wait_hits(1, 600), 0, "nothing changed yet");
    char *tmp = path("new.crt");
    copy_file(b.cert, tmp);
    cr_assert_eq(rename(tmp, certs[0].cert), 0); /* new inode, same name */
    cr_assert_eq(wait_hits(1, 3000), 1);

    char *crt, *key, *cdir = path("certificates");
    cr_assert_eq(sy_tls_acme_cert_paths(&cfg.tls.acme, &crt, &key), 0);
    cr_assert_eq(mkdir(cdir, 0700), 0);
    copy_file(b.key, key);
    copy_file(b.cert, crt);
    cr_assert_eq(wait_hits(2, 3000), 2);
    sy_tls_watch_stop(w);
    int after = hits;
    copy_file(certs[0].key, crt);
    usleep(500 * 1000);
    cr_assert_eq(hits, after, "no call after stop");
    sy_free(tmp);
    sy_free(crt);
    sy_free(key);
    sy_free(cdir);    cert_conf_free(&b);
}

/* "Drained" is only said when nothing is left: every byte sent is read before it. */
static void drained_only_when_nothing_is_left(void)
{
    struct link l;
    SSL_CTX *c;
    struct sy_tls *t = open_a(&l, &c);
    static char msg[40000], got[40000];
    for (size_t i = 0; i < sizeof(msg); i++)
        msg[i] = (char)(i * 13);
    size_t n, total = 0;
    while (total < sizeof(msg)) { /* three records and a bit, all in the socket before reading */
        cr_assert_eq(SSL_write_ex(l.cli, msg + total, sizeof(msg) - total, &n), 1);
        total += n;
    }
    size_t have = 0;
    int io, rounds = 0;
    for (;;) {
        cr_assert_lt(++rounds, 10000);
        ssize_t r = sy_tls_read(l.srv, got + have, 1000 < sizeof(got) - have ? 1000 : sizeof(got) - have,
                                &io);
        cr_assert_gt(r, 0, "read %zu of %zu before drained was said", have, sizeof(msg));
        have += (size_t)r;
        if (sy_tls_drained(l.srv))
            break;
    }
    cr_assert_eq(have, sizeof(msg));
    cr_assert_eq(memcmp(got, msg, sizeof(msg)), 0);
    cr_assert_eq(sy_tls_read(l.srv, got, sizeof(got), &io), -1);
    cr_assert_eq(io, SY_TLS_WANT_READ);
    link_close(&l);
    SSL_CTX_free(c);
    sy_tls_unref(t);
}

Test(tls, drained_only_when_nothing_is_left)
{
    drained_only_when_nothing_is_left();
}

Test(tls, drained_only_when_nothing_is_left_io)
{
    via_io = 1;
    drained_only_when_nothing_is_left();
}

/*
 * The callback BIO's retry and error paths: a write refused for the cap
 * stops the handshake with WANT_WRITE and it resumes once there is room;
 * the flight goes out in as many pieces as the callback takes; a read that
 * fails (a reset mid-handshake) or a write that fails is a fatal error,
 * counted as "closed" as for a socket.
 */
Test(tls, io_callbacks_retry_and_fail)
{
    via_io = 1;
    certs[0] = pair("a", 1, "a.example.org", "DNS:a.example.org", 1, 10);
    use_certs(1);
    struct sy_tls *t = tls_ok();
    SSL_CTX *c = client_ctx();

    struct link l;
    link_open(&l, t, c, "a.example.org", NULL);
    l.pio.wcap = 0;
    cr_assert_eq(SSL_do_handshake(l.cli), -1); /* the ClientHello */
    cr_assert_eq(sy_tls_handshake(l.srv), SY_TLS_WANT_WRITE);
    cr_assert_eq(sy_tls_handshake(l.srv), SY_TLS_WANT_WRITE);
    l.pio.wcap = 100;
    int writes = l.pio.writes;
    cr_assert(link_handshake(&l));
    cr_assert_gt(l.pio.writes - writes, 5, "the flight went out in 100-byte pieces");
    int io;
    char buf[64];
    size_t n;
    cr_assert_eq(SSL_write_ex(l.cli, "ping", 4, &n), 1);
    cr_assert_eq(sy_tls_read(l.srv, buf, sizeof(buf), &io), 4);
    cr_assert(sy_tls_drained(l.srv));
    l.pio.wcap = 0;
    cr_assert_eq(sy_tls_write(l.srv, "pong", 4, &io), -1);
    cr_assert_eq(io, SY_TLS_WANT_WRITE);
    l.pio.wcap = 3;
    cr_assert_eq(sy_tls_write(l.srv, "pong", 4, &io), 4, "the same bytes again, taken in pieces");
    for (int i = 0; i < 100 && SSL_read_ex(l.cli, buf, sizeof(buf), &n) != 1; i++)
        n = 0;
    cr_assert_eq(n, 4);
    cr_assert_eq(memcmp(buf, "pong", 4), 0);
    l.pio.fail_write = EPIPE;
    cr_assert_eq(sy_tls_write(l.srv, "pong", 4, &io), -1);
    cr_assert_eq(io, SY_TLS_ERROR);
    cr_assert_eq(sy_tls_shutdown(l.srv), SY_TLS_DONE, "no close_notify after a fatal error");
    link_close(&l);

    link_open(&l, t, c, "a.example.org", NULL);
    cr_assert_eq(SSL_do_handshake(l.cli), -1);
    l.pio.fail_read = ECONNRESET;
    cr_assert_eq(sy_tls_handshake(l.srv), SY_TLS_ERROR);
    link_close(&l);
    char *m = metrics(t);
    cr_assert_not_null(strstr(m, "{reason=\"closed\"} 1\n"), "%s", m);
    cr_assert_not_null(strstr(m, "{reason=\"other\"} 0\n"), "%s", m);
    cr_assert_not_null(strstr(m, "switchyard_tls_handshakes_total 1\n"), "%s", m);
    sy_free(m);
    SSL_CTX_free(c);
    sy_tls_unref(t);
}
