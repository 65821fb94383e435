/*
 * child/upstream/sender.h - the child's upstream engine: one curl multi handle driven
 * by the child's libuv loop.
 *
 * The sender takes batches of targets from the queue, has the upstream
 * adapter build each request, runs them multiplexed over a few HTTP/2
 * connections (or a pool of HTTP/1.1 ones), and applies every outcome:
 * shared counters, drain lists, retries.
 */
#ifndef FCMD_CHILD_UPSTREAM_SENDER_H
#define FCMD_CHILD_UPSTREAM_SENDER_H

#include <curl/curl.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct fcmd_options;
struct queue;
struct shm_region;
struct upstream;
struct sender_transfer;

struct sender;

/* A sender whose first upstream, up, serves pushes of kind (an
 * enum upstream_kind); its URL decides HTTP/2 multiplexing.  Returns NULL
 * when curl or memory failed (not logged: the caller's set-up fails). */
struct sender *sender_create(uv_loop_t *loop, const struct fcmd_options *o, struct queue *q, int kind,
                             struct upstream *up, struct shm_region *shm, unsigned slot);

/* Pushes for upstream kind k go to up as well.  Returns 0, or -1 when
 * memory ran out. */
int sender_set_upstream(struct sender *s, int kind, struct upstream *up);

/* New targets are in the queue: send them on the next loop turn. */
void sender_kick(struct sender *s);

/* A new easy handle with the sender's fixed options (TLS, timeouts, HTTP
 * version), for transfers of the adapter's own such as token requests. */
CURL *sender_new_easy(struct sender *s);

/* Runs easy on the multi handle; t->done() is called when it finished.
 * Returns 0, or -1 when curl refused the handle (not logged). */
int sender_add(struct sender *s, CURL *easy, struct sender_transfer *t);

uv_loop_t *sender_loop(const struct sender *s);

/* The delay a Retry-After header line (len bytes, as curl hands it over)
 * asks for, in seconds or as an HTTP date, in ms up to cap_ms; -1 when the
 * line is no Retry-After or its value is neither. */
int64_t sender_retry_after_ms(const char *line, size_t len, int64_t cap_ms);

/* Told of the targets of push p at indexes[0..n) that are done for good
 * (delivered, refused, or out of retries), before they are freed: with
 * --spool, child.c has the spool acknowledge them.  The sender knows
 * nothing of where pushes are stored. */
struct push;
typedef void sender_ack_fn(void *arg, struct push *p, const uint32_t *indexes, size_t n);
void sender_on_final(struct sender *s, sender_ack_fn *ack, void *arg);

/* Told of each target that reached its final outcome (an enum
 * push_outcome), before the target is freed: reason for an invalid or failed
 * one, the new token for a canonical one (else NULL), and last when it was
 * the push's last target.  child.c hands them to the webhook. */
struct target;
typedef void sender_outcome_fn(void *arg, const struct push *p, const struct target *t, int outcome,
                               const char *reason, const char *canonical, int last);
void sender_on_outcome(struct sender *s, sender_outcome_fn *fn, void *arg);

/* With --redis: instances(arg) says how many live instances share
 * --rate-limit (0 while unknown); asked once a second. */
void sender_share_rate(struct sender *s, unsigned (*instances)(void *arg), void *arg);

/* Says what the log limits held back: once their interval has passed, or
 * at once with force (at exit). */
void sender_flush_log(struct sender *s, int force);

/* At exit: takes a transfer (one sender_add started) off the multi handle
 * before it finished, without waiting for a name lookup it has under way;
 * its done() is not called. */
void sender_remove(struct sender *s, CURL *easy);

/* At a worker's exit, first: nothing more is sent.  Every job in flight is
 * taken off the multi handle and released by its adapter, and its targets,
 * with those waiting for a retry, go back to the queue, unfinished (neither
 * counted nor acknowledged: they go with the process, or stay in the
 * spool).  The adapters are destroyed after this, then the sender. */
void sender_stop(struct sender *s);

/* Then, once the adapters have taken their own transfers off: closes the
 * upstream connections and frees the sender, its memory once libuv has
 * closed its handles. */
void sender_free(struct sender *s);

#endif
