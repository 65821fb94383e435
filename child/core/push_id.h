/*
 * child/core/push_id.h - the id of a push, made by the worker alone.
 *
 * An id names one accepted request across the fleet: 16 bytes, written as
 * 22 characters of base64url without padding.  The first 8 bytes are
 * drawn from getrandom() once, when the worker starts; the last 8 are a
 * counter, started at a random value drawn with them and counted up for
 * each push.  No id costs a system call, and two workers (of one instance
 * or of two, before or after a restart) make the same id only if they drew
 * the same 64 random bits: docs/ARCHITECTURE.md, "Push ids", says why that
 * is enough.  Ids are not secrets: two ids of one worker tell how many
 * pushes it took between them.
 */
#ifndef FCMD_CHILD_CORE_PUSH_ID_H
#define FCMD_CHILD_CORE_PUSH_ID_H

#include <stddef.h>
#include <stdint.h>

#define PUSH_ID_MAX 64 /* characters an id may have (contract §10) */
#define PUSH_ID_LEN 22 /* characters of the ids this version makes */

struct push_ids {
    uint64_t prefix; /* random, per worker start */
    uint64_t next;   /* the counter */
};

/* Draws the prefix and the counter's start.  Should getrandom() fail,
 * they come from the clocks and the process id instead, with a warning in
 * the log: ids are then only as unique as those make them. */
void push_ids_init(struct push_ids *g);

/* Writes the next id, NUL-terminated, to out; returns its length. */
size_t push_id_make(struct push_ids *g, char out[PUSH_ID_MAX + 1]);

/* Whether s (n bytes) is an id another fcmd may have made: 1 to PUSH_ID_MAX
 * characters of [A-Za-z0-9_-]. */
int push_id_ok(const char *s, size_t n);

#endif
