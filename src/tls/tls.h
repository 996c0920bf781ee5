/*
 * tls.h: everything TLS, behind a small API. OpenSSL is included only in
 * src/tls/; callers see opaque structs, fds and byte counts.
 *
 * Objects and threads:
 * - struct sy_tls is built from one config snapshot (certificates, ACME
 *   certificate or its placeholder, SSL_CTX). It is immutable once built and
 *   refcounted with atomics: connections on any worker thread hold a
 *   reference, so a reload never cuts a connection.
 * - struct sy_tls_conn is one server-side TLS connection. It lives on one
 *   worker thread and must only be used from there. The event loop owns the
 *   socket (non-blocking, already accepted); this module never closes it.
 * - Session tickets are encrypted with a process-wide key ring (rotated every
 *   12 h, two previous keys kept for decryption), so a ticket issued on one
 *   thread or by one sy_tls resumes on any other thread and after reloads.
 *   There is no server-side session cache. Keys are not shared between
 *   replicas.
 * - Counters are process-wide relaxed atomics.
 *
 * The caller must ignore SIGPIPE (OpenSSL writes with write(2) on a socket
 * connection; sy_tls_conn_new_io connections write through their callbacks).
 * See docs/internals/tls.md.
 */
#ifndef SY_TLS_TLS_H
#define SY_TLS_TLS_H

#include <stddef.h>
#include <sys/types.h>

struct sy_config;
struct sy_acme_conf;
struct sy_tls;
struct sy_tls_conn;
struct sy_tls_watch;

/*
 * Builds the TLS state of a config snapshot: reads every tls.certificates
 * pair and, when tls.acme is enabled, the stored ACME pair of the first
 * domain (or a self-signed placeholder while there is none).
 *
 * Returns a new object holding one reference, or NULL:
 * - with *err set to a heap string "FILE:LINE: reason" (the caller frees it)
 *   when a file is missing or unreadable, holds no PEM certificate or key,
 *   the key does not match its certificate, the certificate is expired or
 *   not yet valid, or listen.https is set with neither certificates nor
 *   ACME. FILE is cfg->file, LINE the line of the offending entry;
 * - with *err set to NULL when the config has no TLS at all (no https
 *   listener, no certificate, no ACME): nothing to serve.
 * Reads files; call it from the reload path, never from a worker loop.
 */
struct sy_tls *sy_tls_new(const struct sy_config *cfg, char **err);

/*
 * The same for the first load of a process: a stored ACME pair that cannot
 * be used for any reason (unreadable, bad PEM, key not matching the
 * certificate, as after a crash between the writes of the .key and the
 * .crt) is logged as an error and the placeholder is served, because
 * refusing to start would also stop the ACME renewal that repairs it.
 * sy_tls_new (reloads) refuses such a pair, so the previous snapshot keeps
 * serving while a renewal is between its two renames.
 */
struct sy_tls *sy_tls_new_initial(const struct sy_config *cfg, char **err);

/* Reference counting; any thread. The last unref frees everything. */
void sy_tls_ref(struct sy_tls *t);
void sy_tls_unref(struct sy_tls *t);

/* Number of certificates served (static ones, then the ACME one). */
size_t sy_tls_cert_count(const struct sy_tls *t);

/*
 * A server-side TLS connection on an accepted non-blocking socket. Takes a
 * reference on t. Returns NULL when OpenSSL cannot allocate (the caller
 * closes the socket). Never blocks.
 */
struct sy_tls_conn *sy_tls_conn_new(struct sy_tls *t, int fd);

/*
 * Ciphertext I/O supplied by the caller, for a connection whose bytes do not
 * go through read(2)/write(2) on a socket (the event loop's completion I/O).
 * Both are called from inside OpenSSL, on the connection's thread, with the
 * `arg` given to sy_tls_conn_new_io.
 * - read copies received bytes: >0 bytes, 0 the end of the stream, -1
 *   nothing yet (the caller is told when bytes arrive), -2 error (errno
 *   set). It sets *drained when nothing is left to read after it, so
 *   sy_tls_drained() can spare the caller a read that would only say -1.
 * - write takes bytes to send: >0 bytes taken (possibly fewer than len), -1
 *   none now (the caller is told when there is room), -2 error (errno set).
 */
struct sy_tls_io_ops {
    ssize_t (*read)(void *arg, char *buf, size_t len, int *drained);
    ssize_t (*write)(void *arg, const char *buf, size_t len);
};

/*
 * The same as sy_tls_conn_new on bytes moved by ops instead of a socket:
 * OpenSSL's record layer reads from ops->read and writes into ops->write
 * directly, with no memory BIO and no second copy. ops must outlive the
 * connection. Returns NULL when OpenSSL cannot allocate.
 */
struct sy_tls_conn *sy_tls_conn_new_io(struct sy_tls *t, const struct sy_tls_io_ops *ops,
                                       void *arg);

/* Frees the SSL object and drops the reference; does not close the fd. */
void sy_tls_conn_free(struct sy_tls_conn *c);

enum sy_tls_io {
    SY_TLS_DONE = 0,
    SY_TLS_WANT_READ = 1,       /* wait for the fd to be readable, then call again */
    SY_TLS_WANT_WRITE = 2,      /* wait for the fd to be writable, then call again */
    SY_TLS_CLOSED = 3,          /* the peer closed (close_notify or EOF) */
    SY_TLS_ERROR = -1           /* fatal: free the connection and close the fd */
};

/*
 * Drives the handshake. Returns SY_TLS_DONE, SY_TLS_WANT_READ,
 * SY_TLS_WANT_WRITE or SY_TLS_ERROR. A completed handshake is counted (and
 * whether it resumed a session); a failed one is counted by reason, logged
 * at debug level only, and costs nothing else.
 */
int sy_tls_handshake(struct sy_tls_conn *c);

/*
 * Reads application data. Returns >0 bytes; 0 with *io = SY_TLS_CLOSED when
 * the peer closed; -1 with *io = SY_TLS_WANT_READ, SY_TLS_WANT_WRITE or
 * SY_TLS_ERROR. Bytes may still be buffered inside TLS after a read that
 * filled `len` completely: see sy_tls_pending().
 */
ssize_t sy_tls_read(struct sy_tls_conn *c, void *buf, size_t len, int *io);

/* Decrypted bytes buffered inside the TLS layer (readable without the fd). */
size_t sy_tls_pending(const struct sy_tls_conn *c);

/*
 * After a read: 1 when another sy_tls_read() could only return WANT_READ,
 * because nothing is buffered inside TLS (not even part of a record) and the
 * socket's last read(2) emptied it (sy_tls_conn_new_io: the last read
 * callback set *drained). Bytes that arrive later raise a new
 * edge-triggered event, so the caller may wait for it instead of reading.
 */
int sy_tls_drained(const struct sy_tls_conn *c);

/*
 * Writes application data; same convention as sy_tls_read (0 is never
 * returned for len > 0). Partial writes are allowed: >0 may be less than
 * len. After -1 with SY_TLS_WANT_*, call again with the same bytes (the
 * buffer may move); nothing of them was consumed.
 */
ssize_t sy_tls_write(struct sy_tls_conn *c, const void *buf, size_t len, int *io);

/*
 * Best-effort close_notify; never blocks and never waits for the peer's.
 * Returns SY_TLS_DONE (sent, or nothing to do), SY_TLS_WANT_WRITE (the
 * socket is full: closing anyway is fine) or SY_TLS_ERROR. Not sent after a
 * fatal error.
 */
int sy_tls_shutdown(struct sy_tls_conn *c);

/* The SNI host name the client sent, or NULL. Valid until the conn is freed. */
const char *sy_tls_conn_sni(const struct sy_tls_conn *c);

/* "TLSv1.3", "TLSv1.2", ... for logs; the negotiated protocol. */
const char *sy_tls_conn_version(const struct sy_tls_conn *c);

/* 1 when the handshake negotiated h2 through ALPN. */
int sy_tls_conn_h2(const struct sy_tls_conn *c);

/* SHA-1 of n bytes (RFC 6455's Sec-WebSocket-Accept; not for anything secret). */
void sy_tls_sha1(const void *p, size_t n, unsigned char out[20]);

/* Count a handshake the caller gave up on (its handshake timer fired). */
void sy_tls_count_handshake_timeout(void);

/*
 * Prometheus text exposition for /metrics, written to buf (NUL-terminated
 * when cap > 0). Like snprintf, returns the length the whole text needs:
 * when it is >= cap the output was cut, call again with a larger buffer.
 * Families: switchyard_tls_handshakes_total,
 * switchyard_tls_resumed_handshakes_total,
 * switchyard_tls_handshake_failures_total{reason} and, when t is not NULL,
 * switchyard_tls_certificate_expiry_timestamp_seconds{cert,subject,serial}.
 */
size_t sy_tls_metrics(const struct sy_tls *t, char *buf, size_t cap);

/*
 * Where the ACME code stores the certificate of a's first domain:
 * <storage>/certificates/<domain>.crt (full chain, PEM) and .key (PEM).
 * Sets two heap strings (the caller frees them) and returns 0, or -1 when
 * there is no storage or domain, or the domain is unfit for a file name.
 */
int sy_tls_acme_cert_paths(const struct sy_acme_conf *a, char **crt, char **key);

/*
 * Certificate file watcher: a side thread that watches the directories of
 * every certificate/key file (inotify: Kubernetes swaps Secrets by renaming
 * a ..data symlink) and also polls the files every 5 s (mtime, size, inode
 * of the resolved file: network file systems send no inotify events).
 * A burst of changes calls changed(arg) once, from the watcher thread, about
 * 300 ms after the last event; keep it short (signal the main loop, which
 * reloads and then calls sy_tls_watch_set with the new snapshot).
 *
 * start returns NULL when the thread cannot start. It watches nothing until
 * the first sy_tls_watch_set. set copies what it needs from cfg (the caller
 * may free cfg afterwards) and takes a new baseline. stop joins the thread
 * and frees the watcher; changed() is never called after stop returns.
 */
struct sy_tls_watch *sy_tls_watch_start(void (*changed)(void *arg), void *arg);
void sy_tls_watch_set(struct sy_tls_watch *w, const struct sy_config *cfg);
void sy_tls_watch_stop(struct sy_tls_watch *w);

#endif
