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

/*
 * Limits for one head; required (lim is never NULL). A head of exactly
 * max_head bytes is accepted. Only the first max_head bytes of the buffer
 * are ever examined, so bytes past a complete head (a pipelined request)
 * cost nothing.
 */
struct sy_h1_limits {
    size_t max_head;           /* whole head; beyond -> 431 (request) */
    size_t max_headers;        /* header lines; beyond -> 431; must be <= array capacity */
    size_t max_uri;            /* request-target; beyond -> 414 (request only) */
};

/*
 * Parses a request head. Strict: every line ends in CRLF (a bare LF or bare
 * CR is 400); rejects NUL and other CTLs (HTAB is allowed inside values,
 * obs-text 0x80-0xFF too), a space or tab before the colon, obs-fold (a line
 * starting with SP/HTAB), an empty or non-token method or header name, more
 * than one SP between the parts, a request-target that is empty or holds
 * anything but visible ASCII (0x21-0x7E), and leading empty lines beyond one
 * CRLF (RFC 9112 §2.2 allows ignoring at least one; the skipped CRLF counts
 * in the returned length). The version must be exactly HTTP/1.0 or HTTP/1.1:
 * another well-formed HTTP/D.D is 505, anything else 400.
 * On -1 sets *status: 400, 414, 431 or 505. When the head is still incomplete
 * but already exceeds a limit, returns -1 with 431/414 rather than -2.
 * req->headers must point to at least lim->max_headers entries.
 */
int sy_h1_parse_request(const char *buf, size_t len, struct sy_h1_request *req,
                        const struct sy_h1_limits *lim, int *status);

/*
 * Parses a response head (from an upstream). Same strictness; -1 means a bad
 * upstream (502), including a head larger than lim->max_head. The status line
 * is `HTTP/1.0` or `HTTP/1.1`, SP, three digits 100-999, then SP and a reason
 * (possibly empty). Leniency: `HTTP/1.1 200\r\n` without the SP is accepted
 * with an empty reason. resp->reason excludes the SP after the status code.
 */
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
    uint64_t length;           /* for SY_H1_BODY_LENGTH (may be 0); at most INT64_MAX */
    int keepalive;             /* connection persists after this message */
    int upgrade;               /* request: Connection has "upgrade" and Upgrade present (HTTP/1.1);
                                  response: status 101 with an Upgrade header */
    int expect_continue;       /* request: Expect: 100-continue */
    const struct sy_h1_header *host; /* request: the Host header, or NULL */
    struct sy_str target;      /* request: the request-target to forward, in origin-form
                                  (or "*"); a slice of req->target or a static "/" */
};

/*
 * Decides request framing per RFC 9112 §6. Errors (return -1, *status set):
 * Transfer-Encoding on HTTP/1.0 (400); missing Host on HTTP/1.1, several Host
 * headers or a Host value that is not uri-host[:port] (400); Content-Length
 * that is not 1*DIGIT <= 2^63-1, or given more than once, even with identical
 * values, in several lines or as a list (400); Transfer-Encoding with
 * Content-Length (400); Transfer-Encoding that is malformed, empty, repeats
 * chunked or does not end in chunked (400); any coding other than chunked,
 * identity included (501); an Expect member other than 100-continue (417).
 * Checked in that order. Empty list elements are ignored. Then the
 * request-target form (RFC 9112 section 3.2): CONNECT is 501 (a gateway does
 * not tunnel); origin-form ("/...") is kept; asterisk-form only with OPTIONS;
 * absolute-form "http://" or "https://" authority [path-abempty] [?query]
 * (scheme case-insensitive) is accepted when a Host header is present and
 * equals the authority (case-insensitively), and f->target is then its
 * origin-form (a bare authority becomes "/"); anything else, an authority
 * with userinfo, an empty authority or "http://host?query" (no path) is 400.
 * On success returns 0: body is CHUNKED, LENGTH (length may be 0) or NONE;
 * keepalive is HTTP/1.1 without "Connection: close" or HTTP/1.0 with
 * "Connection: keep-alive"; expect_continue and upgrade are ignored (0) on
 * HTTP/1.0 (RFC 9110 §10.1.1, §7.8); host points into req->headers.
 */
int sy_h1_request_framing(const struct sy_h1_request *req, struct sy_h1_framing *f, int *status);

/*
 * Decides response framing per RFC 9112 §6.3 given the request method
 * (HEAD, CONNECT; compared case-sensitively) and status: HEAD, 1xx, 204, 304
 * and 2xx to CONNECT have no body. Otherwise Transfer-Encoding ending in
 * chunked is CHUNKED; ending in another coding is EOF; Content-Length is
 * LENGTH (identical repeated values are collapsed); nothing is EOF. EOF always
 * clears keepalive. Invalid (-1, the proxy answers 502), even when no body
 * follows: Transfer-Encoding with Content-Length, Transfer-Encoding in an
 * HTTP/1.0 response, a malformed coding list or chunked twice, a
 * Content-Length that is not 1*DIGIT <= 2^63-1 or differing values.
 */
int sy_h1_response_framing(const struct sy_h1_response *resp, struct sy_str req_method,
                           struct sy_h1_framing *f);

/*
 * Chunked body scanner. It validates the chunked framing of bytes that are
 * forwarded unchanged and tells where the message ends. Strict: chunk-size
 * is 1..16 hex digits with a value <= 2^63-1, extensions must be
 * ;token[=token|quoted-string] with no whitespace anywhere on the line, every
 * line ends in CRLF, trailer fields obey header syntax (no obs-fold), the
 * chunk-size line (CRLF included) is at most SY_H1_CHUNK_LINE_MAX bytes and
 * the trailer section (final CRLF included) at most SY_H1_TRAILERS_MAX.
 * The result does not depend on how the input is split across calls.
 */
#define SY_H1_CHUNK_LINE_MAX 4096
#define SY_H1_TRAILERS_MAX 16384

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
 * once the last chunk and trailers are complete (later calls return 0 with
 * *done = 1). Returns -1 on invalid input, and again on every later call.
 */
ssize_t sy_h1_chunked_scan(struct sy_h1_chunked *c, const char *buf, size_t len, int *done);

/* Finds a header by name (case-insensitive); returns NULL when absent. */
const struct sy_h1_header *sy_h1_find(const struct sy_h1_header *h, size_t n, struct sy_str name);

/*
 * Iterates the comma-separated elements of a list-valued field: returns 1 and
 * sets *elem (trimmed, may be empty) while elements remain. *pos starts at 0.
 * A value that is empty or only whitespace has no elements; otherwise n
 * commas give n + 1 elements ("a,,b" gives "a", "", "b"). Commas inside a
 * quoted-string do not split.
 */
int sy_h1_next_list_elem(struct sy_str value, size_t *pos, struct sy_str *elem);

/* 1 when c is a tchar (RFC 9110 §5.6.2). */
int sy_h1_is_tchar(unsigned char c);

#endif
