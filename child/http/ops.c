/*
 * child/http/ops.c - what operators and load balancers probe: /metrics,
 * /healthz and /readyz, and whether an app or an upstream can send now.
 */
#include "endpoints.h"
#include "query.h"
#include "../../common/log.h"
#include "../../common/options.h"
#include "../../common/tenant.h"
#include "../../shm/region.h"
#include "../core/buf.h"
#include "../fleet/fleet.h"
#include "../fleet/fleet_queue.h"
#include "../observe/metrics.h"
#include "../store/spool.h"
#include "../upstream/upstream.h"

#include <errno.h>
#include <string.h>

/* Whether any app can send to upstream kind. */
int http_serves(const struct http_server *hs, enum upstream_kind kind)
{
    for (unsigned a = 0; a <= hs->opts->napps; a++)
        if (hs->ups[a][kind] != NULL)
            return 1;
    return 0;
}

/* Whether app a has any provider's credentials. */
static int app_sends(const struct http_server *hs, unsigned a)
{
    for (int k = 0; k < UPSTREAM_KINDS; k++)
        if (hs->ups[a][k] != NULL)
            return 1;
    return 0;
}

/* Whether app a can send now: each of its adapters is ready (an FCM v1 app
 * has an access token; an app whose credentials a reload could not read
 * never is). */
int http_app_healthy(const struct http_server *hs, unsigned a)
{
    for (int k = 0; k < UPSTREAM_KINDS; k++) {
        struct upstream *up = hs->ups[a][k];
        if (up != NULL && up->ops->ready != NULL && !up->ops->ready(up))
            return 0;
    }
    return 1;
}

int http_on_metrics(struct http_server *hs, h2o_req_t *req)
{
    struct shm_totals t;
    struct buf b = BUF_INIT;

    if (http_wrong_method(req, "GET"))
        return 0;
    shm_sum(hs->shm, &t);
    metrics_prometheus(&b, &t, hs->upstream_name);
    metrics_apps(&b, hs->shm, hs->opts, hs->who == TENANT_INSTANCE || !tenant_any_protected(hs->opts));
    http_respond_buf(req, "text/plain; version=0.0.4; charset=utf-8", &b);
    buf_free(&b);
    return 0;
}

int http_on_healthz(struct http_server *hs, h2o_req_t *req)
{
    if (http_wrong_method(req, "GET"))
        return 0;
    if (*hs->stopping)
        return http_error(req, 503, "draining");
    return http_respond(req, 200, "OK", "text/plain", "ok\n", 3);
}

/* {"status": ..., "unhealthy_apps": [...]}: the apps that cannot send now. */
static void unhealthy_apps(const struct http_server *hs, struct buf *b, const char *status)
{
    int first = 1;

    buf_addf(b, "{\"status\":\"%s\",\"unhealthy_apps\":[", status);
    for (unsigned a = 0; a <= hs->opts->napps; a++) {
        if (!app_sends(hs, a) || http_app_healthy(hs, a))
            continue;
        buf_addf(b, "%s\"%s\"", first ? "" : ",", a == APP_DEFAULT ? "default" : options_app_name(hs->opts, a));
        first = 0;
    }
    buf_adds(b, "]}\n");
}

/* 503 with the reason for a caller who may read the report, else with
 * none: a load balancer learns only that the instance is not ready. */
static int not_ready(h2o_req_t *req, int told, const char *why)
{
    return http_error(req, 503, told ? why : "not ready");
}

/* /readyz?app=NAME: 503 while that one app cannot send. */
static int readyz_app(struct http_server *hs, h2o_req_t *req, int a)
{
    if (a != APP_DEFAULT && hs->opts->apps[a - 1].broken)
        return http_error(req, 503, "the app cannot send: a reload could not read its credentials; its pushes are "
                                    "refused until a reload loads them");
    if (!http_app_healthy(hs, (unsigned)a))
        return http_error(req, 503, "the app cannot send now: no usable credentials");
    return http_respond(req, 200, "OK", "text/plain", "ok\n", 3);
}

/* With apps: 200 while any app can send, with a JSON body naming those that
 * cannot (a load balancer must not drop an instance that serves the other
 * apps fine); 503 when none can.  Without told, the names are left out:
 * "ok" or "not ready". */
static int readyz_apps(struct http_server *hs, h2o_req_t *req, int told)
{
    struct buf b = BUF_INIT;
    size_t healthy = 0, sick = 0;

    for (unsigned i = 0; i <= hs->opts->napps; i++)
        if (app_sends(hs, i))
            *(http_app_healthy(hs, i) ? &healthy : &sick) += 1;
    if (sick == 0 || (!told && healthy > 0))
        return http_respond(req, 200, "OK", "text/plain", "ok\n", 3);
    if (!told)
        return not_ready(req, told, "no app can send");
    unhealthy_apps(hs, &b, healthy > 0 ? "degraded" : "unavailable");
    if (b.failed) {
        buf_free(&b);
        return http_error(req, 500, "out of memory");
    }
    if (healthy > 0)
        http_respond_buf(req, "application/json", &b);
    else
        http_respond(req, 503, "Service Unavailable", "application/json", b.data, b.len);
    buf_free(&b);
    return 0;
}

/* Like /healthz, and also 503 while the upstream cannot be used (no access
 * token) or the spool cannot be written.  With the report scope protected,
 * which app cannot send and why is the token's to know: without it,
 * /readyz answers ready or not ready, and ?app=NAME is a 401 (whether NAME
 * exists is not told either). */
int http_on_readyz(struct http_server *hs, h2o_req_t *req)
{
    struct upstream *fcm = hs->ups[APP_DEFAULT][UPSTREAM_FCM];
    /* An app's token hears about its own app only, never the others' names. */
    int told = hs->who < 1 && http_authorized(hs, req, AUTH_REPORT);
    char app[APP_NAME_MAX + 2]; /* one byte more than a name: a longer value is no app's */
    long app_len = http_query_get(req, "app", app, sizeof(app));
    int a = APP_DEFAULT;

    if (http_wrong_method(req, "GET"))
        return 0;
    /* An app's token may ask about its own app, and then hears why. */
    if (app_len != -ENOENT && !told && hs->who < 1)
        return http_unauthorized(req);
    if (app_len != -ENOENT && http_app_pick(hs, req, app, app_len, &a) != 0)
        return 0;
    if (app_len != -ENOENT)
        told = 1;
    if (*hs->stopping)
        return not_ready(req, told, "draining");
    if (hs->spool != NULL && !spool_ready(hs->spool))
        return not_ready(req, told, "the spool cannot be written");
    if (hs->fleet != NULL && !fleet_ready(hs->fleet))
        return not_ready(req, told, "redis unreachable");
    if (hs->fq != NULL && !fleet_queue_ready(hs->fq))
        return not_ready(req, told, "redis does not take pushes in time");
    if (app_len != -ENOENT)
        return readyz_app(hs, req, a);
    if (hs->opts->napps > 0)
        return readyz_apps(hs, req, told);
    if (fcm != NULL && fcm->ops->ready != NULL && !fcm->ops->ready(fcm))
        return not_ready(req, told, "no upstream access token");
    return http_respond(req, 200, "OK", "text/plain", "ok\n", 3);
}
