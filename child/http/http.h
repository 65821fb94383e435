/*
 * child/http/http.h - fcmd's HTTP endpoints on libh2o.
 */
#ifndef FCMD_CHILD_HTTP_HTTP_H
#define FCMD_CHILD_HTTP_HTTP_H

#include <h2o.h>

#include "../core/request.h"

struct conn_set;
struct fcmd_options;
struct fleet;
struct fleet_queue;
struct fleet_idem;
struct fleet_statuses;
struct queue;
struct sender;
struct shm_region;
struct shm_slot;
struct spool;
struct upstream;

/* What the endpoints reach: the worker's parts, handed over before
 * http_register and never changed after, and what HTTP keeps of its own. */
struct http_server {
    const struct fcmd_options *opts;
    struct shm_region *shm;
    struct shm_slot *slot;
    const char *worker_id;     /* sent as X-Fcmd-Worker */
    const char *upstream_name; /* the report's and the metrics' name for the upstream */
    struct queue *queue;
    struct upstream *(*ups)[UPSTREAM_KINDS]; /* by app index and upstream kind; NULL where not served */
    struct sender *sender;
    struct spool *spool;    /* with --spool, else NULL */
    struct fleet *fleet;    /* with --redis, else NULL */
    struct fleet_queue *fq; /* with --redis-queue, else NULL */
    struct fleet_statuses *fstat; /* with --redis: push statuses in Redis, else NULL */
    struct fleet_idem *fidem;     /* with --redis: Idempotency-Keys in Redis, else NULL */
    struct conn_set *conns; /* the worker's open connections */
    const struct request_limits *limits;
    const int *stopping;    /* the worker's flag: nonzero once it began to stop */
    int auth_scopes;        /* AUTH_* bits the auth token protects */
    int who;                /* the holder of the token of the request being routed (http_who), for its endpoint */
    h2o_linklist_t drains;  /* drain answers holding entries until written */
    int access_log_fd;      /* with --access-log: where h2o's lines go; SIGUSR1 reopens it */
    int access_log_failing; /* a write to it failed and was logged; said again only after a success */
    /* GET /push/{id}?wait=: the requests waiting for their push (push.c) */
    h2o_linklist_t push_waits;
    uv_timer_t push_timer;
    size_t push_waiters;
    int push_waiters_ready; /* the timer and the list are set up */
    uint64_t push_changes_seen; /* push_status_changes() when the waiters last looked */
    /* GET /push/{id} with --redis: the looks waiting for Redis (push_fleet.c) */
    h2o_linklist_t push_looks;
    uv_timer_t push_look_timer;
    int push_looks_ready;
    size_t push_nlooks;
};

/* Where GET /push/{id} begins. */
#define HTTP_PUSH_PREFIX "/push/"

/* How far beyond --max-body-bytes h2o still buffers a body: up to that, fcmd
 * answers an oversized body with a JSON 413; beyond it h2o refuses it itself
 * (HTTP/1.1: a plain 413; HTTP/2: RST_STREAM REFUSED_STREAM). */
#define HTTP_ENTITY_SLACK (64u << 10)

/* Registers every endpoint of hs (filled in by the worker) on host.  Returns 0 or -1 (out of memory). */
int http_register(struct http_server *hs, h2o_hostconf_t *host);

/* On SIGUSR1 (logrotate): the access log is opened anew at its path and
 * takes the place of the old one; if that fails, it stays where it was. */
void http_reopen_access_log(struct http_server *hs);

/* At exit: the entries of drain answers not yet written go back into their
 * lists, for the next drain. */
void http_give_back_drains(struct http_server *hs);

/* At exit, once h2o's configuration (and with it the access logger) is
 * disposed of: closes the access log. */
void http_close(struct http_server *hs);

#endif
