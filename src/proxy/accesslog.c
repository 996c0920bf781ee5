/*
 * accesslog.c: one JSON object per request on stdout.
 *
 * Lines are built in a per-worker staging buffer and moved, whole lines only,
 * into the worker's stdout ring (core/logq.h) when the buffer is half full or
 * at the end of a loop iteration at most every 100 ms. A writer thread writes
 * the rings to stdout: logging costs the worker no system call per request
 * under load, and a stdout reader that stops reading never blocks it. When
 * the ring is full the lines that do not fit are dropped whole and counted
 * (switchyard_access_log_dropped_total): stdout stays valid JSON lines.
 */
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/logq.h"
#include "proxy/conn.h"

#define LOG_CAP 65536                 /* staging buffer */
#define LOG_RING_CAP (256 * 1024)     /* lines waiting for a slow stdout reader, per worker */

/* Moves the complete lines of the staging buffer to the ring; a line being built stays. */
static void commit(struct sy_worker *w)
{
    if (!w->logring)
        w->logring = sy_logq_ring_new(STDOUT_FILENO, LOG_RING_CAP);
    if (w->log_line && w->logring)
        sy_logq_put(w->logring, w->log, w->log_line);
    memmove(w->log, w->log + w->log_line, w->loglen - w->log_line);
    w->loglen -= w->log_line;
    w->log_line = 0;
}

static void lput(struct sy_worker *w, const char *s, size_t n)
{
    if (w->log_overlong)
        return;
    if (w->loglen + n > LOG_CAP)
        commit(w);
    if (w->loglen + n > LOG_CAP) {
        /* One line longer than the staging buffer: dropped whole when it ends. */
        w->log_overlong = 1;
        w->loglen = w->log_line;
        return;
    }
    memcpy(w->log + w->loglen, s, n);
    w->loglen += n;
}

/* JSON string body with escapes; bytes >= 0x80 are passed through when they form valid UTF-8,
 * otherwise escaped as \u00XX. */
static void lput_json(struct sy_worker *w, const char *s, size_t n)
{
    char tmp[1024];
    size_t t = 0;
    for (size_t i = 0; i < n; i++) {
        if (t > sizeof(tmp) - 8) {
            lput(w, tmp, t);
            t = 0;
        }
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\') {
            tmp[t++] = '\\';
            tmp[t++] = (char)ch;
        } else if (ch < 0x20 || ch == 0x7f || ch >= 0x80) {
            t += (size_t)snprintf(tmp + t, 8, "\\u%04x", ch);
        } else {
            tmp[t++] = (char)ch;
        }
    }
    lput(w, tmp, t);
}

static void lput_str_field(struct sy_worker *w, const char *key, const char *v, size_t n, int null)
{
    lput(w, ",\"", 2);
    lput(w, key, strlen(key));
    if (null) {
        lput(w, "\":null", 6);
        return;
    }
    lput(w, "\":\"", 3);
    lput_json(w, v, n);
    lput(w, "\"", 1);
}

void sy_accesslog_write(struct sy_exchange *x, uint64_t duration_us)
{
    struct sy_worker *w = x->w;
    if (!w->log)
        w->log = sy_malloc(LOG_CAP);
    w->log_line = w->loglen;
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    char head[128];
    int n = snprintf(head, sizeof(head), "{\"time\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ\"",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     tm.tm_sec, ts.tv_nsec / 1000000);
    lput(w, head, (size_t)n);
    char client[80];
    int cl = snprintf(client, sizeof(client), strchr(x->peer_ip, ':') ? "[%s]:%u" : "%s:%u",
                      x->peer_ip, x->peer_port);
    lput_str_field(w, "client", client, (size_t)cl, 0);
    lput_str_field(w, "method", x->req.method.p ? x->req.method.p : "", x->req.method.len, 0);
    lput_str_field(w, "path", x->log_path.p ? x->log_path.p : "", x->log_path.len, 0);
    lput_str_field(w, "protocol", x->h2 ? "HTTP/2" : "HTTP/1.1", x->h2 ? 6 : 8, 0);
    char nums[160];
    n = snprintf(nums, sizeof(nums),
                 ",\"status\":%d,\"bytes_in\":%llu,\"bytes_out\":%llu,\"duration_ms\":%.3f",
                 x->status, (unsigned long long)x->bytes_in, (unsigned long long)x->bytes_out,
                 (double)duration_us / 1000.0);
    lput(w, nums, (size_t)n);
    const struct sy_site_conf *site = x->route.site;
    lput_str_field(w, "site", site ? site->hosts[0] : NULL, site ? strlen(site->hosts[0]) : 0,
                   !site);
    const char *ver = x->route.route ? x->route.route->version : NULL;
    lput_str_field(w, "version", ver, ver ? strlen(ver) : 0, !ver);
    const char *src = x->route.route ? sy_vsrc_name(x->route.source) : NULL;
    lput_str_field(w, "version_source", src, src ? strlen(src) : 0, !src);
    lput_str_field(w, "upstream", x->log_upstream, x->log_upstream ? strlen(x->log_upstream) : 0,
                   !x->log_upstream);
    lput_str_field(w, "request_id", x->reqid, strlen(x->reqid), 0);
    lput(w, "}\n", 2);
    if (w->log_overlong) {
        w->log_overlong = 0;
        if (w->logring)
            sy_logq_drop(w->logring, 1);
    }
    w->log_line = w->loglen;
    if (w->loglen > LOG_CAP / 2)
        sy_accesslog_flush(w);
}

void sy_accesslog_flush(struct sy_worker *w)
{
    commit(w);
    w->log_flushed_at = sy_loop_now(w->loop);
}

static uint64_t xorshift(uint64_t s[2])
{
    uint64_t a = s[0], b = s[1];
    s[0] = b;
    a ^= a << 23;
    s[1] = a ^ b ^ (a >> 17) ^ (b >> 26);
    return s[1] + b;
}

uint64_t sy_worker_random(struct sy_worker *w)
{
    if (!w->rng[0] && !w->rng[1]) {
        if (getrandom(w->rng, sizeof(w->rng), 0) != sizeof(w->rng)) {
            w->rng[0] = (uint64_t)time(NULL) ^ ((uint64_t)w->id << 32);
            w->rng[1] = 0x9e3779b97f4a7c15ULL;
        }
    }
    return xorshift(w->rng);
}

void sy_request_id(struct sy_worker *w, char *out)
{
    static const char hex[] = "0123456789abcdef";
    uint64_t v[2] = {sy_worker_random(w), sy_worker_random(w)};
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < 16; i++)
            out[k * 16 + i] = hex[(v[k] >> (60 - 4 * i)) & 0xf];
    out[32] = '\0';
}
