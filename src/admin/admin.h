/*
 * admin.h: the admin listener's answers (/healthz, /readyz, /metrics).
 * Served only on listen.admin, never on a public listener.
 */
#ifndef SY_ADMIN_ADMIN_H
#define SY_ADMIN_ADMIN_H

#include <stddef.h>

#include "http/h1.h"

/*
 * Builds the whole HTTP response for an admin request (req NULL: the request
 * was invalid and `status` says why). Returns a heap buffer (sy_free) and
 * its length in *len. snap: the caller's snapshot (TLS certificate metrics).
 * Any worker thread.
 */
struct sy_snapshot;
char *sy_admin_respond(const struct sy_h1_request *req, int status, const struct sy_snapshot *snap,
                       size_t *len);

#endif
