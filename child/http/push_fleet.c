/*
 * child/http/push_fleet.c - GET /push/{id} with --redis: the fleet's word on
 * a push, from its hash in Redis (child/fleet/statuses.h) merged with the
 * instance's own status.
 *
 * The one idea: every status is a lower bound of the truth (counts only
 * grow), so the answer takes each count's larger value of the two.  Redis
 * hears of a push up to a batch later than the instance that accepted it,
 * so an id neither knows is asked again for FLEET_LOOK_GRACE_MS before the
 * answer is 404; a Redis that cannot answer is a 503, never a false 404.
 * A look is asked again every FLEET_LOOK_POLL_MS by one timer per worker
 * while it waits (?wait=S) for its push to be done.
 */
#include "endpoints.h"
#include "conn.h"
#include "../../common/tenant.h"
#include "../../shm/push_status.h"
#include "../../shm/region.h"
#include "../core/buf.h"
#include "../core/push_id.h"
#include "../fleet/statuses.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define FLEET_LOOK_GRACE_MS 2500 /* an id no one knows yet may be on its way to Redis */
#define FLEET_LOOK_POLL_MS 100   /* how often a waiting look asks Redis again */
#define FLEET_LOOK_TICK_MS 25    /* the timer that asks the looks due */
#define FLEET_LOOKS_MAX 10000    /* per worker; more is a 503 */
#define FLEET_LOOK_BUSY_MS 3000  /* a look that cannot be asked for this long past its end is a 503 */

struct look {
    h2o_linklist_t link; /* in hs->push_looks while the request waits */
    h2o_req_t *req;      /* NULL once the client went */
    struct look **plink; /* in the request's pool */
    struct http_server *hs;
    char id[PUSH_ID_MAX + 1];
    size_t id_len;
    uint64_t start;       /* uv_hrtime() at the request */
    uint64_t grace_end;   /* uv_now(): until then an unknown id is asked again */
    uint64_t deadline;    /* uv_now(): ?wait= ends */
    uint64_t next;        /* uv_now(): when to ask again */
    int asking;           /* Redis' answer is awaited */
    int in_handler;       /* answered before the handler returned: on_req counts it */
    int who;              /* the holder of the request's token (http_who) */
};

static void look_free(struct look *l)
{
    if (h2o_linklist_is_linked(&l->link))
        h2o_linklist_unlink(&l->link);
    if (l->plink != NULL && l->req != NULL)
        *l->plink = NULL;
    l->hs->push_nlooks--;
    free(l);
}

static void look_gone(void *p)
{
    struct look *l = *(struct look **)p;

    if (l == NULL)
        return;
    l->req = NULL;
    if (!l->asking)
        look_free(l);
}

/* Sends the answer (already in req) and ends the look. */
static void finish(struct look *l)
{
    struct http_server *hs = l->hs;
    h2o_req_t *req = l->req;

    if (!l->in_handler) {
        conn_progress(hs->conns, req);
        http_count(hs, EP_PUSH, req->res.status, l->start);
    }
    look_free(l);
}

static uint32_t max32(uint32_t a, uint32_t b)
{
    return a > b ? a : b;
}

static void on_status(void *arg, int rc, const struct push_status *rs, const struct status_record_errors *re);
static void on_look_tick(uv_timer_t *t);

/* Asks Redis; while the worker's reads are many, asks again at the next
 * tick, up to FLEET_LOOK_BUSY_MS past the look's end. */
static void ask(struct look *l)
{
    uint64_t now = uv_now(l->hs->conns->loop), end = l->deadline > l->grace_end ? l->deadline : l->grace_end;
    int rc;

    l->asking = 1;
    if ((rc = fleet_statuses_get(l->hs->fstat, l->id, l->id_len, on_status, l)) == 0)
        return;
    if (rc == -EAGAIN && now < end + FLEET_LOOK_BUSY_MS) {
        l->asking = 0;
        l->next = now;
        if (!uv_is_active((uv_handle_t *)&l->hs->push_look_timer))
            uv_timer_start(&l->hs->push_look_timer, on_look_tick, FLEET_LOOK_TICK_MS, FLEET_LOOK_TICK_MS);
        return;
    }
    on_status(l, -1, NULL, NULL);
}

static void on_status(void *arg, int rc, const struct push_status *rs, const struct status_record_errors *re)
{
    struct look *l = arg;
    struct http_server *hs = l->hs;
    struct buf local_errors = {0}, fleet_errors = {0};
    struct push_status ls, s;
    uint64_t now;
    int have_local, last;

    l->asking = 0;
    if (l->req == NULL) {
        look_free(l);
        return;
    }
    now = uv_now(hs->conns->loop);
    last = now >= l->deadline || *hs->stopping;
    have_local = push_status_read(hs->shm->push_status, l->id, l->id_len, ledger_now_ms(), &ls, http_push_add_error,
                                  &local_errors);
    if (rc == 1) {
        status_record_each_error(re, rs->errors, http_push_add_error, &fleet_errors);
        s = *rs;
        if (have_local) {
            s.targets = max32(s.targets, ls.targets);
            s.delivered = max32(s.delivered, ls.delivered);
            s.canonical = max32(s.canonical, ls.canonical);
            s.invalid = max32(s.invalid, ls.invalid);
            s.failed = max32(s.failed, ls.failed);
            if (s.upstream >= SHM_UPSTREAMS)
                s.upstream = ls.upstream;
        }
        if (push_status_pending(&s) == 0 || last)
            http_push_render(l->hs, l->who, l->req, l->id, l->id_len, &s,
                             have_local && ls.errors > s.errors ? &local_errors : &fleet_errors);
    } else if (have_local && (rc == -1 || push_status_pending(&ls) == 0 || last)) {
        http_push_render(l->hs, l->who, l->req, l->id, l->id_len, &ls, &local_errors); /* what this instance knows */
    } else if (rc == -1) {
        http_busy(l->req, "redis unreachable: the push's status in the fleet cannot be read");
    } else if (!have_local && now >= l->grace_end) {
        http_error(l->req, 404, "no such push: unknown, or its status expired (--push-status-ttl)");
    }
    buf_free(&local_errors);
    buf_free(&fleet_errors);
    if (l->req->res.status != 0) {
        finish(l);
        return;
    }
    l->next = now + FLEET_LOOK_POLL_MS;
    if (!uv_is_active((uv_handle_t *)&hs->push_look_timer))
        uv_timer_start(&hs->push_look_timer, on_look_tick, FLEET_LOOK_TICK_MS, FLEET_LOOK_TICK_MS);
}

static void on_look_tick(uv_timer_t *t)
{
    struct http_server *hs = t->data;
    uint64_t now = uv_now(t->loop);
    h2o_linklist_t *n, *next;

    for (n = hs->push_looks.next; n != &hs->push_looks; n = next) {
        struct look *l = H2O_STRUCT_FROM_MEMBER(struct look, link, n);
        next = n->next;
        if (!l->asking && l->req != NULL && (now >= l->next || *hs->stopping))
            ask(l); /* may answer and unlink l at once */
    }
    if (h2o_linklist_is_empty(&hs->push_looks))
        uv_timer_stop(t);
}

int http_push_fleet(struct http_server *hs, h2o_req_t *req, const char *id, size_t id_len, unsigned long secs)
{
    uint64_t now;
    struct look *l;

    if (!hs->push_looks_ready) {
        if (uv_timer_init(hs->conns->loop, &hs->push_look_timer) != 0)
            return http_busy(req, "cannot look now");
        hs->push_look_timer.data = hs;
        h2o_linklist_init_anchor(&hs->push_looks);
        hs->push_looks_ready = 1;
    }
    if (hs->push_nlooks >= FLEET_LOOKS_MAX || (l = calloc(1, sizeof(*l))) == NULL)
        return http_busy(req, "too many requests waiting for pushes");
    hs->push_nlooks++;
    now = uv_now(hs->conns->loop);
    l->req = req;
    l->who = hs->who;
    l->hs = hs;
    memcpy(l->id, id, id_len);
    l->id_len = id_len;
    l->start = uv_hrtime();
    l->grace_end = now + FLEET_LOOK_GRACE_MS;
    l->deadline = now + secs * 1000;
    /* h2o_mem_alloc_shared aborts rather than return NULL. */
    l->plink = h2o_mem_alloc_shared(&req->pool, sizeof(*l->plink), look_gone);
    *l->plink = l;
    h2o_linklist_insert(&hs->push_looks, &l->link);
    l->in_handler = 1;
    ask(l); /* may answer at once (Redis unreachable) and free l */
    if (req->res.status == 0)
        l->in_handler = 0;
    return 0;
}

void http_close_push_looks(struct http_server *hs)
{
    if (!hs->push_looks_ready)
        return;
    /* The requests are gone by now; a look still asking is freed by its answer. */
    while (!h2o_linklist_is_empty(&hs->push_looks)) {
        struct look *l = H2O_STRUCT_FROM_MEMBER(struct look, link, hs->push_looks.next);
        h2o_linklist_unlink(&l->link);
        if (!l->asking)
            look_free(l);
    }
    uv_close((uv_handle_t *)&hs->push_look_timer, NULL);
    hs->push_looks_ready = 0;
}
