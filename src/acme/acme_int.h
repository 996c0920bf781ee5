/*
 * acme_int.h: pieces of the ACME client shared between the src/acme sources and the
 * unit tests. Not an API for other modules: use acme.h.
 */
#ifndef SY_ACME_ACME_INT_H
#define SY_ACME_ACME_INT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "core/str.h"

/* ---- jws.c: encodings, keys, JWK, JWS, CSR ---- */

/*
 * base64url without padding (RFC 7515 §2) into out, NUL-terminated.
 * Returns the length, or 0 when cap is too small (and len > 0).
 */
size_t sy__acme_b64url(const void *in, size_t len, char *out, size_t cap);

/* The same into a heap string (sy_free it). */
char *sy__acme_b64url_dup(const void *in, size_t len);

/* 1 when token is 1..SY_ACME_TOKEN_MAX characters of [A-Za-z0-9_-], else 0. */
int sy__acme_token_valid(struct sy_str token);

/* Fresh ECDSA P-256 key, or NULL (OpenSSL errors logged). */
EVP_PKEY *sy__acme_key_generate(void);

/* Parses a PEM private key; NULL unless it is an EC P-256 key. */
EVP_PKEY *sy__acme_key_from_pem(const char *pem, size_t len);

/* PKCS#8 PEM of key as a heap string, length in *len; NULL on failure. */
char *sy__acme_key_to_pem(EVP_PKEY *key, size_t *len);

/*
 * RFC 7638 canonical JWK of the public key: {"crv":"P-256","kty":"EC","x":..,"y":..}
 * (members in lexicographic order, no white space). Heap string or NULL.
 */
char *sy__acme_jwk(EVP_PKEY *key);

/* base64url(SHA-256(canonical JWK)) into out (44 bytes: 43 + NUL). Returns 0 or -1. */
int sy__acme_thumbprint(EVP_PKEY *key, char out[44]);

/*
 * Flattened JWS (RFC 7515 §7.2.2) for an ACME POST, signed with ES256:
 * protected = {"alg":"ES256", "jwk"|"kid", "nonce", "url"}; the "jwk" form is
 * used when kid is NULL. payload NULL means POST-as-GET (empty payload).
 * The signature is r||s, 32 bytes each. Heap string or NULL.
 */
char *sy__acme_jws(EVP_PKEY *key, const char *kid, const char *nonce, const char *url,
                   const char *payload);

/*
 * DER PKCS#10 request signed by key: CN = domains[0] when it fits in 64
 * bytes, subjectAltName = every domain as a dNSName. Heap buffer or NULL.
 */
unsigned char *sy__acme_csr(EVP_PKEY *key, char *const *domains, size_t ndomains, size_t *len);

/*
 * RFC 9773 §4.1 certificate identifier from raw parts: base64url(AKI key
 * identifier) "." base64url(serial number DER content octets). Heap string.
 */
char *sy__acme_ari_id_raw(const unsigned char *aki, size_t akilen, const unsigned char *serial,
                          size_t seriallen);

/* The same from a certificate; NULL when it has no AKI key identifier. */
char *sy__acme_ari_id(X509 *cert);

/* ---- store.c: files and the replica lock ---- */

/* Wall clock in unix milliseconds. */
int64_t sy__acme_now_ms(void);

/*
 * Writes data to path atomically: temp file in the same directory created
 * with `mode`, fsync, rename over path, fsync of the directory.
 * Returns 0 or -1 (errno set, error logged).
 */
int sy__acme_write_atomic(const char *path, const void *data, size_t len, mode_t mode);

/*
 * Like sy__acme_write_atomic but never replaces an existing file: the temp
 * file is link()ed to path. Returns 0 when written, 1 when path already
 * existed (nothing changed), -1 on error.
 */
int sy__acme_write_excl(const char *path, const void *data, size_t len, mode_t mode);

/* Reads a whole file of at most max bytes into a NUL-terminated heap buffer, or NULL. */
char *sy__acme_read_file(const char *path, size_t max, size_t *len);

/*
 * The replica lock: <storage>/lock holds "<holder id> <unix ms>\n", created
 * with O_CREAT|O_EXCL and rewritten in place by each heartbeat. A lock whose
 * timestamp is more than stale_ms old is taken over: it is first renamed to
 * a name unique to the taker (so two takers cannot both win), re-read to
 * make sure it is the stale lock that was judged, then removed. Timestamps
 * come from the holders' clocks: replicas need synchronised clocks (NTP).
 */
struct sy__acme_lock {
    char *path;
    char *id;                  /* holder id: "<host>.<pid>.<random hex>" */
    int64_t stale_ms;
    int held;
    int64_t beat_ms;           /* time of the last successful heartbeat */
};

enum sy__acme_lock_res { SY_ACME_LOCK_TAKEN = 0, SY_ACME_LOCK_BUSY = 1, SY_ACME_LOCK_ERROR = -1 };

void sy__acme_lock_init(struct sy__acme_lock *l, const char *path, int64_t stale_ms);
void sy__acme_lock_dispose(struct sy__acme_lock *l);

/*
 * Tries once to take the lock at time now_ms. On BUSY, *holder (when not
 * NULL) receives a heap copy of the current holder id, or NULL.
 */
enum sy__acme_lock_res sy__acme_lock_acquire(struct sy__acme_lock *l, int64_t now_ms,
                                             char **holder);

/* Rewrites the timestamp. Returns 0, or -1 when the lock is no longer ours (lost). */
int sy__acme_lock_heartbeat(struct sy__acme_lock *l, int64_t now_ms);

/* Removes the lock file if it is still ours. */
void sy__acme_lock_release(struct sy__acme_lock *l);

/* ---- acme.c: timing helpers ---- */

/*
 * Retry-After (RFC 9110 §10.2.3): delay-seconds or an IMF-fixdate. Returns
 * the delay in ms from now_ms (0 for a date in the past), capped at 24 h, or
 * -1 when the value is not valid.
 */
int64_t sy__acme_retry_after_ms(const char *value, int64_t now_ms);

/*
 * Back-off after `failures` consecutive failures (1 = the first): base 60 s
 * doubled per failure up to 24 h, times scale, then "equal jitter": a value
 * in [d/2, d] chosen by rnd. Returns ms (at least 1 when failures > 0), 0
 * when failures is 0.
 */
int64_t sy__acme_backoff_ms(unsigned failures, double scale, uint32_t rnd);

#endif
