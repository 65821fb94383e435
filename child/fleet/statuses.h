/*
 * child/fleet/statuses.h - push statuses for the whole fleet (--redis): each
 * worker adds what it learnt of its pushes to one small hash per push in
 * Redis, fcmd:push:ID, so that GET /push/{id} through any instance tells
 * what every instance did with the push.
 *
 * Outcomes are summed per push in the worker and go to Redis in one script
 * every FLEET_STATUS_FLUSH_MS (never a round trip per target).  Redis keeps
 * a hash FLEET_STATUS_PENDING_TTL_S while its push is pending and
 * --push-status-ttl once it is done.  The instance's shared-memory statuses
 * stay as they are: they answer at once, Redis for the fleet.
 */
#ifndef FCMD_CHILD_FLEET_STATUSES_H
#define FCMD_CHILD_FLEET_STATUSES_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "../../common/options.h"
#include "../../shm/push_status.h"
#include "status_record.h"

#define FLEET_STATUS_FLUSH_MS 200        /* the batch goes this often */
#define FLEET_STATUS_BEGIN_HOLD_MS 1000  /* a push with no outcome yet waits this long to go: most are
                                            done by then, and then go once */
#define FLEET_STATUS_PENDING_TTL_S 86400 /* a pending push's hash, from its last change */
#define FLEET_STATUS_MAX_PUSHES 65536    /* pushes a worker keeps changes of until Redis takes them */
#define FLEET_STATUS_BATCH 2048          /* pushes in one script */
#define FLEET_STATUS_TOKEN_MAX 4096      /* bytes of an error's token kept in Redis */
#define FLEET_STATUS_ERROR_BYTES (8u << 20) /* errors a worker keeps until Redis takes them */
#define FLEET_STATUS_GETS_MAX 16         /* reads awaiting Redis per worker: the connection serves the queue too */

struct fleet;
struct fleet_statuses;

/* Outcomes left out of Redis are counted in slot (SHM_FLEET_STATUS_LOST). */
struct shm_slot;
struct fleet_statuses *fleet_statuses_new(uv_loop_t *loop, struct fleet *f, const struct fcmd_options *o,
                                          struct shm_slot *slot);

/* A push accepted here: its hash gets its targets, app and upstream.  app is
 * "" for the default app. */
void fleet_statuses_begin(struct fleet_statuses *fs, const char *id, const char *app, unsigned upstream,
                          uint32_t targets);

/* One target of a push reached its final outcome here (token and reason for
 * an invalid or failed one). */
void fleet_statuses_outcome(struct fleet_statuses *fs, const char *id, const char *app, unsigned upstream,
                            uint32_t targets, enum push_outcome o, const char *token, size_t token_len,
                            const char *reason);

/* What Redis holds of a push: rc 1 with *s and e (valid during the call
 * only), 0 when it holds nothing, -1 when Redis did not answer or refused. */
typedef void fleet_status_fn(void *arg, int rc, const struct push_status *s, const struct status_record_errors *e);

/* Asks Redis for id's hash; fn gets the answer (always, also when the
 * connection drops first).  Returns 0; -EAGAIN when FLEET_STATUS_GETS_MAX
 * reads (or the connection's most replies) are awaited already: ask again
 * later; -ENOTCONN when Redis cannot be asked now.  fn is called only
 * after 0. */
int fleet_statuses_get(struct fleet_statuses *fs, const char *id, size_t id_len, fleet_status_fn *fn, void *arg);

/* Pushes whose changes Redis has not taken yet. */
size_t fleet_statuses_unsent(const struct fleet_statuses *fs);

/* For a stopping worker: 1 once Redis took every change (or cannot be
 * reached: the changes then go with the worker); otherwise sends the next
 * batch if none is under way and returns 0. */
int fleet_statuses_settled(struct fleet_statuses *fs);

/* At exit, after fleet_stop(): frees fs (its handle once libuv closed it). */
void fleet_statuses_free(struct fleet_statuses *fs);

#endif
