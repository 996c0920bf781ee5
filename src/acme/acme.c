/*
 * acme.c: the ACME side thread (RFC 8555 with libcurl and jansson), the
 * stateless HTTP-01 answer and the metrics.
 *
 * The thread runs one step at a time (run_step) and sleeps between steps:
 *   stored certificate valid and not due -> sleep until due (at most 1 h)
 *   back-off recorded in state.json      -> sleep until it ends
 *   lock held by another replica         -> poll storage every 5 s
 *   lock taken                           -> order, write, release
 * An order walks enum order_step; each step logs one line, each failure one
 * error line with the CA's problem document.
 */
#include "acme/acme.h"
#include "acme/acme_int.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "acme/curl_dl.h"
#include <jansson.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "core/alloc.h"
#include "core/log.h"

#ifndef SY_VERSION
#define SY_VERSION "dev"
#endif

#define LOCK_STALE_MS (60 * 1000)
#define LOCK_POLL_MS (5 * 1000)
#define RECHECK_MS (60 * 60 * 1000)
#define ORDER_DEADLINE_MS (10 * 60 * 1000)
#define MAX_BODY (1024 * 1024)
#define MAX_BAD_NONCE 10
#define DAY_MS (24 * 60 * 60 * 1000LL)

struct resp {
    long status;
    char *body;
    size_t len;
    char *location;
    char *nonce;
    char *retry_after;
    json_t *json;
};

struct sy_acme {
    /* copied configuration */
    char *directory, *email, *storage, *ca;
    char **domains;
    size_t ndomains;
    uint32_t renew_before_ms;
    double backoff_scale;
    int64_t start_delay_ms;          /* SWITCHYARD_ACME_START_DELAY_MS */
    int64_t beat_ms;                 /* heartbeat period: a sixth of the stale time */
    char *key_path, *account_path, *state_path, *certdir, *crt_path, *crtkey_path;

    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    atomic_int stop;

    /* shared with the workers */
    _Atomic(char *) thumb;           /* set once, never changes until stop */
    atomic_llong thumb_try_ms;       /* monotonic ms of the last file read by a worker */
    atomic_ullong n_valid, n_invalid, n_error;
    atomic_llong last_success, cert_expiry;

    /* side thread only */
    CURL *curl;
    EVP_PKEY *key;
    char *kid;
    char *nonce;
    struct {
        char *new_nonce, *new_account, *new_order, *renewal_info;
        int64_t fetched_ms;
    } dir;
    struct {
        char *cert_id;               /* ARI identifier of the stored certificate */
        int64_t pick_ms;             /* chosen renewal time inside the suggested window */
        int64_t next_check_ms;
    } ari;
    struct sy__acme_lock lock;
    int lock_lost;
    char *busy_holder;               /* last holder logged, to log each holder once */
};

/* ---- timing helpers ---- */

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int parse_digits(const char *s, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 0;
}

/* IMF-fixdate "Sun, 06 Nov 1994 08:49:37 GMT" to unix seconds, or -1. */
static int64_t parse_imf_fixdate(const char *s)
{
    static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
    struct tm tm;
    int day, year, h, m, sec;
    memset(&tm, 0, sizeof(tm));
    if (strlen(s) != 29 || s[3] != ',' || s[4] != ' ' || s[7] != ' ' || s[11] != ' ' ||
        s[16] != ' ' || s[19] != ':' || s[22] != ':' || strcmp(s + 25, " GMT") != 0)
        return -1;
    if (parse_digits(s + 5, 2, &day) || parse_digits(s + 12, 4, &year) ||
        parse_digits(s + 17, 2, &h) || parse_digits(s + 20, 2, &m) ||
        parse_digits(s + 23, 2, &sec))
        return -1;
    const char *mp = NULL;
    for (int i = 0; i < 12; i++)
        if (memcmp(months + 3 * i, s + 8, 3) == 0)
            mp = months + 3 * i;
    if (mp == NULL || day < 1 || day > 31 || h > 23 || m > 59 || sec > 60)
        return -1;
    tm.tm_mday = day;
    tm.tm_mon = (int)((mp - months) / 3);
    tm.tm_year = year - 1900;
    tm.tm_hour = h;
    tm.tm_min = m;
    tm.tm_sec = sec;
    return (int64_t)timegm(&tm);
}

int64_t sy__acme_retry_after_ms(const char *value, int64_t now_ms)
{
    if (value == NULL)
        return -1;
    while (*value == ' ' || *value == '\t')
        value++;
    size_t n = strlen(value);
    while (n && (value[n - 1] == ' ' || value[n - 1] == '\t' || value[n - 1] == '\r'))
        n--;
    if (n == 0 || n > 64)
        return -1;
    char v[65];
    memcpy(v, value, n);
    v[n] = '\0';
    int64_t ms;
    if (v[0] >= '0' && v[0] <= '9') {
        uint64_t secs = 0;
        for (size_t i = 0; i < n; i++) {
            if (v[i] < '0' || v[i] > '9')
                return -1;
            if (secs < (uint64_t)DAY_MS)
                secs = secs * 10 + (uint64_t)(v[i] - '0');
        }
        ms = secs >= (uint64_t)DAY_MS / 1000 ? DAY_MS : (int64_t)secs * 1000;
    } else {
        int64_t t = parse_imf_fixdate(v);
        if (t < 0)
            return -1;
        ms = t * 1000 - now_ms;
        if (ms < 0)
            ms = 0;
    }
    return ms > DAY_MS ? DAY_MS : ms;
}

int64_t sy__acme_backoff_ms(unsigned failures, double scale, uint32_t rnd)
{
    if (failures == 0)
        return 0;
    double d = 60000.0;
    for (unsigned i = 1; i < failures && d < (double)DAY_MS; i++)
        d *= 2;
    if (d > (double)DAY_MS)
        d = (double)DAY_MS;
    d *= scale > 0 ? scale : 1.0;
    double v = d / 2 + (d / 2) * ((double)rnd / 4294967295.0);
    return v < 1 ? 1 : (int64_t)v;
}

/* RFC 3339 "2025-01-02T03:04:05[.123]Z" or with "+hh:mm" to unix ms, or -1. */
static int64_t parse_rfc3339(const char *s)
{
    int Y, M, D, h, m, sec;
    struct tm tm;
    if (s == NULL || strlen(s) < 20 || parse_digits(s, 4, &Y) || s[4] != '-' ||
        parse_digits(s + 5, 2, &M) || s[7] != '-' || parse_digits(s + 8, 2, &D) ||
        (s[10] != 'T' && s[10] != 't') || parse_digits(s + 11, 2, &h) || s[13] != ':' ||
        parse_digits(s + 14, 2, &m) || s[16] != ':' || parse_digits(s + 17, 2, &sec))
        return -1;
    memset(&tm, 0, sizeof(tm));
    tm.tm_year = Y - 1900;
    tm.tm_mon = M - 1;
    tm.tm_mday = D;
    tm.tm_hour = h;
    tm.tm_min = m;
    tm.tm_sec = sec;
    int64_t t = (int64_t)timegm(&tm) * 1000;
    const char *p = s + 19;
    if (*p == '.') {
        int64_t frac = 0, div = 1;
        for (p++; *p >= '0' && *p <= '9'; p++)
            if (div < 1000) {
                frac = frac * 10 + (*p - '0');
                div *= 10;
            }
        t += frac * 1000 / div;
    }
    if (*p == 'Z' || *p == 'z')
        return p[1] == '\0' ? t : -1;
    int oh, om;
    if ((*p == '+' || *p == '-') && strlen(p) == 6 && parse_digits(p + 1, 2, &oh) == 0 &&
        p[3] == ':' && parse_digits(p + 4, 2, &om) == 0) {
        int64_t off = ((int64_t)oh * 60 + om) * 60000;
        return *p == '+' ? t - off : t + off;
    }
    return -1;
}

static uint32_t rnd32(void)
{
    uint32_t v = 0;
    if (getrandom(&v, sizeof(v), GRND_NONBLOCK) != (ssize_t)sizeof(v))
        v = (uint32_t)mono_ms() * 2654435761u;
    return v;
}

/* ---- configuration ---- */

static int domain_ok(const char *d)
{
    size_t n = strlen(d);
    if (n == 0 || n > 253 || d[0] == '.' || d[0] == '-' || d[n - 1] == '.' || strstr(d, ".."))
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = d[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-'))
            return 0;
    }
    return 1;
}

int sy_acme_check_conf(const struct sy_acme_conf *conf, char **err)
{
    *err = NULL;
    if (conf->directory == NULL || strncmp(conf->directory, "https://", 8) != 0)
        *err = sy_strdup("tls.acme.directory must be an https:// URL");
    else if (conf->storage == NULL || conf->storage[0] == '\0')
        *err = sy_strdup("tls.acme.storage is required");
    else if (conf->ndomains == 0)
        *err = sy_strdup("tls.acme.domains needs at least one name");
    else
        for (size_t i = 0; i < conf->ndomains && *err == NULL; i++)
            if (!domain_ok(conf->domains[i]))
                *err = sy_asprintf("tls.acme.domains: \"%s\" is not a lower-case DNS name "
                                   "(wildcards cannot be validated with HTTP-01)",
                                   conf->domains[i]);
    return *err ? -1 : 0;
}

char *sy_acme_cert_path(const struct sy_acme_conf *conf)
{
    return sy_asprintf("%s/certificates/%s.crt", conf->storage, conf->domains[0]);
}

char *sy_acme_key_path(const struct sy_acme_conf *conf)
{
    return sy_asprintf("%s/certificates/%s.key", conf->storage, conf->domains[0]);
}

/* ---- thumbprint cache and the HTTP-01 answer ---- */

static void publish_thumb(struct sy_acme *a, EVP_PKEY *key)
{
    char t[44];
    if (atomic_load_explicit(&a->thumb, memory_order_acquire) != NULL)
        return;
    if (sy__acme_thumbprint(key, t) < 0)
        return;
    char *expected = NULL, *mine = sy_strdup(t);
    if (!atomic_compare_exchange_strong_explicit(&a->thumb, &expected, mine, memory_order_acq_rel,
                                                 memory_order_acquire))
        sy_free(mine);
    else
        sy_log_info("acme", "account key thumbprint %s", t);
}

/* Reads account.key; NULL when absent or unusable. */
static EVP_PKEY *read_account_key(const char *path, int quiet)
{
    size_t len;
    char *pem = sy__acme_read_file(path, 64 * 1024, &len);
    if (pem == NULL)
        return NULL;
    EVP_PKEY *k = sy__acme_key_from_pem(pem, len);
    OPENSSL_cleanse(pem, len);
    sy_free(pem);
    if (k == NULL && !quiet)
        sy_log_error("acme", "%s is not an ECDSA P-256 private key", path);
    return k;
}

ssize_t sy_acme_http01_answer(struct sy_acme *a, struct sy_str token, char *out, size_t cap)
{
    if (cap < SY_ACME_HTTP01_MAX || !sy__acme_token_valid(token))
        return 0;
    char *t = atomic_load_explicit(&a->thumb, memory_order_acquire);
    if (t == NULL) {
        /* At most one file read per second across all workers. */
        int64_t now = mono_ms();
        long long last = atomic_load_explicit(&a->thumb_try_ms, memory_order_relaxed);
        if (now - last < 1000 ||
            !atomic_compare_exchange_strong(&a->thumb_try_ms, &last, (long long)now))
            return -1;
        EVP_PKEY *k = read_account_key(a->key_path, 1);
        if (k == NULL)
            return -1;
        publish_thumb(a, k);
        EVP_PKEY_free(k);
        t = atomic_load_explicit(&a->thumb, memory_order_acquire);
        if (t == NULL)
            return -1;
    }
    memcpy(out, token.p, token.len);
    out[token.len] = '.';
    memcpy(out + token.len + 1, t, 43);
    out[token.len + 44] = '\0';
    return (ssize_t)(token.len + 44);
}

/* ---- metrics ---- */

void sy_acme_get_status(struct sy_acme *a, struct sy_acme_status *st)
{
    st->orders_valid = atomic_load(&a->n_valid);
    st->orders_invalid = atomic_load(&a->n_invalid);
    st->orders_error = atomic_load(&a->n_error);
    st->last_success = atomic_load(&a->last_success);
    st->cert_expiry = atomic_load(&a->cert_expiry);
    st->have_account_key = atomic_load_explicit(&a->thumb, memory_order_acquire) != NULL;
}

size_t sy_acme_metrics(struct sy_acme *a, char *buf, size_t cap)
{
    struct sy_acme_status st;
    sy_acme_get_status(a, &st);
    int n = snprintf(
        buf, cap,
        "# HELP switchyard_acme_orders_total ACME orders placed by this process, by outcome.\n"
        "# TYPE switchyard_acme_orders_total counter\n"
        "switchyard_acme_orders_total{result=\"valid\"} %" PRIu64 "\n"
        "switchyard_acme_orders_total{result=\"invalid\"} %" PRIu64 "\n"
        "switchyard_acme_orders_total{result=\"error\"} %" PRIu64 "\n"
        "# HELP switchyard_acme_last_success_timestamp_seconds When this process last wrote "
        "a certificate (0: never).\n"
        "# TYPE switchyard_acme_last_success_timestamp_seconds gauge\n"
        "switchyard_acme_last_success_timestamp_seconds %" PRId64 "\n"
        "# HELP switchyard_acme_certificate_expiry_timestamp_seconds notAfter of the stored "
        "certificate (0: none).\n"
        "# TYPE switchyard_acme_certificate_expiry_timestamp_seconds gauge\n"
        "switchyard_acme_certificate_expiry_timestamp_seconds %" PRId64 "\n",
        st.orders_valid, st.orders_invalid, st.orders_error, st.last_success, st.cert_expiry);
    if (n < 0 || (size_t)n >= cap)
        return 0;
    return (size_t)n;
}

/* ---- sleeping, stopping, heartbeats ---- */

static int stopping(struct sy_acme *a)
{
    return atomic_load(&a->stop);
}

static void beat(struct sy_acme *a)
{
    if (!a->lock.held)
        return;
    int64_t now = sy__acme_now_ms();
    if (now - a->lock.beat_ms >= a->beat_ms && sy__acme_lock_heartbeat(&a->lock, now) < 0)
        a->lock_lost = 1;
}

/* Sleeps ms (heartbeating the lock meanwhile). Returns -1 when stopped. */
static int sleep_ms(struct sy_acme *a, int64_t ms)
{
    int64_t end = mono_ms() + ms;
    pthread_mutex_lock(&a->mu);
    while (!stopping(a)) {
        int64_t now = mono_ms();
        if (now >= end)
            break;
        int64_t chunk = end - now;
        if (a->lock.held && chunk > a->beat_ms / 2)
            chunk = a->beat_ms / 2;
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += (time_t)(chunk / 1000);
        ts.tv_nsec += (long)(chunk % 1000) * 1000000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&a->cv, &a->mu, &ts);
        pthread_mutex_unlock(&a->mu);
        beat(a);
        pthread_mutex_lock(&a->mu);
    }
    pthread_mutex_unlock(&a->mu);
    return stopping(a) ? -1 : 0;
}

/* ---- HTTP with libcurl ---- */

static void resp_reset(struct resp *r)
{
    sy_free(r->body);
    sy_free(r->location);
    sy_free(r->nonce);
    sy_free(r->retry_after);
    if (r->json)
        json_decref(r->json);
    memset(r, 0, sizeof(*r));
}

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *ud)
{
    struct resp *r = ud;
    size_t n = size * nmemb;
    if (r->len + n > MAX_BODY)
        return 0;
    r->body = sy_realloc(r->body, r->len + n + 1);
    memcpy(r->body + r->len, ptr, n);
    r->len += n;
    r->body[r->len] = '\0';
    return n;
}

static void take_header(char **dst, const char *v, size_t n)
{
    while (n && (*v == ' ' || *v == '\t')) {
        v++;
        n--;
    }
    while (n && (v[n - 1] == '\r' || v[n - 1] == '\n' || v[n - 1] == ' ' || v[n - 1] == '\t'))
        n--;
    sy_free(*dst);
    *dst = sy_strndup(v, n);
}

static size_t on_header(char *ptr, size_t size, size_t nmemb, void *ud)
{
    struct resp *r = ud;
    size_t n = size * nmemb;
    static const struct {
        const char *name;
        size_t off;
    } wanted[] = {
        {"location:", offsetof(struct resp, location)},
        {"replay-nonce:", offsetof(struct resp, nonce)},
        {"retry-after:", offsetof(struct resp, retry_after)},
    };
    if (n >= 5 && memcmp(ptr, "HTTP/", 5) == 0) {
        /* A new response (after a 1xx): forget the previous headers. */
        sy_free_null(&r->location);
        sy_free_null(&r->retry_after);
        return n;
    }
    for (size_t i = 0; i < sizeof(wanted) / sizeof(wanted[0]); i++) {
        size_t l = strlen(wanted[i].name);
        if (n > l && strncasecmp(ptr, wanted[i].name, l) == 0)
            take_header((char **)((char *)r + wanted[i].off), ptr + l, n - l);
    }
    return n;
}

static int on_progress(void *ud, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
    struct sy_acme *a = ud;
    beat(a);
    return stopping(a) || a->lock_lost;
}

/*
 * One HTTP exchange. method is "GET", "HEAD" or "POST" (body then is a JWS).
 * Returns 0 with r filled (any status), -1 on a transport failure (logged).
 */
static int http_do(struct sy_acme *a, const char *method, const char *url, const char *body,
                   const char *accept, struct resp *r)
{
    CURL *c = a->curl;
    struct curl_slist *hdrs = NULL;
    char *acc = NULL;
    resp_reset(r);
    curl_easy_reset(c);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "switchyard/" SY_VERSION " acme");
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "https");
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 30000L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    if (a->ca)
        curl_easy_setopt(c, CURLOPT_CAINFO, a->ca);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, a);
    if (strcmp(method, "HEAD") == 0) {
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    } else if (strcmp(method, "POST") == 0) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
        hdrs = curl_slist_append(hdrs, "Content-Type: application/jose+json");
    }
    if (accept) {
        acc = sy_asprintf("Accept: %s", accept);
        hdrs = curl_slist_append(hdrs, acc);
    }
    if (hdrs)
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    CURLcode rc = curl_easy_perform(c);
    curl_slist_free_all(hdrs);
    sy_free(acc);
    if (rc != CURLE_OK) {
        if (!stopping(a) && !a->lock_lost)
            sy_log_error("acme", "%s %s failed: %s", method, url, curl_easy_strerror(rc));
        return -1;
    }
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    if (r->len > 0 && r->body[0] == '{')
        r->json = json_loadb(r->body, r->len, 0, NULL);
    return 0;
}

/* The problem type without its "urn:ietf:params:acme:error:" prefix, or "". */
static const char *problem_type(const struct resp *r)
{
    const char *t = r->json ? json_string_value(json_object_get(r->json, "type")) : NULL;
    static const char prefix[] = "urn:ietf:params:acme:error:";
    if (t == NULL)
        return "";
    return strncmp(t, prefix, sizeof(prefix) - 1) == 0 ? t + sizeof(prefix) - 1 : t;
}

static void log_problem(const char *what, const struct resp *r)
{
    const char *detail = r->json ? json_string_value(json_object_get(r->json, "detail")) : NULL;
    sy_log_error("acme", "%s failed: HTTP %ld %s%s%s", what, r->status, problem_type(r),
                 detail ? ": " : "", detail ? detail : "");
}

static char *json_compact(json_t *j)
{
    size_t n = json_dumpb(j, NULL, 0, JSON_COMPACT);
    char *s = sy_malloc(n + 1);
    json_dumpb(j, s, n, JSON_COMPACT);
    s[n] = '\0';
    return s;
}

static int get_nonce(struct sy_acme *a)
{
    struct resp r = {0};
    int rc = http_do(a, "HEAD", a->dir.new_nonce, NULL, NULL, &r);
    if (rc == 0 && r.nonce && r.nonce[0]) {
        sy_free(a->nonce);
        a->nonce = r.nonce;
        r.nonce = NULL;
    } else {
        if (rc == 0)
            sy_log_error("acme", "newNonce returned HTTP %ld without Replay-Nonce", r.status);
        rc = -1;
    }
    resp_reset(&r);
    return rc;
}

/*
 * Signed POST (payload NULL = POST-as-GET), with the jwk until an account
 * URL is known. Retries badNonce with the nonce of the error response.
 * Returns 0 with r filled, or -1 on transport failure.
 */
static int acme_post(struct sy_acme *a, const char *url, const char *payload, const char *accept,
                     struct resp *r)
{
    for (int attempt = 0;; attempt++) {
        if (a->nonce == NULL && get_nonce(a) < 0)
            return -1;
        char *jws = sy__acme_jws(a->key, a->kid, a->nonce, url, payload);
        sy_free_null(&a->nonce);
        if (jws == NULL)
            return -1;
        int rc = http_do(a, "POST", url, jws, accept, r);
        sy_free(jws);
        if (rc < 0)
            return -1;
        if (r->nonce && r->nonce[0]) {
            a->nonce = r->nonce;
            r->nonce = NULL;
        }
        if (r->status == 400 && strcmp(problem_type(r), "badNonce") == 0 &&
            attempt < MAX_BAD_NONCE) {
            sy_log_info("acme", "badNonce from %s; retrying with a fresh nonce", url);
            continue;
        }
        return 0;
    }
}

/* ---- directory, account ---- */

static char *dir_url(json_t *d, const char *name)
{
    const char *s = json_string_value(json_object_get(d, name));
    return s ? sy_strdup(s) : NULL;
}

static int fetch_directory(struct sy_acme *a)
{
    struct resp r = {0};
    int rc = -1;
    sy_log_info("acme", "fetching directory %s", a->directory);
    if (http_do(a, "GET", a->directory, NULL, NULL, &r) < 0)
        goto out;
    if (r.status != 200 || r.json == NULL) {
        log_problem("fetching the directory", &r);
        goto out;
    }
    sy_free_null(&a->dir.new_nonce);
    sy_free_null(&a->dir.new_account);
    sy_free_null(&a->dir.new_order);
    sy_free_null(&a->dir.renewal_info);
    a->dir.new_nonce = dir_url(r.json, "newNonce");
    a->dir.new_account = dir_url(r.json, "newAccount");
    a->dir.new_order = dir_url(r.json, "newOrder");
    a->dir.renewal_info = dir_url(r.json, "renewalInfo");
    if (!a->dir.new_nonce || !a->dir.new_account || !a->dir.new_order) {
        sy_log_error("acme", "directory %s lacks newNonce/newAccount/newOrder", a->directory);
        goto out;
    }
    a->dir.fetched_ms = mono_ms();
    rc = 0;
out:
    resp_reset(&r);
    return rc;
}

/* Loads or creates (exclusively, so replicas never make two) the account key. */
static int ensure_key(struct sy_acme *a)
{
    if (a->key)
        return 0;
    a->key = read_account_key(a->key_path, 0);
    if (a->key == NULL) {
        struct stat st;
        if (stat(a->key_path, &st) == 0)
            return -1; /* exists but unusable: never replace it silently */
        EVP_PKEY *k = sy__acme_key_generate();
        size_t len = 0;
        char *pem = k ? sy__acme_key_to_pem(k, &len) : NULL;
        int rc = pem ? sy__acme_write_excl(a->key_path, pem, len, 0600) : -1;
        if (pem) {
            OPENSSL_cleanse(pem, len);
            sy_free(pem);
        }
        EVP_PKEY_free(k);
        if (rc < 0)
            return -1;
        if (rc == 0)
            sy_log_info("acme", "created account key %s", a->key_path);
        a->key = read_account_key(a->key_path, 0); /* ours, or the one another replica won with */
        if (a->key == NULL)
            return -1;
    }
    publish_thumb(a, a->key);
    return 0;
}

static void load_account_json(struct sy_acme *a)
{
    json_t *j = json_load_file(a->account_path, 0, NULL);
    if (j == NULL)
        return;
    const char *d = json_string_value(json_object_get(j, "directory"));
    const char *kid = json_string_value(json_object_get(j, "kid"));
    if (d && kid && strcmp(d, a->directory) == 0) {
        sy_free(a->kid);
        a->kid = sy_strdup(kid);
    }
    json_decref(j);
}

static int new_account(struct sy_acme *a)
{
    struct resp r = {0};
    int rc = -1;
    json_t *p = json_pack("{s:b}", "termsOfServiceAgreed", 1);
    if (a->email) {
        char *m = sy_asprintf("mailto:%s", a->email);
        json_object_set_new(p, "contact", json_pack("[s]", m));
        sy_free(m);
    }
    char *payload = json_compact(p);
    json_decref(p);
    sy_free_null(&a->kid);
    sy_log_info("acme", "registering account (newAccount)");
    if (acme_post(a, a->dir.new_account, payload, NULL, &r) < 0)
        goto out;
    if ((r.status != 200 && r.status != 201) || r.location == NULL) {
        log_problem("newAccount", &r);
        goto out;
    }
    a->kid = sy_strdup(r.location);
    sy_log_info("acme", "account %s %s", r.status == 201 ? "created" : "found", a->kid);
    json_t *acct = json_pack("{s:s,s:s}", "directory", a->directory, "kid", a->kid);
    char *text = json_compact(acct);
    json_decref(acct);
    sy__acme_write_atomic(a->account_path, text, strlen(text), 0644);
    sy_free(text);
    rc = 0;
out:
    sy_free(payload);
    resp_reset(&r);
    return rc;
}

/* ---- the order ---- */

enum order_res { ORDER_VALID = 0, ORDER_INVALID, ORDER_ERROR, ORDER_STOPPED };

struct order {
    char *url;
    json_t *obj;
    int64_t deadline;       /* monotonic */
    int64_t hint_ms;        /* Retry-After from a rateLimited / error response */
};

static enum order_res fail(struct sy_acme *a, struct order *o, const char *what,
                           const struct resp *r)
{
    if (stopping(a))
        return ORDER_STOPPED;
    if (r && r->status) {
        log_problem(what, r);
        int64_t ra = sy__acme_retry_after_ms(r->retry_after, sy__acme_now_ms());
        if (ra > o->hint_ms)
            o->hint_ms = ra;
    } else if (a->lock_lost) {
        sy_log_error("acme", "%s aborted: lock lost", what);
    }
    return ORDER_ERROR;
}

/* Waits before the next poll: Retry-After clamped to 1..60 s, 1 s without one. */
static int poll_wait(struct sy_acme *a, struct order *o, const struct resp *r)
{
    int64_t ms = sy__acme_retry_after_ms(r->retry_after, sy__acme_now_ms());
    if (ms < 1000)
        ms = 1000;
    if (ms > 60000)
        ms = 60000;
    if (mono_ms() + ms > o->deadline)
        return -1;
    return sleep_ms(a, ms);
}

/*
 * POST-as-GET url until its "status" is not one of the two waiting states.
 * Returns 0 with *obj (a new reference), -1 on failure (logged).
 */
static int poll_status(struct sy_acme *a, struct order *o, const char *url, const char *what,
                       const char *wait1, const char *wait2, json_t **obj)
{
    struct resp r = {0};
    for (;;) {
        if (acme_post(a, url, NULL, NULL, &r) < 0)
            break;
        if (r.status != 200 || r.json == NULL) {
            fail(a, o, what, &r);
            break;
        }
        const char *st = json_string_value(json_object_get(r.json, "status"));
        if (st == NULL || (strcmp(st, wait1) != 0 && (wait2 == NULL || strcmp(st, wait2) != 0))) {
            *obj = json_incref(r.json);
            resp_reset(&r);
            return 0;
        }
        if (poll_wait(a, o, &r) < 0) {
            if (!stopping(a))
                sy_log_error("acme", "%s: still %s at the deadline", what, st);
            break;
        }
    }
    resp_reset(&r);
    return -1;
}

static const char *jstr(json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

static void log_authz_error(json_t *authz, const char *domain)
{
    json_t *ch;
    size_t i;
    json_array_foreach(json_object_get(authz, "challenges"), i, ch) {
        json_t *err = json_object_get(ch, "error");
        if (err)
            sy_log_error("acme", "authorization for %s invalid (%s): %s %s", domain,
                         jstr(ch, "type") ? jstr(ch, "type") : "?",
                         jstr(err, "type") ? jstr(err, "type") : "",
                         jstr(err, "detail") ? jstr(err, "detail") : "");
    }
}

static enum order_res do_authz(struct sy_acme *a, struct order *o, const char *url)
{
    struct resp r = {0};
    enum order_res res = ORDER_ERROR;
    json_t *authz = NULL;
    if (poll_status(a, o, url, "fetching an authorization", "__none__", NULL, &authz) < 0)
        return stopping(a) ? ORDER_STOPPED : ORDER_ERROR;
    const char *ident = jstr(json_object_get(authz, "identifier"), "value");
    const char *st = jstr(authz, "status");
    char *domain = sy_strdup(ident ? ident : "?");
    if (st && strcmp(st, "valid") == 0) {
        sy_log_info("acme", "authorization for %s already valid", domain);
        res = ORDER_VALID;
        goto out;
    }
    if (st == NULL || strcmp(st, "pending") != 0) {
        sy_log_error("acme", "authorization for %s is %s", domain, st ? st : "(no status)");
        log_authz_error(authz, domain);
        res = ORDER_INVALID;
        goto out;
    }
    const char *chal_url = NULL;
    json_t *ch;
    size_t i;
    json_array_foreach(json_object_get(authz, "challenges"), i, ch) {
        if (jstr(ch, "type") && strcmp(jstr(ch, "type"), "http-01") == 0)
            chal_url = jstr(ch, "url");
    }
    if (chal_url == NULL) {
        sy_log_error("acme", "authorization for %s offers no http-01 challenge", domain);
        res = ORDER_INVALID;
        goto out;
    }
    sy_log_info("acme", "responding to the http-01 challenge for %s", domain);
    if (acme_post(a, chal_url, "{}", NULL, &r) < 0 || r.status != 200) {
        res = fail(a, o, "responding to a challenge", &r);
        goto out;
    }
    json_decref(authz);
    authz = NULL;
    if (poll_status(a, o, url, "waiting for an authorization", "pending", NULL, &authz) < 0) {
        res = stopping(a) ? ORDER_STOPPED : ORDER_ERROR;
        goto out;
    }
    st = jstr(authz, "status");
    if (st && strcmp(st, "valid") == 0) {
        sy_log_info("acme", "authorization for %s valid", domain);
        res = ORDER_VALID;
    } else {
        sy_log_error("acme", "authorization for %s ended %s", domain, st ? st : "(no status)");
        log_authz_error(authz, domain);
        res = ORDER_INVALID;
    }
out:
    if (authz)
        json_decref(authz);
    sy_free(domain);
    resp_reset(&r);
    return res;
}

/* Parses a PEM chain; returns the leaf (a new reference) and the count, or NULL. */
static X509 *chain_leaf(const char *pem, size_t len, int *count)
{
    BIO *b = BIO_new_mem_buf(pem, (int)len);
    X509 *leaf = NULL, *x;
    *count = 0;
    if (b == NULL)
        return NULL;
    while ((x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
        if (leaf == NULL)
            leaf = x;
        else
            X509_free(x);
        (*count)++;
    }
    ERR_clear_error();
    BIO_free(b);
    return leaf;
}

static int save_certificate(struct sy_acme *a, EVP_PKEY *certkey, const char *pem, size_t len)
{
    size_t klen = 0;
    char *kpem = sy__acme_key_to_pem(certkey, &klen);
    int rc = -1;
    if (kpem == NULL)
        return -1;
    if (mkdir(a->certdir, 0755) < 0 && errno != EEXIST) {
        sy_log_error("acme", "cannot create %s: %s", a->certdir, strerror(errno));
        goto out;
    }
    /* The key first: the .crt rename is what watchers take as the commit. */
    if (sy__acme_write_atomic(a->crtkey_path, kpem, klen, 0600) < 0 ||
        sy__acme_write_atomic(a->crt_path, pem, len, 0644) < 0)
        goto out;
    rc = 0;
out:
    OPENSSL_cleanse(kpem, klen);
    sy_free(kpem);
    return rc;
}

static enum order_res run_order(struct sy_acme *a, struct order *o, const char *replaces)
{
    struct resp r = {0};
    enum order_res res = ORDER_ERROR;
    EVP_PKEY *certkey = NULL;
    unsigned char *csr = NULL;
    json_t *obj = NULL;

    /* newOrder */
    json_t *ids = json_array();
    for (size_t i = 0; i < a->ndomains; i++)
        json_array_append_new(ids, json_pack("{s:s,s:s}", "type", "dns", "value", a->domains[i]));
    json_t *p = json_pack("{s:o}", "identifiers", ids);
    if (replaces)
        json_object_set_new(p, "replaces", json_string(replaces));
    char *payload = json_compact(p);
    json_decref(p);
    int rc = acme_post(a, a->dir.new_order, payload, NULL, &r);
    sy_free(payload);
    if (rc < 0 || r.status != 201 || r.location == NULL || r.json == NULL) {
        if (rc == 0 && (strcmp(problem_type(&r), "accountDoesNotExist") == 0 ||
                        strcmp(problem_type(&r), "unauthorized") == 0)) {
            /* Stale kid (e.g. another CA instance): forget it; the next try registers. */
            sy_free_null(&a->kid);
            unlink(a->account_path);
        }
        res = fail(a, o, "newOrder", rc == 0 ? &r : NULL);
        goto out;
    }
    o->url = sy_strdup(r.location);
    obj = json_incref(r.json);
    sy_log_info("acme", "order created %s for %zu domain(s)%s%s", o->url, a->ndomains,
                replaces ? ", replacing " : "", replaces ? replaces : "");

    /* authorizations */
    json_t *az;
    size_t i;
    json_array_foreach(json_object_get(obj, "authorizations"), i, az) {
        const char *u = json_string_value(az);
        if (u == NULL)
            continue;
        res = do_authz(a, o, u);
        if (res != ORDER_VALID)
            goto out;
    }
    res = ORDER_ERROR;

    /* wait until ready */
    json_decref(obj);
    obj = NULL;
    if (poll_status(a, o, o->url, "waiting for the order", "pending", NULL, &obj) < 0)
        goto out_stop;
    const char *st = jstr(obj, "status");
    if (st == NULL || (strcmp(st, "ready") != 0 && strcmp(st, "valid") != 0)) {
        sy_log_error("acme", "order %s is %s, not ready", o->url, st ? st : "(no status)");
        res = st && strcmp(st, "invalid") == 0 ? ORDER_INVALID : ORDER_ERROR;
        goto out;
    }

    /* finalize with a fresh key */
    if (strcmp(st, "ready") == 0) {
        const char *fin = jstr(obj, "finalize");
        size_t csrlen = 0;
        certkey = sy__acme_key_generate();
        csr = certkey ? sy__acme_csr(certkey, a->domains, a->ndomains, &csrlen) : NULL;
        if (fin == NULL || csr == NULL) {
            sy_log_error("acme", "cannot finalize order %s (no finalize URL or no CSR)", o->url);
            goto out;
        }
        char *b = sy__acme_b64url_dup(csr, csrlen);
        json_t *fp = json_pack("{s:s}", "csr", b);
        sy_free(b);
        payload = json_compact(fp);
        json_decref(fp);
        sy_log_info("acme", "finalizing order %s", o->url);
        rc = acme_post(a, fin, payload, NULL, &r);
        sy_free(payload);
        if (rc < 0 || r.status != 200) {
            res = fail(a, o, "finalize", rc == 0 ? &r : NULL);
            goto out;
        }
        json_decref(obj);
        obj = NULL;
        if (poll_status(a, o, o->url, "waiting for the certificate", "processing", "ready",
                        &obj) < 0)
            goto out_stop;
        st = jstr(obj, "status");
    } else {
        sy_log_error("acme", "order %s valid before finalize with our key; ignoring it", o->url);
        goto out;
    }
    if (st == NULL || strcmp(st, "valid") != 0 || jstr(obj, "certificate") == NULL) {
        sy_log_error("acme", "order %s ended %s", o->url, st ? st : "(no status)");
        res = st && strcmp(st, "invalid") == 0 ? ORDER_INVALID : ORDER_ERROR;
        goto out;
    }

    /* download */
    sy_log_info("acme", "downloading certificate %s", jstr(obj, "certificate"));
    if (acme_post(a, jstr(obj, "certificate"), NULL, "application/pem-certificate-chain", &r) <
            0 ||
        r.status != 200) {
        res = fail(a, o, "downloading the certificate", &r);
        goto out;
    }
    int count = 0;
    X509 *leaf = chain_leaf(r.body, r.len, &count);
    int match = leaf && X509_check_private_key(leaf, certkey) == 1;
    X509_free(leaf);
    ERR_clear_error();
    if (!match) {
        sy_log_error("acme", "downloaded chain (%d certificates) does not carry our key", count);
        goto out;
    }
    beat(a);
    if (a->lock_lost || (a->lock.held && sy__acme_lock_heartbeat(&a->lock,
                                                                 sy__acme_now_ms()) < 0)) {
        sy_log_error("acme", "lock lost before writing the certificate; discarding it");
        goto out;
    }
    if (save_certificate(a, certkey, r.body, r.len) < 0)
        goto out;
    sy_log_info("acme", "certificate for %s written to %s (%d certificates in the chain)",
                a->domains[0], a->crt_path, count);
    res = ORDER_VALID;
    goto out;
out_stop:
    res = stopping(a) ? ORDER_STOPPED : ORDER_ERROR;
out:
    if (obj)
        json_decref(obj);
    sy_free(csr);
    EVP_PKEY_free(certkey);
    resp_reset(&r);
    return res;
}

/* One issuance attempt under the lock. */
static enum order_res issue(struct sy_acme *a, const char *replaces, int64_t *hint_ms)
{
    struct order o = {0};
    enum order_res res = ORDER_ERROR;
    o.deadline = mono_ms() + ORDER_DEADLINE_MS;
    a->lock_lost = 0;
    if (fetch_directory(a) < 0)
        goto out;
    if (ensure_key(a) < 0)
        goto out;
    if (a->kid == NULL)
        load_account_json(a);
    if (a->kid == NULL && new_account(a) < 0)
        goto out;
    if (!a->dir.renewal_info)
        replaces = NULL;
    res = run_order(a, &o, replaces);
out:
    *hint_ms = o.hint_ms;
    sy_free(o.url);
    if (res == ORDER_ERROR && stopping(a))
        res = ORDER_STOPPED;
    return res;
}

/* ---- stored certificate and renewal time ---- */

struct certinfo {
    int64_t not_before_ms, not_after_ms;
    char *ari_id;
};

static int64_t asn1_ms(const ASN1_TIME *t)
{
    struct tm tm;
    if (t == NULL || !ASN1_TIME_to_tm(t, &tm))
        return -1;
    return (int64_t)timegm(&tm) * 1000;
}

static int covers(X509 *leaf, char **domains, size_t n)
{
    GENERAL_NAMES *gens = X509_get_ext_d2i(leaf, NID_subject_alt_name, NULL, NULL);
    int all = 1;
    for (size_t i = 0; i < n && all; i++) {
        int found = 0;
        for (int j = 0; gens && j < sk_GENERAL_NAME_num(gens) && !found; j++) {
            GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, j);
            if (g->type != GEN_DNS)
                continue;
            const unsigned char *s = ASN1_STRING_get0_data(g->d.dNSName);
            size_t l = (size_t)ASN1_STRING_length(g->d.dNSName);
            found = l == strlen(domains[i]) && strncasecmp((const char *)s, domains[i], l) == 0;
        }
        all = found;
    }
    GENERAL_NAMES_free(gens);
    return all;
}

/*
 * Reads the stored pair. Returns 1 with *ci filled when a usable certificate
 * for all configured domains is there (even if due), 0 when not.
 */
static int load_certinfo(struct sy_acme *a, struct certinfo *ci)
{
    size_t clen = 0, klen = 0;
    char *crt = sy__acme_read_file(a->crt_path, MAX_BODY, &clen);
    char *key = sy__acme_read_file(a->crtkey_path, 64 * 1024, &klen);
    int ok = 0, count = 0;
    X509 *leaf = crt ? chain_leaf(crt, clen, &count) : NULL;
    EVP_PKEY *k = key ? sy__acme_key_from_pem(key, klen) : NULL;
    memset(ci, 0, sizeof(*ci));
    if (leaf && k && X509_check_private_key(leaf, k) == 1 &&
        covers(leaf, a->domains, a->ndomains)) {
        ci->not_before_ms = asn1_ms(X509_get0_notBefore(leaf));
        ci->not_after_ms = asn1_ms(X509_get0_notAfter(leaf));
        ci->ari_id = sy__acme_ari_id(leaf);
        ok = ci->not_before_ms >= 0 && ci->not_after_ms > ci->not_before_ms;
    } else if (leaf && k) {
        sy_log_info("acme", "stored certificate %s does not match its key or the domains",
                    a->crt_path);
    }
    ERR_clear_error();
    atomic_store(&a->cert_expiry, ok ? ci->not_after_ms / 1000 : 0);
    X509_free(leaf);
    EVP_PKEY_free(k);
    if (key) {
        OPENSSL_cleanse(key, klen);
        sy_free(key);
    }
    sy_free(crt);
    if (!ok)
        sy_free_null(&ci->ari_id);
    return ok;
}

/* Asks the CA's renewalInfo (RFC 9773) when due; may move *renew_at earlier. */
static void ari_check(struct sy_acme *a, const struct certinfo *ci, int64_t now,
                      int64_t *renew_at)
{
    if (ci->ari_id == NULL)
        return;
    if (a->ari.cert_id == NULL || strcmp(a->ari.cert_id, ci->ari_id) != 0) {
        sy_free(a->ari.cert_id);
        a->ari.cert_id = sy_strdup(ci->ari_id);
        a->ari.pick_ms = 0;
        a->ari.next_check_ms = 0;
    }
    if (now >= a->ari.next_check_ms) {
        if (a->dir.fetched_ms == 0 || mono_ms() - a->dir.fetched_ms > DAY_MS)
            fetch_directory(a);
        a->ari.next_check_ms = now + 6 * 60 * 60 * 1000LL;
        if (a->dir.renewal_info) {
            struct resp r = {0};
            const char *base = a->dir.renewal_info;
            size_t bl = strlen(base);
            char *url = sy_asprintf("%s%s%s", base, bl && base[bl - 1] == '/' ? "" : "/",
                                    ci->ari_id);
            if (http_do(a, "GET", url, NULL, NULL, &r) == 0 && r.status == 200 && r.json) {
                json_t *w = json_object_get(r.json, "suggestedWindow");
                int64_t s = parse_rfc3339(jstr(w, "start")), e = parse_rfc3339(jstr(w, "end"));
                if (s > 0 && e >= s) {
                    a->ari.pick_ms = s + (int64_t)((double)(e - s) * (rnd32() / 4294967296.0));
                    sy_log_info("acme", "renewalInfo suggests renewing at %" PRId64 " (unix ms)",
                                a->ari.pick_ms);
                }
                int64_t ra = sy__acme_retry_after_ms(r.retry_after, now);
                if (ra >= 60000)
                    a->ari.next_check_ms = now + ra;
            } else if (r.status) {
                log_problem("renewalInfo", &r);
            }
            sy_free(url);
            resp_reset(&r);
        }
    }
    if (a->ari.pick_ms > 0 && a->ari.pick_ms < *renew_at)
        *renew_at = a->ari.pick_ms;
}

static int64_t renew_time(struct sy_acme *a, const struct certinfo *ci)
{
    int64_t life = ci->not_after_ms - ci->not_before_ms;
    if (a->renew_before_ms)
        return ci->not_after_ms - a->renew_before_ms;
    return ci->not_after_ms - life / 3;
}

/* ---- shared back-off state ---- */

static void state_load(struct sy_acme *a, unsigned *failures, int64_t *retry_at)
{
    json_t *j = json_load_file(a->state_path, 0, NULL);
    *failures = 0;
    *retry_at = 0;
    if (j == NULL)
        return;
    json_int_t f = json_integer_value(json_object_get(j, "failures"));
    json_int_t t = json_integer_value(json_object_get(j, "retry_at_ms"));
    *failures = f > 0 && f < 64 ? (unsigned)f : 0;
    *retry_at = t > 0 ? (int64_t)t : 0;
    json_decref(j);
}

static void state_save(struct sy_acme *a, unsigned failures, int64_t retry_at)
{
    json_t *j = json_pack("{s:I,s:I}", "failures", (json_int_t)failures, "retry_at_ms",
                          (json_int_t)retry_at);
    char *text = json_compact(j);
    json_decref(j);
    sy__acme_write_atomic(a->state_path, text, strlen(text), 0644);
    sy_free(text);
}

/* ---- the thread ---- */

/* One step; returns how long to sleep before the next one. */
static int64_t run_step(struct sy_acme *a)
{
    struct certinfo ci;
    int64_t now = sy__acme_now_ms();
    const char *replaces = NULL;

    if (a->key == NULL) {
        a->key = read_account_key(a->key_path, 1);
        if (a->key)
            publish_thumb(a, a->key);
    }
    int have = load_certinfo(a, &ci);
    if (have) {
        int64_t renew_at = renew_time(a, &ci);
        ari_check(a, &ci, now, &renew_at);
        if (now < renew_at) {
            sy_free(ci.ari_id);
            int64_t wait = renew_at - now;
            return wait > RECHECK_MS ? RECHECK_MS : wait < 1000 ? 1000 : wait;
        }
        sy_log_info("acme", "certificate %s is due for renewal (expires in %" PRId64 " s)",
                    a->crt_path, (ci.not_after_ms - now) / 1000);
        replaces = ci.ari_id;
    }

    unsigned failures;
    int64_t retry_at;
    state_load(a, &failures, &retry_at);
    if (retry_at > now) {
        sy_log_info("acme", "backing off after %u failure(s): next attempt in %" PRId64 " ms",
                    failures, retry_at - now);
        sy_free(ci.ari_id);
        return retry_at - now;
    }

    char *holder = NULL;
    enum sy__acme_lock_res lr = sy__acme_lock_acquire(&a->lock, now, &holder);
    if (lr != SY_ACME_LOCK_TAKEN) {
        if (lr == SY_ACME_LOCK_BUSY &&
            (a->busy_holder == NULL || strcmp(a->busy_holder, holder) != 0))
            sy_log_info("acme", "replica %s holds %s/lock; waiting for its certificate", holder,
                        a->storage);
        sy_free(a->busy_holder);
        a->busy_holder = holder;
        sy_free(ci.ari_id);
        return LOCK_POLL_MS;
    }
    sy_free_null(&a->busy_holder);
    sy_log_info("acme", "took %s/lock as %s", a->storage, a->lock.id);

    /* Another replica may have finished while we waited. */
    struct certinfo ci2;
    state_load(a, &failures, &retry_at);
    if ((load_certinfo(a, &ci2) && sy__acme_now_ms() < renew_time(a, &ci2)) ||
        retry_at > sy__acme_now_ms()) {
        sy_free(ci2.ari_id);
        sy_free(ci.ari_id);
        sy__acme_lock_release(&a->lock);
        sy_log_info("acme", "storage changed while waiting; released the lock");
        return 0;
    }
    sy_free(ci2.ari_id);

    int64_t hint = 0, wait;
    enum order_res res = issue(a, replaces, &hint);
    sy_free(ci.ari_id);
    switch (res) {
    case ORDER_VALID:
        atomic_fetch_add(&a->n_valid, 1);
        atomic_store(&a->last_success, sy__acme_now_ms() / 1000);
        if (failures)
            state_save(a, 0, 0);
        wait = 0;
        break;
    case ORDER_INVALID:
    case ORDER_ERROR:
        atomic_fetch_add(res == ORDER_INVALID ? &a->n_invalid : &a->n_error, 1);
        failures++;
        wait = sy__acme_backoff_ms(failures, a->backoff_scale, rnd32());
        if (hint > wait)
            wait = hint;
        state_save(a, failures, sy__acme_now_ms() + wait);
        sy_log_error("acme", "attempt %u failed (%s); next attempt in %" PRId64 " ms", failures,
                     res == ORDER_INVALID ? "invalid" : "error", wait);
        break;
    default:
        wait = 0;
        break;
    }
    sy__acme_lock_release(&a->lock);
    return wait;
}

static void *acme_main(void *arg)
{
    struct sy_acme *a = arg;
    sy_log_info("acme", "started for %s (storage %s, directory %s)", a->domains[0], a->storage,
                a->directory);
    if (a->start_delay_ms > 0) {
        sy_log_info("acme", "first step in %" PRId64 " ms", a->start_delay_ms);
        if (sleep_ms(a, a->start_delay_ms) < 0)
            goto out;
    }
    while (!stopping(a)) {
        int64_t wait = run_step(a);
        if (wait > 0 && sleep_ms(a, wait) < 0)
            break;
    }
out:
    sy_log_info("acme", "stopped");
    return NULL;
}

static void acme_free(struct sy_acme *a)
{
    for (size_t i = 0; i < a->ndomains; i++)
        sy_free(a->domains[i]);
    sy_free(a->domains);
    sy_free(a->directory);
    sy_free(a->email);
    sy_free(a->storage);
    sy_free(a->ca);
    sy_free(a->key_path);
    sy_free(a->account_path);
    sy_free(a->state_path);
    sy_free(a->certdir);
    sy_free(a->crt_path);
    sy_free(a->crtkey_path);
    sy__acme_lock_dispose(&a->lock);
    if (a->curl)
        curl_easy_cleanup(a->curl);
    EVP_PKEY_free(a->key);
    sy_free(a->kid);
    sy_free(a->nonce);
    sy_free(a->dir.new_nonce);
    sy_free(a->dir.new_account);
    sy_free(a->dir.new_order);
    sy_free(a->dir.renewal_info);
    sy_free(a->ari.cert_id);
    sy_free(a->busy_holder);
    sy_free(atomic_load(&a->thumb));
    pthread_mutex_destroy(&a->mu);
    pthread_cond_destroy(&a->cv);
    sy_free(a);
}

/* A millisecond count from the environment, at least min; def when unset or invalid. */
static int64_t env_ms(const char *name, int64_t def, int64_t min)
{
    const char *v = getenv(name);
    if (v == NULL || *v == '\0')
        return def;
    char *end;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    if (errno || *end || n < min || n > DAY_MS) {
        sy_log_warn("acme", "ignoring %s=%s", name, v);
        return def;
    }
    return n;
}

struct sy_acme *sy_acme_start(const struct sy_acme_conf *conf)
{
    char *err = NULL;
    if (sy_acme_check_conf(conf, &err) < 0) {
        sy_log_error("acme", "%s", err);
        sy_free(err);
        return NULL;
    }
    const char *why = NULL;
    if (sy_curl_load(&why) < 0) {
        sy_log_error("acme", "%s", why);
        return NULL;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        sy_log_error("acme", "curl_global_init failed");
        return NULL;
    }
    struct sy_acme *a = sy_calloc(1, sizeof(*a));
    a->directory = sy_strdup(conf->directory);
    a->email = conf->email ? sy_strdup(conf->email) : NULL;
    a->storage = sy_strdup(conf->storage);
    a->ca = conf->ca ? sy_strdup(conf->ca) : NULL;
    a->ndomains = conf->ndomains;
    a->domains = sy_calloc(conf->ndomains, sizeof(char *));
    for (size_t i = 0; i < conf->ndomains; i++)
        a->domains[i] = sy_strdup(conf->domains[i]);
    a->renew_before_ms = conf->renew_before_ms;
    a->backoff_scale = 1.0;
    const char *scale = getenv("SWITCHYARD_ACME_BACKOFF_SCALE");
    if (scale && *scale) {
        char *end;
        double v = strtod(scale, &end);
        if (*end == '\0' && v > 0 && v <= 1000)
            a->backoff_scale = v;
        else
            sy_log_warn("acme", "ignoring SWITCHYARD_ACME_BACKOFF_SCALE=%s", scale);
    }
    int64_t stale = env_ms("SWITCHYARD_ACME_LOCK_STALE_MS", LOCK_STALE_MS, 1000);
    a->start_delay_ms = env_ms("SWITCHYARD_ACME_START_DELAY_MS", 0, 0);
    a->beat_ms = stale / 6;
    a->key_path = sy_asprintf("%s/account.key", a->storage);
    a->account_path = sy_asprintf("%s/account.json", a->storage);
    a->state_path = sy_asprintf("%s/state.json", a->storage);
    a->certdir = sy_asprintf("%s/certificates", a->storage);
    a->crt_path = sy_acme_cert_path(conf);
    a->crtkey_path = sy_acme_key_path(conf);
    char *lockpath = sy_asprintf("%s/lock", a->storage);
    sy__acme_lock_init(&a->lock, lockpath, stale);
    sy_free(lockpath);
    atomic_init(&a->thumb, NULL);
    atomic_init(&a->thumb_try_ms, (long long)(mono_ms() - 1000));

    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&a->cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&a->mu, NULL);

    if ((mkdir(a->storage, 0755) < 0 && errno != EEXIST) ||
        (mkdir(a->certdir, 0755) < 0 && errno != EEXIST)) {
        sy_log_error("acme", "cannot create %s: %s", a->certdir, strerror(errno));
        goto fail;
    }
    a->curl = curl_easy_init();
    if (a->curl == NULL) {
        sy_log_error("acme", "curl_easy_init failed");
        goto fail;
    }
    /* The workers can answer at once when the key already exists. */
    a->key = read_account_key(a->key_path, 0);
    if (a->key)
        publish_thumb(a, a->key);
    int rc = pthread_create(&a->thread, NULL, acme_main, a);
    if (rc != 0) {
        sy_log_error("acme", "cannot start the ACME thread: %s", strerror(rc));
        goto fail;
    }
    return a;
fail:
    acme_free(a);
    return NULL;
}

void sy_acme_stop(struct sy_acme *a)
{
    if (a == NULL)
        return;
    pthread_mutex_lock(&a->mu);
    atomic_store(&a->stop, 1);
    pthread_cond_broadcast(&a->cv);
    pthread_mutex_unlock(&a->mu);
    pthread_join(a->thread, NULL);
    acme_free(a);
}
