/*
 * child/core/retry.c - one libuv timer per group of targets to retry.
 */
#include "retry.h"

#include <stdlib.h>

struct retry_group {
    uv_timer_t timer;
    struct retry_set *set;
    struct target *chain;
    size_t n;
    struct retry_group *next, **prev; /* in set->groups */
};

void retry_init(struct retry_set *rs, uv_loop_t *loop, struct queue *q, void (*on_requeue)(void *), void *arg)
{
    rs->loop = loop;
    rs->queue = q;
    rs->on_requeue = on_requeue;
    rs->arg = arg;
    rs->waiting = 0;
    rs->groups = NULL;
}

static void free_group(uv_handle_t *h)
{
    free(h->data);
}

/* Its targets go back to the queue and its timer is closed. */
static void requeue_group(struct retry_group *g)
{
    struct retry_set *rs = g->set;

    if ((*g->prev = g->next) != NULL)
        g->next->prev = g->prev;
    rs->waiting -= g->n;
    queue_requeue(rs->queue, g->chain);
    uv_close((uv_handle_t *)&g->timer, free_group);
}

static void on_due(uv_timer_t *timer)
{
    struct retry_group *g = timer->data;
    struct retry_set *rs = g->set;

    requeue_group(g);
    rs->on_requeue(rs->arg);
}

void retry_stop(struct retry_set *rs)
{
    while (rs->groups != NULL)
        requeue_group(rs->groups);
}

void retry_schedule(struct retry_set *rs, struct target *chain, size_t n, uint64_t delay_ms)
{
    struct retry_group *g = malloc(sizeof(*g));

    if (g == NULL || uv_timer_init(rs->loop, &g->timer) != 0) {
        free(g);
        queue_requeue(rs->queue, chain);
        rs->on_requeue(rs->arg);
        return;
    }
    g->timer.data = g;
    g->set = rs;
    g->chain = chain;
    g->n = n;
    if ((g->next = rs->groups) != NULL)
        g->next->prev = &g->next;
    g->prev = &rs->groups;
    rs->groups = g;
    rs->waiting += n;
    uv_timer_start(&g->timer, on_due, delay_ms, 0);
}
