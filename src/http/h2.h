/*
 * h2.h: an HTTP/2 request head, checked strictly and translated into the
 * HTTP/1.1 request form the gateway forwards (RFC 9113 §8.2, §8.3).
 *
 * This is the h2-to-h1 smuggling surface: whatever a header block holds, it
 * is either refused or becomes a request head that an HTTP/1.1 parser reads
 * back exactly as meant (fuzz_h2_request checks that). No nghttp2 types: the
 * caller decodes HPACK and feeds the fields one at a time, in order.
 *
 * Refused as malformed (a stream error, never forwarded): names that are
 * empty, hold anything but lower-case tchars, or a colon outside a leading
 * one; values with NUL, CR, LF or another control but HTAB, or with leading
 * or trailing SP/HTAB; connection-specific fields (connection, keep-alive,
 * proxy-connection, transfer-encoding, upgrade) and te other than
 * "trailers"; pseudo-headers that are unknown (:status, ...), repeated,
 * after a regular field, or missing (:method, :scheme, :path); a method that
 * is not a token; CONNECT without :protocol, :protocol without CONNECT; a
 * :path that is not origin-form (visible ASCII starting with "/") or "*" with
 * OPTIONS; :authority and host that differ, or two host fields; several
 * content-length fields; a content-length other than 0 on a request that
 * ends with its head.
 *
 * Extended CONNECT (RFC 8441): :method CONNECT with :protocol websocket,
 * :scheme, :path and :authority becomes "GET <path>" with Upgrade: websocket,
 * Connection: Upgrade and the caller's own Sec-WebSocket-Key (the client's
 * one, if any, is dropped); it must not carry content-length, and its DATA
 * is tunnel bytes, never framed as a body. Any other :protocol is answered
 * 501 (well-formed, not implemented) and never forwarded.
 */
#ifndef SY_HTTP_H2_H
#define SY_HTTP_H2_H

#include <stddef.h>
#include <stdint.h>

#include "http/h1.h"

/* Fields of one request, the ones the translation adds included. */
#define SY_H2_MAX_FIELDS 252
/* A Sec-WebSocket-Key: base64 of 16 bytes (RFC 6455 §4.1), and its Sec-WebSocket-Accept. */
#define SY_H2_WS_KEY_LEN 24
#define SY_H2_WS_ACCEPT_LEN 28

struct sy_h2_slice {
    uint32_t o, l;             /* offset and length in the head's bytes */
    int set;
};

struct sy_h2_field {
    struct sy_h2_slice name, value;
};

/* One header block being received. Zero it, then sy_h2_head_reset() before each block. */
struct sy_h2_head {
    char *buf;                 /* the field bytes: slices point here */
    uint32_t len, cap;
    uint32_t size;             /* RFC 7541 size so far: name + value + 32 per field */
    struct sy_h2_field *fields;
    uint32_t nfields;
    struct sy_h2_slice method, scheme, authority, path, host, protocol;
    uint32_t ncookies, nlength;
    int malformed;             /* refuse: stream error PROTOCOL_ERROR */
    int status;                /* answer this instead (431) */
    uint32_t max_size, max_fields;
    /* Extended CONNECT: the caller sets ws_key before sy_h2_head_finish() when
     * protocol.set; websocket is 1 after a successful finish of such a block. */
    char ws_key[SY_H2_WS_KEY_LEN];
    int websocket;
};

/* A new block: limits from the configuration (bytes of RFC 7541 size, regular fields). */
void sy_h2_head_reset(struct sy_h2_head *h, uint32_t max_size, uint32_t max_fields);

/*
 * Adds one field, as decoded. Returns 0; -1 when the block went so far beyond
 * max_size (4 times, plus 64 KiB) that it is an attack on the decoder rather
 * than a request: the connection should end.
 */
int sy_h2_head_add(struct sy_h2_head *h, const uint8_t *name, size_t nl, const uint8_t *value,
                   size_t vl);

/*
 * The block is complete; end_stream: no body follows. Returns 0 with *req
 * filled (method, target = :path, HTTP/1.1, headers in hv, which has room
 * for SY_H2_MAX_FIELDS + 4 entries: host from :authority first, cookie
 * fields joined with "; " where the first one was, transfer-encoding:
 * chunked when a body follows without content-length, then *chunked is 1);
 * the slices point into h->buf, which the caller then owns (*head; h->buf
 * becomes NULL; free it with sy_free). An extended CONNECT becomes the
 * Upgrade GET described above (host, upgrade, connection, sec-websocket-key,
 * then the fields; never chunked) and sets h->websocket. Returns -1 when
 * malformed, or the status to answer (431; 414 when :path is longer than
 * max_uri; 501 for a :protocol other than websocket).
 */
int sy_h2_head_finish(struct sy_h2_head *h, int end_stream, size_t max_uri,
                      struct sy_h1_request *req, struct sy_h1_header *hv, char **head,
                      int *chunked);

void sy_h2_head_free(struct sy_h2_head *h);

/* A Sec-WebSocket-Key from 16 (random) bytes: base64, SY_H2_WS_KEY_LEN characters, no NUL. */
void sy_h2_ws_key(const uint8_t nonce[16], char key[SY_H2_WS_KEY_LEN]);
/* 1 when `accept` (a Sec-WebSocket-Accept value) answers `key` (RFC 6455 §4.2.2). */
int sy_h2_ws_accept_ok(const char key[SY_H2_WS_KEY_LEN], struct sy_str accept);
/*
 * Trailer fields (RFC 9113 §8.1, RFC 9110 §6.5), both ways. Only fields that
 * may follow a body are passed on: not the connection-specific ones, nor
 * those about framing, routing, the content as a whole or authentication
 * (content-length, transfer-encoding, trailer, host, content-type,
 * content-encoding, content-range, authorization, ...), nor the ones the
 * gateway sets itself (x-forwarded-*, forwarded, x-request-id). Pseudo-header
 * names are refused.
 */
int sy_h2_trailer_allowed(const char *name, size_t nl);

/* A request's trailer block, serialized as HTTP/1.1 trailer lines ("name: value\r\n"). */
struct sy_h2_trailers {
    char *buf;
    uint32_t len, cap;
    uint32_t size;             /* RFC 7541 size so far */
    uint32_t max_size, max_len;
    int malformed;             /* a field with an invalid name or value: the stream is reset */
    int too_big;               /* over max_size (RFC 7541 size) or max_len bytes of lines */
};

/* Zero it, then this before the block: limits as for a head, max_len for the lines. */
void sy_h2_trailers_reset(struct sy_h2_trailers *t, uint32_t max_size, uint32_t max_len);

/*
 * Adds one decoded field: checked as a head's fields are, and kept when
 * sy_h2_trailer_allowed(). Returns 0; -1 far beyond max_size (as
 * sy_h2_head_add()): the connection should end.
 */
int sy_h2_trailers_add(struct sy_h2_trailers *t, const uint8_t *name, size_t nl,
                       const uint8_t *value, size_t vl);

void sy_h2_trailers_free(struct sy_h2_trailers *t);

#endif
