/*
 * child/core/queue.c - the child's bounded FIFO of targets.
 *
 * Accepting a request is all or nothing: the push and every target are
 * allocated first and linked in only when all allocations succeeded, so a
 * failure never leaves half a request queued.  A push's bytes count from
 * its making to its freeing, whether its targets are staged, queued, in
 * flight or waiting for a retry.
 */
#include "queue.h"
#include "../../common/options.h"

#include <stdlib.h>
#include <string.h>

void queue_init(struct queue *q, size_t capacity, size_t max_bytes)
{
    memset(q, 0, sizeof(*q));
    q->tailp = &q->head;
    q->capacity = capacity;
    q->max_bytes = max_bytes;
    push_ids_init(&q->ids);
}

void queue_assign_id(struct queue *q, struct send_request *r)
{
    r->id_len = push_id_make(&q->ids, r->id);
}

size_t queue_cost(const struct send_request *r)
{
    size_t bytes = sizeof(struct push) + message_size(&r->msg);

    if (r->app_index == APP_NONE && r->app != NULL)
        bytes += r->app_len + 1; /* the name it keeps */
    for (size_t i = 0; i < r->ntargets; i++)
        bytes += sizeof(struct target) + strlen(r->targets[i]) + 1;
    return bytes;
}

int queue_has_room(const struct queue *q, size_t n, size_t bytes)
{
    return q->pending + n <= q->capacity && q->bytes + bytes <= q->max_bytes;
}

int queue_could_fit(const struct queue *q, size_t n, size_t bytes)
{
    return n <= q->capacity && bytes <= q->max_bytes;
}

static void free_chain(struct target *t)
{
    while (t) {
        struct target *next = t->next;
        free(t);
        t = next;
    }
}

/* The push and its targets, chained in p->staged; nothing is counted yet. */
static struct push *push_create(struct queue *q, const struct send_request *r)
{
    /* A push for an app this worker does not have keeps the name it gave. */
    size_t named = r->app_index == APP_NONE && r->app != NULL ? r->app_len + 1 : 0;
    struct push *p = malloc(sizeof(*p) + message_size(&r->msg) + named);
    struct target **tailp;

    if (p == NULL)
        return NULL;
    memset(p, 0, sizeof(*p));
    p->kind = r->kind;
    p->upstream = r->upstream;
    p->app = r->app_index;
    if (r->id_len > 0)
        memcpy(p->id, r->id, r->id_len + 1);
    else
        push_id_make(&q->ids, p->id);
    message_copy(&p->msg, &r->msg, p->text);
    if (named > 0) {
        char *name = p->text + message_size(&r->msg);
        memcpy(name, r->app, r->app_len);
        name[r->app_len] = '\0';
        p->app_name = name;
    }
    p->bytes = sizeof(*p) + message_size(&r->msg) + named; /* and each target's, below: what queue_cost says */
    tailp = &p->staged;
    for (size_t i = 0; i < r->ntargets; i++) {
        size_t len = strlen(r->targets[i]);
        struct target *t = malloc(sizeof(*t) + len + 1);
        if (t == NULL) {
            free_chain(p->staged);
            free(p);
            return NULL;
        }
        t->next = NULL;
        t->push = p;
        t->attempts = 0;
        t->index = r->index != NULL ? r->index[i] : (uint32_t)i;
        t->len = (uint32_t)len;
        memcpy(t->name, r->targets[i], len + 1);
        p->bytes += sizeof(*t) + len + 1;
        *tailp = t;
        tailp = &t->next;
    }
    p->refs = (uint32_t)r->ntargets;
    p->ntargets = r->ntargets;
    return p;
}

struct push *queue_stage(struct queue *q, const struct send_request *r)
{
    struct push *p = push_create(q, r);

    if (p == NULL)
        return NULL;
    q->pending += p->ntargets;
    q->bytes += p->bytes;
    return p;
}

void queue_commit(struct queue *q, struct push *p)
{
    struct target *chain = p->staged;

    p->staged = NULL;
    queue_requeue(q, chain);
}

void queue_discard(struct queue *q, struct push *p)
{
    q->pending -= p->ntargets;
    q->bytes -= p->bytes;
    free_chain(p->staged);
    free(p->encoded);
    free(p);
}

struct push *queue_accept(struct queue *q, const struct send_request *r)
{
    struct push *p = queue_stage(q, r);

    if (p != NULL)
        queue_commit(q, p);
    return p;
}

void queue_requeue(struct queue *q, struct target *chain)
{
    while (chain) {
        struct target *next = chain->next;
        chain->next = NULL;
        *q->tailp = chain;
        q->tailp = &chain->next;
        q->ready++;
        chain = next;
    }
}

size_t queue_take_batch(struct queue *q, struct target **out, size_t max)
{
    struct push *p = q->head ? q->head->push : NULL;
    size_t n = 0;

    while (n < max && q->head && q->head->push == p) {
        struct target *t = q->head;
        q->head = t->next;
        t->next = NULL;
        out[n++] = t;
    }
    if (q->head == NULL)
        q->tailp = &q->head;
    q->ready -= n;
    return n;
}

void queue_finish(struct queue *q, struct target *t)
{
    struct push *p = t->push;

    if (--p->refs == 0) {
        if (q->on_push_done != NULL)
            q->on_push_done(q->arg, p);
        q->bytes -= p->bytes;
        free(p->encoded);
        free(p);
    }
    free(t);
    q->pending--;
}

void queue_free(struct queue *q)
{
    while (q->head != NULL) {
        struct target *t = q->head;
        struct push *p = t->push;
        q->head = t->next;
        if (--p->refs == 0) {
            q->bytes -= p->bytes;
            free(p->encoded);
            free(p);
        }
        free(t);
        q->pending--;
    }
    q->tailp = &q->head;
    q->ready = 0;
}
