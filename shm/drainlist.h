/*
 * shm/drainlist.h - a bounded list of byte records in shared memory.
 *
 * Any process appends; a drain takes every record at once, so each record is
 * handed out exactly once across all children; an answer that could not be
 * sent gives its records back.  Records live in a fixed arena
 * and the list never grows: an append that does not fit is counted as dropped.
 * The lock is a robust process-shared mutex, so a child killed while holding
 * it cannot wedge the others.
 */
#ifndef FCMD_SHM_DRAINLIST_H
#define FCMD_SHM_DRAINLIST_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define DRAINLIST_MAX_RECORD 65535

/* Every record begins with a tag byte (fcmd tags each with its app's row in
 * the region's app table, 0 to 63), so a drain may take the records of some
 * tags and leave the others.  A record such a drain took is marked
 * DRAINLIST_TAKEN where it lies until the records after it are gone too. */
#define DRAINLIST_TAKEN 0xffu
#define DRAINLIST_ALL UINT64_MAX /* a drain of every tag */

/*
 * Fleet mode moves records to Redis in batches: a batch is reserved at the
 * head of the list, sent under its sequence number, and leaves the list
 * only when Redis has confirmed it (drainlist_commit).  Until then any
 * worker may send the same batch again (Redis applies a sequence number
 * once), so a worker dying in between loses nothing and doubles nothing.
 * Records are in arena[head, used); every change that spans several
 * fields is ordered so that a holder killed half-way leaves a list the next
 * locker can repair (see drainlist.c).
 */
struct drainlist {
    pthread_mutex_t lock;
    size_t capacity; /* bytes in arena[] */
    size_t used;     /* end of the committed bytes; written last, so a torn append is invisible */
    uint64_t count;  /* committed records; counted again from the bytes when a holder died */
    _Atomic uint64_t dropped;
    size_t head;                   /* start of the records; > 0 only in fleet mode */
    uint64_t batch_seq;            /* the last batch number handed out */
    size_t batch_start, batch_end; /* the batch being moved: valid while head == batch_start < batch_end */
    uint64_t batch_lease;          /* monotonic ms until which its mover is trusted to finish */
    uint32_t batch_owner;          /* that mover (a worker slot + 1) */
    size_t compact_len;            /* a compaction's length... */
    int compacting;                /* ...while it moves the records to the arena's start */
    uint64_t added, removed;       /* records ever put in and taken out (moved, drained) */
    /* A squeeze (drainlist.c) moves the live records down over the taken
     * ones, record by record, in chunks no longer than the gap between
     * them, so each step can be done again by a locker that finds it
     * half-way: */
    int squeezing;            /* set while one is under way */
    size_t sq_end;            /* `used` when it began */
    size_t sq_read, sq_write; /* the record being moved (or next to look at), and where it goes */
    size_t sq_len, sq_done;   /* its length with its header (0: between records), and the bytes moved */
    size_t sq_next, sq_wnext; /* sq_read and sq_write once it is moved */
    size_t taken_bytes;       /* bytes of the records marked taken: what a squeeze would free */
    unsigned char arena[];
};

/* Bytes a list of `capacity` arena bytes needs. */
size_t drainlist_footprint(size_t capacity);

/* Initialises a list placed in shared memory.  Returns 0 or -errno. */
int drainlist_init(struct drainlist *l, size_t capacity);

/* Appends one record: the tag (below 64), then two parts (the second may be
 * empty). Returns 0, or -1 when the record does not fit (it is then counted
 * in `dropped`). */
int drainlist_append(struct drainlist *l, unsigned tag, const void *a, size_t alen, const void *b, size_t blen);

/* Takes every record whose tag is a bit of tags (DRAINLIST_ALL: every
 * record), leaving the others where they are: a malloc'd copy of them goes
 * to *out (NULL when none), its length to *len and the record count to
 * *count.  Returns 0, or -1 when memory ran out (the list is then left
 * intact). */
int drainlist_drain(struct drainlist *l, uint64_t tags, unsigned char **out, size_t *len, uint64_t *count);

/* Puts records taken by drainlist_drain back into the list (after those
 * appended since), for an answer that never went out.  What no longer fits (the list filled up
 * meanwhile) is counted in `dropped`.  Returns the records put back. */
uint64_t drainlist_giveback(struct drainlist *l, const unsigned char *recs, size_t len, uint64_t count);

/* Walks a drained buffer: returns the next record (its tag first) and its
 * length, or NULL at the end.  *pos starts at 0. */
const unsigned char *drainlist_next(const unsigned char *buf, size_t len, size_t *pos, size_t *rec_len);

uint64_t drainlist_dropped(const struct drainlist *l);

/* The records the list holds now, and their bytes (of `capacity`), read
 * under the lock and leaving the list as it is: what a drain would take. */
void drainlist_size(struct drainlist *l, uint64_t *records, uint64_t *bytes);

/* Fleet mode: the batch owner (a worker slot + 1) sends to Redis now, as
 * whole records from the head, at most max bytes (at least one record).  A
 * batch already reserved by another owner whose lease has not run out
 * (now_ms, monotonic) is not this one's: returns 1.  Otherwise returns 0 with a malloc'd copy in *out (NULL when the
 * list is empty), its length, record count and sequence number; the lease runs to now_ms + lease_ms.  A batch whose
 * mover went away (lease over) is handed out again as it was, under the same number.  -1: out of memory. */
int drainlist_reserve(struct drainlist *l, uint32_t owner, size_t max, uint64_t now_ms, uint64_t lease_ms,
                      unsigned char **out, size_t *len, uint64_t *count, uint64_t *seq);

/* Redis confirmed batch seq: its records leave the list.  A batch already
 * committed (by another worker that sent it too) is not removed twice. */
void drainlist_commit(struct drainlist *l, uint64_t seq);

/* Records ever put into the list and ever taken out of it: once removed
 * reaches an earlier added, everything in the list then has left it. */
void drainlist_progress(struct drainlist *l, uint64_t *added, uint64_t *removed);

#endif
