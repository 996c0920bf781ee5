/*
 * acme.h: automatic certificates with ACME (RFC 8555), HTTP-01 only.
 *
 * One side thread per gateway process talks to the CA with blocking libcurl
 * calls; the workers only ever call sy_acme_http01_answer(), which never
 * blocks on the network. Everything that must be shared between replicas
 * lives in the storage directory (docs/acme.md describes the layout):
 *
 *   <storage>/account.key              ECDSA P-256 account key, PEM, 0600
 *   <storage>/account.json             {"directory": ..., "kid": ...}
 *   <storage>/state.json               failure count and back-off deadline
 *   <storage>/lock                     "<holder id> <unix ms>", the issuing replica
 *   <storage>/certificates/<d>.crt     full chain PEM (d = first domain)
 *   <storage>/certificates/<d>.key     certificate key, PEM, 0600
 *
 * Every file is written atomically (temp file in the same directory, fsync,
 * rename, fsync of the directory). The .key is written before the .crt, so
 * a watcher should treat the .crt rename as the commit and check that the
 * pair matches (X509_check_private_key) before swapping.
 */
#ifndef SY_ACME_ACME_H
#define SY_ACME_ACME_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "config/config.h"
#include "core/str.h"

struct sy_acme;

/* Longest challenge token accepted (RFC 8555 tokens are 43 characters in practice). */
#define SY_ACME_TOKEN_MAX 128
/* Buffer size that always holds an HTTP-01 answer: token "." thumbprint NUL. */
#define SY_ACME_HTTP01_MAX (SY_ACME_TOKEN_MAX + 1 + 43 + 1)

struct sy_acme_status {
    uint64_t orders_valid;      /* orders that ended with a certificate written */
    uint64_t orders_invalid;    /* orders or authorizations the CA declared invalid */
    uint64_t orders_error;      /* network, protocol, rate-limit and storage failures */
    int64_t last_success;       /* unix seconds of the last certificate written here, or 0 */
    int64_t cert_expiry;        /* unix seconds of notAfter of the stored certificate, or 0 */
    int have_account_key;       /* 1 once the account key thumbprint is known */
};

/*
 * Checks an ACME block beyond what the YAML loader checks: https directory,
 * storage set, at least one domain, no wildcard (HTTP-01 cannot prove one),
 * names made of [a-z0-9.-] only (the first one becomes a file name).
 * Returns 0, or -1 with *err set to a heap string (the caller frees it).
 */
int sy_acme_check_conf(const struct sy_acme_conf *conf, char **err);

/*
 * Copies what it needs from conf, creates the storage directories and starts
 * the side thread. Returns NULL with a logged error when conf is unusable or
 * the thread cannot start. Calls curl_global_init(); call it from the main
 * thread before the workers start.
 * Environment knobs (for tests and unusual deployments):
 *   SWITCHYARD_ACME_BACKOFF_SCALE   positive factor on every back-off delay (default 1)
 *   SWITCHYARD_ACME_LOCK_STALE_MS   lock staleness, default 60000; heartbeat every sixth
 *   SWITCHYARD_ACME_START_DELAY_MS  delay before the thread's first step (default 0)
 */
struct sy_acme *sy_acme_start(const struct sy_acme_conf *conf);

/*
 * Wakes the side thread, aborts its transfer in flight, joins it, releases
 * the storage lock if held, frees everything. Safe on NULL. Must not race
 * with sy_acme_http01_answer() callers: stop the workers first.
 */
void sy_acme_stop(struct sy_acme *a);

/*
 * HTTP-01 key authorization for `token` (the last path segment of
 * /.well-known/acme-challenge/<token>), callable from any thread: writes
 * "<token>.<base64url(SHA-256(JWK thumbprint of the account key))>" and a NUL
 * into out. Never touches the network; when no key is cached yet it re-reads
 * <storage>/account.key at most once per second (another replica may have
 * created it).
 * Returns the length written (without the NUL), 0 when the token is not a
 * base64url token of 1..SY_ACME_TOKEN_MAX characters or cap is below
 * SY_ACME_HTTP01_MAX (answer 404), -1 when no account key exists yet (503).
 */
ssize_t sy_acme_http01_answer(struct sy_acme *a, struct sy_str token, char *out, size_t cap);

/*
 * Appends Prometheus text exposition to buf:
 *   switchyard_acme_orders_total{result="valid|invalid|error"}
 *   switchyard_acme_last_success_timestamp_seconds
 *   switchyard_acme_certificate_expiry_timestamp_seconds
 * Returns the bytes written (no NUL counted; a NUL follows when room
 * remains), or 0 when cap is too small for the whole text (nothing useful is
 * written then). 1024 bytes are always enough. Any thread.
 */
size_t sy_acme_metrics(struct sy_acme *a, char *buf, size_t cap);

/* Snapshot of the counters above (any thread). */
void sy_acme_get_status(struct sy_acme *a, struct sy_acme_status *st);

/*
 * Paths of the certificate chain and key the TLS module should load and
 * watch, as heap strings (sy_free them). Pure: no file is touched.
 */
char *sy_acme_cert_path(const struct sy_acme_conf *conf);
char *sy_acme_key_path(const struct sy_acme_conf *conf);

#endif
