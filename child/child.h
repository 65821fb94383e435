/*
 * child/child.h - one worker process: the HTTP server, the queue and the
 * upstream sender, all on one libuv loop.
 *
 * struct child is the process's whole mutable state; handlers reach it
 * through their handler struct rather than through globals.
 */
#ifndef FCMD_CHILD_CHILD_H
#define FCMD_CHILD_CHILD_H

#include <h2o.h>
#include <uv.h>

#include "../common/options.h"
#include "../shm/region.h"
#include "http/conn.h"
#include "http/http.h"
#include "core/queue.h"
#include "upstream/upstream.h"

struct fcmd_options;
struct shm_region;
struct shm_slot;
struct sender;
struct upstream;
struct graphite;
struct spool;
struct fleet;
struct fleet_queue;
struct fleet_statuses;
struct fleet_idem;
struct webhook;

/* After its pending work is done, a stopping child gives open HTTP
 * connections this long to finish the request they carry. */
#define CHILD_HTTP_GRACE_MS 2000

/* Then, at its exit, it shuts down the connections still open and waits
 * this long for h2o to free them. */
#define CHILD_CLOSE_MS 1000

struct child {
    const struct fcmd_options *opts;
    struct shm_region *shm;
    struct shm_slot *slot;
    char worker_id[12]; /* slot number, sent as X-Fcmd-Worker */
    uv_loop_t loop;
    h2o_globalconf_t config;
    h2o_context_t ctx;
    h2o_accept_ctx_t accept_ctx;
    union {
        uv_handle_t handle;
        uv_stream_t stream;
        uv_tcp_t tcp;
        uv_pipe_t pipe;
    } listener;
    int is_unix;
    uv_signal_t sigterm, sigusr1;
    uv_timer_t stop_timer;
    struct queue queue;
    struct upstream *upstream; /* the default app's FCM adapter (v1 or legacy); NULL without FCM credentials */
    /* Every app's adapters, by app index (0 the default app, i opts->apps[i - 1]) and upstream kind. */
    struct upstream *ups[APPS_MAX + 1][UPSTREAM_KINDS];
    struct sender *sender;
    struct graphite *graphite;    /* the reporter's, else NULL */
    struct spool *spool;          /* with --spool, else NULL */
    struct fleet *fleet;          /* with --redis, else NULL */
    struct fleet_queue *fq;       /* with --redis-queue, else NULL */
    struct fleet_events *events;  /* ...and a webhook: its events in Redis, else NULL */
    struct fleet_statuses *fstat; /* with --redis: push statuses in Redis, else NULL */
    struct fleet_idem *fidem;     /* with --redis: Idempotency-Keys in Redis, else NULL */
    struct webhook *webhook;      /* with a webhook for the instance or an app, else NULL */
    uv_signal_t sigusr2;          /* the master: a child died, look for its spool segments */
    struct conn_set conns;        /* open HTTP connections */
    struct http_server http;      /* what the endpoints reach */
    struct request_limits limits; /* what one /gcm/send request may hold */
    int stopping;
    uint64_t stop_started;
    uint64_t stop_deadline;
    int close_timed_out; /* CHILD_CLOSE_MS passed with connections still open */
};

/* The row of the region's app table that counts app index a's outcomes
 * (SHM_APPS, which counts nowhere, for APP_NONE). */
static inline unsigned child_app_row(const struct child *c, unsigned a)
{
    return shm_app_row_of(c->opts, a);
}

/* The name the report and the metrics give the upstream: FCM's, else the
 * first other provider the default app has ("apns" when it has none). */
static inline const char *child_upstream_name(const struct child *c)
{
    if (c->upstream != NULL)
        return c->upstream->ops->name;
    for (int k = 0; k < UPSTREAM_KINDS; k++)
        if (c->ups[0][k] != NULL)
            return c->ups[0][k]->ops->name;
    return "apns";
}

#endif
