/*
 * tls_cert.c: the certificate store. Loads and checks certificate/key pairs,
 * makes the ACME placeholder, and picks certificates by SNI at handshake time.
 */
#include "tls/tls_int.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "config/config.h"
#include "core/alloc.h"
#include "core/log.h"
#include "core/str.h"

#define PLACEHOLDER_LABEL "acme-placeholder"
#define PLACEHOLDER_LIFETIME_S 86400

/* Outcomes of load_pair(). */
enum { LOAD_OK = 0, LOAD_ERR = -1, LOAD_EXPIRED = -2 };

static char *where(const struct sy_config *cfg, int line)
{
    return sy_asprintf("%s:%d", cfg->file ? cfg->file : "(config)", line);
}

/* The reason of the last OpenSSL error, for messages; clears the queue. */
static const char *ssl_reason(char *buf, size_t cap)
{
    unsigned long e = ERR_peek_last_error();
    if (e == 0)
        snprintf(buf, cap, "unknown error");
    else
        ERR_error_string_n(e, buf, cap);
    ERR_clear_error();
    return buf;
}

static int no_password(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return -1;
}

static char *lower_dup(const unsigned char *p, size_t len)
{
    char *s = sy_strndup((const char *)p, len);
    for (size_t i = 0; i < len; i++)
        s[i] = (char)sy_lower((unsigned char)s[i]);
    return s;
}

static void add_name(struct sy__tls_cert *c, const unsigned char *p, int len)
{
    if (len <= 0 || memchr(p, '\0', (size_t)len))
        return;
    c->names = sy_realloc(c->names, (c->nnames + 1) * sizeof(*c->names));
    c->names[c->nnames++] = lower_dup(p, (size_t)len);
}

/* Fills names, subject, serial, not_after and ecdsa from c->x509 and c->key. */
static int describe(struct sy__tls_cert *c)
{
    GENERAL_NAMES *gens = X509_get_ext_d2i(c->x509, NID_subject_alt_name, NULL, NULL);
    for (int i = 0; gens && i < sk_GENERAL_NAME_num(gens); i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
        if (g->type == GEN_DNS)
            add_name(c, ASN1_STRING_get0_data(g->d.dNSName), ASN1_STRING_length(g->d.dNSName));
    }
    GENERAL_NAMES_free(gens);

    char *cn = NULL;
    X509_NAME *subj = X509_get_subject_name(c->x509);
    int idx = X509_NAME_get_index_by_NID(subj, NID_commonName, -1);
    if (idx >= 0) {
        ASN1_STRING *d = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, idx));
        const unsigned char *p = ASN1_STRING_get0_data(d);
        int len = ASN1_STRING_length(d);
        if (len > 0 && !memchr(p, '\0', (size_t)len))
            cn = sy_strndup((const char *)p, (size_t)len);
    }
    if (c->nnames == 0 && cn)
        add_name(c, (const unsigned char *)cn, (int)strlen(cn));
    if (cn)
        c->subject = cn;
    else
        c->subject = sy_strdup(c->nnames ? c->names[0] : "");

    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(c->x509), NULL);
    char *hex = bn ? BN_bn2hex(bn) : NULL;
    BN_free(bn);
    if (!hex)
        return -1;
    c->serial = sy_strdup(hex);
    OPENSSL_free(hex);

    struct tm tm;
    if (!ASN1_TIME_to_tm(X509_get0_notAfter(c->x509), &tm))
        return -1;
    c->not_after = timegm(&tm);
    c->ecdsa = EVP_PKEY_get_base_id(c->key) == EVP_PKEY_EC;
    return 0;
}

static void cert_clear(struct sy__tls_cert *c)
{
    X509_free(c->x509);
    EVP_PKEY_free(c->key);
    sk_X509_pop_free(c->chain, X509_free);
    for (size_t i = 0; i < c->nnames; i++)
        sy_free(c->names[i]);
    sy_free(c->names);
    sy_free(c->label);
    sy_free(c->subject);
    sy_free(c->serial);
    memset(c, 0, sizeof(*c));
}

static void format_time(const ASN1_TIME *t, char *buf, size_t cap)
{
    struct tm tm;
    if (!ASN1_TIME_to_tm(t, &tm) || !strftime(buf, cap, "%Y-%m-%dT%H:%M:%SZ", &tm))
        snprintf(buf, cap, "?");
}

/*
 * Loads one pair into c. On failure returns LOAD_ERR or LOAD_EXPIRED with
 * *err = "<at>: reason" and leaves c cleared.
 */
static int load_pair(struct sy__tls_cert *c, SSL_CTX *check, const char *crt, const char *key,
                     const char *at, char **err)
{
    char why[256];
    int rc = LOAD_ERR;
    memset(c, 0, sizeof(*c));
    c->chain = sk_X509_new_null();

    FILE *f = fopen(crt, "r");
    if (!f) {
        *err = sy_asprintf("%s: cannot read certificate %s: %s", at, crt, strerror(errno));
        goto fail;
    }
    c->x509 = PEM_read_X509(f, NULL, no_password, NULL);
    if (!c->x509) {
        *err = sy_asprintf("%s: no PEM certificate in %s (%s)", at, crt,
                           ssl_reason(why, sizeof(why)));
        fclose(f);
        goto fail;
    }
    for (;;) {
        X509 *x = PEM_read_X509(f, NULL, no_password, NULL);
        if (!x)
            break;
        sk_X509_push(c->chain, x);
    }
    fclose(f);
    unsigned long e = ERR_peek_last_error();
    if (e && !(ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE)) {
        *err = sy_asprintf("%s: bad PEM certificate chain in %s (%s)", at, crt,
                           ssl_reason(why, sizeof(why)));
        goto fail;
    }
    ERR_clear_error();

    f = fopen(key, "r");
    if (!f) {
        *err = sy_asprintf("%s: cannot read key %s: %s", at, key, strerror(errno));
        goto fail;
    }
    c->key = PEM_read_PrivateKey(f, NULL, no_password, NULL);
    fclose(f);
    if (!c->key) {
        *err = sy_asprintf("%s: no PEM private key in %s (encrypted keys are not supported: %s)",
                           at, key, ssl_reason(why, sizeof(why)));
        goto fail;
    }
    if (X509_check_private_key(c->x509, c->key) != 1) {
        ERR_clear_error();
        *err = sy_asprintf("%s: key %s does not match certificate %s", at, key, crt);
        goto fail;
    }
    char when[64];
    if (X509_cmp_current_time(X509_get0_notAfter(c->x509)) <= 0) {
        format_time(X509_get0_notAfter(c->x509), when, sizeof(when));
        *err = sy_asprintf("%s: certificate %s expired on %s", at, crt, when);
        rc = LOAD_EXPIRED;
        goto fail;
    }
    if (X509_cmp_current_time(X509_get0_notBefore(c->x509)) >= 0) {
        format_time(X509_get0_notBefore(c->x509), when, sizeof(when));
        *err = sy_asprintf("%s: certificate %s is not valid before %s", at, crt, when);
        rc = LOAD_EXPIRED;
        goto fail;
    }
    /* What the handshake will do with it: security level (key size, digests). */
    if (SSL_CTX_use_cert_and_key(check, c->x509, c->key, c->chain, 1) != 1) {
        *err = sy_asprintf("%s: certificate %s refused: %s", at, crt,
                           ssl_reason(why, sizeof(why)));
        goto fail;
    }
    if (describe(c) < 0) {
        *err = sy_asprintf("%s: cannot read the fields of certificate %s (%s)", at, crt,
                           ssl_reason(why, sizeof(why)));
        goto fail;
    }
    c->label = sy_strdup(crt);
    return LOAD_OK;
fail:
    cert_clear(c);
    return rc;
}

/* A self-signed ECDSA P-256 certificate for the ACME domains, valid one day. */
static int make_placeholder(struct sy__tls_cert *c, const struct sy_acme_conf *a)
{
    memset(c, 0, sizeof(*c));
    c->chain = sk_X509_new_null();
    c->key = EVP_EC_gen("P-256");
    c->x509 = X509_new();
    BIGNUM *bn = BN_new();
    GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();
    X509_NAME *name = X509_NAME_new();
    int ok = c->key && c->x509 && bn && gens && name && c->chain;
    ok = ok && X509_set_version(c->x509, 2) == 1;
    ok = ok && BN_rand(bn, 127, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) == 1;
    ok = ok && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(c->x509)) != NULL;
    ok = ok && X509_gmtime_adj(X509_getm_notBefore(c->x509), -300) != NULL;
    ok = ok && X509_gmtime_adj(X509_getm_notAfter(c->x509), PLACEHOLDER_LIFETIME_S) != NULL;
    ok = ok && X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC,
                                          (const unsigned char *)"Switchyard ACME placeholder",
                                          -1, -1, 0) == 1;
    ok = ok && X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                          (const unsigned char *)a->domains[0], -1, -1, 0) == 1;
    ok = ok && X509_set_subject_name(c->x509, name) == 1;
    ok = ok && X509_set_issuer_name(c->x509, name) == 1;
    ok = ok && X509_set_pubkey(c->x509, c->key) == 1;
    for (size_t i = 0; ok && i < a->ndomains; i++) {
        GENERAL_NAME *g = GENERAL_NAME_new();
        ASN1_IA5STRING *s = ASN1_IA5STRING_new();
        ok = g && s && ASN1_STRING_set(s, a->domains[i], -1) == 1;
        if (ok) {
            GENERAL_NAME_set0_value(g, GEN_DNS, s);
            sk_GENERAL_NAME_push(gens, g);
        } else {
            GENERAL_NAME_free(g);
            ASN1_IA5STRING_free(s);
        }
    }
    ok = ok && X509_add1_ext_i2d(c->x509, NID_subject_alt_name, gens, 0, X509V3_ADD_DEFAULT) == 1;
    ok = ok && X509_sign(c->x509, c->key, EVP_sha256()) > 0;
    ok = ok && describe(c) == 0;
    BN_free(bn);
    GENERAL_NAMES_free(gens);
    X509_NAME_free(name);
    if (!ok) {
        ERR_clear_error();
        cert_clear(c);
        return -1;
    }
    c->label = sy_strdup(PLACEHOLDER_LABEL);
    return 0;
}

static int domain_ok(const char *d)
{
    if (!d || !*d || d[0] == '.' || strlen(d) > 253)
        return 0;
    for (const char *p = d; *p; p++) {
        unsigned char ch = (unsigned char)*p;
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '-' || ch == '.'))
            return 0;
    }
    return 1;
}

int sy_tls_acme_cert_paths(const struct sy_acme_conf *a, char **crt, char **key)
{
    *crt = *key = NULL;
    if (!a || !a->storage || !*a->storage || a->ndomains == 0 || !domain_ok(a->domains[0]))
        return -1;
    char *d = lower_dup((const unsigned char *)a->domains[0], strlen(a->domains[0]));
    size_t n = strlen(a->storage);
    const char *sep = (n && a->storage[n - 1] == '/') ? "" : "/";
    *crt = sy_asprintf("%s%scertificates/%s.crt", a->storage, sep, d);
    *key = sy_asprintf("%s%scertificates/%s.key", a->storage, sep, d);
    sy_free(d);
    return 0;
}

static struct sy__tls_cert *push_cert(struct sy_tls *t)
{
    t->certs = sy_realloc(t->certs, (t->ncerts + 1) * sizeof(*t->certs));
    return &t->certs[t->ncerts];
}

static int load_acme(struct sy_tls *t, SSL_CTX *check, const struct sy_config *cfg, int initial,
                     char **err)
{
    const struct sy_acme_conf *a = &cfg->tls.acme;
    char *crt, *key, *at = where(cfg, a->line);
    int rc = -1;
    if (sy_tls_acme_cert_paths(a, &crt, &key) < 0) {
        *err = sy_asprintf("%s: tls.acme needs a storage directory and a valid first domain", at);
        sy_free(at);
        return -1;
    }
    struct sy__tls_cert *c = push_cert(t);
    struct stat st;
    if (stat(crt, &st) < 0 && errno == ENOENT) {
        sy_log_warn("tls", "acme: %s not stored yet: serving a SELF-SIGNED PLACEHOLDER certificate "
                    "for %s (valid 1 day) until ACME stores one", crt, a->domains[0]);
    } else {
        char *why = NULL;
        int r = load_pair(c, check, crt, key, at, &why);
        if (r == LOAD_OK) {
            t->ncerts++;
            rc = 0;
            goto out;
        }
        /*
         * A broken pair on a reload is often a renewal caught between the
         * renames of the .key and the .crt: keep the previous snapshot, the
         * .crt event retries. At start (e.g. after a crash between those two
         * renames) there is nothing else to serve.
         */
        if (r != LOAD_EXPIRED && !initial) {
            *err = why;
            goto out;
        }
        /* Refusing to start would also stop the renewal that fixes it. */
        sy_log_error("tls", "%s; serving a SELF-SIGNED PLACEHOLDER certificate for %s until "
                     "ACME renews it", why, a->domains[0]);
        sy_free(why);
    }
    if (make_placeholder(c, a) < 0) {
        *err = sy_asprintf("%s: cannot make the ACME placeholder certificate", at);
        goto out;
    }
    t->ncerts++;
    rc = 0;
out:
    sy_free(crt);
    sy_free(key);
    sy_free(at);
    return rc;
}

int sy__tls_certs_load(struct sy_tls *t, const struct sy_config *cfg, int initial, char **err)
{
    SSL_CTX *check = SSL_CTX_new(TLS_server_method());
    if (!check) {
        ERR_clear_error();
        *err = sy_asprintf("%s:%d: cannot create an OpenSSL context",
                           cfg->file ? cfg->file : "(config)", cfg->listen_https.line);
        return -1;
    }
    int rc = 0;
    for (size_t i = 0; i < cfg->tls.ncerts && rc == 0; i++) {
        const struct sy_tls_cert_conf *cc = &cfg->tls.certs[i];
        char *at = where(cfg, cc->line);
        if (!cc->cert || !cc->key) {
            *err = sy_asprintf("%s: a certificate entry needs both cert and key", at);
            rc = -1;
        } else if (load_pair(push_cert(t), check, cc->cert, cc->key, at, err) != LOAD_OK) {
            rc = -1;
        } else {
            t->ncerts++;
        }
        sy_free(at);
    }
    if (rc == 0 && cfg->tls.acme.enabled)
        rc = load_acme(t, check, cfg, initial, err);
    SSL_CTX_free(check);
    return rc;
}

void sy__tls_certs_free(struct sy_tls *t)
{
    for (size_t i = 0; i < t->ncerts; i++)
        cert_clear(&t->certs[i]);
    sy_free(t->certs);
    t->certs = NULL;
    t->ncerts = 0;
}

int sy__tls_name_match(const char *pattern, const char *host)
{
    if (strcasecmp(pattern, host) == 0)
        return 2;
    if (pattern[0] != '*' || pattern[1] != '.')
        return 0;
    const char *dot = strchr(host, '.');
    if (!dot || dot == host)
        return 0;
    return strcasecmp(dot, pattern + 1) == 0 ? 1 : 0;
}

static int cert_match(const struct sy__tls_cert *c, const char *host)
{
    int best = 0;
    for (size_t i = 0; i < c->nnames && best < 2; i++) {
        int m = sy__tls_name_match(c->names[i], host);
        if (m > best)
            best = m;
    }
    return best;
}

static void select_for(const struct sy_tls *t, const char *host, long *ecdsa, long *other)
{
    int best_e = 0, best_o = 0;
    *ecdsa = *other = -1;
    for (size_t i = 0; i < t->ncerts; i++) {
        int m = cert_match(&t->certs[i], host);
        if (t->certs[i].ecdsa && m > best_e) {
            best_e = m;
            *ecdsa = (long)i;
        } else if (!t->certs[i].ecdsa && m > best_o) {
            best_o = m;
            *other = (long)i;
        }
    }
}

void sy__tls_select(const struct sy_tls *t, const char *host, long *ecdsa, long *other)
{
    *ecdsa = *other = -1;
    if (t->ncerts == 0)
        return;
    if (host && *host)
        select_for(t, host, ecdsa, other);
    if (*ecdsa >= 0 || *other >= 0)
        return;
    /* No SNI, or an unknown name: the first certificate, with its other-type twin. */
    const struct sy__tls_cert *first = &t->certs[0];
    if (first->nnames)
        select_for(t, first->names[0], ecdsa, other);
    if (first->ecdsa)
        *ecdsa = 0;
    else
        *other = 0;
}

int sy__tls_sni_cb(SSL *ssl, int *al, void *arg)
{
    (void)al;
    const struct sy_tls *t = arg;
    long e, o;
    sy__tls_select(t, SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name), &e, &o);
    for (size_t i = 0; i < t->npairs; i++) {
        if (t->pairs[i][0] == e && t->pairs[i][1] == o) {
            if (i > 0)
                SSL_set_SSL_CTX(ssl, t->ctxs[i]);
            return SSL_TLSEXT_ERR_OK;
        }
    }
    /* A selection not prepared in advance: install its certificates on this connection. */
    return sy__tls_cert_cb(ssl, arg) == 1 ? SSL_TLSEXT_ERR_OK : SSL_TLSEXT_ERR_ALERT_FATAL;
}

/*
 * Certificate callback: runs during the handshake, after the ClientHello is
 * parsed and before OpenSSL picks a certificate type. Installs the matching
 * ECDSA and RSA certificates on this SSL; OpenSSL then serves the one the
 * client's signature algorithms and ciphers allow.
 */
int sy__tls_cert_cb(SSL *ssl, void *arg)
{
    const struct sy_tls *t = arg;
    long e, o;
    sy__tls_select(t, SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name), &e, &o);
    SSL_certs_clear(ssl);
    long pick[2] = {e, o};
    for (int i = 0; i < 2; i++) {
        if (pick[i] < 0)
            continue;
        const struct sy__tls_cert *c = &t->certs[pick[i]];
        if (SSL_use_cert_and_key(ssl, c->x509, c->key, c->chain, 1) != 1)
            return 0;
    }
    return 1;
}
