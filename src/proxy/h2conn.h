/*
 * h2conn.h: the HTTP/2 client side (h2conn.c), over libnghttp2.
 *
 * A TLS connection that negotiated h2 through ALPN stays a struct sy_conn
 * (socket, TLS, timer, the worker's lists, the drain) in state SY_ST_H2, and
 * gets a struct sy_h2conn: the nghttp2 session and its streams. Each request
 * stream is translated into the request form an exchange takes and runs an
 * exchange (exchange.c) like an HTTP/1.1 request does; the exchange talks to
 * the stream through struct sy_client_ops.
 *
 * Worker-thread only.
 */
#ifndef SY_PROXY_H2CONN_H
#define SY_PROXY_H2CONN_H

#include <stdint.h>

struct sy_conn;
struct sy_worker;

/* The handshake chose h2: the connection becomes an HTTP/2 one. Returns SY_P_*. */
int sy_h2_start(struct sy_conn *c);
/* Reads, runs the streams' exchanges, writes, until nothing moves. Returns SY_P_*. */
int sy_h2_pump(struct sy_conn *c);
/* The earliest deadline of the connection and its streams (loop ms). */
uint64_t sy_h2_deadline(struct sy_conn *c);
/* A deadline passed: the streams or the connection it concerns end. */
void sy_h2_timeout(struct sy_conn *c);
/* Drain: GOAWAY; open streams finish, then the connection closes. */
void sy_h2_drain(struct sy_conn *c);
/* The connection is closing: every unfinished exchange is closed (logged as such). */
void sy_h2_close(struct sy_conn *c);
/* Frees the connection's HTTP/2 state (sy_conn_reap only). */
void sy_h2_free(struct sy_conn *c);
/* Pumps the connections whose streams' upstreams moved during the loop iteration
 * (the end-of-iteration callback, before sy_conn_reap). */
void sy_h2_run_woken(struct sy_worker *w);
/* Frees the streams that ended during the loop iteration (sy_conn_reap only). */
void sy_h2_reap(struct sy_worker *w);

#endif
