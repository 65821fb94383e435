/*
 * child/queue.c - the child's bounded FIFO of targets.
 *
 * Accepting a request is all or nothing: the push and every target are
 * allocated first and linked in only when all allocations succeeded, so a
 * failure never leaves half a request queued.
 */
#include "queue.h"

#include <stdlib.h>
#include <string.h>

void queue_init(struct queue *q, size_t capacity)
{
    memset(q, 0, sizeof(*q));
    q->tailp = &q->head;
    q->capacity = capacity;
}

int queue_has_room(const struct queue *q, size_t n)
{
    return q->pending + n <= q->capacity;
}

static struct push *push_create(const struct send_request *r)
{
    struct push *p = malloc(sizeof(*p) + message_size(&r->msg));

    if (p == NULL)
        return NULL;
    memset(p, 0, sizeof(*p));
    p->kind = r->kind;
    message_copy(&p->msg, &r->msg, p->text);
    return p;
}

struct push *queue_accept(struct queue *q, const struct send_request *r)
{
    struct target *head = NULL, **tailp = &head;
    struct push *p = push_create(r);

    if (p == NULL)
        return NULL;
    for (size_t i = 0; i < r->ntargets; i++) {
        size_t len = strlen(r->targets[i]);
        struct target *t = malloc(sizeof(*t) + len + 1);
        if (t == NULL) {
            while (head) {
                struct target *next = head->next;
                free(head);
                head = next;
            }
            free(p);
            return NULL;
        }
        t->next = NULL;
        t->push = p;
        t->attempts = 0;
        t->index = (uint32_t)i;
        t->len = (uint32_t)len;
        memcpy(t->name, r->targets[i], len + 1);
        *tailp = t;
        tailp = &t->next;
    }
    p->refs = (uint32_t)r->ntargets;
    q->pending += r->ntargets;
    q->ready += r->ntargets;
    *q->tailp = head;
    q->tailp = tailp;
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
        free(p->encoded);
        free(p);
    }
    free(t);
    q->pending--;
}
