#include "admin/admin.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "acme/acme.h"
#include "admin/metrics.h"
#include "core/alloc.h"
#include "proxy/mirror.h"
#include "proxy/proxy.h"
#include "tls/tls.h"

static char *finish(struct sy_textbuf *body, int status, const char *reason, const char *ctype,
                    int head_only, size_t *len)
{
    struct sy_textbuf out = {0};
    sy_textbuf_printf(&out,
                      "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                      "Cache-Control: no-store\r\nConnection: close\r\n\r\n",
                      status, reason, ctype, body->len);
    if (!head_only && body->len)
        sy_textbuf_append(&out, body->p, body->len);
    sy_textbuf_free(body);
    *len = out.len;
    return out.p;
}

static void render_metrics(struct sy_textbuf *b, const struct sy_snapshot *s)
{
    unsigned n = sy_proc.nworkers;
    struct sy_metrics *ms[256];
    if (n > 256)
        n = 256;
    for (unsigned i = 0; i < n; i++)
        ms[i] = &sy_proc.workers[i].metrics;
    sy_metrics_render(b, ms, n);
    sy_textbuf_printf(b,
                      "# HELP switchyard_config_reloads_total Configuration reloads by result.\n"
                      "# TYPE switchyard_config_reloads_total counter\n"
                      "switchyard_config_reloads_total{result=\"ok\"} %llu\n"
                      "switchyard_config_reloads_total{result=\"failed\"} %llu\n",
                      (unsigned long long)atomic_load(&sy_proc.reloads_ok),
                      (unsigned long long)atomic_load(&sy_proc.reloads_failed));
    sy_textbuf_printf(b,
                      "# HELP switchyard_build_info Build information.\n"
                      "# TYPE switchyard_build_info gauge\n"
                      "switchyard_build_info{version=\"%s\"} 1\n"
                      "# HELP switchyard_start_time_seconds Start time of the process.\n"
                      "# TYPE switchyard_start_time_seconds gauge\n"
                      "switchyard_start_time_seconds %llu\n"
                      "# HELP switchyard_workers Worker threads.\n"
                      "# TYPE switchyard_workers gauge\nswitchyard_workers %u\n",
                      SY_VERSION, (unsigned long long)sy_proc.start_time, sy_proc.nworkers);
    size_t need = sy_tls_metrics(s ? s->tls : NULL, NULL, 0);
    char *tb = sy_malloc(need + 1);
    sy_tls_metrics(s ? s->tls : NULL, tb, need + 1);
    sy_textbuf_append(b, tb, strlen(tb));
    sy_free(tb);
    if (sy_proc.acme) {
        char ab[2048];
        size_t k = sy_acme_metrics(sy_proc.acme, ab, sizeof(ab));
        sy_textbuf_append(b, ab, k);
    }
}

char *sy_admin_respond(const struct sy_h1_request *req, int status, const struct sy_snapshot *snap,
                       size_t *len)
{
    struct sy_textbuf body = {0};
    if (!req) {
        sy_textbuf_printf(&body, "bad request\n");
        return finish(&body, status, "Bad Request", "text/plain", 0, len);
    }
    int head = sy_str_eq(req->method, SY_STR_LIT("HEAD"));
    if (!head && !sy_str_eq(req->method, SY_STR_LIT("GET"))) {
        sy_textbuf_printf(&body, "method not allowed\n");
        return finish(&body, 405, "Method Not Allowed", "text/plain", 0, len);
    }
    struct sy_str path = req->target;
    const char *q = memchr(path.p, '?', path.len);
    if (q)
        path.len = (size_t)(q - path.p);
    if (sy_str_eq(path, SY_STR_LIT("/healthz"))) {
        sy_textbuf_printf(&body, "ok\n");
        return finish(&body, 200, "OK", "text/plain", head, len);
    }
    if (sy_str_eq(path, SY_STR_LIT("/readyz"))) {
        if (sy_atomic_draining()) {
            sy_textbuf_printf(&body, "draining\n");
            return finish(&body, 503, "Service Unavailable", "text/plain", head, len);
        }
        sy_textbuf_printf(&body, "ready\n");
        return finish(&body, 200, "OK", "text/plain", head, len);
    }
    if (sy_str_eq(path, SY_STR_LIT("/metrics"))) {
        render_metrics(&body, snap);
        return finish(&body, 200, "OK", "text/plain; version=0.0.4", head, len);
    }
    if (sy_str_eq(path, SY_STR_LIT("/diffs")) || sy_str_eq(path, SY_STR_LIT("/diffs.html"))) {
        int html = path.len == 11;
        sy_mirror_render(&body, html);
        return finish(&body, 200, "OK", html ? "text/html; charset=utf-8" : "application/json",
                      head, len);
    }
    sy_textbuf_printf(&body, "not found\n");
    return finish(&body, 404, "Not Found", "text/plain", head, len);
}
