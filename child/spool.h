/*
 * child/spool.h - the durable spool (--spool DIR).
 *
 * Each child appends every push it accepts to a segment file of its own
 * before it answers, and an acknowledgement when targets finish.  A child
 * holds an exclusive flock on each segment it writes; a segment nobody
 * holds belongs to a child that died, and any live child may claim it,
 * re-spool its unacknowledged targets as its own and delete it.
 */
#ifndef FCMD_CHILD_SPOOL_H
#define FCMD_CHILD_SPOOL_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "request.h"

struct fcmd_options;
struct push;
struct queue;
struct shm_region;
struct shm_slot;
struct spool;
struct segment;

enum spool_fsync { SPOOL_FSYNC_NEVER, SPOOL_FSYNC_BATCH, SPOOL_FSYNC_ALWAYS };

/* Where a push was written. */
struct spool_mark {
    struct segment *seg;
    uint64_t id;
};

/* Opens the spool of a child.  on_replay(arg) runs after targets were
 * re-queued from an orphaned segment.  NULL when it cannot (logged). */
struct spool *spool_open(uv_loop_t *loop, const struct fcmd_options *o, struct shm_region *shm, struct shm_slot *slot,
                         struct queue *q, void (*on_replay)(void *), void *arg);

/* Whether bytes more fit under spool_max_bytes (all children together; the
 * other children's bytes as read at most a millisecond ago). */
int spool_has_room(struct spool *s, size_t bytes);

/* Writes a push record for r.  Returns 0, or -1 when the write failed. */
int spool_append(struct spool *s, const struct send_request *r, struct spool_mark *m);

/* Ties the queued push to its record. */
void spool_bind(struct spool *s, const struct spool_mark *m, struct push *p);

/* Records that targets (by index) of p reached a final outcome. */
void spool_ack(struct spool *s, struct push *p, const uint32_t *indexes, size_t n);

/* Acknowledges every target of a record whose push could not be queued. */
void spool_ack_all(struct spool *s, const struct spool_mark *m, size_t ntargets);

/* The last target of p finished. */
void spool_push_done(struct spool *s, struct push *p);

/* Calls done(arg, ok) once what was appended so far is durable under the
 * fsync policy.  Returns 1 when that will happen later, 0 when the policy
 * needs no wait (done is then not called). */
int spool_commit(struct spool *s, void (*done)(void *arg, int ok), void *arg);

/* Claims and replays orphaned segments. */
void spool_scan(struct spool *s);

/* At exit: deletes finished segments and lets go of the rest. */
void spool_close(struct spool *s);

/* Parses the --spool-fsync word; -1 when unknown. */
int spool_fsync_policy(const char *word);

#endif
