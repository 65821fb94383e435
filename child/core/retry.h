/*
 * child/core/retry.h - targets waiting for their next try.
 *
 * Each failed job's retryable targets wait together on one libuv timer and
 * go back to the end of the queue when it fires.  They stay pending all the
 * while, so nothing is lost and the queue bound still counts them.
 */
#ifndef FCMD_CHILD_CORE_RETRY_H
#define FCMD_CHILD_CORE_RETRY_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "queue.h"

struct retry_group;

struct retry_set {
    uv_loop_t *loop;
    struct queue *queue;
    void (*on_requeue)(void *arg); /* called after targets went back to the queue */
    void *arg;
    size_t waiting; /* targets waiting */
    struct retry_group *groups; /* every group waiting, so a stop finds them */
};

void retry_init(struct retry_set *rs, uv_loop_t *loop, struct queue *q, void (*on_requeue)(void *), void *arg);

/* Requeues the chain of n targets after delay_ms.  If no timer can be made
 * the targets are requeued at once, so they are never dropped. */
void retry_schedule(struct retry_set *rs, struct target *chain, size_t n, uint64_t delay_ms);

/* At a worker's exit: every target waiting goes back to the queue at once
 * (on_requeue is not called) and the timers are closed; their memory is
 * freed as libuv closes them. */
void retry_stop(struct retry_set *rs);

#endif
