/*
 * child/http/drain.c - /gcm/report/canonical and /gcm/report/notregistered.
 *
 * A drain's answer goes through a generator, so its entries leave the list
 * only once h2o says the answer was written; if the client goes away first
 * they go back for the next drain.  With --redis the entries come from
 * Redis and the answer waits for them.
 */
#include "endpoints.h"
#include "query.h"
#include "../../common/log.h"
#include "../../common/options.h"
#include "../../common/tenant.h"
#include "../../shm/region.h"
#include "../core/buf.h"
#include "../../shm/drainlist.h"
#include "../fleet/fleet.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

typedef void (*record_fn)(struct buf *b, const char *rec, size_t len);

/* {"original": ..., "canonical": ...} from a record "original\0canonical"
 * (its tag, the app's row, taken off). */
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
        /* Past the record's tag: its app's row, or Redis' 0. */
        a->emit(&a->body, rlen > 0 ? (const char *)rec + 1 : "", rlen > 0 ? rlen - 1 : 0);
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
        http_busy(req, error);
    } else {
        build_drained(a, recs, len);
        if (len == 0)
            http_respond_buf(req, "application/json", &a->body);
        else
            start_drained(a, req);
    }
    http_count(a->hs, a->ep, req->res.status, 0);
}

/* Fleet mode: the entries come from Redis; the answer waits for them.  The
 * apps are named there (named: one app's index; except: every app's but
 * those with a token of their own; else every app's). */
static int respond_fleet_drained(struct drain_answer *a, h2o_req_t *req, int which, int named, int except)
{
    size_t budget = a->list->capacity; /* drain_list_bytes as the lists were made (a reload keeps them) */
    const struct fcmd_options *o = a->hs->opts;
    const char *names[APPS_MAX + 1];
    struct fleet_drain_apps apps = {FLEET_DRAIN_ALL, 0, names};

    if (named >= 0) {
        apps.mode = FLEET_DRAIN_ONLY;
        names[apps.n++] = options_app_name(o, (unsigned)named);
    } else if (except) {
        apps.mode = FLEET_DRAIN_EXCEPT;
        for (size_t i = 0; i < o->napps; i++)
            if (tenant_app_protected(o, (unsigned)i + 1))
                names[apps.n++] = o->apps[i].name;
    }
    if (budget > FLEET_DRAIN_MAX_BYTES)
        budget = FLEET_DRAIN_MAX_BYTES;
    a->req = req;
    if ((a->fd = fleet_drain_take(a->hs->fleet, which, budget, &apps, on_fleet_taken, a)) == NULL)
        return http_busy(req, "redis unreachable: the drain lists wait in Redis and in each instance until it "
                                 "is back");
    h2o_linklist_insert(&a->hs->drains, &a->link);
    return 0;
}

/* Which apps' entries a drain takes, as a mask of their rows: ?app=NAME's,
 * an app's token's own, the instance token's every app's, and without a
 * token every app's but those with a token of their own.  *named is the app
 * index, or -1 for a drain of several apps; *except says the mask is every
 * app's but those with a token.  Returns 0, or -1 having answered. */
static int drain_apps(struct http_server *hs, h2o_req_t *req, uint64_t *tags, int *named, int *except)
{
    char app[APP_NAME_MAX + 2]; /* one byte more than a name: a longer value is no app's */
    long n = http_query_get(req, "app", app, sizeof(app));
    int a;

    *tags = DRAINLIST_ALL;
    *named = -1;
    *except = 0;
    if (n == -ENOENT && hs->who == TENANT_INSTANCE)
        return 0;
    if (n == -ENOENT && hs->who == TENANT_NONE) {
        for (size_t i = 0; i < hs->opts->napps; i++)
            if (tenant_app_protected(hs->opts, (unsigned)i + 1)) {
                *tags &= ~(UINT64_C(1) << hs->opts->apps[i].shm);
                *except = 1;
            }
        return 0;
    }
    if (http_app_pick(hs, req, app, n, &a) != 0)
        return -1;
    *tags = UINT64_C(1) << shm_app_row_of(hs->opts, (unsigned)a);
    *named = a;
    return 0;
}

/* Drains a list and answers {"key": [records...]} or {"key": null}. */
static int respond_drained(struct http_server *hs, h2o_req_t *req, struct drainlist *l, int which, const char *key,
                           record_fn emit)
{
    struct drain_answer *a;
    uint64_t tags;
    int named, except;

    /* A HEAD would take the entries and send none of them. */
    if (h2o_memis(req->method.base, req->method.len, H2O_STRLIT("HEAD")))
        return http_refuse_head(req);
    if (http_wrong_method(req, "GET"))
        return 0;
    if (drain_apps(hs, req, &tags, &named, &except) != 0)
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
        return respond_fleet_drained(a, req, which, named, except);
    if (drainlist_drain(l, tags, &a->recs, &a->len, &a->count) != 0)
        return http_error(req, 500, "out of memory");
    if (a->recs != NULL)
        h2o_linklist_insert(&hs->drains, &a->link);
    build_drained(a, a->recs, a->len);
    if (a->recs == NULL)
        return http_respond_buf(req, "application/json", &a->body);
    return start_drained(a, req);
}

/* Sends the built answer through the generator, so that the entries are
 * let go only once it is written. */
static int start_drained(struct drain_answer *a, h2o_req_t *req)
{
    h2o_iovec_t body;

    if (a->body.failed) {
        give_back(a);
        return http_error(req, 500, "out of memory");
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

int http_on_canonical(struct http_server *hs, h2o_req_t *req)
{
    return respond_drained(hs, req, hs->shm->canonical, FLEET_CANONICAL, "canonical_replacements", emit_pair);
}

int http_on_notregistered(struct http_server *hs, h2o_req_t *req)
{
    return respond_drained(hs, req, hs->shm->notregistered, FLEET_NOTREGISTERED, "tokens", emit_token);
}
