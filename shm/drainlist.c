/*
 * shm/drainlist.c - bounded shared record list behind a robust mutex.
 *
 * An append writes the record bytes first and moves `used` last, so if the
 * writer dies half-way the next locker (told EOWNERDEAD) finds the list as it
 * was before that append and only has to mark the mutex consistent.
 *
 * Fleet mode adds a head (records leave from the front in batches) and so a
 * compaction, which moves the records to the arena's start only when they
 * do not overlap their new place: the source stays intact, so a locker that
 * finds `compacting` set simply does the copy again.  A batch is valid only
 * while head == batch_start: committing it is the one store head =
 * batch_end, and its number is drawn before its bounds are written, so a
 * number Redis has seen is never reused for other records.
 */
#include "drainlist.h"
#include "robust_mutex.h"

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
    int err;

    if ((err = robust_mutex_init(&l->lock)) != 0)
        return err;
    l->capacity = capacity;
    l->used = 0;
    l->count = 0;
    atomic_init(&l->dropped, 0);
    l->head = l->batch_start = l->batch_end = l->compact_len = 0;
    l->batch_seq = l->batch_lease = 0;
    l->added = l->removed = 0;
    l->compacting = 0;
    l->squeezing = 0;
    l->sq_end = l->sq_read = l->sq_write = l->sq_len = l->sq_done = l->sq_next = l->sq_wnext = 0;
    l->taken_bytes = 0;
    return 0;
}

#define ORDERED() atomic_thread_fence(memory_order_seq_cst) /* stores before it land before those after */

/* The live records (not taken by a drain of their tag) in buf. */
static uint64_t live_records(const unsigned char *buf, size_t len)
{
    const unsigned char *r;
    size_t pos = 0, rlen;
    uint64_t n = 0;

    while ((r = drainlist_next(buf, len, &pos, &rlen)) != NULL)
        n += rlen > 0 && r[0] != DRAINLIST_TAKEN;
    return n;
}

static void recount(struct drainlist *l)
{
    l->count = live_records(l->arena + l->head, l->used - l->head);
}

/* The end of a compaction that its holder did not finish. */
static void finish_compaction(struct drainlist *l)
{
    if (l->head != 0)
        memcpy(l->arena, l->arena + l->head, l->compact_len);
    ORDERED();
    l->head = 0;
    l->batch_start = l->batch_end = 0;
    ORDERED();
    l->used = l->compact_len;
    ORDERED();
    l->compacting = 0;
}

static void finish_squeeze(struct drainlist *l);

static int lock(struct drainlist *l)
{
    int err = pthread_mutex_lock(&l->lock);

    if (err == EOWNERDEAD) {
        /* The dead holder never committed its record: the list is whole,
         * but for a compaction it may have left half-way. */
        if (l->compacting)
            finish_compaction(l);
        if (l->squeezing)
            finish_squeeze(l);
        recount(l);
        err = pthread_mutex_consistent(&l->lock);
    }
    return -err;
}

static int batch_valid(const struct drainlist *l)
{
    return l->head == l->batch_start && l->batch_start < l->batch_end;
}

/* Moves the records to the arena's start when that frees room and they do
 * not overlap their new place (no batch may be reserved). */
static void compact(struct drainlist *l)
{
    size_t n = l->used - l->head;

    if (l->head == 0 || n > l->head || batch_valid(l))
        return;
    l->compact_len = n;
    ORDERED();
    l->compacting = 1;
    ORDERED();
    finish_compaction(l);
}

/*
 * A squeeze takes back the room of records a drain of other tags marked
 * taken, in place.  Every store is either one that a locker finding the
 * squeeze half-way would make again with the same value, or the last of a
 * step: a record starts with its bounds (sq_next, sq_wnext) written before
 * sq_len; it is copied in chunks no longer than the gap sq_read - sq_write,
 * so a chunk's destination never overlaps its source or a source byte not
 * yet copied, and sq_done moves after each chunk; it ends with sq_write and
 * sq_read set to those bounds, then sq_len cleared.  A taken record is
 * skipped by one store of sq_read.  `used` moves last.
 */
static void finish_squeeze(struct drainlist *l)
{
    while (l->sq_len != 0 || l->sq_read < l->sq_end) {
        if (l->sq_len == 0) {
            const unsigned char *r = l->arena + l->sq_read;
            size_t len = REC_HDR + ((size_t)r[0] | ((size_t)r[1] << 8));
            if (len > l->sq_end - l->sq_read)
                break; /* never: the records were whole when it began */
            if (r[REC_HDR] == DRAINLIST_TAKEN) {
                l->sq_read += len;
                continue;
            }
            l->sq_next = l->sq_read + len;
            l->sq_wnext = l->sq_write + len;
            l->sq_done = l->sq_read == l->sq_write ? len : 0; /* already in place */
            ORDERED();
            l->sq_len = len;
            ORDERED();
        }
        while (l->sq_done < l->sq_len) {
            size_t chunk = l->sq_len - l->sq_done, gap = l->sq_read - l->sq_write;
            if (chunk > gap)
                chunk = gap;
            memcpy(l->arena + l->sq_write + l->sq_done, l->arena + l->sq_read + l->sq_done, chunk);
            ORDERED();
            l->sq_done += chunk;
            ORDERED();
        }
        l->sq_write = l->sq_wnext;
        l->sq_read = l->sq_next;
        ORDERED();
        l->sq_len = 0;
        ORDERED();
    }
    l->used = l->sq_write;
    ORDERED();
    l->squeezing = 0;
    l->taken_bytes = 0;
}

/* Squeezes the taken records out of the list (no batch may be reserved). */
static void squeeze(struct drainlist *l)
{
    if (l->taken_bytes == 0 || batch_valid(l))
        return;
    l->sq_end = l->used;
    l->sq_read = l->sq_write = l->head;
    l->sq_len = l->sq_done = 0;
    ORDERED();
    l->squeezing = 1;
    ORDERED();
    finish_squeeze(l);
}

int drainlist_append(struct drainlist *l, unsigned tag, const void *a, size_t alen, const void *b, size_t blen)
{
    size_t rec = 1 + alen + blen;
    int rc = -1;

    if (rec > DRAINLIST_MAX_RECORD || lock(l) != 0) {
        atomic_fetch_add(&l->dropped, 1);
        return -1;
    }
    if (l->capacity - l->used < REC_HDR + rec)
        compact(l);
    if (l->capacity - l->used < REC_HDR + rec && l->taken_bytes > 0)
        squeeze(l);
    if (l->capacity - l->used >= REC_HDR + rec) {
        unsigned char *p = l->arena + l->used;
        p[0] = (unsigned char)(rec & 0xff);
        p[1] = (unsigned char)(rec >> 8);
        p[REC_HDR] = (unsigned char)tag;
        memcpy(p + REC_HDR + 1, a, alen);
        if (blen)
            memcpy(p + REC_HDR + 1 + alen, b, blen);
        atomic_thread_fence(memory_order_release);
        l->count++;
        l->used += REC_HDR + rec;
        l->added++;
        rc = 0;
    } else {
        atomic_fetch_add(&l->dropped, 1);
    }
    pthread_mutex_unlock(&l->lock);
    return rc;
}

/* Whether record r (rlen bytes, its tag first) is one a drain of tags takes. */
static int wanted(const unsigned char *r, size_t rlen, uint64_t tags)
{
    if (rlen == 0 || r[0] == DRAINLIST_TAKEN)
        return 0;
    return tags == DRAINLIST_ALL || (r[0] < 64 && (tags >> r[0] & 1));
}

/* A drain of some tags leaves the others in place: each record it takes is
 * marked taken where it lies (one byte, so a holder killed half-way leaves
 * records that are either taken or not, and recount() counts the rest), and
 * `used` moves back over the taken records at the end, last. */
static void mark_taken(struct drainlist *l, size_t from, uint64_t tags)
{
    size_t pos = from, rlen, live_end = from;
    unsigned char *r;

    while ((r = (unsigned char *)drainlist_next(l->arena, l->used, &pos, &rlen)) != NULL) {
        if (wanted(r, rlen, tags)) {
            r[0] = DRAINLIST_TAKEN;
            l->taken_bytes += REC_HDR + rlen;
        } else if (rlen > 0 && r[0] != DRAINLIST_TAKEN) {
            live_end = pos;
        }
    }
    ORDERED();
    l->used = live_end;
}

int drainlist_drain(struct drainlist *l, uint64_t tags, unsigned char **out, size_t *len, uint64_t *count)
{
    unsigned char *copy = NULL;
    const unsigned char *r;
    size_t from, pos, rlen, n = 0;
    uint64_t k = 0;

    *out = NULL;
    *len = 0;
    *count = 0;
    if (lock(l) != 0)
        return -1;
    /* A batch on its way to Redis is not this drain's to take. */
    from = batch_valid(l) ? l->batch_end : l->head;
    if (l->used > from) {
        if ((copy = malloc(l->used - from)) == NULL) {
            pthread_mutex_unlock(&l->lock);
            return -1;
        }
        for (pos = from; (r = drainlist_next(l->arena, l->used, &pos, &rlen)) != NULL;) {
            if (!wanted(r, rlen, tags))
                continue;
            memcpy(copy + n, r - REC_HDR, REC_HDR + rlen);
            n += REC_HDR + rlen;
            k++;
        }
        if (tags == DRAINLIST_ALL) {
            l->used = from;
            l->taken_bytes = 0;
            recount(l);
        } else if (k > 0) {
            mark_taken(l, from, tags);
            l->count -= k < l->count ? k : l->count;
        }
        l->removed += k;
        if (l->used == l->head)
            compact(l);
    }
    pthread_mutex_unlock(&l->lock);
    if (k == 0) {
        free(copy);
        return 0;
    }
    *out = copy;
    *len = n;
    *count = k;
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
    if (l->capacity - l->used < len)
        compact(l);
    if (l->capacity - l->used < len)
        squeeze(l);
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
    l->added += n;
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

int drainlist_reserve(struct drainlist *l, uint32_t owner, size_t max, uint64_t now_ms, uint64_t lease_ms,
                      unsigned char **out, size_t *len, uint64_t *count, uint64_t *seq)
{
    size_t pos, end, rlen;
    
    *out = NULL;
    *len = 0;
    *count = 0;
    if (lock(l) != 0)
        return -1;
    if (batch_valid(l) && now_ms < l->batch_lease && owner != l->batch_owner) {
        pthread_mutex_unlock(&l->lock);
        return 1;
    }
    if (!batch_valid(l)) {
        if (l->used == l->head) {
            pthread_mutex_unlock(&l->lock);
            return 0;
        }
        for (pos = end = l->head; drainlist_next(l->arena, l->used, &pos, &rlen) != NULL; end = pos)
            if (pos - l->head > max && end > l->head)
                break;
        l->batch_seq++; /* first: a number once sent is never reused */
        ORDERED();
        l->batch_end = end;
        l->batch_start = l->head;
    }
    l->batch_lease = now_ms + lease_ms;
    l->batch_owner = owner;
    if ((*out = malloc(l->batch_end - l->batch_start)) == NULL) {
        l->batch_lease = 0;
        pthread_mutex_unlock(&l->lock);
        return -1;
    }
    *len = l->batch_end - l->batch_start;
    memcpy(*out, l->arena + l->batch_start, *len);
    *count = live_records(*out, *len);
    *seq = l->batch_seq;
    pthread_mutex_unlock(&l->lock);
    return 0;
}

void drainlist_commit(struct drainlist *l, uint64_t seq)
{
    uint64_t n = 0;

    if (lock(l) != 0)
        return;
    if (batch_valid(l) && l->batch_seq == seq) {
        n = live_records(l->arena + l->batch_start, l->batch_end - l->batch_start);
        l->head = l->batch_end; /* the commit: the batch is no longer valid */
        ORDERED();
        l->count -= n < l->count ? n : l->count;
        l->removed += n;
        l->batch_lease = 0;
        if (l->used == l->head)
            compact(l);
    }
    pthread_mutex_unlock(&l->lock);
}

void drainlist_size(struct drainlist *l, uint64_t *records, uint64_t *bytes)
{
    *records = *bytes = 0;
    if (lock(l) != 0)
        return;
    *records = l->count;
    *bytes = l->used - l->head;
    pthread_mutex_unlock(&l->lock);
}

void drainlist_progress(struct drainlist *l, uint64_t *added, uint64_t *removed)
{
    *added = *removed = 0;
    if (lock(l) != 0)
        return;
    *added = l->added;
    *removed = l->removed;
    pthread_mutex_unlock(&l->lock);
}
