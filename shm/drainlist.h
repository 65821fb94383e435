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

struct drainlist {
    pthread_mutex_t lock;
    size_t capacity; /* bytes in arena[] */
    size_t used;     /* committed bytes; moved last, so a torn append is invisible */
    uint64_t count;  /* records in those bytes; moved just before used, so counted
                        again from them when a holder died */
    _Atomic uint64_t dropped;
    unsigned char arena[];
};

/* Bytes a list of `capacity` arena bytes needs. */
size_t drainlist_footprint(size_t capacity);

/* Initialises a list placed in shared memory.  Returns 0 or -errno. */
int drainlist_init(struct drainlist *l, size_t capacity);

/* Appends one record made of two parts (the second may be empty). Returns 0,
 * or -1 when the record does not fit (it is then counted in `dropped`). */
int drainlist_append(struct drainlist *l, const void *a, size_t alen, const void *b, size_t blen);

/* Takes every record: a malloc'd copy of the arena goes to *out (NULL when the
 * list was empty), its length to *len and the record count to *count.
 * Returns 0, or -1 when memory ran out (the list is then left intact). */
int drainlist_drain(struct drainlist *l, unsigned char **out, size_t *len, uint64_t *count);

/* Puts records taken by drainlist_drain back into the list (after those
 * appended since), for an answer that never went out.  What no longer fits (the list filled up
 * meanwhile) is counted in `dropped`.  Returns the records put back. */
uint64_t drainlist_giveback(struct drainlist *l, const unsigned char *recs, size_t len, uint64_t count);

/* Walks a drained buffer: returns the next record and its length, or NULL at
 * the end.  *pos starts at 0. */
const unsigned char *drainlist_next(const unsigned char *buf, size_t len, size_t *pos, size_t *rec_len);

uint64_t drainlist_dropped(const struct drainlist *l);

#endif
