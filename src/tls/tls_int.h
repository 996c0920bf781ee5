/*
 * tls_int.h: what the files of src/tls/ share, and the hooks unit tests use.
 * Not for use outside src/tls/ and tests/unit/test_tls*.c.
 */
#ifndef SY_TLS_TLS_INT_H
#define SY_TLS_TLS_INT_H

#include <stdatomic.h>
#include <stddef.h>
#include <time.h>

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "tls/tls.h"

/* One certificate with its key and chain, as loaded (immutable). */
struct sy__tls_cert {
    X509 *x509;
    EVP_PKEY *key;
    STACK_OF(X509) *chain;     /* intermediates, may be empty, never NULL */
    int ecdsa;                 /* 1: EC key; 0: RSA (or another type) */
    char **names;              /* lower-cased SAN DNS names, or the CN when there is none */
    size_t nnames;
    char *label;               /* file path, or "acme-placeholder" (metrics) */
    char *subject;             /* CN, or the first SAN name */
    char *serial;              /* upper-case hex, like `openssl x509 -serial` */
    time_t not_after;
};

/*
 * One SSL_CTX per certificate selection (an ECDSA index and an other-type
 * index, either -1), with its certificates loaded once: the servername
 * callback switches a connection to the context of its selection, so no
 * handshake loads or checks a key. pairs[0]/ctxs[0] is the default selection
 * (no or unknown SNI) and t->ctx == ctxs[0].
 */
struct sy_tls {
    atomic_long refs;
    SSL_CTX *ctx;
    struct sy__tls_cert *certs; /* tls.certificates in order, then the ACME one */
    size_t ncerts;
    SSL_CTX **ctxs;
    long (*pairs)[2];
    size_t npairs;
    int h2;                    /* http2.enabled: ALPN offers h2 first */
};

/* tls_cert.c */
/* initial: a broken stored ACME pair gives the placeholder instead of an error. */
int sy__tls_certs_load(struct sy_tls *t, const struct sy_config *cfg, int initial, char **err);
void sy__tls_certs_free(struct sy_tls *t);
int sy__tls_cert_cb(SSL *ssl, void *arg);
/* Servername callback: moves the connection to the context of its certificate selection. */
int sy__tls_sni_cb(SSL *ssl, int *al, void *arg);

/*
 * Picks the certificates for a host name (NULL: no SNI): the best ECDSA and
 * the best non-ECDSA certificate matching it (exact names before wildcards,
 * then configuration order), falling back to the first certificate's set.
 * Sets indexes or -1. Exposed for tests.
 */
void sy__tls_select(const struct sy_tls *t, const char *host, long *ecdsa, long *other);

/* 2: exact match, 1: wildcard match ("*.a.b" covers exactly one label), 0: none. */
int sy__tls_name_match(const char *pattern, const char *host);

/* tls_ticket.c */
int sy__tls_ticket_cb(SSL *ssl, unsigned char key_name[16], unsigned char *iv,
                      EVP_CIPHER_CTX *ectx, EVP_MAC_CTX *hctx, int enc);

/* Rotates the ticket key ring now (tests; rotation is otherwise timed). */
void sy__tls_ticket_rotate(void);

/* tls_watch.c: start with explicit tunables (tests). use_inotify 0 = poll only. */
struct sy_tls_watch *sy__tls_watch_start_opts(void (*changed)(void *arg), void *arg,
                                              int use_inotify, unsigned poll_ms,
                                              unsigned debounce_ms);

/* Ticket key lifetime: a key encrypts for this long, then decrypts for 2x more. */
#define SY_TLS_TICKET_ROTATE_S (12 * 3600)
#define SY_TLS_TICKET_KEYS 3

#endif
