/*
 * child/http/http.c - the endpoints: /gcm/send, the reports, /metrics, /healthz.
 *
 * One catch-all h2o handler looks the exact path up in a route table, so
 * each endpoint is one small function and unknown paths get a JSON 404.
 * Most answers are complete when the handler returns.  Two are not: a
 * /gcm/send answer waits while the spool makes the push durable, and a
 * drain answer is sent through a generator, so its entries leave the list
 * only once it is written.  The upstream work happens later, in the sender.
 */
#include "http.h"
#include "conn.h"
#include "../../common/log.h"
#include "../../common/options.h"
#include "../../shm/region.h"
#include "../core/buf.h"
#include "../fleet/fleet.h"
#include "../fleet/fleet_queue.h"
#include "../observe/metrics.h"
#include "../core/queue.h"
#include "../core/request.h"
#include "../upstream/sender.h"
#include "../store/spool.h"
#include "../upstream/upstream.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

struct fcmd_handler {
    h2o_handler_t super;
    struct http_server *hs;
};

typedef int (*endpoint_fn)(struct http_server *hs, h2o_req_t *req);

#define U(x) ((unsigned long long)(x))

/* ---- answers ---- */

static int respond(h2o_req_t *req, int status, const char *reason, const char *ctype, const char *body, size_t len)
{
    req->res.status = status;
    req->res.reason = reason;
    req->res.content_length = len;
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, ctype, strlen(ctype));
    h2o_send_inline(req, body, len);
    return 0;
}

static const char *reason_of(int status)
{
    switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 401: return "Unauthorized";
    case 405: return "Method Not Allowed";
    case 413: return "Payload Too Large";
    case 431: return "Request Header Fields Too Large";
    case 503: return "Service Unavailable";
    default: return "Internal Server Error";
    }
}

static int respond_error(h2o_req_t *req, int status, const char *msg)
{
    struct buf b = BUF_INIT;

    buf_adds(&b, "{\"error\":");
    buf_add_json_string(&b, msg, strlen(msg));
    buf_adds(&b, "}\n");
    if (b.failed)
        respond(req, 500, "Internal Server Error", "application/json", "{\"error\":\"out of memory\"}\n", 26);
    else
        respond(req, status, reason_of(status), "application/json", b.data, b.len);
    buf_free(&b);
    return 0;
}

static int respond_buf(h2o_req_t *req, const char *ctype, struct buf *b)
{
    if (b->failed)
        return respond_error(req, 500, "out of memory");
    return respond(req, 200, "OK", ctype, b->data ? b->data : "", b->len);
}

static int respond_busy(h2o_req_t *req, const char *msg)
{
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_RETRY_AFTER, NULL, H2O_STRLIT("1"));
    return respond_error(req, 503, msg);
}

/* Answers 405 unless the method is the one the endpoint takes. */
static int wrong_method(h2o_req_t *req, const char *allowed)
{
    if (h2o_memis(req->method.base, req->method.len, allowed, strlen(allowed)))
        return 0;
    if (strcmp(allowed, "GET") == 0 && h2o_memis(req->method.base, req->method.len, H2O_STRLIT("HEAD")))
        return 0;
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ALLOW, NULL, allowed, strlen(allowed));
    respond_error(req, 405, "method not allowed");
    return 1;
}

static int refuse_head(h2o_req_t *req)
{
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ALLOW, NULL, H2O_STRLIT("GET"));
    return respond_error(req, 405, "HEAD would drain the list without showing it: use GET");
}

/* ---- /gcm/send ---- */

static int respond_accepted(h2o_req_t *req, int json, size_t n)
{
    char body[64];
    int len;

    if (!json)
        return respond(req, 200, "OK", "text/plain; charset=utf-8", "ok\n", 3);
    len = snprintf(body, sizeof(body), "{\"accepted\":%zu}\n", n);
    return respond(req, 200, "OK", "application/json", body, (size_t)len);
}

/* A push accepted into the queue but held back (staged) until the spool
 * says it is durable: nothing of it is sent, counted or answered 200
 * before then, and if the sync fails it goes and the answer is 503.  The
 * link lives in the request's pool: if the client goes away first, h2o
 * disposes of it and the answer is dropped instead of written to freed
 * memory; the push is still delivered once durable. */
struct deferred {
    struct spool_waiter waiter;
    struct fq_waiter fqw; /* with --redis-queue: waiting for Redis instead */
    h2o_req_t *req;
    struct deferred **link;
    struct http_server *hs;
    struct push *push;
    int json;
    enum endpoint ep;
    uint64_t start;
};

static void on_request_gone(void *p)
{
    struct deferred *d = *(struct deferred **)p;

    if (d != NULL)
        d->req = NULL;
}

/* The push is in; count it and let the sender have it. */
static void release_push(struct http_server *hs, struct push *p)
{
    queue_commit(hs->queue, p);
    shm_add(hs->slot, SHM_ACCEPTED, p->ntargets);
    shm_app_add(hs->shm, hs->slot, shm_app_row_of(hs->opts, p->app), (unsigned)p->upstream, SHM_UP_ACCEPTED, p->ntargets);
    shm_pending_add(hs->slot, (int64_t)p->ntargets);
    sender_kick(hs->sender);
}

static void on_durable(void *arg, int ok)
{
    struct deferred *d = arg;
    struct http_server *hs = d->hs;
    h2o_req_t *req = d->req;
    size_t n = d->push->ntargets;

    if (ok) {
        release_push(hs, d->push);
    } else {
        struct spool_mark m = {d->push->spool_seg, d->push->spool_id};
        spool_forget(hs->spool, &m, n);
        spool_push_done(hs->spool, d->push);
        queue_discard(hs->queue, d->push);
    }
    if (req != NULL) {
        *d->link = NULL;
        conn_progress(d->hs->conns, req); /* answered: the client timeout starts again */
        if (ok)
            respond_accepted(req, d->json, n);
        else
            respond_busy(req, "spool sync failed");
        atomic_fetch_add_explicit(&hs->slot->http[d->ep][http_status_index(req->res.status)], 1, memory_order_relaxed);
        histogram_observe(&hs->slot->send_latency, send_bounds_us, (uv_hrtime() - d->start) / 1000);
    }
    free(d);
}

static const char *const fq_refusal[] = {
    [FQ_DOWN] = "redis unreachable: the push was not queued",
    [FQ_FULL] = "the queue in redis is full (--redis-queue-max)",
    [FQ_REFUSED] = "redis refused the push",
};

/* With --redis-queue: Redis answered for the push (or the deadline passed).
 * The push is counted by the instance that answers 200; the worker that
 * delivers it counts its outcome. */
static void on_queued(void *arg, enum fq_status st, size_t n)
{
    struct deferred *d = arg;
    struct http_server *hs = d->hs;
    h2o_req_t *req = d->req;

    if (st == FQ_OK)
        shm_add(hs->slot, SHM_ACCEPTED, n);
    if (req != NULL) {
        *d->link = NULL;
        conn_progress(hs->conns, req);
        if (st == FQ_OK)
            respond_accepted(req, d->json, n);
        else
            respond_busy(req, fq_refusal[st]);
        atomic_fetch_add_explicit(&hs->slot->http[d->ep][http_status_index(req->res.status)], 1,
                                  memory_order_relaxed);
        histogram_observe(&hs->slot->send_latency, send_bounds_us, (uv_hrtime() - d->start) / 1000);
    }
    free(d);
}

/* With --redis-queue the push goes to Redis, not to this worker's queue:
 * the answer waits for Redis. */
static int send_to_redis(struct http_server *hs, h2o_req_t *req, struct send_request *r, uint64_t start, enum endpoint ep)
{
    struct deferred *d = calloc(1, sizeof(*d));
    enum fq_status st;

    if (d == NULL) {
        request_free(r);
        return respond_busy(req, "out of memory");
    }
    *d = (struct deferred){.req = req, .hs = hs, .json = r->format == REQUEST_JSON, .start = start, .ep = ep};
    st = fleet_queue_add(hs->fq, r, &d->fqw, on_queued, d);
    request_free(r);
    if (st != FQ_OK) {
        free(d);
        return respond_busy(req, fq_refusal[st]);
    }
    /* The link is made after the push waits: if it cannot be made, the
     * answer is simply never written (as for a client gone). */
    if ((d->link = h2o_mem_alloc_shared(&req->pool, sizeof(*d->link), on_request_gone)) != NULL)
        *d->link = d;
    else
        d->req = NULL;
    return 0;
}

/* Writes the push to the spool (if any) and stages it in the queue.
 * Returns NULL with the reason for a 503 in *why. */
static struct push *stage_push(struct http_server *hs, const struct send_request *r, size_t cost, size_t body_len,
                               const char **why)
{
    struct spool_mark mark;
    struct push *p;

    if (!queue_has_room(hs->queue, r->ntargets, cost)) {
        *why = "queue full";
        return NULL;
    }
    if (hs->spool != NULL) {
        if (!spool_has_room(hs->spool, body_len + 64 * r->ntargets)) {
            *why = "spool full";
            return NULL;
        }
        if (spool_append(hs->spool, r, &mark) != 0) {
            *why = "spool write failed";
            return NULL;
        }
    }
    if ((p = queue_stage(hs->queue, r)) == NULL) {
        *why = "out of memory";
        if (hs->spool != NULL)
            spool_forget(hs->spool, &mark, r->ntargets);
        return NULL;
    }
    if (hs->spool != NULL)
        spool_bind(hs->spool, &mark, p);
    return p;
}

/* The app a request names: its "app" field, else its X-Fcmd-App header (if
 * both, they must agree), else the default app.  Sets r->app_index (and
 * r->app to the header's name when only the header gave one, or to NULL for
 * the default app, so the spool records the app by its name) and returns
 * the adapter of that app for kind, or NULL with a reason in err. */
static struct upstream *select_app(struct http_server *hs, h2o_req_t *req, enum upstream_kind kind, struct send_request *r,
                                   char *err, size_t errlen)
{
    ssize_t h = h2o_find_header_by_str(&req->headers, H2O_STRLIT("x-fcmd-app"), -1);
    const char *what = kind == UPSTREAM_APNS ? "APNs" : "FCM";
    struct upstream *up;
    int a;

    if (h >= 0) {
        h2o_iovec_t v = req->headers.entries[h].value;
        if (!options_app_name_ok(v.base, v.len)) {
            snprintf(err, errlen, "X-Fcmd-App must be 1 to %d letters, digits, '_', '.' or '-'", APP_NAME_MAX);
            return NULL;
        }
        if (r->app != NULL && (r->app_len != v.len || memcmp(r->app, v.base, v.len) != 0)) {
            snprintf(err, errlen, "the app field and the X-Fcmd-App header name different apps");
            return NULL;
        }
        for (ssize_t o = h; (o = h2o_find_header_by_str(&req->headers, H2O_STRLIT("x-fcmd-app"), o)) >= 0;) {
            h2o_iovec_t w = req->headers.entries[o].value;
            if (w.len != v.len || memcmp(w.base, v.base, v.len) != 0) {
                snprintf(err, errlen, "X-Fcmd-App headers name different apps");
                return NULL;
            }
        }
        r->app = v.base;
        r->app_len = v.len;
    }
    if ((a = options_app_find(hs->opts, r->app, r->app_len)) < 0) {
        snprintf(err, errlen, "unknown app \"%.*s\"", (int)r->app_len, r->app);
        return NULL;
    }
    if (a == APP_DEFAULT)
        r->app = NULL, r->app_len = 0;
    r->app_index = (unsigned)a;
    if ((up = hs->ups[a][kind]) == NULL) {
        if (a == APP_DEFAULT)
            snprintf(err, errlen, "the default app has no %s credentials: name an app with \"app\" or X-Fcmd-App",
                     what);
        else
            snprintf(err, errlen, "app \"%s\" has no %s credentials", options_app_name(hs->opts, (unsigned)a), what);
    }
    return up;
}

/* Whether any app can send to upstream kind. */
static int serves(const struct http_server *hs, enum upstream_kind kind)
{
    for (unsigned a = 0; a <= hs->opts->napps; a++)
        if (hs->ups[a][kind] != NULL)
            return 1;
    return 0;
}

/* Whether app a can send now: each of its adapters is ready (an FCM v1 app
 * has an access token; an app whose credentials a reload could not read
 * never is). */
static int app_healthy(const struct http_server *hs, unsigned a)
{
    for (int k = 0; k < UPSTREAM_KINDS; k++) {
        struct upstream *up = hs->ups[a][k];
        if (up != NULL && up->ops->ready != NULL && !up->ops->ready(up))
            return 0;
    }
    return 1;
}

/* /gcm/send and /apns/send: the same answers, limits and durability; only
 * the request's rules and the upstream differ. */
static int send_to(struct http_server *hs, h2o_req_t *req, enum upstream_kind kind)
{
    struct upstream *up = NULL;
    struct send_request r;
    const char *ctype = NULL, *why;
    size_t ctype_len = 0, n, cost = 0;
    uint64_t start = uv_hrtime();
    struct deferred *d = NULL;
    struct push *p;
    char err[256];
    ssize_t h;
    int rc, json;

    if (wrong_method(req, "POST"))
        return 0;
    /* A stopping child still takes requests on connections it already has
     * (h2o closes them after this answer): its drain covers them too. */
    if ((h = h2o_find_header(&req->headers, H2O_TOKEN_CONTENT_TYPE, -1)) >= 0) {
        ctype = req->headers.entries[h].value.base;
        ctype_len = req->headers.entries[h].value.len;
    }
    rc = request_parse_for(kind, ctype, ctype_len, req->entity.base ? req->entity.base : "", req->entity.len,
                           hs->limits, &r, err, sizeof(err));
    if (rc == 0 && (up = select_app(hs, req, kind, &r, err, sizeof(err))) == NULL) {
        request_free(&r);
        rc = -EINVAL;
    }
    if (rc == 0 && up->ops->check != NULL && (rc = up->ops->check(up, &r, err, sizeof(err))) != 0)
        request_free(&r);
    if (rc == 0 && !queue_could_fit(hs->queue, r.ntargets, cost = queue_cost(&r))) {
        snprintf(err, sizeof(err), "request holds more than a worker's whole queue (--queue-size, --queue-max-bytes)");
        request_free(&r);
        rc = -EMSGSIZE;
    }
    if (rc != 0)
        return respond_error(req, request_status(rc), err);
    if (hs->fq != NULL)
        return send_to_redis(hs, req, &r, start, kind == UPSTREAM_APNS ? EP_APNS_SEND : EP_SEND);
    /* Whatever can fail is done before anything is written or queued. */
    if (hs->spool != NULL && (d = calloc(1, sizeof(*d))) == NULL) {
        request_free(&r);
        return respond_busy(req, "out of memory");
    }
    if ((p = stage_push(hs, &r, cost, req->entity.len, &why)) == NULL) {
        request_free(&r);
        free(d);
        return respond_busy(req, why);
    }
    n = r.ntargets;
    json = r.format == REQUEST_JSON;
    request_free(&r);
    if (d != NULL) {
        *d = (struct deferred){.req = req,
                               .hs = hs,
                               .push = p,
                               .json = json,
                               .start = start,
                               .ep = kind == UPSTREAM_APNS ? EP_APNS_SEND : EP_SEND};
        if ((d->link = h2o_mem_alloc_shared(&req->pool, sizeof(*d->link), on_request_gone)) != NULL)
            *d->link = d;
        if (spool_commit(hs->spool, &d->waiter, on_durable, d))
            return 0;
        if (d->link != NULL)
            *d->link = NULL;
        free(d);
    }
    release_push(hs, p);
    return respond_accepted(req, json, n);
}

static int on_send(struct http_server *hs, h2o_req_t *req)
{
    if (!serves(hs, UPSTREAM_FCM)) {
        if (!wrong_method(req, "POST"))
            respond_error(req, 404, "FCM is not configured: start fcmd with --service-account or --apikey-file");
        return 0;
    }
    return send_to(hs, req, UPSTREAM_FCM);
}

static int on_apns_send(struct http_server *hs, h2o_req_t *req)
{
    if (!serves(hs, UPSTREAM_APNS)) {
        if (!wrong_method(req, "POST"))
            respond_error(req, 404,
                          "APNs is not configured: start fcmd with --apns-key, --apns-key-id and --apns-team-id");
        return 0;
    }
    return send_to(hs, req, UPSTREAM_APNS);
}

/* ---- reports ---- */

/* ?scope=local or ?scope=fleet (the default): 1 for local, 0 for fleet, -1
 * for anything else. */
static int report_scope(const h2o_req_t *req)
{
    const char *q, *end;

    if (req->query_at == SIZE_MAX)
        return 0;
    q = req->path.base + req->query_at + 1;
    end = req->path.base + req->path.len;
    if (h2o_memis(q, (size_t)(end - q), H2O_STRLIT("scope=local")))
        return 1;
    return h2o_memis(q, (size_t)(end - q), H2O_STRLIT("scope=fleet")) || q == end ? 0 : -1;
}

/* The fleet's totals, as the last flush brought them (child/fleet/fleet.c). */
static int respond_fleet(struct http_server *hs, h2o_req_t *req, const struct fleet_totals *t)
{
    struct buf b = BUF_INIT;
    const uint64_t *n = t->counters;

    buf_addf(&b, "{\"attempts\":%llu,\"failures\":%llu,\"pending\":%lld,\"canonicals\":%llu,\"notregistered\":%llu",
             U(n[SHM_ATTEMPTS]), U(n[SHM_FAILURES]), (long long)t->pending, U(n[SHM_CANONICALS]),
             U(n[SHM_NOTREGISTERED]));
    buf_addf(&b, ",\"successes\":%llu,\"retries\":%llu,\"accepted\":%llu,\"lost\":%llu", U(n[SHM_SUCCESSES]),
             U(n[SHM_RETRIES]), U(n[SHM_ACCEPTED]), U(n[SHM_LOST]));
    buf_addf(&b, ",\"left_in_spool\":%llu,\"replayed\":%llu", U(n[SHM_LEFT_IN_SPOOL]), U(n[SHM_REPLAYED]));
    buf_addf(&b, ",\"dropped\":%llu,\"canonical_dropped\":%llu,\"notregistered_dropped\":%llu",
             U(t->canonical_dropped + t->notregistered_dropped), U(t->canonical_dropped),
             U(t->notregistered_dropped));
    buf_addf(&b, ",\"instances\":%llu,\"scope\":\"fleet\",\"redis\":\"ok\",\"age_ms\":%llu,\"upstream\":\"%s\"}\n",
             U(t->instances), U(t->age_ms), hs->upstream_name);
    respond_buf(req, "application/json", &b);
    buf_free(&b);
    return 0;
}

/* The outcomes per upstream, next to the totals: "fcm": {...}, "apns": {...}. */
static void report_upstreams(struct buf *b, const struct shm_totals *t)
{
    for (int u = 0; u < SHM_UPSTREAMS; u++) {
        buf_addf(b, ",\"%s\":{", shm_upstream_names[u]);
        for (int k = 0; k < SHM_UP_NCOUNTERS; k++)
            buf_addf(b, "%s\"%s\":%llu", k ? "," : "", shm_upstream_counter_names[k], U(t->by_upstream[u][k]));
        if (u == UPSTREAM_APNS)
            buf_addf(b, ",\"provider_tokens\":%llu", U(t->apns_tokens_made));
        buf_adds(b, "}");
    }
}

/* One app's counters: {"accepted":..,...} summed over its upstreams. */
static void report_app_totals(struct buf *b, const struct shm_app *a)
{
    for (int k = 0; k < SHM_UP_NCOUNTERS; k++) {
        uint64_t n = 0;
        for (int u = 0; u < SHM_UPSTREAMS; u++)
            n += atomic_load_explicit(&((struct shm_app *)a)->by_upstream[u][k], memory_order_relaxed);
        buf_addf(b, "%s\"%s\":%llu", k ? "," : "", shm_upstream_counter_names[k], U(n));
    }
}

/* "apps": {"default": {...}, "NAME": {...}} after the totals. */
static void report_apps(struct http_server *hs, struct buf *b)
{
    buf_adds(b, ",\"apps\":{\"default\":{");
    report_app_totals(b, &hs->shm->apps[0]);
    buf_adds(b, "}");
    for (size_t i = 0; i < hs->opts->napps; i++) {
        buf_addf(b, ",\"%s\":{", hs->opts->apps[i].name);
        report_app_totals(b, &hs->shm->apps[hs->opts->apps[i].shm]);
        buf_adds(b, "}");
    }
    buf_adds(b, "}");
}

/* The app named in ?app=NAME (n bytes), or NULL when the query names none. */
static const char *query_app(const h2o_req_t *req, size_t *n)
{
    const char *q, *end;

    if (req->query_at == SIZE_MAX)
        return NULL;
    q = req->path.base + req->query_at + 1;
    end = req->path.base + req->path.len;
    if ((size_t)(end - q) < 4 || memcmp(q, "app=", 4) != 0)
        return NULL;
    *n = (size_t)(end - q - 4);
    return q + 4;
}

/* /gcm/report?app=NAME: that app's counters, this instance's alone. */
static int respond_app_report(struct http_server *hs, h2o_req_t *req, const char *name, size_t n)
{
    struct buf b = BUF_INIT;
    int a = options_app_name_ok(name, n) ? options_app_find(hs->opts, name, n) : -ENOENT;
    unsigned row;

    if (a < 0)
        return respond_error(req, 400, "unknown app");
    row = shm_app_row_of(hs->opts, (unsigned)a);
    buf_addf(&b, "{\"app\":\"%s\",", a == APP_DEFAULT ? "default" : options_app_name(hs->opts, (unsigned)a));
    report_app_totals(&b, &hs->shm->apps[row]);
    for (int u = 0; u < SHM_UPSTREAMS; u++) {
        buf_addf(&b, ",\"%s\":{", shm_upstream_names[u]);
        for (int k = 0; k < SHM_UP_NCOUNTERS; k++)
            buf_addf(&b, "%s\"%s\":%llu", k ? "," : "", shm_upstream_counter_names[k],
                     U(atomic_load_explicit(&hs->shm->apps[row].by_upstream[u][k], memory_order_relaxed)));
        buf_adds(&b, "}");
    }
    buf_addf(&b, ",\"unhealthy\":%s}\n", app_healthy(hs, (unsigned)a) ? "false" : "true");
    respond_buf(req, "application/json", &b);
    buf_free(&b);
    return 0;
}

static int on_report(struct http_server *hs, h2o_req_t *req)
{
    struct shm_totals t;
    struct fleet_totals ft;
    struct buf b = BUF_INIT;
    uint64_t now = (uint64_t)time(NULL), started = atomic_load(&hs->shm->started_at);
    int scope = hs->fleet != NULL ? report_scope(req) : 1;

    const char *app;
    size_t app_len = 0;

    if (wrong_method(req, "GET"))
        return 0;
    if ((app = query_app(req, &app_len)) != NULL)
        return respond_app_report(hs, req, app, app_len);
    if (scope < 0)
        return respond_error(req, 400, "scope is fleet or local");
    if (scope == 0 && fleet_totals(hs->fleet, &ft) == 0)
        return respond_fleet(hs, req, &ft);
    shm_sum(hs->shm, &t);
    /* GoCM's five keys first, in GoCM's order. */
    buf_addf(&b, "{\"attempts\":%llu,\"failures\":%llu,\"pending\":%lld,\"canonicals\":%llu,\"notregistered\":%llu",
             U(t.counters[SHM_ATTEMPTS]), U(t.counters[SHM_FAILURES]), (long long)t.pending,
             U(t.counters[SHM_CANONICALS]), U(t.counters[SHM_NOTREGISTERED]));
    buf_addf(&b, ",\"successes\":%llu,\"retries\":%llu,\"accepted\":%llu,\"lost\":%llu", U(t.counters[SHM_SUCCESSES]),
             U(t.counters[SHM_RETRIES]), U(t.counters[SHM_ACCEPTED]), U(t.counters[SHM_LOST]));
    if (hs->opts->spool != NULL)
        buf_addf(&b, ",\"left_in_spool\":%llu", U(t.counters[SHM_LEFT_IN_SPOOL]));
    buf_addf(&b, ",\"dropped\":%llu,\"canonical_dropped\":%llu,\"notregistered_dropped\":%llu",
             U(t.canonical_dropped + t.notregistered_dropped), U(t.canonical_dropped), U(t.notregistered_dropped));
    if (hs->opts->spool != NULL)
        buf_addf(&b, ",\"spool_bytes\":%lld,\"spool_segments\":%lld,\"replayed\":%llu",
                 (long long)t.gauges[SHM_SPOOL_BYTES], (long long)t.gauges[SHM_SPOOL_SEGMENTS],
                 U(t.counters[SHM_REPLAYED]));
    if (hs->opts->sa != NULL)
        buf_addf(&b, ",\"oauth_tokens\":%llu,\"oauth_failures\":%llu,\"waiting_for_token\":%llu",
                 U(t.counters[SHM_OAUTH_TOKENS]), U(t.counters[SHM_OAUTH_FAILURES]), U(t.waiting_for_token));
    if (serves(hs, UPSTREAM_APNS))
        report_upstreams(&b, &t);
    if (hs->opts->napps > 0)
        report_apps(hs, &b);
    if (hs->fleet != NULL) /* this instance alone: asked for, or Redis cannot be reached */
        buf_addf(&b, ",\"scope\":\"local\",\"redis\":\"%s\"", fleet_ready(hs->fleet) ? "ok" : "unreachable");
    buf_addf(&b, ",\"upstream\":\"%s\",\"workers\":%u,\"uptime_seconds\":%llu}\n", hs->upstream_name,
             (unsigned)atomic_load(&hs->shm->workers), U(now > started ? now - started : 0));
    respond_buf(req, "application/json", &b);
    buf_free(&b);
    return 0;
}

typedef void (*record_fn)(struct buf *b, const char *rec, size_t len);

/* {"original": ..., "canonical": ...} from a record "original\0canonical". */
static void emit_pair(struct buf *b, const char *rec, size_t len)
{
    size_t olen = strnlen(rec, len);

    buf_adds(b, "{\"original\":");
    buf_add_json_string(b, rec, olen);
    buf_adds(b, ",\"canonical\":");
    buf_add_json_string(b, rec + olen + 1, olen < len ? len - olen - 1 : 0);
    buf_adds(b, "}");
}

static void emit_token(struct buf *b, const char *rec, size_t len)
{
    buf_add_json_string(b, rec, len);
}

/* A drain's answer.  The records taken from the list stay here until h2o
 * says the answer was written (proceed): only then are they gone for good.
 * If the client goes away first (stop), or the answer cannot be built,
 * they go back into the list for the next drain.  In fleet mode the
 * records are held in Redis instead (fd), and the answer waits for them. */
struct drain_answer {
    h2o_generator_t super;
    h2o_linklist_t link; /* in hs->drains while it holds entries */
    struct drainlist *list;
    unsigned char *recs;
    size_t len;
    uint64_t count;
    struct fleet_drain *fd; /* fleet mode: the records Redis holds for this answer */
    struct http_server *hs;
    h2o_req_t *req;
    const char *key;
    record_fn emit;
    enum endpoint ep;
    struct buf body;
};

/* The entries are in an answer that went out: gone for good. */
static void let_go(struct drain_answer *a)
{
    free(a->recs);
    a->recs = NULL;
    if (a->fd != NULL)
        fleet_drain_finish(a->fd, 1);
    a->fd = NULL;
    if (h2o_linklist_is_linked(&a->link))
        h2o_linklist_unlink(&a->link);
}

static void give_back(struct drain_answer *a)
{
    uint64_t back;

    if (a->recs != NULL && (back = drainlist_giveback(a->list, a->recs, a->len, a->count)) < a->count)
        log_warn("drain: the list filled up while an answer failed: %llu entries dropped",
                 (unsigned long long)(a->count - back));
    free(a->recs);
    a->recs = NULL;
    if (a->fd != NULL)
        fleet_drain_finish(a->fd, 0);
    a->fd = NULL;
    let_go(a);
}

void http_give_back_drains(struct http_server *hs)
{
    while (!h2o_linklist_is_empty(&hs->drains))
        give_back(H2O_STRUCT_FROM_MEMBER(struct drain_answer, link, hs->drains.next));
}

static void drain_written(h2o_generator_t *g, h2o_req_t *req)
{
    let_go((struct drain_answer *)g);
    h2o_send(req, NULL, 0, H2O_SEND_STATE_FINAL);
}

static void drain_stopped(h2o_generator_t *g, h2o_req_t *req)
{
    (void)req;
    give_back((struct drain_answer *)g);
}

static void drain_disposed(void *p)
{
    struct drain_answer *a = p;

    give_back(a); /* never started: nothing was sent */
    buf_free(&a->body);
}

/* {"key": [records...]} or {"key": null} into a->body. */
static void build_drained(struct drain_answer *a, const unsigned char *recs, size_t len)
{
    const unsigned char *rec;
    size_t pos = 0, rlen;

    buf_addf(&a->body, "{\"%s\":", a->key);
    if (len == 0) {
        buf_adds(&a->body, "null}\n");
        return;
    }
    buf_add(&a->body, "[", 1);
    for (int first = 1; (rec = drainlist_next(recs, len, &pos, &rlen)) != NULL; first = 0) {
        if (!first)
            buf_add(&a->body, ",", 1);
        a->emit(&a->body, (const char *)rec, rlen);
    }
    buf_adds(&a->body, "]}\n");
}

static int start_drained(struct drain_answer *a, h2o_req_t *req);

/* Fleet mode: the records Redis took for this answer, or why not. */
static void on_fleet_taken(void *arg, const unsigned char *recs, size_t len, const char *error)
{
    struct drain_answer *a = arg;
    h2o_req_t *req = a->req;

    if (error != NULL || len == 0) { /* settled: nothing is held for this answer */
        a->fd = NULL;
        if (h2o_linklist_is_linked(&a->link))
            h2o_linklist_unlink(&a->link);
    }
    if (error != NULL) {
        respond_busy(req, error);
    } else {
        build_drained(a, recs, len);
        if (len == 0)
            respond_buf(req, "application/json", &a->body);
        else
            start_drained(a, req);
    }
    atomic_fetch_add_explicit(&a->hs->slot->http[a->ep][http_status_index(req->res.status)], 1, memory_order_relaxed);
}

/* Fleet mode: the entries come from Redis; the answer waits for them. */
static int respond_fleet_drained(struct drain_answer *a, h2o_req_t *req, int which)
{
    size_t budget = a->list->capacity; /* drain_list_bytes as the lists were made (a reload keeps them) */

    if (budget > FLEET_DRAIN_MAX_BYTES)
        budget = FLEET_DRAIN_MAX_BYTES;
    a->req = req;
    if ((a->fd = fleet_drain_take(a->hs->fleet, which, budget, on_fleet_taken, a)) == NULL)
        return respond_busy(req, "redis unreachable: the drain lists wait in Redis and in each instance until it "
                                 "is back");
    h2o_linklist_insert(&a->hs->drains, &a->link);
    return 0;
}

/* Drains a list and answers {"key": [records...]} or {"key": null}. */
static int respond_drained(struct http_server *hs, h2o_req_t *req, struct drainlist *l, int which, const char *key,
                           record_fn emit)
{
    struct drain_answer *a;

    /* A HEAD would take the entries and send none of them. */
    if (h2o_memis(req->method.base, req->method.len, H2O_STRLIT("HEAD")))
        return refuse_head(req);
    if (wrong_method(req, "GET"))
        return 0;
    a = h2o_mem_alloc_shared(&req->pool, sizeof(*a), drain_disposed);
    *a = (struct drain_answer){.super = {drain_written, drain_stopped},
                               .list = l,
                               .hs = hs,
                               .key = key,
                               .emit = emit,
                               .ep = which == FLEET_CANONICAL ? EP_CANONICAL : EP_NOTREGISTERED,
                               .body = BUF_INIT};
    if (hs->fleet != NULL)
        return respond_fleet_drained(a, req, which);
    if (drainlist_drain(l, &a->recs, &a->len, &a->count) != 0)
        return respond_error(req, 500, "out of memory");
    if (a->recs != NULL)
        h2o_linklist_insert(&hs->drains, &a->link);
    build_drained(a, a->recs, a->len);
    if (a->recs == NULL)
        return respond_buf(req, "application/json", &a->body);
    return start_drained(a, req);
}

/* Sends the built answer through the generator, so that the entries are
 * let go only once it is written. */
static int start_drained(struct drain_answer *a, h2o_req_t *req)
{
    h2o_iovec_t body;

    if (a->body.failed) {
        give_back(a);
        return respond_error(req, 500, "out of memory");
    }
    req->res.status = 200;
    req->res.reason = "OK";
    req->res.content_length = a->body.len;
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, H2O_STRLIT("application/json"));
    h2o_start_response(req, &a->super);
    body = h2o_iovec_init(a->body.data, a->body.len);
    h2o_send(req, &body, 1, H2O_SEND_STATE_IN_PROGRESS);
    return 0;
}

static int on_canonical(struct http_server *hs, h2o_req_t *req)
{
    return respond_drained(hs, req, hs->shm->canonical, FLEET_CANONICAL, "canonical_replacements", emit_pair);
}

static int on_notregistered(struct http_server *hs, h2o_req_t *req)
{
    return respond_drained(hs, req, hs->shm->notregistered, FLEET_NOTREGISTERED, "tokens", emit_token);
}

/* ---- operations ---- */

static int on_metrics(struct http_server *hs, h2o_req_t *req)
{
    struct shm_totals t;
    struct buf b = BUF_INIT;
    uint64_t now = (uint64_t)time(NULL), started = atomic_load(&hs->shm->started_at);
    struct metrics_context m = {hs->upstream_name, atomic_load(&hs->shm->workers),
                                now > started ? now - started : 0};

    if (wrong_method(req, "GET"))
        return 0;
    shm_sum(hs->shm, &t);
    metrics_prometheus(&b, &t, &m);
    metrics_apps(&b, hs->shm, hs->opts);
    respond_buf(req, "text/plain; version=0.0.4; charset=utf-8", &b);
    buf_free(&b);
    return 0;
}

static int on_healthz(struct http_server *hs, h2o_req_t *req)
{
    if (wrong_method(req, "GET"))
        return 0;
    if (*hs->stopping)
        return respond_error(req, 503, "draining");
    return respond(req, 200, "OK", "text/plain", "ok\n", 3);
}

/* {"status": ..., "unhealthy_apps": [...]}: the apps that cannot send now. */
static void unhealthy_apps(const struct http_server *hs, struct buf *b, const char *status)
{
    int first = 1;

    buf_addf(b, "{\"status\":\"%s\",\"unhealthy_apps\":[", status);
    for (unsigned a = 0; a <= hs->opts->napps; a++) {
        if ((hs->ups[a][UPSTREAM_FCM] == NULL && hs->ups[a][UPSTREAM_APNS] == NULL) || app_healthy(hs, a))
            continue;
        buf_addf(b, "%s\"%s\"", first ? "" : ",", a == APP_DEFAULT ? "default" : options_app_name(hs->opts, a));
        first = 0;
    }
    buf_adds(b, "]}\n");
}

/* With apps: 200 while any app can send, with a JSON body naming those that
 * cannot (a load balancer must not drop an instance that serves the other
 * apps fine); 503 when none can.  ?app=NAME asks about one app: 503 while
 * it cannot send. */
static int readyz_apps(struct http_server *hs, h2o_req_t *req)
{
    struct buf b = BUF_INIT;
    size_t n, healthy = 0, sick = 0;
    const char *name = query_app(req, &n);
    int a;

    if (name != NULL) {
        if (!options_app_name_ok(name, n) || (a = options_app_find(hs->opts, name, n)) < 0)
            return respond_error(req, 400, "unknown app");
        if (!app_healthy(hs, (unsigned)a))
            return respond_error(req, 503, "the app cannot send now: no usable credentials");
        return respond(req, 200, "OK", "text/plain", "ok\n", 3);
    }
    for (unsigned i = 0; i <= hs->opts->napps; i++)
        if (hs->ups[i][UPSTREAM_FCM] != NULL || hs->ups[i][UPSTREAM_APNS] != NULL)
            *(app_healthy(hs, i) ? &healthy : &sick) += 1;
    if (sick == 0)
        return respond(req, 200, "OK", "text/plain", "ok\n", 3);
    unhealthy_apps(hs, &b, healthy > 0 ? "degraded" : "unavailable");
    if (b.failed) {
        buf_free(&b);
        return respond_error(req, 500, "out of memory");
    }
    if (healthy > 0)
        respond_buf(req, "application/json", &b);
    else
        respond(req, 503, "Service Unavailable", "application/json", b.data, b.len);
    buf_free(&b);
    return 0;
}

/* Like /healthz, and also 503 while the upstream cannot be used (no access
 * token) or the spool cannot be written. */
static int on_readyz(struct http_server *hs, h2o_req_t *req)
{
    struct upstream *fcm = hs->ups[APP_DEFAULT][UPSTREAM_FCM];

    if (wrong_method(req, "GET"))
        return 0;
    if (*hs->stopping)
        return respond_error(req, 503, "draining");
    if (hs->spool != NULL && !spool_ready(hs->spool))
        return respond_error(req, 503, "the spool cannot be written");
    if (hs->fleet != NULL && !fleet_ready(hs->fleet))
        return respond_error(req, 503, "redis unreachable");
    if (hs->fq != NULL && !fleet_queue_ready(hs->fq))
        return respond_error(req, 503, "redis does not take pushes in time");
    if (hs->opts->napps > 0)
        return readyz_apps(hs, req);
    if (fcm != NULL && fcm->ops->ready != NULL && !fcm->ops->ready(fcm))
        return respond_error(req, 503, "no upstream access token");
    return respond(req, 200, "OK", "text/plain", "ok\n", 3);
}

/* ---- routing ---- */

static const struct {
    const char *path;
    endpoint_fn fn;
    enum endpoint id;
    int scope; /* AUTH_* bit that --auth-token protects, 0 for the health checks */
} routes[] = {
    {"/gcm/send", on_send, EP_SEND, AUTH_SEND},
    {"/apns/send", on_apns_send, EP_APNS_SEND, AUTH_SEND},
    {"/gcm/report", on_report, EP_REPORT, AUTH_REPORT},
    {"/gcm/report/canonical", on_canonical, EP_CANONICAL, AUTH_REPORT},
    {"/gcm/report/notregistered", on_notregistered, EP_NOTREGISTERED, AUTH_REPORT},
    {"/metrics", on_metrics, EP_METRICS, AUTH_METRICS},
    {"/healthz", on_healthz, EP_HEALTHZ, 0},
    {"/readyz", on_readyz, EP_READYZ, 0},
};

/* Whether the request carries "Authorization: Bearer <token>", compared in
 * constant time so the answer's timing says nothing about the token. */
static int authorized(const struct http_server *hs, h2o_req_t *req)
{
    const char *want = hs->opts->auth_token;
    size_t n = strlen(want);
    ssize_t h = h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, -1);
    h2o_iovec_t v;

    if (h < 0)
        return 0;
    v = req->headers.entries[h].value;
    if (v.len != n + 7 || strncasecmp(v.base, "Bearer ", 7) != 0) {
        CRYPTO_memcmp(want, want, n); /* the same work as a real comparison */
        return 0;
    }
    return CRYPTO_memcmp(v.base + 7, want, n) == 0;
}

static size_t header_bytes(const h2o_req_t *req)
{
    size_t n = req->path.len;

    for (size_t i = 0; i < req->headers.size; i++)
        n += req->headers.entries[i].name->len + req->headers.entries[i].value.len + 4;
    return n;
}

static int on_req(h2o_handler_t *self, h2o_req_t *req)
{
    struct http_server *hs = ((struct fcmd_handler *)self)->hs;
    size_t plen = req->path_normalized.len, i;
    enum endpoint ep = EP_OTHER;
    uint64_t start = uv_hrtime();

    conn_progress(hs->conns, req); /* handed to fcmd: the connection is not idle */
    /* Which child answered: for operators chasing a problem, and for tests. */
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-fcmd-worker"), 0, NULL, hs->worker_id,
                          strlen(hs->worker_id));
    if (header_bytes(req) > (size_t)hs->opts->max_header_bytes) {
        respond_error(req, 431, "request headers are too large");
        atomic_fetch_add_explicit(&hs->slot->http[EP_OTHER][http_status_index(431)], 1, memory_order_relaxed);
        return 0;
    }
    for (i = 0; i < sizeof(routes) / sizeof(routes[0]); i++)
        if (h2o_memis(req->path_normalized.base, plen, routes[i].path, strlen(routes[i].path)))
            break;
    if (i < sizeof(routes) / sizeof(routes[0])) {
        ep = routes[i].id;
        if (hs->opts->auth_token != NULL && (hs->auth_scopes & routes[i].scope) && !authorized(hs, req)) {
            h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_WWW_AUTHENTICATE, NULL, H2O_STRLIT("Bearer"));
            respond_error(req, 401, "missing or wrong bearer token");
        } else {
            routes[i].fn(hs, req);
        }
    } else {
        respond_error(req, 404, "no such endpoint");
    }
    /* Every answer is sent by now, so its status is known - unless it waits
     * for the spool, and then on_durable counts it. */
    if (req->res.status == 0)
        return 0;
    atomic_fetch_add_explicit(&hs->slot->http[ep][http_status_index(req->res.status)], 1, memory_order_relaxed);
    if (ep == EP_SEND || ep == EP_APNS_SEND)
        histogram_observe(&hs->slot->send_latency, send_bounds_us, (uv_hrtime() - start) / 1000);
    return 0;
}

/* The access log, one line per request in Apache's combined format.  h2o
 * formats the line; fcmd owns the descriptor, because h2o's own access-log
 * handle keeps its descriptor private and never reopens it (logrotate). */
struct access_logger {
    h2o_logger_t super;
    h2o_logconf_t *conf;
    struct http_server *hs;
};

static int open_access_log(const char *path)
{
    return open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
}

static void log_access(h2o_logger_t *logger, h2o_req_t *req)
{
    struct access_logger *al = (struct access_logger *)logger;
    struct http_server *hs = al->hs;
    char buf[4096], *line;
    size_t len = sizeof(buf);

    line = h2o_log_request(al->conf, req, &len, buf);
    /* One write() per line, so workers sharing the file never interleave. */
    if (write(hs->access_log_fd, line, len) < 0) {
        if (!hs->access_log_failing)
            log_error("write(%s) failed, access-log lines are lost until it works again: %s", hs->opts->access_log,
                      strerror(errno));
        hs->access_log_failing = 1;
    } else {
        hs->access_log_failing = 0;
    }
    if (line != buf)
        free(line);
}

static void dispose_access_log(h2o_logger_t *logger)
{
    h2o_logconf_dispose(((struct access_logger *)logger)->conf);
}

static int register_access_log(struct http_server *hs, h2o_pathconf_t *path)
{
    static const char combined[] = "%h %l %u %t \"%r\" %s %b \"%{Referer}i\" \"%{User-agent}i\"";
    char errbuf[256];
    h2o_logconf_t *conf = h2o_logconf_compile(combined, H2O_LOGCONF_ESCAPE_APACHE, errbuf);
    struct access_logger *al;

    if (conf == NULL) {
        log_error("h2o_logconf_compile() failed: %s", errbuf);
        return -1;
    }
    if ((hs->access_log_fd = open_access_log(hs->opts->access_log)) < 0) {
        log_error("open(%s) failed: %s", hs->opts->access_log, strerror(errno));
        h2o_logconf_dispose(conf);
        return -1;
    }
    al = (struct access_logger *)h2o_create_logger(path, sizeof(*al));
    al->super.log_access = log_access;
    al->super.dispose = dispose_access_log;
    al->conf = conf;
    al->hs = hs;
    return 0;
}

int http_register(struct http_server *hs, h2o_hostconf_t *host)
{
    h2o_pathconf_t *path = h2o_config_register_path(host, "/", 0);
    struct fcmd_handler *h = (struct fcmd_handler *)h2o_create_handler(path, sizeof(*h));

    if (h == NULL)
        return -1;
    h2o_linklist_init_anchor(&hs->drains);
    h->super.on_req = on_req;
    h->hs = hs;
    if (hs->opts->access_log != NULL && register_access_log(hs, path) != 0)
        return -1;
    return 0;
}

void http_reopen_access_log(struct http_server *hs)
{
    int fd;

    if (hs->opts->access_log == NULL)
        return;
    if ((fd = open_access_log(hs->opts->access_log)) < 0) {
        log_error("open(%s) failed, the access log stays where it was: %s", hs->opts->access_log, strerror(errno));
        return;
    }
    /* dup3() puts the new file under the old descriptor in one step: there is
     * no moment without an access log, and the logger needs no update. */
    if (dup3(fd, hs->access_log_fd, O_CLOEXEC) < 0)
        log_error("dup3() of the access log failed, it stays where it was: %s", strerror(errno));
    else
        log_info("access log reopened at %s", hs->opts->access_log);
    close(fd);
    hs->access_log_failing = 0;
}
