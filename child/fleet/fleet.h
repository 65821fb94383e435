/*
 * child/fleet/fleet.h - fleet mode (--redis): this worker's counters go to Redis
 * once a second, and the fleet's totals come back with the same round trip.
 *
 * Each worker has one Redis connection on its own loop (fcmd's own transport
 * around hiredis' reply parser) and never waits for it: while Redis is unreachable the counters stay in the
 * worker's shared-memory slot and are sent when it is back.  See
 * docs/FLEET.md for the keys and what the report shows.
 */
#ifndef FCMD_CHILD_FLEET_FLEET_H
#define FCMD_CHILD_FLEET_FLEET_H

#include <stdint.h>
#include <uv.h>

#include "../../shm/region.h"

#define FLEET_FLUSH_MS 1000       /* a flush (and heartbeat) per worker this often */
#define FLEET_HEARTBEAT_MS 5000   /* a worker not heard from for this long is not live */
#define FLEET_TIMEOUT_MS 3000     /* a connect or a reply taking longer counts as an outage */
#define FLEET_RETRY_MIN_MS 100    /* reconnect back-off: doubling from this... */
#define FLEET_RETRY_MAX_MS 5000   /* ...up to this */
#define FLEET_PROBATION_FLUSHES 3 /* clean flushes that end an outage caused by a bad reply */
#define FLEET_MARK_TTL_S 86400    /* Redis forgets the marks of an instance silent this long */
#define FLEET_DRAIN_MAX_BYTES (64u << 20) /* a drain's answer from Redis at most (and drain_list_bytes) */

struct fleet;
struct fleet_drain;

/* The drain lists, in Redis in fleet mode. */
enum { FLEET_CANONICAL, FLEET_NOTREGISTERED, FLEET_NLISTS };

/* A drain's records arrived (len > 0: records as drainlist_next() walks
 * them; the caller answers with them and then calls fleet_drain_finish()),
 * or the list was empty (len 0), or it failed (error set, records NULL).
 * In the last two cases the drain is settled: the caller forgets it. */
typedef void (*fleet_taken_fn)(void *arg, const unsigned char *recs, size_t len, const char *error);

/* The fleet's totals as of this worker's last flush: of sums, the counters
 * and the drops (the fields of the hash in Redis) and pending (summed over
 * live instances only); the rest is 0. */
struct fleet_totals {
    struct shm_totals sums;
    uint64_t instances; /* instances with a live worker */
    uint64_t age_ms;    /* since the flush that brought them */
};

/* Starts connecting to the (validated) URL.  The password comes from the URL,
 * or else from password (NULL for none), which the master read from
 * --redis-password-file or FCMD_REDIS_PASSWORD.  ca_file (NULL: the system's
 * store) is what a rediss:// server's certificate is checked against.
 * Returns NULL, logged, on failure. */
struct fleet *fleet_start(uv_loop_t *loop, const char *url, const char *password, const char *ca_file,
                          struct shm_region *shm, unsigned slot, unsigned drain_lease_s);

/* The reply to a command sent with fleet_command(): r is NULL when the
 * connection was dropped before it came (the command may or may not have
 * run).  r is hiredis' reply, freed when the function returns. */
struct redisReply;
typedef void (*fleet_reply_fn)(struct fleet *f, void *arg, const struct redisReply *r);

/* Whether commands can go out now: connected, and the handshake answered. */
int fleet_connected(const struct fleet *f);

/* Sends a command (argvlen NULL: C strings) on the worker's connection; fn
 * handles its reply, of at most cap bytes (a larger one drops the
 * connection).  Returns 0; -EAGAIN when too many replies are awaited
 * already (the connection kept: try again later); -ENOTCONN when not
 * connected or the connection was just dropped.  On an error fn is never
 * called for this command. */
int fleet_command(struct fleet *f, fleet_reply_fn fn, void *arg, size_t cap, int argc, const char **argv,
                  const size_t *argvlen);

/* fn(arg) runs each time a connection becomes usable (fleet_connected). */
void fleet_on_connect(struct fleet *f, void (*fn)(void *arg), void *arg);

/* Whether this worker's last flush reached Redis and was counted. */
int fleet_ready(const struct fleet *f);

/* Copies the fleet's totals.  Returns 0, or -1 while Redis is unreachable or
 * before the first flush has been answered. */
int fleet_totals(const struct fleet *f, struct fleet_totals *out);

/* For a stopping worker: 1 once everything it counted is in Redis;
 * otherwise starts a last flush if none is under way and returns 0.  While
 * Redis cannot be reached, a worker that a reload replaces returns 1 (its
 * slot keeps the counts for the instance's next workers to send), and a
 * worker of a whole instance's stop returns 0 while it owes Redis anything,
 * reconnecting meanwhile.  The caller polls it until 1 or its deadline. */
int fleet_flushed(struct fleet *f);

/* Whose entries a drain takes: every app's (FLEET_DRAIN_ALL), those of the
 * n apps named (FLEET_DRAIN_ONLY), or every app's but theirs
 * (FLEET_DRAIN_EXCEPT).  A name is an app's, "" the default app's: the
 * fleet's apps are known by name, since their rows differ by instance. */
enum { FLEET_DRAIN_ALL, FLEET_DRAIN_ONLY, FLEET_DRAIN_EXCEPT };
struct fleet_drain_apps {
    int mode;
    size_t n; /* at most APPS_MAX + 1 */
    const char *const *names;
};

/* Takes up to budget bytes of the records of the apps apps names from a
 * fleet list (at least one record), each app's list in Redis in turn, and
 * parks them in Redis under a lease this worker renews; cb gets them, each
 * record's tag 0.  NULL when Redis cannot be reached now (answer 503). */
struct fleet_drain *fleet_drain_take(struct fleet *f, int list, size_t budget, const struct fleet_drain_apps *apps,
                                     fleet_taken_fn cb, void *arg);

/* At a worker's exit, first: the connection goes, and whatever awaits a
 * reply is told at once that it will not come (r NULL), as when a
 * connection drops; nothing reconnects, and a name lookup still under way
 * is left to its thread.  The queue in Redis, which sends its commands on
 * this connection, is freed after this, and the fleet after that. */
void fleet_stop(struct fleet *f);

/* Frees f, its memory once libuv has closed its handles. */
void fleet_free(struct fleet *f);

/* The answer with a drain's records was written (they are gone for good),
 * or not (they return to the list's head).  Before cb has run: the caller
 * went away; cb is then never called and the records return. */
void fleet_drain_finish(struct fleet_drain *d, int written);

#endif
