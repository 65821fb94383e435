/*
 * child/fleet.h - fleet mode (--redis): this worker's counters go to Redis
 * once a second, and the fleet's totals come back with the same round trip.
 *
 * Each worker has one Redis connection on its own loop (fcmd's own transport
 * around hiredis' reply parser) and never waits for it: while Redis is unreachable the counters stay in the
 * worker's shared-memory slot and are sent when it is back.  See
 * docs/FLEET.md for the keys and what the report shows.
 */
#ifndef FCMD_CHILD_FLEET_H
#define FCMD_CHILD_FLEET_H

#include <stdint.h>
#include <uv.h>

#include "../shm/region.h"

#define FLEET_FLUSH_MS 1000       /* a flush (and heartbeat) per worker this often */
#define FLEET_HEARTBEAT_MS 5000   /* a worker not heard from for this long is not live */
#define FLEET_TIMEOUT_MS 3000     /* a connect or a reply taking longer counts as an outage */
#define FLEET_RETRY_MIN_MS 100    /* reconnect back-off: doubling from this... */
#define FLEET_RETRY_MAX_MS 5000   /* ...up to this */
#define FLEET_PROBATION_FLUSHES 3 /* clean flushes that end an outage caused by a bad reply */
#define FLEET_MARK_TTL_S 86400    /* Redis forgets the marks of an instance silent this long */

struct fleet;

/* The fleet's totals as of this worker's last flush. */
struct fleet_totals {
    uint64_t counters[SHM_NCOUNTERS];
    uint64_t canonical_dropped, notregistered_dropped;
    int64_t pending;    /* summed over live instances only */
    uint64_t instances; /* instances with a live worker */
    uint64_t age_ms;    /* since the flush that brought them */
};

/* Starts connecting to the (validated) URL.  The password comes from the URL,
 * or else from password (NULL for none), which the master read from
 * --redis-password-file or FCMD_REDIS_PASSWORD.  Returns NULL, logged, on
 * failure. */
struct fleet *fleet_start(uv_loop_t *loop, const char *url, const char *password, struct shm_region *shm,
                          unsigned slot);

/* Whether this worker's last flush reached Redis and was counted. */
int fleet_ready(const struct fleet *f);

/* Copies the fleet's totals.  Returns 0, or -1 while Redis is unreachable or
 * before the first flush has been answered. */
int fleet_totals(const struct fleet *f, struct fleet_totals *out);

/* For a stopping worker: 1 once everything it counted is in Redis, or Redis
 * cannot be reached; otherwise starts a last flush if none is under way and
 * returns 0.  The caller polls it until 1 or its deadline. */
int fleet_flushed(struct fleet *f);

/* For the master once every worker has gone: logs the counts no flush got
 * confirmed (Redis down, or the last flush past the stop deadline), which
 * will never reach the fleet's totals. */
void fleet_log_unconfirmed(const struct shm_region *shm);

#endif
