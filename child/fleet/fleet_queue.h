/*
 * child/fleet/fleet_queue.h - the queue in Redis (--redis-queue).
 *
 * Every push accepted at /gcm/send is added to one Redis stream before the
 * 200 (the adds of a loop turn go out as one script), and the workers of
 * every instance deliver from it through one consumer group: an entry is
 * acknowledged and deleted only once every target of its push has its final
 * outcome, and the entries of a worker silent for --redis-claim-after
 * seconds are taken over by the others.  Everything goes over the worker's
 * fleet connection (child/fleet/link.c); nothing here waits for Redis.  See
 * docs/FLEET.md, "The queue in Redis".
 */
#ifndef FCMD_CHILD_FLEET_FLEET_QUEUE_H
#define FCMD_CHILD_FLEET_FLEET_QUEUE_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "../../shm/region.h"
#include "../core/request.h"

#define FQ_DEADLINE_MS 1000 /* a push Redis has not taken within this is answered 503 */
#define FQ_POLL_MS 50       /* an idle worker looks for new entries this often */
#define FQ_STREAM "fcmd:queue"
#define FQ_GROUP "fcmd"

struct fleet;
struct fcmd_options;
struct queue;
struct push;
struct fleet_queue;

enum fq_status {
    FQ_OK,       /* in the stream */
    FQ_DOWN,     /* Redis cannot be reached, or did not answer in time */
    FQ_FULL,     /* the stream holds --redis-queue-max pushes */
    FQ_REFUSED,  /* Redis refused the add */
};

/* One push waiting for Redis; lives in the caller's memory until done runs. */
struct fq_waiter {
    struct fq_waiter *next;
    void (*done)(void *arg, enum fq_status st, size_t ntargets);
    void *arg;
    char *record; /* the spool's encoding of the push */
    size_t len, ntargets;
    uint64_t at; /* when it came: the deadline runs from here */
};

/* Entries taken from the stream go into q; taken(arg) is called after
 * each read that brought some, so the worker sends them. */
struct fleet_queue *fleet_queue_start(uv_loop_t *loop, struct fleet *f, const struct fcmd_options *o,
                                      struct shm_region *shm, unsigned slot, struct queue *q,
                                      void (*taken)(void *arg), void *arg, const struct request_limits *limits);

/* What this worker can send: serves(arg, app, upstream) is 1 when it has
 * app's (options_app_find) credentials for upstream (enum upstream_kind).
 * An entry it cannot serve, or one larger than its limits, is left to the
 * other instances; one that none served within UNSERVED_CLAIMS times
 * --redis-claim-after fails (docs/FLEET.md, "Instances that differ"). */
void fleet_queue_serves(struct fleet_queue *fq, int (*serves)(void *arg, unsigned app, int upstream), void *arg);

/* Adds r to the stream; done(arg, status) runs from the loop once Redis
 * answered, or the deadline passed.  Returns 0, or the status for an answer
 * now (FQ_DOWN while Redis is known to be unreachable). */
enum fq_status fleet_queue_add(struct fleet_queue *fq, const struct send_request *r, struct fq_waiter *w,
                               void (*done)(void *arg, enum fq_status st, size_t ntargets), void *arg);

/* Whether pushes can be taken now (for /readyz). */
int fleet_queue_ready(const struct fleet_queue *fq);

/* A push the sender finished: its entry is acknowledged and deleted. */
void fleet_queue_push_done(struct fleet_queue *fq, struct push *p);

/* With a webhook: its events (child/fleet/fleet_events.h) go to Redis in
 * the acknowledgement scripts, no later than their push's acknowledgement. */
struct fleet_events;
void fleet_queue_use_events(struct fleet_queue *fq, struct fleet_events *fe);

/* The worker stops: no more reading; what it holds stays pending in the
 * group for another worker to claim. */
void fleet_queue_stop(struct fleet_queue *fq);

/* At a worker's exit, after fleet_stop() (no reply is awaited any more):
 * pushes not yet sent to Redis are answered FQ_DOWN, the entries it holds
 * stay pending in the group for another worker to claim, and fq is freed
 * once libuv has closed its handles.  The pushes themselves are the
 * queue's. */
void fleet_queue_free(struct fleet_queue *fq);

/* For a stopping worker: 1 once every acknowledgement it owes reached
 * Redis (or Redis cannot be reached); the caller polls it.  In a whole
 * instance's stop, fleet_flushed() has waited for Redis before: the pushes
 * finished during an outage changed counts Redis had to take. */
int fleet_queue_settled(struct fleet_queue *fq);

#endif
