/*
 * child/core/queue.h - pushes, targets and the child's send queue.
 *
 * A push is one accepted request: its payload and options, stored once and
 * shared by all its targets through a reference count.  A target is one
 * token (or topic, or condition) still to deliver.  The queue is a FIFO of
 * targets ready to send; targets waiting for a retry or in flight are out
 * of it but still count as pending, and pending is what the bound limits,
 * in targets and in bytes.  A push may be staged first: it holds its room
 * in the queue but none of its targets can be sent until it is committed
 * (the spool makes it durable in between).
 */
#ifndef FCMD_CHILD_CORE_QUEUE_H
#define FCMD_CHILD_CORE_QUEUE_H

#include <stddef.h>
#include <stdint.h>

#include "push_id.h"
#include "request.h"

struct segment;

struct push {
    uint32_t refs; /* targets not yet finished */
    enum upstream_kind upstream;
    unsigned app; /* the child's app index (options_app_find), or APP_NONE */
    const char *app_name; /* with APP_NONE: the name of the app it was for (in text[]), or NULL */
    enum target_kind kind;
    char id[PUSH_ID_MAX + 1]; /* its id, NUL-terminated (push_id.h) */
    struct message msg; /* payload and options */
    char *encoded;      /* an adapter's encoding shared by all targets, or NULL */
    size_t encoded_len;
    struct segment *spool_seg; /* the spool segment holding its record, or NULL */
    uint64_t spool_id;
    uint64_t status; /* its entry in the push statuses (shm/push_status.h), 0 for none */
    uint64_t fq_ms, fq_seq;           /* its entry in the queue in Redis ("ms-seq"), or 0-0 */
    struct push *fq_prev, *fq_next;   /* the entries a worker holds (child/fleet/fleet_queue.c) */
    const char *unserved; /* a static reason: no instance served its entry in time, its targets fail, or NULL */
    size_t bytes;           /* what it holds, targets included, against max_bytes */
    size_t ntargets;        /* targets it was made with */
    uint32_t delivered, invalid, failed; /* outcomes in this process (canonical ones are delivered) */
    struct target *staged;  /* its targets until queue_commit(), else NULL */
    char text[]; /* storage for the strings above */
};

struct target {
    struct target *next;
    struct push *push;
    uint32_t attempts; /* upstream sends so far */
    uint32_t index;    /* position in its push, for spool acknowledgements */
    uint32_t len;
    char name[]; /* the token, topic or condition, NUL-terminated */
};

struct queue {
    struct target *head;
    struct target **tailp;
    size_t ready;                                    /* targets in the FIFO */
    size_t pending;                                  /* accepted here and not finished */
    size_t capacity;                                 /* bound on pending */
    size_t bytes;                                    /* held by pending pushes */
    size_t max_bytes;                                /* bound on bytes */
    void (*on_push_done)(void *arg, struct push *p); /* before a push is freed */
    void *arg;
    struct push_ids ids; /* the worker's push ids */
};

/* Also draws the worker's push ids (push_ids_init). */
void queue_init(struct queue *q, size_t capacity, size_t max_bytes);

/* Gives r the next push id of this worker. */
void queue_assign_id(struct queue *q, struct send_request *r);

/* Bytes a push made of r holds while queued. */
size_t queue_cost(const struct send_request *r);

/* Whether a push of n targets holding bytes (its queue_cost) fits under
 * both bounds now. */
int queue_has_room(const struct queue *q, size_t n, size_t bytes);

/* Whether it would fit even in an empty queue. */
int queue_could_fit(const struct queue *q, size_t n, size_t bytes);

/* Makes a push of r with one target per r->targets and appends them all;
 * it keeps r's id, or gets a new one when r has none (a record written
 * before pushes had ids).  Returns the push, or NULL when memory ran out
 * (nothing is queued then). */
struct push *queue_accept(struct queue *q, const struct send_request *r);

/* Like queue_accept, but the targets wait until queue_commit() (or go with
 * queue_discard()); the push counts against the bounds meanwhile. */
struct push *queue_stage(struct queue *q, const struct send_request *r);
void queue_commit(struct queue *q, struct push *p);
void queue_discard(struct queue *q, struct push *p);

/* Appends targets (a NULL-terminated chain) that are pending already. */
void queue_requeue(struct queue *q, struct target *chain);

/* Takes up to max targets of the push at the head, in order, into out.
 * Returns how many. */
size_t queue_take_batch(struct queue *q, struct target **out, size_t max);

/* A target reached a final outcome: frees it (and its push with the last). */
void queue_finish(struct queue *q, struct target *t);

/* At a worker's exit: frees every target in the FIFO, and each push with its
 * last target, without on_push_done (what was not finished stays unfinished
 * wherever it is stored).  Whoever holds targets out of the FIFO, in flight
 * or waiting for a retry, puts them back first (queue_requeue); a staged
 * push goes with queue_discard. */
void queue_free(struct queue *q);

#endif
