/*
 * shm/drainlist.c - bounded shared record list behind a robust mutex.
 *
 * An append writes the record bytes first and moves `used` last, so if the
 * writer dies half-way the next locker (told EOWNERDEAD) finds the bytes as
 * they were before that append.  `count` moves just before `used`, so that
 * locker counts the records in the committed bytes again before it marks the
 * mutex consistent.
 */
#include "drainlist.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define REC_HDR 2 /* record length, little endian */

size_t drainlist_footprint(size_t capacity)
{
    return sizeof(struct drainlist) + capacity;
}

int drainlist_init(struct drainlist *l, size_t capacity)
{
    pthread_mutexattr_t attr;
    int err;

    if ((err = pthread_mutexattr_init(&attr)) != 0)
        return -err;
    if ((err = pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED)) != 0 ||
        (err = pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST)) != 0 ||
        (err = pthread_mutex_init(&l->lock, &attr)) != 0) {
        pthread_mutexattr_destroy(&attr);
        return -err;
    }
    pthread_mutexattr_destroy(&attr);
    l->capacity = capacity;
    l->used = 0;
    l->count = 0;
    atomic_init(&l->dropped, 0);
    return 0;
}

/* The records in the committed bytes. */
static uint64_t recount(const struct drainlist *l)
{
    size_t pos = 0, len;
    uint64_t n = 0;

    while (drainlist_next(l->arena, l->used, &pos, &len) != NULL)
        n++;
    return n;
}

static int lock(struct drainlist *l)
{
    int err = pthread_mutex_lock(&l->lock);

    if (err == EOWNERDEAD) {
        /* The dead holder committed its change to the bytes or not at all,
         * but it may have moved `count` without `used`. */
        l->count = recount(l);
        err = pthread_mutex_consistent(&l->lock);
    }
    return -err;
}

int drainlist_append(struct drainlist *l, const void *a, size_t alen, const void *b, size_t blen)
{
    size_t rec = alen + blen;
    int rc = -1;

    if (rec > DRAINLIST_MAX_RECORD || lock(l) != 0) {
        atomic_fetch_add(&l->dropped, 1);
        return -1;
    }
    if (l->capacity - l->used >= REC_HDR + rec) {
        unsigned char *p = l->arena + l->used;
        p[0] = (unsigned char)(rec & 0xff);
        p[1] = (unsigned char)(rec >> 8);
        memcpy(p + REC_HDR, a, alen);
        if (blen)
            memcpy(p + REC_HDR + alen, b, blen);
        atomic_thread_fence(memory_order_release);
        l->count++;
        l->used += REC_HDR + rec;
        rc = 0;
    } else {
        atomic_fetch_add(&l->dropped, 1);
    }
    pthread_mutex_unlock(&l->lock);
    return rc;
}

int drainlist_drain(struct drainlist *l, unsigned char **out, size_t *len, uint64_t *count)
{
    unsigned char *copy = NULL;

    *out = NULL;
    *len = 0;
    *count = 0;
    if (lock(l) != 0)
        return -1;
    if (l->used > 0) {
        if ((copy = malloc(l->used)) == NULL) {
            pthread_mutex_unlock(&l->lock);
            return -1;
        }
        memcpy(copy, l->arena, l->used);
        *out = copy;
        *len = l->used;
        *count = l->count;
        l->used = 0;
        l->count = 0;
    }
    pthread_mutex_unlock(&l->lock);
    return 0;
}

uint64_t drainlist_giveback(struct drainlist *l, const unsigned char *recs, size_t len, uint64_t count)
{
    size_t pos = 0, fit = 0, rlen;
    uint64_t n = 0;

    if (len == 0 || lock(l) != 0) {
        atomic_fetch_add(&l->dropped, count);
        return 0;
    }
    /* Whole records, from the oldest, as many as there is room for.  They
     * go after what was appended meanwhile, written before `used` moves like
     * any append, so a holder killed half-way leaves the list as it was. */
    while (drainlist_next(recs, len, &pos, &rlen) != NULL && pos <= l->capacity - l->used) {
        fit = pos;
        n++;
    }
    memcpy(l->arena + l->used, recs, fit);
    atomic_thread_fence(memory_order_release);
    l->count += n;
    l->used += fit;
    pthread_mutex_unlock(&l->lock);
    if (n < count)
        atomic_fetch_add(&l->dropped, count - n);
    return n;
}

const unsigned char *drainlist_next(const unsigned char *buf, size_t len, size_t *pos, size_t *rec_len)
{
    size_t rec;

    if (*pos + REC_HDR > len)
        return NULL;
    rec = (size_t)buf[*pos] | ((size_t)buf[*pos + 1] << 8);
    if (*pos + REC_HDR + rec > len)
        return NULL;
    *rec_len = rec;
    *pos += REC_HDR + rec;
    return buf + *pos - rec;
}

uint64_t drainlist_dropped(const struct drainlist *l)
{
    return atomic_load(&((struct drainlist *)l)->dropped);
}
