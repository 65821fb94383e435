/*
 * child/fleet/fleet_events.h - the webhook's events in Redis (--redis-queue
 * with a webhook).
 *
 * An event a worker makes waits in this worker's outbox until the queue's
 * acknowledgement script (fleet_queue.c) adds it to the stream FE_STREAM in
 * the same call that acknowledges and deletes its push's entry, or in an
 * earlier one: no push leaves the queue before its events are in Redis.
 * Every worker of every instance reads events from that stream through one
 * consumer group, hands them to the webhook, which batches them per
 * receiver, and acknowledges and deletes each once its receiver answered
 * 2xx or it grew older than --webhook-max-age.  The events of a worker
 * silent for --redis-claim-after seconds are claimed by the others, and a
 * worker that stops leaves those it holds claimable at once.  See
 * docs/FLEET.md, "The webhook's events in Redis".
 */
#ifndef FCMD_CHILD_FLEET_FLEET_EVENTS_H
#define FCMD_CHILD_FLEET_FLEET_EVENTS_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "../../shm/region.h"

#define FE_STREAM "fcmd:events"
#define FE_GROUP "fcmd"
#define FE_EVENT_MAX (64u << 10) /* the most bytes of an event read back; a larger entry is skipped */
#define FE_APP_MAX 64            /* ...and of the app it names */
#define FE_ID_LEN 44             /* "ms-seq" */

struct fleet;
struct fcmd_options;
struct fleet_events;

/* An event read from the stream and held by the webhook until it calls
 * fleet_events_done() with it. */
struct fe_held {
    struct fe_held *prev, *next;
    char id[FE_ID_LEN];
};

/* The webhook's side, wired by the worker (child.c). */
struct fe_sink {
    /* An event read from the stream: 1 when taken (h is then the webhook's
     * until fleet_events_done()), 0 when no receiver here takes its app
     * (it is dropped and counted). */
    int (*take)(void *arg, struct fe_held *h, const char *app, size_t app_len, int64_t at_ms, const char *text,
                size_t len);
    /* The bytes of events the webhook may still take in under its bound. */
    size_t (*room)(void *arg);
    /* n events of the outbox, holding bytes, reached Redis; dropped of them
     * did not fit under --redis-queue-max and were dropped there. */
    void (*stored)(void *arg, size_t n, size_t bytes, size_t dropped);
    void *arg;
};

/* A run of outbox events taken for one acknowledgement script. */
struct fe_batch {
    struct fe_out *head;
    size_t n, bytes;
};

struct fleet_events *fleet_events_start(uv_loop_t *loop, struct fleet *f, const struct fcmd_options *o,
                                        struct shm_region *shm, unsigned slot, const struct fe_sink *sink);

/* The queue in Redis tells the events of a new connection (its own hook,
 * fleet_on_connect(), is the queue's), and is told when the outbox has
 * events to carry. */
void fleet_events_connected(struct fleet_events *fe);
void fleet_events_on_outbox(struct fleet_events *fe, void (*kick)(void *arg), void *arg);

/* An event the webhook made (its app's name, when, its JSON text) for the
 * outbox; the caller has counted its bytes against --webhook-queue-bytes
 * and gets them back through sink->stored.  Returns 0, or -1 when out of
 * memory. */
int fleet_events_add(struct fleet_events *fe, const char *app, size_t app_len, int64_t at_ms, const char *text,
                     size_t len);

/* For the acknowledgement script: up to max events (and about max_bytes)
 * of the outbox, in order, into b; fills argv/argvlen with three
 * arguments per event (app, at in ms, text), whose memory lives in b.
 * Returns how many. */
size_t fleet_events_take(struct fleet_events *fe, struct fe_batch *b, size_t max, size_t max_bytes, const char **argv,
                         size_t *argvlen, char (*at)[24]);

/* The script's answer: stored (dropped of them over the bound), or not
 * (the events go back to the outbox's head, sent again). */
void fleet_events_taken(struct fleet_events *fe, struct fe_batch *b, int stored, size_t dropped);

/* Whether the outbox is empty. */
int fleet_events_outbox_empty(const struct fleet_events *fe);

/* The webhook is done with n held events (acknowledged by their receiver,
 * or dropped for their age): they are acknowledged and deleted in Redis. */
void fleet_events_done(struct fleet_events *fe, void *const *h, size_t n);

/* The worker stops: no more reading. */
void fleet_events_stop(struct fleet_events *fe);

/* For a stopping worker, once the webhook will send nothing more: 1 once
 * the acknowledgements it owes reached Redis and the events it still holds
 * are claimable by the others at once (or Redis cannot be reached). */
int fleet_events_settled(struct fleet_events *fe);

/* At exit, after fleet_stop() and after the webhook let go of what it held:
 * the held events stay pending in the group for another worker to claim;
 * the outbox's events are lost (logged, counted by the caller). */
void fleet_events_free(struct fleet_events *fe);

#endif
