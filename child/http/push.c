/*
 * child/http/push.c - GET /push/{id}: what became of one push, from the
 * instance's push statuses (shm/push_status.h).
 *
 * With ?wait=S and the push still pending, the answer waits: the request
 * joins the worker's waiters, which one timer looks at every
 * PUSH_WAIT_TICK_MS while there are any, answering each once its push is
 * done, its S seconds are over or the worker stops.  The push may be sent
 * by any worker, so the timer reads the shared statuses rather than waiting
 * to be told; it reads them only when a push has finished (or a status was
 * dropped) since it last looked, and with each waiter's id hashed once, so
 * many waiters whose pushes go on cost the statuses' lock nothing.  A
 * waiter lives in its request's pool: a client that goes away takes it out
 * of the list.
 */
#include "endpoints.h"
#include "conn.h"
#include "query.h"
#include "../../common/options.h"
#include "../../common/tenant.h"
#include "../../shm/push_status.h"
#include "../../shm/region.h"
#include "../core/buf.h"
#include "../core/push_id.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#define PUSH_WAIT_MAX_S 30       /* ?wait= at most (contract §10) */
#define PUSH_WAIT_TICK_MS 20     /* how often waiters look again */
#define PUSH_WAITERS_MAX 10000   /* per worker; more is a 503 */

struct push_wait {
    h2o_linklist_t link; /* in hs->push_waits */
    h2o_req_t *req;
    struct http_server *hs;
    uint64_t deadline_ms; /* uv_now() */
    uint64_t start;       /* uv_hrtime() at the request */
    int who;              /* the holder of the request's token (http_who) */
    uint64_t hash;        /* ledger_hash of id */
    char id[PUSH_ID_MAX + 1];
    size_t id_len;
};

/* The errors go to a buffer of their own: {"token":...,"reason":...},... */
void http_push_add_error(void *arg, const char *token, size_t token_len, const char *reason, size_t reason_len)
{
    struct buf *b = arg;

    buf_adds(b, b->len == 0 ? "{\"token\":" : ",{\"token\":");
    buf_add_json_string(b, token, token_len);
    buf_adds(b, ",\"reason\":");
    buf_add_json_string(b, reason, reason_len);
    buf_adds(b, "}");
}

/* Whether who may see a push of the app named app ("" for the default app):
 * the instance's token sees every push, an app's token its app's, and no
 * token the pushes of the apps without a token of their own. */
static int may_see_push(const struct http_server *hs, int who, const char *app)
{
    int a;

    if (who == TENANT_INSTANCE)
        return 1;
    if (who >= 1)
        return strcmp(app, options_app_name(hs->opts, (unsigned)who)) == 0;
    a = options_app_find(hs->opts, app[0] ? app : NULL, strlen(app));
    return a < 0 || !tenant_app_protected(hs->opts, (unsigned)a);
}

/* A push of another app is answered as an unknown one is, so a tenant
 * cannot even learn that an id exists. */
static int not_found(h2o_req_t *req)
{
    return http_error(req, 404, "no such push: unknown, or its status expired (--push-status-ttl)");
}

void http_push_render(const struct http_server *hs, int who, h2o_req_t *req, const char *id, size_t id_len,
                      const struct push_status *s, struct buf *errors)
{
    struct buf b = {0};
    const char *app = s->app[0] ? s->app : "default";
    uint32_t pending = push_status_pending(s);

    if (!may_see_push(hs, who, s->app)) {
        not_found(req);
        return;
    }

    buf_adds(&b, "{\"id\":");
    buf_add_json_string(&b, id, id_len);
    buf_adds(&b, ",\"app\":");
    buf_add_json_string(&b, app, strlen(app));
    buf_addf(&b,
             ",\"upstream\":\"%s\",\"targets\":%" PRIu32 ",\"pending\":%" PRIu32 ",\"delivered\":%" PRIu32
             ",\"canonical\":%" PRIu32 ",\"invalid\":%" PRIu32 ",\"failed\":%" PRIu32 ",\"state\":\"%s\",\"errors\":[",
             s->upstream < SHM_UPSTREAMS ? shm_upstream_names[s->upstream] : "", s->targets, pending, s->delivered,
             s->canonical, s->invalid, s->failed, pending > 0 ? "pending" : "done");
    if (errors->len > 0)
        buf_add(&b, errors->data, errors->len);
    buf_adds(&b, "]}\n");
    if (errors->failed)
        b.failed = 1;
    http_respond_buf(req, "application/json", &b);
    buf_free(&b);
}

/* Answers req with the status of id, or 404; a pending push only when
 * answer_pending is set.  Returns 1 when the push is pending. */
static int answer(struct http_server *hs, int who, h2o_req_t *req, const char *id, size_t id_len, int answer_pending)
{
    struct buf errors = {0};
    struct push_status s;
    uint32_t pending;

    if (!push_status_read(hs->shm->push_status, id, id_len, ledger_now_ms(), &s, http_push_add_error, &errors) ||
        !may_see_push(hs, who, s.app)) {
        buf_free(&errors);
        not_found(req);
        return 0;
    }
    if ((pending = push_status_pending(&s)) > 0 && !answer_pending) {
        buf_free(&errors);
        return 1;
    }
    http_push_render(hs, who, req, id, id_len, &s, &errors);
    buf_free(&errors);
    return pending > 0;
}

static void unlink_wait(struct http_server *hs, struct push_wait *w)
{
    h2o_linklist_unlink(&w->link);
    hs->push_waiters--;
    atomic_fetch_sub_explicit(&hs->slot->gauges[SHM_PUSH_WAITERS], 1, memory_order_relaxed);
}

static void wait_gone(void *p)
{
    struct push_wait *w = p;

    if (h2o_linklist_is_linked(&w->link))
        unlink_wait(w->hs, w);
}

static void on_wait_tick(uv_timer_t *t)
{
    struct http_server *hs = t->data;
    uint64_t now = uv_now(t->loop), now_ms = ledger_now_ms(), changes = push_status_changes(hs->shm->push_status);
    int look = changes != hs->push_changes_seen; /* read before the looks: a later change is the next tick's */
    h2o_linklist_t *n, *next;

    hs->push_changes_seen = changes;
    for (n = hs->push_waits.next; n != &hs->push_waits; n = next) {
        struct push_wait *w = H2O_STRUCT_FROM_MEMBER(struct push_wait, link, n);
        int last = now >= w->deadline_ms || *hs->stopping;
        h2o_req_t *req = w->req;
        next = n->next;
        /* Its counts alone, none of its errors: most looks find it pending. */
        if (!last && (!look || push_status_still_pending(hs->shm->push_status, w->id, w->id_len, w->hash, now_ms)))
            continue; /* it waits on */
        unlink_wait(hs, w); /* out of the list before its answer goes */
        answer(hs, w->who, req, w->id, w->id_len, 1);
        conn_progress(hs->conns, req);
        http_count(hs, EP_PUSH, req->res.status, w->start);
    }
    if (h2o_linklist_is_empty(&hs->push_waits))
        uv_timer_stop(t);
}

/* The request waits for its push for up to secs seconds. */
static int wait_for(struct http_server *hs, h2o_req_t *req, const char *id, size_t id_len, unsigned long secs)
{
    struct push_wait *w;

    if (hs->push_waiters_ready == 0) {
        if (uv_timer_init(hs->conns->loop, &hs->push_timer) != 0)
            return http_busy(req, "cannot wait now");
        hs->push_timer.data = hs;
        h2o_linklist_init_anchor(&hs->push_waits);
        hs->push_waiters_ready = 1;
    }
    if (hs->push_waiters >= PUSH_WAITERS_MAX)
        return http_busy(req, "too many requests waiting for pushes");
    /* h2o_mem_alloc_shared aborts rather than return NULL. */
    w = h2o_mem_alloc_shared(&req->pool, sizeof(*w), wait_gone);
    memset(w, 0, sizeof(*w));
    w->req = req;
    w->hs = hs;
    w->deadline_ms = uv_now(hs->conns->loop) + secs * 1000;
    w->start = uv_hrtime();
    w->who = hs->who;
    w->hash = ledger_hash(hs->shm->push_status, id, id_len);
    memcpy(w->id, id, id_len);
    w->id_len = id_len;
    h2o_linklist_insert(&hs->push_waits, &w->link);
    hs->push_waiters++;
    atomic_fetch_add_explicit(&hs->slot->gauges[SHM_PUSH_WAITERS], 1, memory_order_relaxed);
    if (!uv_is_active((uv_handle_t *)&hs->push_timer))
        uv_timer_start(&hs->push_timer, on_wait_tick, PUSH_WAIT_TICK_MS, PUSH_WAIT_TICK_MS);
    return 0;
}

int http_push_path(const char *path, size_t n, const char *q, size_t qn, const char **id, size_t *id_len,
                   unsigned long *secs)
{
    char v[32];
    long len;

    *secs = 0;
    if (n < sizeof(HTTP_PUSH_PREFIX) - 1 || memcmp(path, HTTP_PUSH_PREFIX, sizeof(HTTP_PUSH_PREFIX) - 1) != 0)
        return -ENOENT;
    *id = path + sizeof(HTTP_PUSH_PREFIX) - 1;
    *id_len = n - (sizeof(HTTP_PUSH_PREFIX) - 1);
    if (!push_id_ok(*id, *id_len))
        return -ENOENT;
    if ((len = query_get(q, qn, "wait", v, sizeof(v))) != -ENOENT &&
        (len < 0 || query_uint(v, (size_t)len, PUSH_WAIT_MAX_S, secs) != 0))
        return -EINVAL;
    return 0;
}

int http_on_push(struct http_server *hs, h2o_req_t *req)
{
    h2o_iovec_t q = http_query(req);
    unsigned long secs = 0;
    const char *id;
    size_t id_len;
    int rc;

    if (http_wrong_method(req, "GET"))
        return 0;
    rc = http_push_path(req->path_normalized.base, req->path_normalized.len, q.base, q.len, &id, &id_len, &secs);
    if (rc == -ENOENT)
        return http_error(req, 404, "no such push: an id is 1 to 64 characters of A-Z, a-z, 0-9, '_' and '-'");
    if (rc != 0)
        return http_error(req, 400, "wait must be a number of seconds from 0 to 30");
    if (hs->fstat != NULL) /* with --redis: the fleet's status */
        return http_push_fleet(hs, req, id, id_len, h2o_memis(req->method.base, req->method.len, H2O_STRLIT("HEAD")) ? 0 : secs);
    if (!answer(hs, hs->who, req, id, id_len, secs == 0 || *hs->stopping || h2o_memis(req->method.base, req->method.len, H2O_STRLIT("HEAD"))))
        return 0;
    return wait_for(hs, req, id, id_len, secs);
}

void http_close_push_waits(struct http_server *hs)
{
    http_close_push_looks(hs);
    if (hs->push_waiters_ready)
        uv_close((uv_handle_t *)&hs->push_timer, NULL);
    hs->push_waiters_ready = 0;
}
