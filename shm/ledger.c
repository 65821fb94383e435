/*
 * shm/ledger.c - the keyed log in shared memory (ledger.h).
 *
 * A record starts with its length and type and is 8-byte aligned; one that
 * would run past the ring's end is preceded by a skip record to the end.
 * The index is linear probing with backward-shift deletion, so it needs no
 * tombstones: an entry leaves it when the ring drops the entry, or when a
 * newer entry takes its key.
 */
#include "ledger.h"
#include "robust_mutex.h"

#include <errno.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <unistd.h>

enum { REC_SKIP = 1, REC_ENTRY, REC_NOTE };

struct rec {
    uint32_t len; /* of the whole record, a multiple of 8 */
    uint32_t type;
};

struct entry {
    struct rec rec;
    uint64_t hash;
    uint64_t expires_ms;
    uint64_t first_note, last_note; /* positions + 1, 0 for none */
    uint32_t live;                  /* in the index */
    uint16_t key_len;
    uint16_t body_len;
    /* then the body, padded to 8, then the key */
};

struct note {
    struct rec rec;
    uint64_t next; /* the entry's next note's position + 1, 0 for none */
    uint32_t len;
    uint32_t pad;
    /* then the note's bytes */
};

#define ALIGN8(n) (((n) + 7) & ~(size_t)7)

static size_t min_entry_of(size_t min_entry)
{
    return min_entry < LEDGER_MIN_ENTRY ? LEDGER_MIN_ENTRY : ALIGN8(min_entry);
}

/* Twice the entries of min_entry bytes the ring holds: under half full. */
static size_t index_buckets(size_t bytes, size_t min_entry)
{
    size_t n = 64;

    while (n < bytes / min_entry_of(min_entry) * 2)
        n <<= 1;
    return n;
}

size_t ledger_entry_size(size_t body_len, size_t key_len)
{
    return sizeof(struct entry) + ALIGN8(body_len) + ALIGN8(key_len);
}

static size_t index_offset(void)
{
    return ALIGN8(sizeof(struct ledger));
}

static uint64_t *index_of(const struct ledger *l)
{
    return (uint64_t *)((char *)l + index_offset());
}

static unsigned char *ring_of(const struct ledger *l)
{
    return (unsigned char *)index_of(l) + (l->mask + 1) * sizeof(uint64_t);
}

size_t ledger_footprint(size_t bytes, size_t min_entry)
{
    bytes = bytes < LEDGER_MIN_BYTES ? LEDGER_MIN_BYTES : bytes & ~(size_t)7;
    return index_offset() + index_buckets(bytes, min_entry) * sizeof(uint64_t) + bytes;
}

int ledger_init(struct ledger *l, size_t bytes, size_t min_entry)
{
    bytes = bytes < LEDGER_MIN_BYTES ? LEDGER_MIN_BYTES : bytes & ~(size_t)7;
    memset(l, 0, sizeof(*l));
    l->capacity = bytes;
    l->min_entry = min_entry_of(min_entry);
    l->mask = index_buckets(bytes, min_entry) - 1;
    if (getrandom(l->hash_key, sizeof(l->hash_key), 0) != (ssize_t)sizeof(l->hash_key))
        return errno ? -errno : -EIO;
    return robust_mutex_init(&l->lock);
}

void ledger_map(struct ledger *l, int make)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    uintptr_t start = (uintptr_t)index_of(l) & ~(uintptr_t)(page - 1);
    uintptr_t end = (uintptr_t)(ring_of(l) + l->capacity);
    volatile unsigned char *p;

    /* One system call for all of it where the kernel has one (Linux 5.14),
     * else a touch per page. */
    if (madvise((void *)start, end - start, make ? MADV_POPULATE_WRITE : MADV_POPULATE_READ) == 0)
        return;
    for (p = (volatile unsigned char *)index_of(l); (uintptr_t)p < end; p += page)
        if (make)
            *p = *p;
        else
            (void)*p;
}

/* Forgets every record: what a holder that died may have torn.  The
 * positions go on growing from the head (make_room starts the empty ring
 * again at its beginning), so that a position handed out before names
 * nothing made after: back at 0 it could name a new entry, or the middle
 * of a record, for ledger_get. */
static void empty(struct ledger *l)
{
    atomic_fetch_add_explicit(&l->lost, l->entries, memory_order_relaxed);
    memset(index_of(l), 0, (l->mask + 1) * sizeof(uint64_t));
    l->entries = 0;
    l->tail = l->head;
}

int ledger_lock(struct ledger *l)
{
    int err = pthread_mutex_lock(&l->lock);

    if (err == EOWNERDEAD) {
        empty(l);
        err = pthread_mutex_consistent(&l->lock);
    }
    return err == 0 ? 0 : -1;
}

void ledger_unlock(struct ledger *l)
{
    pthread_mutex_unlock(&l->lock);
}

uint64_t ledger_entries(struct ledger *l)
{
    uint64_t n = 0;

    if (ledger_lock(l) == 0) {
        n = l->entries;
        ledger_unlock(l);
    }
    return n;
}

/* SipHash-2-4 of key under the ledger's own key.  Each process keeps one
 * context, set up again with the ledger's key for each hash (no allocation
 * per call); a failure gives 0, which only makes lookups slower. */
/* SipHash-2-4 with 8 bytes out, by OpenSSL.  The context is the process's,
 * its output size set once; each hash keys it with the ledger's key. */
static uint64_t hash_of(const struct ledger *l, const void *key, size_t n)
{
    static EVP_MAC_CTX *ctx;
    unsigned char out[8];
    size_t outlen = 0;
    uint64_t h = 0;

    if (ctx == NULL) {
        size_t size = sizeof(out);
        OSSL_PARAM params[] = {OSSL_PARAM_construct_size_t(OSSL_MAC_PARAM_SIZE, &size), OSSL_PARAM_construct_end()};
        EVP_MAC *mac = EVP_MAC_fetch(NULL, "SIPHASH", NULL);
        ctx = mac != NULL ? EVP_MAC_CTX_new(mac) : NULL;
        EVP_MAC_free(mac); /* the context holds its own reference */
        if (ctx != NULL && EVP_MAC_CTX_set_params(ctx, params) != 1) {
            EVP_MAC_CTX_free(ctx);
            ctx = NULL;
        }
        if (ctx == NULL)
            return 0;
    }
    if (EVP_MAC_init(ctx, l->hash_key, sizeof(l->hash_key), NULL) == 1 && EVP_MAC_update(ctx, key, n) == 1 &&
        EVP_MAC_final(ctx, out, &outlen, sizeof(out)) == 1 && outlen == sizeof(out))
        memcpy(&h, out, sizeof(h));
    return h;
}

uint64_t ledger_hash(const struct ledger *l, const void *key, size_t key_len)
{
    return hash_of(l, key, key_len);
}

/* The record at position pos, or NULL when pos is not a live record's. */
static struct rec *rec_at(const struct ledger *l, uint64_t pos)
{
    struct rec *r;

    if (pos < l->tail || pos >= l->head || (pos & 7) != 0)
        return NULL;
    r = (struct rec *)(ring_of(l) + pos % l->capacity);
    /* No record runs past the ring's end (a skip record goes before). */
    if (r->len < sizeof(*r) || pos + r->len > l->head || r->len > l->capacity - pos % l->capacity)
        return NULL;
    return r;
}

static struct entry *entry_at(const struct ledger *l, uint64_t pos)
{
    struct rec *r = rec_at(l, pos);
    struct entry *e = (struct entry *)r;

    if (r == NULL || r->type != REC_ENTRY || r->len < sizeof(*e) ||
        sizeof(*e) + ALIGN8((size_t)e->body_len) + ALIGN8((size_t)e->key_len) > r->len)
        return NULL;
    return e;
}

static unsigned char *body_of(struct entry *e)
{
    return (unsigned char *)(e + 1);
}

static const unsigned char *key_of(struct entry *e)
{
    return body_of(e) + ALIGN8(e->body_len);
}

/* The bucket that holds position pos, or -1. */
static int64_t bucket_of(const struct ledger *l, uint64_t hash, uint64_t pos)
{
    const uint64_t *idx = index_of(l);

    for (uint64_t i = hash & l->mask, n = 0; n <= l->mask; i = (i + 1) & l->mask, n++) {
        if (idx[i] == 0)
            return -1;
        if (idx[i] == pos + 1)
            return (int64_t)i;
    }
    return -1;
}

/* Takes the entry at pos out of the index, shifting back the entries after it
 * in its run so that every one stays reachable from its home bucket. */
static void unindex(struct ledger *l, struct entry *e, uint64_t pos)
{
    uint64_t *idx = index_of(l);
    int64_t b = bucket_of(l, e->hash, pos);
    uint64_t i, j;

    e->live = 0;
    if (b < 0)
        return;
    l->entries--;
    for (i = (uint64_t)b, j = (i + 1) & l->mask; idx[j] != 0; j = (j + 1) & l->mask) {
        struct entry *o = entry_at(l, idx[j] - 1);
        uint64_t home = o != NULL ? o->hash & l->mask : j;
        /* idx[j] may move to i when its home is not in (i, j], cyclically. */
        int between = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (!between) {
            idx[i] = idx[j];
            i = j;
        }
    }
    idx[i] = 0;
}

/* Drops the oldest record. */
static void drop_oldest(struct ledger *l, uint64_t now_ms)
{
    struct rec *r = (struct rec *)(ring_of(l) + l->tail % l->capacity);

    if (r->len < sizeof(*r) || (r->len & 7) != 0 || l->tail + r->len > l->head ||
        r->len > l->capacity - l->tail % l->capacity) { /* cannot happen; start again rather than loop */
        empty(l);
        return;
    }
    if (r->type == REC_ENTRY && ((struct entry *)r)->live) {
        struct entry *e = (struct entry *)r;
        if (e->expires_ms > now_ms)
            atomic_fetch_add_explicit(&l->evicted, 1, memory_order_relaxed);
        unindex(l, e, l->tail);
    }
    l->tail += r->len;
}

/* Room for a record of len bytes at the head, dropping the oldest as
 * needed.  Returns its position. */
static uint64_t make_room(struct ledger *l, size_t len, uint64_t now_ms)
{
    size_t at, skip;

    for (;;) {
        if (l->head == l->tail) /* an empty ring starts again at its beginning */
            l->head = l->tail = (l->head + l->capacity - 1) / l->capacity * l->capacity;
        at = (size_t)(l->head % l->capacity);
        skip = l->capacity - at < len ? l->capacity - at : 0;
        if (l->capacity - (size_t)(l->head - l->tail) >= skip + len)
            break;
        drop_oldest(l, now_ms);
    }
    if (skip > 0) {
        struct rec *r = (struct rec *)(ring_of(l) + at);
        r->len = (uint32_t)skip;
        r->type = REC_SKIP;
        l->head += skip;
    }
    return l->head;
}

/* The indexed entry of key (whose hash is h), expired or not, with its
 * position in *pos; or NULL.  The index holds one entry per key at most. */
static struct entry *lookup(const struct ledger *l, const void *key, size_t key_len, uint64_t h, uint64_t *pos)
{
    const uint64_t *idx = index_of(l);

    for (uint64_t i = h & l->mask, n = 0; idx[i] != 0 && n <= l->mask; i = (i + 1) & l->mask, n++) {
        struct entry *e = entry_at(l, idx[i] - 1);
        if (e != NULL && e->hash == h && e->key_len == key_len && memcmp(key_of(e), key, key_len) == 0) {
            *pos = idx[i] - 1;
            return e;
        }
    }
    return NULL;
}

int ledger_find(struct ledger *l, const void *key, size_t key_len, uint64_t now_ms, struct ledger_ref *ref)
{
    return ledger_find_hashed(l, key, key_len, hash_of(l, key, key_len), now_ms, ref);
}

int ledger_find_hashed(struct ledger *l, const void *key, size_t key_len, uint64_t h, uint64_t now_ms,
                       struct ledger_ref *ref)
{
    uint64_t pos;
    struct entry *e = lookup(l, key, key_len, h, &pos);

    if (e == NULL || e->expires_ms <= now_ms)
        return 0;
    *ref = (struct ledger_ref){pos, body_of(e), e->body_len};
    return 1;
}

int ledger_get(struct ledger *l, struct ledger_ref *ref)
{
    struct entry *e = entry_at(l, ref->pos);

    if (e == NULL || !e->live)
        return 0;
    ref->body = body_of(e);
    ref->body_len = e->body_len;
    return 1;
}

int ledger_add(struct ledger *l, const void *key, size_t key_len, size_t body_len, uint64_t expires_ms,
               uint64_t now_ms, struct ledger_ref *ref)
{
    if (key_len == 0 || key_len > LEDGER_MAX_KEY || body_len > LEDGER_MAX_BODY)
        return 0;
    return ledger_add_hashed(l, key, key_len, hash_of(l, key, key_len), body_len, expires_ms, now_ms, ref);
}

int ledger_add_hashed(struct ledger *l, const void *key, size_t key_len, uint64_t h, size_t body_len,
                      uint64_t expires_ms, uint64_t now_ms, struct ledger_ref *ref)
{
    size_t len = ledger_entry_size(body_len, key_len);
    uint64_t pos, *idx = index_of(l), i, n;
    struct entry *e;

    if (key_len == 0 || key_len > LEDGER_MAX_KEY || body_len > LEDGER_MAX_BODY)
        return 0;
    if (len < l->min_entry) /* the index is sized for entries no smaller */
        len = l->min_entry;
    /* Expired or not (an expiry of 0 included), the new one takes its key:
     * one left in the index would come first in the probe and hide it. */
    if ((e = lookup(l, key, key_len, h, &pos)) != NULL)
        unindex(l, e, pos);
    pos = make_room(l, len, now_ms);
    e = (struct entry *)(ring_of(l) + pos % l->capacity);
    memset(e, 0, len);
    e->rec = (struct rec){(uint32_t)len, REC_ENTRY};
    e->hash = h;
    e->expires_ms = expires_ms;
    e->key_len = (uint16_t)key_len;
    e->body_len = (uint16_t)body_len;
    memcpy((unsigned char *)key_of(e), key, key_len);
    l->head += len;
    for (i = h & l->mask, n = 0; idx[i] != 0 && n <= l->mask; i = (i + 1) & l->mask, n++)
        ;
    if (idx[i] != 0) { /* the index holds fewer entries than half its buckets: this one is not an index */
        empty(l);
        return 0;
    }
    idx[i] = pos + 1;
    e->live = 1;
    l->entries++;
    atomic_fetch_add_explicit(&l->added, 1, memory_order_relaxed);
    *ref = (struct ledger_ref){pos, body_of(e), body_len};
    return 1;
}

void ledger_set_expiry(struct ledger *l, const struct ledger_ref *ref, uint64_t expires_ms)
{
    struct entry *e = entry_at(l, ref->pos);

    if (e != NULL)
        e->expires_ms = expires_ms;
}

int ledger_note(struct ledger *l, struct ledger_ref *ref, const void *data, size_t n, uint64_t now_ms)
{
    size_t len = ALIGN8(sizeof(struct note) + n);
    struct entry *e;
    struct note *nt;
    uint64_t pos;

    if (n > LEDGER_MAX_NOTE || entry_at(l, ref->pos) == NULL)
        return 0;
    pos = make_room(l, len, now_ms);
    if ((e = entry_at(l, ref->pos)) == NULL || !e->live) /* the room was the entry's own */
        return 0;
    nt = (struct note *)(ring_of(l) + pos % l->capacity);
    memset(nt, 0, len);
    nt->rec = (struct rec){(uint32_t)len, REC_NOTE};
    nt->len = (uint32_t)n;
    memcpy(nt + 1, data, n);
    l->head += len;
    if (e->last_note != 0) {
        struct rec *prev = rec_at(l, e->last_note - 1);
        if (prev != NULL && prev->type == REC_NOTE)
            ((struct note *)prev)->next = pos + 1;
    } else {
        e->first_note = pos + 1;
    }
    e->last_note = pos + 1;
    return 1;
}

const void *ledger_next_note(const struct ledger *l, const struct ledger_ref *ref, uint64_t *cursor, size_t *n)
{
    struct entry *e = entry_at(l, ref->pos);
    uint64_t p;
    struct rec *r;

    if (e == NULL || *cursor == UINT64_MAX)
        return NULL;
    p = *cursor == 0 ? e->first_note : *cursor;
    if (p == 0 || p - 1 <= ref->pos || (r = rec_at(l, p - 1)) == NULL || r->type != REC_NOTE ||
        r->len < sizeof(struct note) || ((struct note *)r)->len > r->len - sizeof(struct note)) {
        *cursor = UINT64_MAX;
        return NULL;
    }
    /* Each note comes after the one before: a next that does not (torn)
     * ends the chain rather than loop. */
    *cursor = ((struct note *)r)->next > p ? ((struct note *)r)->next : UINT64_MAX;
    *n = ((struct note *)r)->len;
    return (struct note *)r + 1;
}
