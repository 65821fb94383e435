/*
 * child/webhook/webhook.h - outcome events, POSTed in batches to the
 * receiver the operator configured (--webhook, [app NAME] webhook).
 *
 * Each worker keeps, for each receiver, one queue of events in the order
 * their outcomes came, and has at most one batch of them in flight, over
 * the worker's own curl multi handle (the sender's): a batch is the first
 * WEBHOOK_BATCH_MAX events, sent when that many wait or when the first has
 * waited WEBHOOK_BATCH_WAIT_MS.  A 2xx acknowledges it; anything else is
 * tried again, with back-off and jitter, until --webhook-max-age, after
 * which the events are dropped and counted.  Events are made once, with
 * ids derived from their push (so an outcome told twice, after a replay,
 * has the same event_id), and live in memory: --webhook-queue-bytes for
 * the whole instance, beyond which new ones are dropped and counted.  With
 * --redis-queue they wait in Redis instead (webhook_use_redis()): an event
 * made goes there, and the receivers send the events read back from it.
 */
#ifndef FCMD_CHILD_WEBHOOK_WEBHOOK_H
#define FCMD_CHILD_WEBHOOK_WEBHOOK_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define WEBHOOK_BATCH_MAX 500
#define WEBHOOK_BATCH_BYTES (1u << 20) /* a batch stops short of this, unless it is one event */
#define WEBHOOK_BATCH_WAIT_MS 1000
#define WEBHOOK_ANSWER_MS 10000   /* a receiver that has not answered by then has failed the batch */
#define WEBHOOK_ANSWER_READ 4096  /* bytes of an answer read; the status decides, the rest is not read */
#define WEBHOOK_RETRY_FIRST_MS 1000
#define WEBHOOK_RETRY_CAP_MS 300000

struct fcmd_options;
struct push;
struct sender;
struct shm_region;
struct segment;
struct spool;
struct target;
struct webhook;

/* The webhooks of the instance's and its apps' settings, sending through
 * sender.  NULL when none is configured, or when memory or curl failed
 * (then logged). */
struct webhook *webhook_start(uv_loop_t *loop, const struct fcmd_options *o, struct shm_region *shm, unsigned slot,
                              struct sender *sender);

/* A target of p reached its final outcome (an enum push_outcome); see
 * sender_outcome_fn.  Queues the events its app's webhook asks for. */
void webhook_outcome(struct webhook *w, const struct push *p, const struct target *t, int outcome,
                     const char *reason, const char *canonical, int last);

/* With --spool: each event also waits in its push's segment, and is
 * acknowledged there once its receiver acknowledged it. */
void webhook_use_spool(struct webhook *w, struct spool *spool);

/* With --redis-queue (child/fleet/fleet_events.h): the events made here
 * go to Redis through add (0, or -1 when it cannot keep one), which hands
 * their memory back through webhook_stored(); the receivers send the
 * events read back from Redis (webhook_take()), and done lets go of those
 * a receiver acknowledged or that grew too old.  Redis, not the spool,
 * then keeps them. */
struct webhook_store {
    int (*add)(void *arg, const char *app, size_t app_len, int64_t at_ms, const char *text, size_t len);
    void (*done)(void *arg, void *const *held, size_t n);
    void *arg;
};
void webhook_use_redis(struct webhook *w, const struct webhook_store *s);

/* n events given to add, holding len bytes of text, are in Redis (dropped
 * of them were dropped there, over its bound) or lost (all dropped). */
void webhook_stored(struct webhook *w, size_t n, size_t bytes, size_t dropped);

/* An event read from Redis, held as held until done is called with it:
 * returns 1, or 0 when no receiver takes its app (app_len 0: the default
 * app's). */
int webhook_take(struct webhook *w, void *held, const char *app, size_t app_len, int64_t at_ms, const char *text,
                 size_t len);

/* The bytes of events read from Redis the instance may still take in:
 * up to half of --webhook-queue-bytes, the rest being for the events its
 * workers make. */
size_t webhook_room(const struct webhook *w);

/* A spool_event_fn: an event an adopted segment held, queued again.
 * Returns 1, or 0 when no receiver takes it (its app has no webhook). */
int webhook_restore(struct webhook *w, struct segment *seg, uint64_t at_ms, const char *app, size_t app_len,
                    const char *id, size_t id_len, const char *text, size_t len);

/* The worker stops: batches go out without waiting for their window. */
void webhook_stop(struct webhook *w);

/* Whether no event waits and no batch is in flight. */
int webhook_settled(const struct webhook *w);

/* At exit, before the sender is freed: takes a batch in flight off the
 * multi handle, counts the events still waiting as dropped, and frees w
 * once libuv has closed its timers. */
void webhook_free(struct webhook *w);

/* Signs body for a receiver: writes "t=<at>,v1=<hex HMAC-SHA256(secret,
 * "<at>.<body>")>" to out (at least 100 bytes).  Returns 0, or -1 when
 * OpenSSL failed. */
int webhook_sign(const char *secret, size_t secret_len, long long at, const char *body, size_t len, char *out,
                 size_t outlen);

#endif
