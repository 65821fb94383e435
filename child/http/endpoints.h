/*
 * child/http/endpoints.h - what the files of http/ share: the endpoints the
 * route table in http.c calls, the answers they all give (respond.c), and
 * what more than one endpoint asks about apps.
 *
 * An endpoint answers before it returns 0 (h2o's rule), or leaves the
 * answer to a callback that counts it with http_count when it sends it.
 */
#ifndef FCMD_CHILD_HTTP_ENDPOINTS_H
#define FCMD_CHILD_HTTP_ENDPOINTS_H

#include <h2o.h>
#include <stddef.h>
#include <stdint.h>

#include "../../shm/metrics.h"
#include "../core/request.h"
#include "http.h"

struct buf;

typedef int (*endpoint_fn)(struct http_server *hs, h2o_req_t *req);

int http_on_send(struct http_server *hs, h2o_req_t *req, int kind); /* send.c: a provider's send endpoint */
int http_on_report(struct http_server *hs, h2o_req_t *req);        /* report.c */
int http_on_canonical(struct http_server *hs, h2o_req_t *req);     /* drain.c */
int http_on_notregistered(struct http_server *hs, h2o_req_t *req); /* drain.c */
int http_on_metrics(struct http_server *hs, h2o_req_t *req);       /* ops.c */
int http_on_healthz(struct http_server *hs, h2o_req_t *req);       /* ops.c */
int http_on_readyz(struct http_server *hs, h2o_req_t *req);        /* ops.c */
int http_on_push(struct http_server *hs, h2o_req_t *req);          /* push.c: GET /push/{id} */
/* At exit: the waiters' timer closes (push.c), and the fleet's looks (push_fleet.c). */
void http_close_push_waits(struct http_server *hs);
/* push.c: the answer of GET /push/{id} for status s and its errors, as
 * http_push_add_error() wrote them to errors; the 404 of an unknown id when
 * who (http_who) may not see the push's app. */
struct push_status;
void http_push_render(const struct http_server *hs, int who, h2o_req_t *req, const char *id, size_t id_len,
                      const struct push_status *s, struct buf *errors);
void http_push_add_error(void *arg, const char *token, size_t token_len, const char *reason, size_t reason_len);
/* push.c: a GET /push/{id}'s path (n bytes) and query (qn): the id (0), or
 * -ENOENT (no id: a 404), or -EINVAL (a wait that is no 0 to 30: a 400). */
int http_push_path(const char *path, size_t n, const char *q, size_t qn, const char **id, size_t *id_len,
                   unsigned long *secs);
/* push_fleet.c: GET /push/{id} with --redis, waiting up to secs for the push to be done. */
int http_push_fleet(struct http_server *hs, h2o_req_t *req, const char *id, size_t id_len, unsigned long secs);
void http_close_push_looks(struct http_server *hs);
int http_on_status(struct http_server *hs, h2o_req_t *req);        /* status.c: the status page */

/* Each returns 0, h2o's "answered". */
int http_respond(h2o_req_t *req, int status, const char *reason, const char *ctype, const char *body, size_t len);
/* {"error": msg} with status. */
int http_error(h2o_req_t *req, int status, const char *msg);
/* 200 with b's text, or a 500 when building it ran out of memory. */
int http_respond_buf(h2o_req_t *req, const char *ctype, struct buf *b);
/* 503 with Retry-After: 1. */
int http_busy(h2o_req_t *req, const char *msg);
/* Answers 405 (with Allow) and returns 1 unless the method is allowed (GET
 * takes HEAD too); returns 0 otherwise, having answered nothing. */
int http_wrong_method(h2o_req_t *req, const char *allowed);
/* 405 for a HEAD of a drain, which would take entries and show none. */
int http_refuse_head(h2o_req_t *req);

/* An answer of endpoint ep went out with status: counted by endpoint and
 * status, and for a send the time since start (uv_hrtime) in its histogram. */
void http_count(struct http_server *hs, enum endpoint ep, int status, uint64_t start);

/* Whether any app can send to upstream kind. */
int http_serves(const struct http_server *hs, enum upstream_kind kind);
/* Whether app a can send now: each of its adapters is ready. */
int http_app_healthy(const struct http_server *hs, unsigned a);
/* Whether req may read what scope (an AUTH_* bit) holds for every app: no
 * instance token is set, the scope is not protected, or req carries the
 * instance's token (http.c).  An app's token alone is not enough. */
int http_authorized(const struct http_server *hs, h2o_req_t *req, int scope);
/* 401 with WWW-Authenticate: Bearer. */
int http_unauthorized(h2o_req_t *req);
/* The holder of req's bearer token (common/tenant.h): TENANT_INSTANCE, an
 * app index, or TENANT_NONE.  on_req sets hs->who to it before it calls an
 * endpoint; what answers later keeps its own copy. */
int http_who(const struct http_server *hs, h2o_req_t *req);
/* The app a request names (name, n bytes, n -ENOENT when none, another
 * negative n for a name too long), held to hs->who: none named is the
 * holder's own app (the default app for the instance's token or none), an
 * app's token naming any other is a 403, an app with a token of its own
 * without it (or the instance's) a 401, an unknown app a 400.  Returns 0
 * with the index in *a, or -1 having answered. */
int http_app_pick(struct http_server *hs, h2o_req_t *req, const char *name, long n, int *a);
/* Whether hs->who may see app a's counts and pushes. */
int http_may_see_app(const struct http_server *hs, unsigned a);
/* 401 for an app that has a token of its own, asked without it. */
int http_unauthorized_app(h2o_req_t *req);

struct shm_totals;
/* The report's keys for t (report.c): the counter table's rows that show
 * under want (SHM_REPORT with SHM_WITH_SPOOL or SHM_WITH_SA as they apply,
 * or SHM_FLEET), in their report order; those before the upstreams, or with
 * closing those that end the report.  sep goes before the first. */
void http_report_keys(struct buf *b, const struct shm_totals *t, unsigned want, int closing, const char *sep);
/* ,"fcm":{...},"apns":{...}: the outcomes per upstream, and APNs' own counts. */
void http_report_upstreams(struct buf *b, const struct shm_totals *t);

#endif
