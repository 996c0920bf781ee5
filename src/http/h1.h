/*
 * h1.h: strict HTTP/1.1 message parsing (RFC 9110 / RFC 9112).
 *
 * Zero-copy: every struct sy_str points into the caller's buffer. The parsers
 * are stateless over a growing buffer (picohttpparser style): call again with
 * the whole head so far. Results:
 *   > 0   length of the complete head in bytes (request/status line + headers
 *         + the empty line)
 *   -2    incomplete, need more bytes (SY_H1_PARTIAL)
 *   -1    invalid (SY_H1_INVALID); *status holds the HTTP status to answer
 */
#ifndef SY_HTTP_H1_H
#define SY_HTTP_H1_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/str.h"

#define SY_H1_PARTIAL (-2)
#define SY_H1_INVALID (-1)

struct sy_h1_header {
    struct sy_str name;
    struct sy_str value;       /* leading/trailing OWS removed */
};

struct sy_h1_request {
    struct sy_str method;
    struct sy_str target;      /* request-target as sent */
    int minor_version;         /* 0 or 1 (HTTP/1.0, HTTP/1.1) */
    struct sy_h1_header *headers; /* caller-supplied array */
    size_t num_headers;
};

struct sy_h1_response {
    int minor_version;
    int status;                /* 100..999 */
    struct sy_str reason;
    struct sy_h1_header *headers;
    size_t num_headers;
};

struct sy_h1_limits {
    size_t max_head;           /* whole head; beyond -> 431 (request) */
    size_t max_headers;        /* header lines; beyond -> 431; must be <= array capacity */
    size_t max_uri;            /* request-target; beyond -> 414 */
};

/*
 * Parses a request head. Strict: rejects bare CR, NUL and other CTLs, a
 * space or tab before the colon, obs-fold (a line starting with SP/HTAB),
 * invalid tokens in method and header names, versions other than HTTP/1.0
 * and HTTP/1.1 (505 for HTTP/2+ or malformed), and leading empty lines beyond
 * one CRLF (RFC 9112 §2.2 allows ignoring at least one).
 * On -1 sets *status: 400, 414, 431, 505 (or 501 where fitting).
 * When the head is still incomplete but already exceeds a limit, returns -1
 * with 431/414 rather than -2.
 */
int sy_h1_parse_request(const char *buf, size_t len, struct sy_h1_request *req,
                        const struct sy_h1_limits *lim, int *status);

/* Parses a response head (from an upstream). Same strictness; -1 means a bad upstream (502). */
int sy_h1_parse_response(const char *buf, size_t len, struct sy_h1_response *resp,
                         const struct sy_h1_limits *lim);

enum sy_h1_body {
    SY_H1_BODY_NONE = 0,       /* no body */
    SY_H1_BODY_LENGTH,         /* Content-Length bytes */
    SY_H1_BODY_CHUNKED,        /* chunked transfer coding */
    SY_H1_BODY_EOF             /* response only: until the connection closes */
};

struct sy_h1_framing {
    enum sy_h1_body body;
    uint64_t length;           /* for SY_H1_BODY_LENGTH */
    int keepalive;             /* connection persists after this message */
    int upgrade;               /* request: Connection has "upgrade" and Upgrade present */
    int expect_continue;       /* request: Expect: 100-continue */
    const struct sy_h1_header *host; /* request: the Host header, or NULL */
};

/*
 * Decides request framing per RFC 9112 §6. Errors (return -1, *status set):
 * Transfer-Encoding with Content-Length (400), Transfer-Encoding whose final
 * coding is not chunked or with any coding other than chunked (501 for an
 * unknown coding, 400 for a malformed or repeated one), Transfer-Encoding on
 * HTTP/1.0 (400), several or invalid Content-Length values, even identical ones
 * in different lines unless equal (400), missing Host on HTTP/1.1 or several
 * Host headers (400), unsupported Expect (417). Returns 0 on success.
 */
int sy_h1_request_framing(const struct sy_h1_request *req, struct sy_h1_framing *f, int *status);

/*
 * Decides response framing per RFC 9112 §6.3 given the request method
 * (HEAD, CONNECT) and status (1xx, 204, 304 have no body). Conflicting or
 * invalid framing returns -1 (the proxy answers 502).
 */
int sy_h1_response_framing(const struct sy_h1_response *resp, struct sy_str req_method,
                           struct sy_h1_framing *f);

/*
 * Chunked body scanner. It validates the chunked framing of bytes that are
 * forwarded unchanged and tells where the message ends. Strict: chunk-size
 * is 1..16 hex digits (no overflow), extensions must be token[=token|quoted],
 * every line ends in CRLF, trailer fields obey header syntax, the chunk-size
 * line is at most 4 KiB and all trailers at most 16 KiB.
 */
struct sy_h1_chunked {
    int state;                 /* private */
    uint64_t remaining;        /* private: data bytes left in the current chunk */
    size_t line;               /* private: bytes of the current line / trailer block */
    uint64_t data_bytes;       /* public: payload bytes seen so far */
};

void sy_h1_chunked_init(struct sy_h1_chunked *c);

/*
 * Scans up to `len` bytes. Returns the number of bytes that belong to the
 * message (all of them unless it ended inside the buffer), sets *done to 1
 * once the last chunk and trailers are complete. Returns -1 on invalid input.
 */
ssize_t sy_h1_chunked_scan(struct sy_h1_chunked *c, const char *buf, size_t len, int *done);

/* Finds a header by name (case-insensitive); returns NULL when absent. */
const struct sy_h1_header *sy_h1_find(const struct sy_h1_header *h, size_t n, struct sy_str name);

/*
 * Iterates the comma-separated elements of a list-valued field: returns 1 and
 * sets *elem (trimmed, may be empty) while elements remain. *pos starts at 0.
 */
int sy_h1_next_list_elem(struct sy_str value, size_t *pos, struct sy_str *elem);

/* 1 when c is a tchar (RFC 9110 §5.6.2). */
int sy_h1_is_tchar(unsigned char c);

#endif
