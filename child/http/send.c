/*
 * child/http/send.c - /gcm/send and /apns/send: read the request, pick its
 * app's adapter, stage the push and answer.
 *
 * An answer is not always complete when the handler returns: with a spool
 * it waits until the push is durable, with --redis-queue until Redis took
 * it.  The link to the request lives in its pool, so a client that went
 * away is noticed and the push is still delivered.
 */
#include "endpoints.h"
#include "conn.h"
#include "../../common/log.h"
#include "../../common/options.h"
#include "../../common/tenant.h"
#include "../../shm/idempotency.h"
#include "../../shm/push_status.h"
#include "../../shm/region.h"
#include "../core/buf.h"
#include "../core/queue.h"
#include "../core/request.h"
#include "../fleet/fleet_idem.h"
#include "../fleet/fleet_queue.h"
#include "../fleet/statuses.h"
#include "../store/spool.h"
#include "../upstream/sender.h"
#include "../upstream/upstream.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* 200: the push's id in the X-Fcmd-Id header, and in a JSON body beside
 * the targets accepted; a form's body stays GoCM's "ok".  A duplicate (its
 * Idempotency-Key named the push before) says so, in the body or in
 * X-Fcmd-Duplicate. */
static int respond_accepted(h2o_req_t *req, int json, size_t n, const char *id, size_t id_len, int duplicate)
{
    char body[128 + PUSH_ID_MAX];
    int len;

    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-fcmd-id"), 0, NULL,
                          h2o_strdup(&req->pool, id, id_len).base, id_len);
    if (duplicate && !json)
        h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-fcmd-duplicate"), 0, NULL, H2O_STRLIT("1"));
    if (!json)
        return http_respond(req, 200, "OK", "text/plain; charset=utf-8", "ok\n", 3);
    len = snprintf(body, sizeof(body), "{\"accepted\":%zu,\"id\":\"%.*s\"%s}\n", n, (int)id_len, id,
                   duplicate ? ",\"duplicate\":true" : "");
    return http_respond(req, 200, "OK", "application/json", body, (size_t)len);
}

/* A send's Idempotency-Key, claimed in the instance's ledger until its push
 * is accepted or refused (shm/idempotency.h). */
struct idem_hold {
    char key[IDEM_LEDGER_KEY_MAX]; /* the app's name, a NUL, the request's key */
    size_t len; /* 0: none */
    int fleet;  /* claimed in Redis too (fleet_idem.h) */
    unsigned char fp[IDEM_FINGERPRINT];
    uint32_t targets;
};

static void settle(struct http_server *hs, const struct idem_hold *h, const char *id, int accepted)
{
    size_t app_len = h->len > 0 ? strlen(h->key) : 0;

    if (h->len == 0)
        return;
    idempotency_settle(hs->shm->idempotency, h->key, h->len, id, accepted, ledger_now_ms(),
                       (uint64_t)hs->opts->idempotency_ttl * 1000);
    if (h->fleet)
        fleet_idem_settle(hs->fidem, h->key, h->key + app_len + 1, h->len - app_len - 1, h->fp, id, h->targets,
                          accepted, (unsigned)hs->opts->idempotency_ttl);
}

/* With --redis, the fleet's status of a push accepted here begins with its targets. */
static void begin_status(struct http_server *hs, const char *id, unsigned app, unsigned upstream, size_t n)
{
    if (hs->fstat != NULL)
        fleet_statuses_begin(hs->fstat, id, app == APP_DEFAULT ? "" : options_app_name(hs->opts, app), upstream,
                             n > UINT32_MAX ? UINT32_MAX : (uint32_t)n);
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
    char id[PUSH_ID_MAX + 1]; /* the push's, for the answer */
    size_t id_len;
    unsigned app, upstream; /* the push's, with --redis-queue */
    struct idem_hold idem;
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
    p->status = push_status_track(hs->shm->push_status, hs->opts, p->id, p->app, p->app_name, (unsigned)p->upstream, p->ntargets);
    begin_status(hs, p->id, p->app, (unsigned)p->upstream, p->ntargets);
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

    /* Stopping (ok < 0), the record stays in the spool for a replay: the key
     * names the push as if it were accepted. */
    settle(hs, &d->idem, d->id, ok != 0);
    if (ok < 0) { /* the worker stops: the push goes with it, its record stays in the spool */
        if (req != NULL)
            *d->link = NULL;
        queue_discard(hs->queue, d->push);
        free(d);
        return;
    }
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
            respond_accepted(req, d->json, n, d->id, d->id_len, 0);
        else
            http_busy(req, "spool sync failed");
        http_count(hs, d->ep, req->res.status, d->start);
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

    if (st == FQ_OK) {
        shm_add(hs->slot, SHM_ACCEPTED, n);
        begin_status(hs, d->id, d->app, d->upstream, n);
    }
    settle(hs, &d->idem, d->id, st == FQ_OK);
    if (req != NULL) {
        *d->link = NULL;
        conn_progress(hs->conns, req);
        if (st == FQ_OK)
            respond_accepted(req, d->json, n, d->id, d->id_len, 0);
        else
            http_busy(req, fq_refusal[st]);
        http_count(hs, d->ep, req->res.status, d->start);
    }
    free(d);
}

/* With --redis-queue the push goes to Redis, not to this worker's queue:
 * the answer waits for Redis. */
static int send_to_redis(struct http_server *hs, h2o_req_t *req, struct send_request *r, uint64_t start, enum endpoint ep,
                         const struct idem_hold *idem)
{
    struct deferred *d = calloc(1, sizeof(*d));
    enum fq_status st;

    if (d == NULL) {
        settle(hs, idem, r->id, 0);
        request_free(r);
        return http_busy(req, "out of memory");
    }
    *d = (struct deferred){.req = req, .hs = hs, .json = r->format == REQUEST_JSON, .start = start, .ep = ep,
                           .app = r->app_index, .upstream = (unsigned)r->upstream, .idem = *idem};
    memcpy(d->id, r->id, r->id_len + 1);
    d->id_len = r->id_len;
    st = fleet_queue_add(hs->fq, r, &d->fqw, on_queued, d);
    request_free(r);
    if (st != FQ_OK) {
        settle(hs, idem, d->id, 0);
        free(d);
        return http_busy(req, fq_refusal[st]);
    }
    /* h2o_mem_alloc_shared aborts rather than return NULL. */
    d->link = h2o_mem_alloc_shared(&req->pool, sizeof(*d->link), on_request_gone);
    *d->link = d;
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

#define PROVIDER_TEXT(ID, NAME, LABEL, PATH, ENDPOINT, HINT) {LABEL, HINT},
static const struct {
    const char *label; /* "APNs" */
    const char *hint;  /* the options that configure it */
} providers[UPSTREAM_KINDS] = {FCMD_PROVIDERS(PROVIDER_TEXT)};
#undef PROVIDER_TEXT

/* The app a request names: its "app" field, else its X-Fcmd-App header (if
 * both, they must agree), else the default app.  Sets r->app_index (and
 * r->app to the header's name when only the header gave one, or to NULL for
 * the default app, so the spool records the app by its name) and returns
 * the adapter of that app for kind, or NULL with a reason in err. */
static struct upstream *select_app(struct http_server *hs, h2o_req_t *req, enum upstream_kind kind, struct send_request *r,
                                   int *status, char *err, size_t errlen)
{
    ssize_t h = h2o_find_header_by_str(&req->headers, H2O_STRLIT("x-fcmd-app"), -1);
    const char *what = providers[kind].label;
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
    *status = 403;
    if (hs->who >= 1) { /* an app's token: its own app, named or not, and no other */
        const char *own = options_app_name(hs->opts, (unsigned)hs->who);
        if (r->app == NULL) {
            r->app = own;
            r->app_len = strlen(own);
        } else if (r->app_len != strlen(own) || memcmp(r->app, own, r->app_len) != 0) {
            snprintf(err, errlen, "this token is app \"%s\"'s: it sends for no other app", own);
            return NULL;
        }
    }
    *status = 400;
    if ((a = options_app_find(hs->opts, r->app, r->app_len)) < 0) {
        snprintf(err, errlen, "unknown app \"%.*s\"", (int)r->app_len, r->app);
        return NULL;
    }
    if (hs->who == TENANT_NONE && tenant_app_protected(hs->opts, (unsigned)a)) {
        *status = 401;
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

/* The request's Idempotency-Key header: 0 and key->len 0 when it has none,
 * 0 with *key, or -1 with a reason in err (a key that is no key, or
 * several that differ). */
static int idem_header(h2o_req_t *req, h2o_iovec_t *key, char *err, size_t errlen)
{
    ssize_t h = h2o_find_header_by_str(&req->headers, H2O_STRLIT("idempotency-key"), -1);

    *key = h2o_iovec_init(NULL, 0);
    if (h < 0)
        return 0;
    *key = req->headers.entries[h].value;
    if (!idempotency_key_ok(key->base, key->len)) {
        snprintf(err, errlen, "Idempotency-Key must be 1 to %d visible ASCII characters", IDEM_KEY_MAX);
        return -1;
    }
    while ((h = h2o_find_header_by_str(&req->headers, H2O_STRLIT("idempotency-key"), h)) >= 0) {
        h2o_iovec_t o = req->headers.entries[h].value;
        if (o.len != key->len || memcmp(o.base, key->base, o.len) != 0) {
            snprintf(err, errlen, "Idempotency-Key headers differ");
            return -1;
        }
    }
    return 0;
}

/* What a request is, for a key that comes again: its endpoint, its
 * Content-Type and its body, hashed. */
static int fingerprint(enum upstream_kind kind, h2o_req_t *req, unsigned char out[IDEM_FINGERPRINT])
{
    ssize_t h = h2o_find_header(&req->headers, H2O_TOKEN_CONTENT_TYPE, -1);
    h2o_iovec_t ct = h >= 0 ? req->headers.entries[h].value : h2o_iovec_init("", 0);
    unsigned char k = (unsigned char)kind, nul = 0;
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    unsigned len = 0;
    int ok;

    ok = c != NULL && EVP_DigestInit_ex(c, EVP_sha256(), NULL) == 1 && EVP_DigestUpdate(c, &k, 1) == 1 &&
         EVP_DigestUpdate(c, ct.base, ct.len) == 1 && EVP_DigestUpdate(c, &nul, 1) == 1 &&
         EVP_DigestUpdate(c, req->entity.base ? req->entity.base : "", req->entity.len) == 1 &&
         EVP_DigestFinal_ex(c, out, &len) == 1 && len == IDEM_FINGERPRINT;
    EVP_MD_CTX_free(c);
    return ok ? 0 : -1;
}

/* Claims r's key (r has its id): 0 to go on (idem->len > 0 when claimed,
 * and r records the key and fingerprint), or 1 once req is answered (a
 * duplicate, a mismatch, a claim in progress). */
static int claim(struct http_server *hs, h2o_req_t *req, struct send_request *r, h2o_iovec_t key,
                 unsigned char fp[IDEM_FINGERPRINT], struct idem_hold *idem)
{
    const char *app = r->app_index == APP_DEFAULT ? "" : options_app_name(hs->opts, r->app_index);
    struct idem_first first;
    enum idem_claim c;

    idem->len = 0;
    if (key.len == 0)
        return 0;
    if (fingerprint(r->upstream, req, fp) != 0) {
        http_busy(req, "out of memory");
        return 1;
    }
    idem->len = idempotency_ledger_key(idem->key, app, key.base, key.len);
    c = idempotency_claim(hs->shm->idempotency, idem->key, idem->len, fp, r->id,
                          r->ntargets > UINT32_MAX ? UINT32_MAX : (uint32_t)r->ntargets, ledger_now_ms(), &first);
    switch (c) {
    case IDEM_NEW:
        r->idem_key = key.base;
        r->idem_key_len = key.len;
        r->fingerprint = fp;
        r->fingerprint_len = IDEM_FINGERPRINT;
        return 0;
    case IDEM_UNAVAILABLE: /* no worse than a request without a key */
        idem->len = 0;
        return 0;
    case IDEM_DUPLICATE:
        shm_add(hs->slot, SHM_IDEM_DUPLICATES, 1);
        respond_accepted(req, r->format == REQUEST_JSON, first.targets, first.id, strlen(first.id), 1);
        return 1;
    case IDEM_MISMATCH:
        http_error(req, 422, "this Idempotency-Key came with a different request before");
        return 1;
    case IDEM_IN_PROGRESS:
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_RETRY_AFTER, NULL, H2O_STRLIT("1"));
        http_error(req, 409, "a request with this Idempotency-Key is still being accepted");
        return 1;
    }
    return 0;
}

static int proceed(struct http_server *hs, h2o_req_t *req, struct send_request *rp, uint64_t start,
                   enum upstream_kind kind, size_t cost, const struct idem_hold *idemp);

/* A send whose key waits for Redis' word (fleet_idem.h).  Its request
 * lives in the request's pool: a client gone meanwhile leaves the push
 * unqueued and the key free again. */
struct fleet_claim {
    h2o_req_t *req;
    struct fleet_claim **link;
    struct http_server *hs;
    struct send_request r;
    uint64_t start;
    enum upstream_kind kind;
    size_t cost;
    struct idem_hold idem;
};

static void on_claim_gone(void *p)
{
    struct fleet_claim *c = *(struct fleet_claim **)p;

    if (c != NULL)
        c->req = NULL;
}

static void on_fleet_claimed(void *arg, enum fleet_idem_result res, const char *first_id, uint32_t first_targets)
{
    struct fleet_claim *c = arg;
    struct http_server *hs = c->hs;
    h2o_req_t *req = c->req;

    c->idem.fleet = res == FLEET_IDEM_NEW;
    if (req == NULL) {
        settle(hs, &c->idem, c->r.id, 0);
        request_free(&c->r);
        free(c);
        return;
    }
    *c->link = NULL;
    conn_progress(hs->conns, req);
    switch (res) {
    case FLEET_IDEM_UNREACHABLE: /* the instance's ledger alone, as without --redis */
        shm_add(hs->slot, SHM_IDEM_FALLBACKS, 1);
        proceed(hs, req, &c->r, c->start, c->kind, c->cost, &c->idem);
        break;
    case FLEET_IDEM_NEW:
        proceed(hs, req, &c->r, c->start, c->kind, c->cost, &c->idem);
        break;
    case FLEET_IDEM_DUPLICATE:
        shm_add(hs->slot, SHM_IDEM_DUPLICATES, 1);
        respond_accepted(req, c->r.format == REQUEST_JSON, first_targets, first_id, strlen(first_id), 1);
        break;
    case FLEET_IDEM_MISMATCH:
        http_error(req, 422, "this Idempotency-Key came with a different request before");
        break;
    case FLEET_IDEM_IN_PROGRESS:
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_RETRY_AFTER, NULL, H2O_STRLIT("1"));
        http_error(req, 409, "a request with this Idempotency-Key is still being accepted");
        break;
    }
    if (res != FLEET_IDEM_NEW && res != FLEET_IDEM_UNREACHABLE) {
        settle(hs, &c->idem, c->r.id, 0); /* this instance's claim goes: the fleet's first push stands */
        request_free(&c->r);
    }
    if (req->res.status != 0)
        http_count(hs, EP_SEND_OF(c->kind), req->res.status, c->start);
    free(c);
}

/* With --redis a key claimed in the instance is claimed in Redis too, and
 * the push waits for its answer.  Takes r. */
static int claim_in_fleet(struct http_server *hs, h2o_req_t *req, struct send_request *r, h2o_iovec_t key,
                          uint64_t start, enum upstream_kind kind, size_t cost, struct idem_hold *idem)
{
    const char *app = r->app_index == APP_DEFAULT ? "" : options_app_name(hs->opts, r->app_index);
    struct fleet_claim *c = calloc(1, sizeof(*c));
    int rc = -ENOMEM;

    idem->targets = r->ntargets > UINT32_MAX ? UINT32_MAX : (uint32_t)r->ntargets;
    memcpy(idem->fp, r->fingerprint, IDEM_FINGERPRINT);
    if (c != NULL) {
        *c = (struct fleet_claim){.req = req, .hs = hs, .r = *r, .start = start, .kind = kind, .cost = cost,
                                  .idem = *idem};
        c->r.fingerprint = c->idem.fp; /* r's pointed to the caller's stack */
        rc = fleet_idem_claim(hs->fidem, app, key.base, key.len, idem->fp, r->id, idem->targets, on_fleet_claimed, c);
    }
    if (rc == 0) {
        /* h2o_mem_alloc_shared aborts rather than return NULL. */
        c->link = h2o_mem_alloc_shared(&req->pool, sizeof(*c->link), on_claim_gone);
        *c->link = c;
        return 0;
    }
    free(c);
    if (rc == -EAGAIN) {
        settle(hs, idem, r->id, 0);
        request_free(r);
        return http_busy(req, "redis has too many commands under way: try again");
    }
    shm_add(hs->slot, SHM_IDEM_FALLBACKS, 1);
    return proceed(hs, req, r, start, kind, cost, idem); /* Redis unreachable: the instance's ledger alone */
}

/* /gcm/send and /apns/send: the same answers, limits and durability; only
 * the request's rules and the upstream differ. */
static int send_to(struct http_server *hs, h2o_req_t *req, enum upstream_kind kind)
{
    struct upstream *up = NULL;
    struct send_request r;
    const char *ctype = NULL;
    size_t ctype_len = 0, cost = 0;
    uint64_t start = uv_hrtime();
    struct idem_hold idem = {.len = 0};
    unsigned char fp[IDEM_FINGERPRINT];
    h2o_iovec_t key;
    char err[256];
    ssize_t h;
    int rc, status = 400;

    if (http_wrong_method(req, "POST"))
        return 0;
    /* A stopping child still takes requests on connections it already has
     * (h2o closes them after this answer): its drain covers them too. */
    if ((h = h2o_find_header(&req->headers, H2O_TOKEN_CONTENT_TYPE, -1)) >= 0) {
        ctype = req->headers.entries[h].value.base;
        ctype_len = req->headers.entries[h].value.len;
    }
    if (idem_header(req, &key, err, sizeof(err)) != 0)
        return http_error(req, 400, err);
    rc = request_parse(kind, ctype, ctype_len, req->entity.base ? req->entity.base : "", req->entity.len,
                           hs->limits, &r, err, sizeof(err));
    if (rc == 0 && (up = select_app(hs, req, kind, &r, &status, err, sizeof(err))) == NULL) {
        request_free(&r);
        if (status == 401)
            return http_unauthorized_app(req);
        if (status != 400)
            return http_error(req, status, err);
        rc = -EINVAL;
    }
    if (rc == 0 && r.app_index != APP_DEFAULT && hs->opts->apps[r.app_index - 1].broken) {
        /* Taken, its pushes could only wait for a reload that retires this
         * generation: refused, a balancer may try an instance that can send. */
        snprintf(err, sizeof(err),
                 "app \"%s\" cannot send: a reload could not read its credentials; its pushes are refused until "
                 "a reload loads them",
                 options_app_name(hs->opts, r.app_index));
        request_free(&r);
        return http_busy(req, err);
    }
    if (rc == 0 && up->ops->check != NULL && (rc = up->ops->check(up, &r, err, sizeof(err))) != 0)
        request_free(&r);
    if (rc == 0 && !queue_could_fit(hs->queue, r.ntargets, cost = queue_cost(&r))) {
        snprintf(err, sizeof(err), "request holds more than a worker's whole queue (--queue-size, --queue-max-bytes)");
        request_free(&r);
        rc = -EMSGSIZE;
    }
    if (rc != 0)
        return http_error(req, request_status(rc), err);
    queue_assign_id(hs->queue, &r); /* the spool and Redis keep it with the push */
    if (claim(hs, req, &r, key, fp, &idem)) {
        request_free(&r);
        return 0;
    }
    if (idem.len > 0 && hs->fidem != NULL)
        return claim_in_fleet(hs, req, &r, key, start, kind, cost, &idem);
    return proceed(hs, req, &r, start, kind, cost, &idem);
}

/* The rest of a send once its key (if any) is claimed: queue it, or hand
 * it to the spool or to Redis, and answer.  Takes r. */
static int proceed(struct http_server *hs, h2o_req_t *req, struct send_request *rp, uint64_t start,
                   enum upstream_kind kind, size_t cost, const struct idem_hold *idemp)
{
    struct send_request r = *rp;
    struct idem_hold idem = *idemp;
    struct deferred *d = NULL;
    const char *why;
    struct push *p;
    size_t n;
    int json;

    if (hs->fq != NULL)
        return send_to_redis(hs, req, &r, start, EP_SEND_OF(kind), &idem);
    /* Whatever can fail is done before anything is written or queued. */
    if (hs->spool != NULL && (d = calloc(1, sizeof(*d))) == NULL) {
        settle(hs, &idem, r.id, 0);
        request_free(&r);
        return http_busy(req, "out of memory");
    }
    if ((p = stage_push(hs, &r, cost, req->entity.len, &why)) == NULL) {
        settle(hs, &idem, r.id, 0);
        request_free(&r);
        free(d);
        return http_busy(req, why);
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
                               .ep = EP_SEND_OF(kind),
                               .idem = idem};
        memcpy(d->id, r.id, r.id_len + 1);
        d->id_len = r.id_len;
        d->link = h2o_mem_alloc_shared(&req->pool, sizeof(*d->link), on_request_gone);
        *d->link = d;
        if (spool_commit(hs->spool, &d->waiter, on_durable, d))
            return 0;
        *d->link = NULL;
        free(d);
    }
    release_push(hs, p);
    settle(hs, &idem, r.id, 1);
    return respond_accepted(req, json, n, r.id, r.id_len, 0);
}

int http_on_send(struct http_server *hs, h2o_req_t *req, int kind)
{
    char why[128];

    if (http_serves(hs, (enum upstream_kind)kind))
        return send_to(hs, req, (enum upstream_kind)kind);
    if (!http_wrong_method(req, "POST")) {
        snprintf(why, sizeof(why), "%s is not configured: start fcmd with %s", providers[kind].label,
                 providers[kind].hint);
        http_error(req, 404, why);
    }
    return 0;
}
