/*
 * child/store/spool.h - the durable spool (--spool DIR).
 *
 * Each child appends every push it accepts to a segment file of its own
 * before it answers, and an acknowledgement when targets finish.  A child
 * holds an exclusive flock on each segment it writes; a segment nobody
 * holds belongs to a child that died, and any live child may adopt it:
 * queue its unacknowledged targets (as the queue has room), acknowledge
 * them in that same file, and delete it when they are all finished.
 * Segment names are random, never derived from a process id.
 */
#ifndef FCMD_CHILD_STORE_SPOOL_H
#define FCMD_CHILD_STORE_SPOOL_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "../core/request.h"

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

/* A caller's place in the list of those waiting for a sync: the caller
 * owns it, so waiting never allocates and never fails. */
struct spool_waiter {
    struct spool_waiter *next;
    void (*done)(void *arg, int ok);
    void *arg;
};

/* Opens the spool of a child.  on_replay(arg) runs after targets of an
 * adopted segment were queued.  NULL when it cannot (logged). */
struct spool *spool_open(uv_loop_t *loop, const struct fcmd_options *o, struct shm_region *shm, struct shm_slot *slot,
                         struct queue *q, const struct request_limits *intake, void (*on_replay)(void *), void *arg);

/* Whether bytes more fit under spool_max_bytes (all children together; the
 * other children's bytes as read at most a millisecond ago). */
int spool_has_room(struct spool *s, size_t bytes);

/* Writes a push record for r.  Returns 0, or -1 when the write failed. */
int spool_append(struct spool *s, const struct send_request *r, struct spool_mark *m);

/* Whether the spool takes writes: 0 after a failed write, until a write
 * (or the periodic probe) succeeds again. */
int spool_ready(const struct spool *s);

/* Ties the push to its record. */
void spool_bind(struct spool *s, const struct spool_mark *m, struct push *p);

/* The record at m will not be delivered (it was never answered 200): all
 * its targets are acknowledged, as far as that can still be written. */
void spool_forget(struct spool *s, const struct spool_mark *m, size_t ntargets);

/* Records that targets (by index) of p reached a final outcome. */
void spool_ack(struct spool *s, struct push *p, const uint32_t *indexes, size_t n);

/* The last target of p finished. */
void spool_push_done(struct spool *s, struct push *p);

/* Calls done(arg, ok) once what was appended so far is durable under the
 * fsync policy, or is known not to be (ok = 0), or with ok = -1 when the
 * worker stops first (spool_close): the record stays as it was written,
 * neither synced nor forgotten.  Returns 1 when that will happen later, 0
 * when the policy needs no wait (done is then not called). */
int spool_commit(struct spool *s, struct spool_waiter *w, void (*done)(void *arg, int ok), void *arg);

/* ---- webhook events ---- */

/* With a webhook: the event (its event_id and JSON text) of an outcome of
 * push p waits in p's segment, written with its acknowledgements, until
 * spool_event_done.  Returns that segment, held for the event, or NULL when
 * p has none (the event then lives in memory only). */
struct segment *spool_event_keep(struct spool *s, const struct push *p, uint64_t at_ms, const char *app,
                                 size_t app_len, const char *id, size_t id_len, const char *text, size_t len);

/* The receiver acknowledged the n events ids[i] kept in g (or they were
 * dropped for good): they are not read back, and g lets go of them. */
void spool_event_done(struct spool *s, struct segment *g, const char *const *ids, const uint8_t *lens, size_t n);

/* Told, on the loop, of each event an adopted segment holds that its
 * receiver has not acknowledged: returns 1 when it took the event (it
 * calls spool_event_done for it later), 0 when it drops it (no webhook
 * for its app: acknowledged at once). */
typedef int spool_event_fn(void *arg, struct segment *g, uint64_t at_ms, const char *app, size_t app_len,
                           const char *id, size_t id_len, const char *text, size_t len);
void spool_on_events(struct spool *s, spool_event_fn *fn, void *arg);

/* Adopts orphaned segments. */
void spool_scan(struct spool *s);

/* The child stops: no more adopting, no more feeding the queue. */
void spool_stop(struct spool *s);

/* At exit: writes the acknowledgements still due, lets go of those
 * waiting for a sync (see spool_commit), deletes finished segments and
 * closes the rest, unlocked for the next child.  s is freed once libuv has
 * closed its handles and the thread pool has given back its syncs and
 * adoptions, as the loop runs on. */
void spool_close(struct spool *s);

/* Parses the --spool-fsync word; -1 when unknown. */
int spool_fsync_policy(const char *word);

#endif
