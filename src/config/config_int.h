/*
 * config_int.h: value syntax helpers shared by the files of src/config/.
 *
 * Not a public API: only the loader includes this. Every function checks
 * syntax only; nothing here resolves a name or touches a file.
 */
#ifndef SY_CONFIG_CONFIG_INT_H
#define SY_CONFIG_CONFIG_INT_H

#include <stddef.h>
#include <stdint.h>

/* Decimal digits only (no sign, no spaces), value <= max. Returns 0 or -1. */
int sy__conf_parse_uint(const char *s, uint64_t max, uint64_t *out);

/* true/false, yes/no, on/off (any case). Returns 0 or -1. */
int sy__conf_parse_bool(const char *s, int *out);

/*
 * DNS host name syntax: dot-separated labels of letters, digits and '-'
 * (not at either end of a label), 1..63 bytes each, 253 bytes in all, no
 * trailing dot. Returns 1 when valid.
 */
int sy__conf_hostname_ok(const char *s, size_t len);

/* 1 when s is made of digits and dots only, i.e. meant as an IPv4 literal. */
int sy__conf_looks_ipv4(const char *s, size_t len);

/*
 * Upstream server "host:port" or "[v6]:port". The host is an IPv4 literal,
 * a bracketed IPv6 literal or a DNS name (syntax only). On success *host is
 * a new lower-cased heap string without brackets. Returns 0, or -1 with a
 * static reason in *why.
 */
int sy__conf_parse_server(const char *text, char **host, uint16_t *port, const char **why);

/* tchar (RFC 9110 5.6.2). */
int sy__conf_is_tchar(unsigned char c);

/* cookie-octet (RFC 6265 4.1.1): no CTL, space, DQUOTE, comma, semicolon or backslash. */
int sy__conf_is_cookie_octet(unsigned char c);

/* unreserved (RFC 3986 2.3): ALPHA DIGIT - . _ ~ */
int sy__conf_is_unreserved(unsigned char c);

#endif
