/*
 * config_value.c: scalar syntax of the configuration file (addresses,
 * durations, sizes, numbers, host names, tokens). No DNS, no I/O.
 */
#include "config/config.h"
#include "config/config_int.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "core/alloc.h"
#include "core/str.h"

static int is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static int is_alpha(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

int sy__conf_parse_uint(const char *s, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;

    if (!*s)
        return -1;
    for (; *s; s++) {
        if (!is_digit((unsigned char)*s))
            return -1;
        unsigned d = (unsigned)(*s - '0');
        if (v > (max - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

int sy__conf_parse_bool(const char *s, int *out)
{
    static const char *const yes[] = {"true", "yes", "on"};
    static const char *const no[] = {"false", "no", "off"};

    for (size_t i = 0; i < 3; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = 1;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = 0;
            return 0;
        }
    }
    return -1;
}

int sy__conf_hostname_ok(const char *s, size_t len)
{
    size_t label = 0;

    if (len == 0 || len > 253)
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '.') {
            if (label == 0 || s[i - 1] == '-')
                return 0;
            label = 0;
            continue;
        }
        if (!is_alpha(c) && !is_digit(c) && c != '-')
            return 0;
        if (c == '-' && label == 0)
            return 0;
        if (++label > 63)
            return 0;
    }
    return label > 0 && s[len - 1] != '-';
}

int sy__conf_looks_ipv4(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (!is_digit((unsigned char)s[i]) && s[i] != '.')
            return 0;
    return len > 0;
}

/* Port: 1..65535, digits only. */
static int parse_port(const char *s, uint16_t *port)
{
    uint64_t v;

    if (strlen(s) > 5 || sy__conf_parse_uint(s, 65535, &v) < 0 || v == 0)
        return -1;
    *port = (uint16_t)v;
    return 0;
}

/*
 * Splits "host:port" / "[v6]:port" / ":port". *h and *hlen receive the host
 * without brackets, *bracketed tells whether brackets were used.
 */
static int split_hostport(const char *text, const char **h, size_t *hlen, int *bracketed,
                          const char **portstr, const char **why)
{
    const char *colon;

    if (text[0] == '[') {
        const char *close = strchr(text, ']');
        if (!close) {
            *why = "missing ']' after an IPv6 address";
            return -1;
        }
        if (close[1] != ':') {
            *why = "missing :port";
            return -1;
        }
        *h = text + 1;
        *hlen = (size_t)(close - text - 1);
        *bracketed = 1;
        *portstr = close + 2;
        return 0;
    }
    colon = strrchr(text, ':');
    if (!colon) {
        *why = "missing :port";
        return -1;
    }
    if (memchr(text, ':', (size_t)(colon - text))) {
        *why = "IPv6 addresses must be written in brackets, e.g. [::1]:80";
        return -1;
    }
    *h = text;
    *hlen = (size_t)(colon - text);
    *bracketed = 0;
    *portstr = colon + 1;
    return 0;
}

int sy_config_parse_listen(const char *text, struct sockaddr_storage *out, socklen_t *len,
                           const char **why)
{
    const char *h, *portstr;
    size_t hlen;
    int bracketed;
    uint16_t port;
    char host[INET6_ADDRSTRLEN + 1];

    if (split_hostport(text, &h, &hlen, &bracketed, &portstr, why) < 0)
        return -1;
    if (parse_port(portstr, &port) < 0) {
        *why = "port must be a number 1..65535";
        return -1;
    }
    if (hlen >= sizeof(host)) {
        *why = "host must be an IP address (names are not resolved)";
        return -1;
    }
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    memset(out, 0, sizeof(*out));
    if (bracketed) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)out;
        if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1) {
            *why = "invalid IPv6 address";
            return -1;
        }
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(port);
        *len = sizeof(*sin6);
        return 0;
    }
    struct sockaddr_in *sin = (struct sockaddr_in *)out;
    if (hlen == 0) {
        sin->sin_addr.s_addr = htonl(INADDR_ANY);
    } else if (inet_pton(AF_INET, host, &sin->sin_addr) != 1) {
        *why = "host must be an IP address (names are not resolved)";
        return -1;
    }
    sin->sin_family = AF_INET;
    sin->sin_port = htons(port);
    *len = sizeof(*sin);
    return 0;
}

int sy__conf_parse_server(const char *text, char **host, uint16_t *port, const char **why)
{
    const char *h, *portstr;
    size_t hlen;
    int bracketed;
    char buf[INET6_ADDRSTRLEN + 1];

    if (split_hostport(text, &h, &hlen, &bracketed, &portstr, why) < 0)
        return -1;
    if (hlen == 0) {
        *why = "missing host";
        return -1;
    }
    if (parse_port(portstr, port) < 0) {
        *why = "port must be a number 1..65535";
        return -1;
    }
    if (bracketed || sy__conf_looks_ipv4(h, hlen)) {
        int af = bracketed ? AF_INET6 : AF_INET;
        unsigned char addr[sizeof(struct in6_addr)];
        if (hlen >= sizeof(buf)) {
            *why = bracketed ? "invalid IPv6 address" : "invalid IPv4 address";
            return -1;
        }
        memcpy(buf, h, hlen);
        buf[hlen] = '\0';
        if (inet_pton(af, buf, addr) != 1) {
            *why = bracketed ? "invalid IPv6 address" : "invalid IPv4 address";
            return -1;
        }
    } else if (!sy__conf_hostname_ok(h, hlen)) {
        *why = "invalid host name";
        return -1;
    }
    *host = sy_strndup(h, hlen);
    for (char *p = *host; *p; p++)
        *p = (char)sy_lower((unsigned char)*p);
    return 0;
}

/* Milliseconds per unit; the unit ends at the first digit or the end. */
static int duration_unit(const char **s, uint64_t *mult)
{
    const char *p = *s;

    if (p[0] == 'm' && p[1] == 's') {
        *mult = 1;
        *s = p + 2;
        return 0;
    }
    switch (p[0]) {
    case 's':
        *mult = 1000;
        break;
    case 'm':
        *mult = 60 * 1000;
        break;
    case 'h':
        *mult = 3600 * 1000;
        break;
    case 'd':
        *mult = 24 * 3600 * 1000;
        break;
    default:
        return -1;
    }
    *s = p + 1;
    return 0;
}

int sy_config_parse_duration(const char *text, uint32_t *ms)
{
    const char *s = text;
    uint64_t total = 0;

    if (!*s)
        return -1;
    /* A bare number is seconds; otherwise one or more <number><unit> parts ("1h30m"). */
    if (strspn(text, "0123456789") == strlen(text)) {
        uint64_t n;
        if (sy__conf_parse_uint(text, UINT32_MAX / 1000, &n) < 0)
            return -1;
        *ms = (uint32_t)(n * 1000);
        return 0;
    }
    while (*s) {
        uint64_t n = 0, mult;
        if (!is_digit((unsigned char)*s))
            return -1;
        while (is_digit((unsigned char)*s)) {
            n = n * 10 + (uint64_t)(*s - '0');
            if (n > UINT32_MAX)
                return -1;
            s++;
        }
        if (duration_unit(&s, &mult) < 0)
            return -1;
        if (n > (UINT32_MAX - total) / mult)
            return -1;
        total += n * mult;
    }
    *ms = (uint32_t)total;
    return 0;
}

int sy_config_parse_size(const char *text, uint64_t *bytes)
{
    const char *s = text;
    uint64_t n = 0, mult = 1;

    if (!is_digit((unsigned char)*s))
        return -1;
    while (is_digit((unsigned char)*s)) {
        unsigned d = (unsigned)(*s - '0');
        if (n > (UINT64_MAX - d) / 10)
            return -1;
        n = n * 10 + d;
        s++;
    }
    switch (*s) {
    case '\0':
        break;
    case 'k':
    case 'K':
        mult = 1024;
        break;
    case 'm':
    case 'M':
        mult = 1024 * 1024;
        break;
    case 'g':
    case 'G':
        mult = 1024 * 1024 * 1024;
        break;
    default:
        return -1;
    }
    if (*s && s[1])
        return -1;
    if (n > UINT64_MAX / mult)
        return -1;
    *bytes = n * mult;
    return 0;
}

int sy__conf_is_tchar(unsigned char c)
{
    return is_alpha(c) || is_digit(c) || (c && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

int sy__conf_is_cookie_octet(unsigned char c)
{
    return c == 0x21 || (c >= 0x23 && c <= 0x2b) || (c >= 0x2d && c <= 0x3a) ||
           (c >= 0x3c && c <= 0x5b) || (c >= 0x5d && c <= 0x7e);
}

int sy__conf_is_unreserved(unsigned char c)
{
    return is_alpha(c) || is_digit(c) || c == '-' || c == '.' || c == '_' || c == '~';
}
