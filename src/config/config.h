/*
 * config.h: the configuration snapshot and its loader.
 *
 * A struct sy_config is an immutable, validated snapshot built from the YAML
 * file (see docs/configuration.md for every key). The runtime never sees
 * YAML: it only reads these structs. Loading never touches the network (no
 * DNS), so `switchyard -t` works outside the cluster.
 */
#ifndef SY_CONFIG_CONFIG_H
#define SY_CONFIG_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct sy_listen_addr {
    int set;                   /* 0 when the key is absent */
    struct sockaddr_storage ss;
    socklen_t len;
    char *text;                /* as written, e.g. "0.0.0.0:80" */
    int line;
};

enum sy_balance { SY_BALANCE_LEAST_CONN = 0, SY_BALANCE_ROUND_ROBIN };

struct sy_server_conf {
    char *name;                /* "host:port" as written (host lower-cased) */
    char *host;                /* host part; an IP literal or a DNS name, no brackets */
    uint16_t port;
    int line;
};

struct sy_upstream_conf {
    char *name;
    int line;
    struct sy_server_conf *servers;
    size_t nservers;
    enum sy_balance balance;   /* default least_conn */
    uint32_t keepalive;        /* idle connections kept per server per worker, default 64 */
    uint32_t down_time_ms;     /* the longest back-off of a failing server; default 10s */
    uint32_t resolve_interval_ms; /* default 30s */
};

/* Longest version value accepted in routes (bytes). */
#define SY_VERSION_MAX 128

/* Largest weight of one version in version.weights. */
#define SY_WEIGHT_MAX 1000000u

struct sy_version_route {
    char *version;             /* the header/query/cookie value, compared exactly */
    size_t upstream;           /* index into sy_config.upstreams */
    uint32_t weight;           /* share of new visitors; 0 when absent from weights */
};

/*
 * sites[].mirror: eligible requests are copied to another version of the
 * site and, with compare, the copy's answer is compared with the client's
 * (docs/configuration.md). Bounds are per worker.
 */
struct sy_mirror_conf {
    int line;
    size_t to;                 /* index into version.routes */
    uint32_t percent;          /* 0..100, default 100 */
    char **methods;            /* default GET, HEAD */
    size_t nmethods;
    int compare;               /* default 0 */
    uint32_t timeout_ms;       /* 0: the upstream timeouts only */
    uint64_t max_body;         /* request bodies copied up to this, default 64 KiB */
    uint64_t max_response;     /* response bytes kept per side for comparing, default 256 KiB */
    char **headers;            /* compared response headers, lower-cased; default content-type */
    size_t nheaders;
    char **ignore_paths;       /* JSON paths never reported ("$.a.b", "$.items[*].at") */
    size_t nignore_paths;
    uint32_t noise_percent;    /* copies to the client's own version, default 5 with compare */
    uint32_t max_inflight;     /* copies in flight per worker, default 64 */
    uint64_t max_buffered;     /* bytes held by copies per worker, default 16 MiB */
};

struct sy_site_conf {
    int line;
    char **hosts;              /* lower-cased: "a.example.org", "*.example.org", or "*" */
    size_t nhosts;
    int has_version;           /* 1: version block; 0: plain upstream */
    size_t upstream;           /* index into sy_config.upstreams when !has_version */
    struct {
        char *header;          /* e.g. "X-Postfacto-Version", as written; NULL if absent */
        char *query;           /* query parameter name or NULL */
        char *cookie;          /* pin cookie name or NULL */
        struct sy_version_route *routes;
        size_t nroutes;
        size_t default_route;  /* index into routes */
        uint64_t total_weight; /* sum of the routes' weights; 0: no weights, the default serves */
    } version;
    struct sy_mirror_conf *mirror; /* NULL when absent */
};

struct sy_tls_cert_conf {
    char *cert;
    char *key;
    int line;
};

struct sy_acme_conf {
    int enabled;
    int line;
    char *directory;
    char *email;               /* may be NULL */
    char **domains;
    size_t ndomains;
    char *storage;
    char *ca;                  /* may be NULL */
    uint32_t renew_before_ms;  /* 0: renew when a third of the lifetime remains */
};

struct sy_tls_conf {
    int redirect;
    uint16_t redirect_port;    /* default 443 (not written): the public HTTPS port redirects name */
    char *hsts;                /* NULL when absent */
    struct sy_tls_cert_conf *certs;
    size_t ncerts;
    struct sy_acme_conf acme;
};

/*
 * Host lookup index built by the loader for sy_route_find_site(). Entries
 * borrow their names from sy_site_conf.hosts. Both arrays are sorted by
 * (len, bytes) for binary search; wildcard entries hold the suffix with its
 * leading dot (".example.org" for "*.example.org").
 */
struct sy_host_entry {
    const char *name;
    size_t len;
    size_t site;               /* index into sy_config.sites */
};

struct sy_host_index {
    struct sy_host_entry *exact;
    size_t nexact;
    struct sy_host_entry *wild;
    size_t nwild;
    int has_catchall;          /* a site lists "*" */
    size_t catchall;           /* its index when has_catchall */
};

struct sy_config {
    char *file;
    uint32_t workers;          /* 0 = one per CPU */
    int io_backend;            /* enum sy_loop_backend (event/loop.h); default auto */
    struct sy_listen_addr listen_http, listen_https, listen_admin;
    struct {
        uint32_t max_connections;   /* default 10000 */
        uint32_t max_request_head;  /* bytes, default 16384 (431 beyond) */
        uint32_t max_headers;       /* default 100 (431 beyond) */
        uint32_t max_uri;           /* bytes, default 8192 (414 beyond) */
        uint64_t max_body;          /* bytes, 0 = unlimited (413 beyond) */
    } limits;
    struct {
        uint32_t client_header_ms;  /* default 10s: whole request head (408) */
        uint32_t client_body_ms;    /* default 60s: between two reads of a request body (408) */
        uint32_t keepalive_ms;      /* default 75s: idle client connection between requests */
        uint32_t upstream_connect_ms;   /* default 3s */
        uint32_t upstream_response_ms;  /* default 60s: waiting for / between response bytes (504) */
        uint32_t tunnel_idle_ms;    /* default 1h: Upgrade tunnels with no byte either way */
        uint32_t drain_ms;          /* default 30s: SIGTERM grace */
        uint32_t drain_grace_ms;    /* default 0: keep accepting this long after SIGTERM */
    } timeouts;
    struct {
        int enabled;                /* default 1: ALPN offers h2 then http/1.1 on listen.https */
        uint32_t max_concurrent_streams; /* default 100 per connection */
        uint32_t max_header_list_size;   /* bytes of one request's fields, default 16k (431) */
        uint32_t max_resets;        /* streams a client may reset per 10 s, default 200 */
        int cleartext;              /* default 0: h2 with prior knowledge on listen.http */
        uint32_t settings_timeout_ms; /* default 10s: our SETTINGS unacknowledged, GOAWAY */
    } http2;
    struct {
        int access;                 /* default 1: JSON access log on stdout */
        int level;                  /* enum sy_log_level, default info */
    } log;
    struct sy_upstream_conf *upstreams;
    size_t nupstreams;
    struct sy_site_conf *sites;
    size_t nsites;
    struct sy_tls_conf tls;
    struct sy_host_index hostidx;
};

/*
 * Loads and validates a configuration file. Returns a new snapshot, or NULL
 * with *err set to a heap string "FILE:LINE: reason" (the caller frees it).
 * Never resolves names and never reads certificate files.
 */
struct sy_config *sy_config_load(const char *path, char **err);

/* The same from memory; `name` stands for the file name in messages. */
struct sy_config *sy_config_load_string(const char *name, const char *yaml, size_t len, char **err);

void sy_config_free(struct sy_config *cfg);

/*
 * Parses "host:port", "[v6]:port" or ":port" (all addresses) into *out.
 * Returns 0, or -1 with a static reason in *why. No DNS.
 */
int sy_config_parse_listen(const char *text, struct sockaddr_storage *out, socklen_t *len,
                           const char **why);

/* "250ms", "10s", "5m", "1h", "2d" or a bare number of seconds. Returns 0 or -1. */
int sy_config_parse_duration(const char *text, uint32_t *ms);

/* "512", "16k", "1m", "2g" (powers of 1024). Returns 0 or -1. */
int sy_config_parse_size(const char *text, uint64_t *bytes);

#endif
