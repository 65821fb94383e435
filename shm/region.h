/*
 * shm/region.h - the shared region: per-slot counters and the two drain lists.
 *
 * The master maps one anonymous MAP_SHARED region before the first fork, so
 * every child sees the same bytes.  Each child owns one slot.  While it
 * lives, the master writes only the slot's pid (after the fork) and ready
 * (cleared before it); the child writes everything else.  Once the child is
 * dead, the master clears both and settles the rest (pending into lost,
 * gauges to zero).  A report is the sum over all slots, which makes it the
 * same whichever child answers.  The drain lists are shared by everybody
 * and guarded by a robust process-shared mutex (see drainlist.h).
 */
#ifndef FCMD_SHM_REGION_H
#define FCMD_SHM_REGION_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "../common/options.h"
#include "../common/providers.h"
#include "drainlist.h"
#include "ledger.h"
#include "metrics.h"
#include "provider_token.h"

#define SHM_MAGIC 0x66636d64u /* "fcmd" */
#define SHM_VERSION 10u
#define SHM_MAX_SLOTS 256

/* The same outcomes per upstream (one set per line of FCMD_PROVIDERS, in
 * its order): the totals stay the sums. */
#define SHM_UPSTREAMS PROVIDERS
extern const char *const shm_upstream_names[SHM_UPSTREAMS];

struct shm_slot {
    _Atomic uint64_t counters[SHM_NCOUNTERS];
    _Atomic uint64_t by_upstream[SHM_UPSTREAMS][SHM_UP_NCOUNTERS];
    _Atomic int64_t pending;   /* accepted and not yet finished */
    _Atomic int32_t pid;       /* owner, 0 when free (set by the master) */
    _Atomic uint64_t no_token; /* bit i: the child's app i has no usable access token */
    _Atomic int32_t ready;     /* 1 once the child accepts connections */
    _Atomic int64_t gauges[SHM_NGAUGES];
    _Atomic uint64_t failures_by[CAUSE_COUNT];
    _Atomic uint64_t retries_by[CAUSE_COUNT];
    _Atomic uint64_t http[EP_COUNT][HTTP_STATUS_COUNT];
    struct histogram upstream_latency;
    struct histogram send_latency;
    /* Fleet mode: the counters as of the last flush Redis confirmed, so a
     * respawned child goes on from there (child/fleet/fleet.c). */
    _Atomic uint64_t fleet_base[SHM_NCOUNTERS];
    _Atomic uint64_t webhook[SHM_WEBHOOK_NCOUNTERS];
};

/* The apps' rows: row 0 is the default app's, rows 1.. are named apps'.  The
 * master gives each app of a new generation a row: its row under the
 * generation before (same name), else one never used, else the row of an app
 * that no running generation has (its counts start again at zero).  A removed
 * app's row keeps its counts until it is reused. */
#define SHM_APPS (APPS_MAX + 1)
struct shm_app {
    char name[APP_NAME_MAX + 1]; /* written by the master before the generation that uses it is forked */
    _Atomic uint64_t by_upstream[SHM_UPSTREAMS][SHM_UP_NCOUNTERS];
    struct provider_token apns_token; /* the app's APNs provider token, shared by every worker */
};

struct shm_region {
    uint32_t magic;
    uint32_t version;
    size_t size; /* bytes mapped, for munmap */
    _Atomic uint64_t started_at;
    _Atomic uint32_t workers;          /* configured child count */
    char instance[17];                 /* this run's random id in hex, named in Redis (fleet mode) */
    _Atomic uint32_t stopping_all;     /* set by the master: the whole instance stops, no worker follows */
    _Atomic uint32_t stop_wait_logged; /* fleet mode: a worker has logged waiting for Redis at the stop */
    _Atomic uint64_t fleet_dropped_base[SHM_NLISTS]; /* the drops Redis confirmed, by list */
    _Atomic int64_t webhook_bytes; /* what every worker's webhook events hold: reserved before an event is made */
    struct shm_slot slots[SHM_MAX_SLOTS];
    struct shm_app apps[SHM_APPS];
    struct drainlist *canonical;     /* records: original '\0' canonical */
    struct drainlist *notregistered; /* records: token */
    struct ledger *push_status;      /* by push id (push_status.h) */
    struct ledger *idempotency;      /* by app and Idempotency-Key, without --redis */
};

/* Totals over every slot, for reports; the counter table (shm/metrics.h)
 * names each value. */
struct shm_totals {
    uint64_t counters[SHM_NCOUNTERS];
    uint64_t by_upstream[SHM_UPSTREAMS][SHM_UP_NCOUNTERS];
    uint64_t apns_tokens_made; /* APNs provider tokens made */
    int64_t pending;
    int64_t gauges[SHM_NGAUGES];
    uint64_t failures_by[CAUSE_COUNT];
    uint64_t retries_by[CAUSE_COUNT];
    uint64_t http[EP_COUNT][HTTP_STATUS_COUNT];
    uint64_t upstream_latency[HIST_BUCKETS], upstream_latency_count, upstream_latency_sum_us;
    uint64_t send_latency[HIST_BUCKETS], send_latency_count, send_latency_sum_us;
    uint64_t children;          /* children alive */
    uint64_t workers;           /* children configured */
    uint64_t waiting_for_token; /* children that have no usable access token */
    uint64_t uptime_seconds;
    uint64_t dropped[SHM_NLISTS];      /* drain-list records that did not fit, by list */
    uint64_t list_records[SHM_NLISTS]; /* records each drain list holds now */
    uint64_t list_bytes[SHM_NLISTS];   /* the bytes they take... */
    uint64_t list_capacity;            /* ...of the bytes each list holds (--drain-list-bytes) */
    uint64_t push_statuses;       /* entries of the push statuses */
    uint64_t push_status_evicted; /* dropped for room before their time */
    uint64_t push_status_lost;    /* forgotten with a ledger a dying writer may have torn */
    uint64_t webhook[SHM_WEBHOOK_NCOUNTERS];
    uint64_t webhook_oldest_seconds; /* the age of the oldest event waiting, 0 for none */
};

/* Maps and initialises a region whose drain lists hold list_bytes each, and
 * names the instance with 64 random bits.  Returns NULL with errno set on
 * failure. */
struct shm_region *shm_region_create(size_t list_bytes, size_t status_bytes, size_t idem_bytes);
void shm_region_destroy(struct shm_region *r);

static inline void shm_add(struct shm_slot *s, enum shm_counter c, uint64_t n)
{
    atomic_fetch_add_explicit(&s->counters[c], n, memory_order_relaxed);
}

static inline void shm_up_add(struct shm_slot *s, unsigned upstream, enum shm_upstream_counter c, uint64_t n)
{
    if (upstream < SHM_UPSTREAMS)
        atomic_fetch_add_explicit(&s->by_upstream[upstream][c], n, memory_order_relaxed);
}

/* The row that counts the outcomes of app index a (0 the default app, i
 * o->apps[i - 1]); SHM_APPS, which counts nowhere, for APP_NONE. */
static inline unsigned shm_app_row_of(const struct fcmd_options *o, unsigned a)
{
    if (a == APP_DEFAULT)
        return 0;
    return a <= o->napps ? o->apps[a - 1].shm : SHM_APPS;
}

/* The same, counted for the app in row app as well. */
static inline void shm_app_add(struct shm_region *r, struct shm_slot *s, unsigned app, unsigned upstream,
                               enum shm_upstream_counter c, uint64_t n)
{
    shm_up_add(s, upstream, c, n);
    if (app < SHM_APPS && upstream < SHM_UPSTREAMS)
        atomic_fetch_add_explicit(&r->apps[app].by_upstream[upstream][c], n, memory_order_relaxed);
}

/* Gives each of the n apps a row (see struct shm_app), rows[i] app i's: an
 * app keeps the row its name has; a new one takes a row never used, else
 * one that neither apps nor the running generation's apps (nrunning of them,
 * running may be NULL) name.  Returns 0, or -ENOSPC. */
int shm_apps_assign(struct shm_region *r, const struct fcmd_app *apps, size_t n, const struct fcmd_app *running,
                    size_t nrunning, unsigned *rows);

/* The row named name, or -1. */
int shm_app_row(const struct shm_region *r, const char *name);

static inline void shm_gauge_set(struct shm_slot *s, enum shm_gauge g, int64_t v)
{
    atomic_store_explicit(&s->gauges[g], v, memory_order_relaxed);
}

static inline void shm_pending_add(struct shm_slot *s, int64_t n)
{
    atomic_fetch_add_explicit(&s->pending, n, memory_order_relaxed);
}

/* Sums every slot into out (of the spool's bound, which each worker holds,
 * the largest), with the instance's drops, the drain lists' sizes (under
 * their locks, never draining), configured workers and uptime. */
void shm_sum(const struct shm_region *r, struct shm_totals *out);

/* Called by the master once a child is reaped: its unfinished targets can no
 * longer finish there, so they move from pending to lost - or, with a spool,
 * to left-in-spool: another worker adopts them, and counts them again in
 * pending and replayed; with the queue in Redis, to nothing: another worker
 * claims their entries and counts them when they finish.  Returns how many. */
enum shm_settle { SHM_SETTLE_LOST, SHM_SETTLE_SPOOLED, SHM_SETTLE_QUEUED };
int64_t shm_settle_slot(struct shm_region *r, unsigned slot, enum shm_settle how);

#endif
