/*
 * shm/ledger.h - a bounded, keyed log in shared memory: entries found by
 * their key, each with a fixed-size body and a chain of notes written after
 * it.
 *
 * Records follow one another around a ring of a fixed number of bytes: an
 * entry (its key and body) or a note of an entry written before it.  A
 * record that does not fit makes room by dropping the oldest records, so an
 * entry always goes before its notes.  An open-addressing index finds an
 * entry by its key through SipHash (OpenSSL) under a key drawn when the
 * ledger is made, so keys a client chooses cannot crowd one bucket.  Each
 * entry has an expiry: past it, it is found no more; one dropped for room
 * before it is counted as evicted.
 *
 * Every call takes one robust process-shared mutex.  A process killed
 * while it holds it may leave the ring half-written, so the next locker
 * empties the ledger and counts what it held as lost: a ledger keeps what
 * fcmd can tell about pushes, never the pushes themselves.
 *
 * Positions are byte offsets that only grow (the ring's index is a
 * position modulo its size), so a position names one record for ever: a
 * reference kept outside the lock is checked, never trusted.
 */
#ifndef FCMD_SHM_LEDGER_H
#define FCMD_SHM_LEDGER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define LEDGER_MAX_KEY 1024   /* bytes of a key */
#define LEDGER_MAX_BODY 1024  /* bytes of an entry's body */
#define LEDGER_MAX_NOTE 16384 /* bytes of a note */
#define LEDGER_MIN_BYTES (1u << 16)
#define LEDGER_NEVER UINT64_MAX /* an expiry that never comes */

struct ledger {
    pthread_mutex_t lock;
    size_t capacity;     /* bytes of the ring */
    uint64_t head, tail; /* records live at positions [tail, head) */
    uint64_t mask;       /* index buckets - 1 */
    size_t min_entry;    /* the least bytes an entry takes (ledger_init) */
    uint64_t entries;    /* entries the index holds */
    unsigned char hash_key[16];
    _Atomic uint64_t added;   /* entries ever made */
    _Atomic uint64_t evicted; /* dropped for room before they expired */
    _Atomic uint64_t lost;    /* emptied with the ledger after a holder died */
    _Atomic uint64_t settled; /* entries their user marked done (push_status: a push finished) */
    /* then the index (mask + 1 positions + 1, 0 for an empty bucket), then the ring */
};

/* An entry found or made, valid until the lock is given back. */
struct ledger_ref {
    uint64_t pos;   /* the entry's position: checked again by ledger_get */
    void *body;     /* its body (8-byte aligned) */
    size_t body_len;
};

/* CLOCK_MONOTONIC in milliseconds: the one clock of every process. */
static inline uint64_t ledger_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* The bytes an entry with a body of body_len and a key of key_len takes in
 * the ring (notes aside); LEDGER_MIN_ENTRY is the least any entry takes. */
size_t ledger_entry_size(size_t body_len, size_t key_len);
#define LEDGER_MIN_ENTRY 64

/* Bytes a ledger with a ring of `bytes` needs, index included, when no
 * entry is smaller than min_entry bytes (ledger_entry_size of its smallest
 * body and key; entries are made at least that large): the index has twice
 * as many buckets as the ring holds such entries, so it stays under half
 * full, and no larger. */
size_t ledger_footprint(size_t bytes, size_t min_entry);

/* Initialises a ledger placed in zero-filled shared memory (a fresh
 * mapping: the index is not cleared again) with a ring of `bytes` (rounded
 * down to 8, at least LEDGER_MIN_BYTES) and entries of at least min_entry
 * bytes.  Returns 0 or -errno. */
int ledger_init(struct ledger *l, size_t bytes, size_t min_entry);

/* Puts the whole ledger, index and ring, in this process's page tables:
 * with make (the master, once) its pages are made, written over; without
 * (a worker after the fork: the pages are shared, their mapping is each
 * process's) they are mapped.  For a ledger every push writes to: a page
 * fault under its lock cost more than the rest of an entry, and made the
 * other workers wait for it. */
void ledger_map(struct ledger *l, int make);

/* Takes the lock (emptying the ledger if its holder died).  Returns 0, or
 * -1 when the lock cannot be had (then nothing may be done). */
int ledger_lock(struct ledger *l);
void ledger_unlock(struct ledger *l);

/* The hash of key in l (SipHash under l's own key).  It needs no lock, so a
 * caller computes it before taking one and holds the lock the shorter: the
 * workers of an instance contend for it on every push. */
uint64_t ledger_hash(const struct ledger *l, const void *key, size_t key_len);

/* The rest need the lock.  now_ms is CLOCK_MONOTONIC in milliseconds. */

/* The live entry of key, not expired at now_ms: 1 with *ref, or 0. */
int ledger_find(struct ledger *l, const void *key, size_t key_len, uint64_t now_ms, struct ledger_ref *ref);

/* The same with h, ledger_hash(l, key, key_len). */
int ledger_find_hashed(struct ledger *l, const void *key, size_t key_len, uint64_t h, uint64_t now_ms,
                       struct ledger_ref *ref);

/* The entry at ref->pos again, if it is still there: 1 with ref->body, or 0. */
int ledger_get(struct ledger *l, struct ledger_ref *ref);

/* Makes an entry of key with a zeroed body of body_len bytes, expiring at
 * expires_ms; an entry already there with that key is found no more.
 * Returns 1 with *ref, or 0 when key or body are too long. */
int ledger_add(struct ledger *l, const void *key, size_t key_len, size_t body_len, uint64_t expires_ms,
               uint64_t now_ms, struct ledger_ref *ref);

/* The same with h, ledger_hash(l, key, key_len). */
int ledger_add_hashed(struct ledger *l, const void *key, size_t key_len, uint64_t h, size_t body_len,
                      uint64_t expires_ms, uint64_t now_ms, struct ledger_ref *ref);

/* Sets the expiry of the entry at ref (found under this lock). */
void ledger_set_expiry(struct ledger *l, const struct ledger_ref *ref, uint64_t expires_ms);

/* Appends a note of n bytes to the entry at ref.  Returns 1 when the note
 * is in, 0 when it is too long or the room it needed was the entry's own
 * (the entry is gone then). */
int ledger_note(struct ledger *l, struct ledger_ref *ref, const void *note, size_t n, uint64_t now_ms);

/* The entry's notes in the order they were written: *cursor starts at 0;
 * returns the next note and its length, or NULL at the end. */
const void *ledger_next_note(const struct ledger *l, const struct ledger_ref *ref, uint64_t *cursor, size_t *n);

/* Entries live now (some may have expired and not been dropped yet). */
uint64_t ledger_entries(struct ledger *l);

#endif
