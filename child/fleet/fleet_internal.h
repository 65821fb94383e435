/*
 * child/fleet/fleet_internal.h - what the files of fleet mode share: struct
 * fleet, and the calls between its transport (link.c), its counters
 * (counters.c) and its drain lists (drains.c).  Only those files include it;
 * every other file, the queue in Redis included, goes through fleet.h.
 */
#ifndef FCMD_CHILD_FLEET_FLEET_INTERNAL_H
#define FCMD_CHILD_FLEET_FLEET_INTERNAL_H

#include <stdint.h>
#include <uv.h>

#include "../../common/redis_url.h"
#include "../../shm/region.h"
#include "fleet.h"
#include "script.h"

#define NKEYS 5                               /* the flush script's keys */
#define NTRIPLES (SHM_NCOUNTERS + SHM_NLISTS) /* the values a flush carries: the slot's counters, the drops */

/* The largest reply most commands can bring (the totals hash, an error) is
 * a few KiB: anything far larger is not an answer to them.  A command that
 * expects more says so. */
#define REPLY_MAX_BYTES (256 * 1024)

struct link;
struct lookup;

struct fleet {
    uv_loop_t *loop;
    struct shm_region *shm;
    struct shm_slot *slot;
    struct redis_url url;
    char printable[300]; /* the URL without its password, for the log */
    char member[40];     /* "instance:slot" */
    uint64_t rng;

    /* The link (link.c). */
    struct link *link;     /* NULL while not connected or connecting */
    struct ssl_ctx_st *tls; /* rediss://: the client context (SSL_CTX), else NULL */
    struct lookup *lookup; /* the name lookup under way, NULL when none */
    uv_async_t looked_up;  /* its thread wakes the loop through this */
    int resolving;         /* a lookup is under way */
    int resolve_late;      /* ...and its answer, past the deadline, is to be ignored */
    uv_timer_t tick;       /* flushes; also the resolve, connect and reply deadlines */
    uv_timer_t retry;      /* the reconnect back-off */
    int reloading;         /* SCRIPT LOADs after a NOSCRIPT await their replies */
    int up;                /* a flush succeeded on this connection and none failed since */
    int ever_up;
    int outage;         /* an outage is logged and not yet over */
    unsigned attempt;   /* failed connects since the last success */
    unsigned probation; /* clean flushes still needed before a server that broke
                           the protocol counts as reachable again */
    uint64_t connect_at, down_since;
    void (*on_connect)(void *arg); /* fleet_on_connect() */
    void *on_connect_arg;
    char rbuf[64 * 1024]; /* libuv reads into this; the reader copies it */

    /* The counters (counters.c). */
    struct fleet_script flush_s; /* loaded by the link: until then, not connected */
    char keys[NKEYS][64];
    unsigned refusals; /* flushes refused in a row on this connection */
    char refusal[160]; /* the last refusal logged, "" when none */
    uint64_t next_flush_at;
    int inflight; /* a flush awaits its reply */
    int settling; /* a slot's settle (see settle_slot()) awaits its reply */
    unsigned settle_slot;
    uint64_t settle_sent[SHM_NCOUNTERS];
    uint64_t sent[NTRIPLES]; /* what the last flush carried */
    struct fleet_totals totals;
    int have_totals;
    uint64_t totals_at;

    /* The drain lists (drains.c). */
    struct fleet_script lists_s; /* loaded by the link after flush_s */
    char list_keys[FLEET_NLISTS][4][80]; /* the list, its in-flight set, this instance's move mark, its apps */
    int moving[FLEET_NLISTS];            /* a move awaits its reply */
    uint64_t move_seq[FLEET_NLISTS];     /* ...of this batch */
    char list_refusal[160];              /* the last refusal of a drain-list command logged */
    struct fleet_drain *drains;          /* drains not yet settled with Redis */
    uint64_t drain_lease_ms;
    uint64_t nonce, ndrains;            /* names this worker's drain keys */
    int stopping;                       /* fleet_flushed() was called: the worker stops */
    uint64_t stop_target[FLEET_NLISTS]; /* records put into each list before it began to */

    struct fleet_tokens *tokens; /* the APNs provider tokens shared (tokens.c) */

    int closed;       /* fleet_stop(): no more connecting */
    unsigned closing; /* handles fleet_free() closes that libuv has not closed yet */
};

/* ---- link.c ---- */

/* Gives the connection up and reconnects after the back-off. */
void link_drop(struct fleet *f, const char *why);

/* The server sent what no Redis would: it stays an outage until a
 * connection to it has carried FLEET_PROBATION_FLUSHES clean flushes. */
void link_drop_bad(struct fleet *f, const char *why);

/* Logs the start of an outage once (the connection is kept); link_now_up()
 * ends it. */
void link_outage_begins(struct fleet *f, const char *why);

/* A flush was counted: the worker is up, the back-off starts over. */
void link_now_up(struct fleet *f);

/* The n-th delay of the back-off, with its jitter. */
uint64_t link_backoff_ms(struct fleet *f, unsigned n);

/* Redis forgot fleet mode's scripts (NOSCRIPT): loads flush_s and lists_s
 * again on this connection, once until the loads are answered. */
void link_reload_scripts(struct fleet *f);

/* ---- tokens.c ---- */

/* Returns 0, or -1 when out of memory. */
int tokens_init(struct fleet *f);

/* Each tick, while connected: the leases, and the tokens' reads and
 * publications. */
void tokens_tick(struct fleet *f);
void tokens_free(struct fleet *f);

/* ---- counters.c ---- */

/* The flush script and its keys.  Returns 0, or -1 (see fleet_script_init()). */
int counters_init(struct fleet *f);

/* Each tick: a flush of the slot's counters (and the heartbeat, and the
 * fleet's totals back) when one is due and none awaits its answer. */
void counters_tick(struct fleet *f, uint64_t now);

/* A new connection carries fleet mode's scripts: a flush at once. */
void counters_connected(struct fleet *f);

/* ---- drains.c ---- */

/* The drain lists' script and keys, and a drain's lease.  Returns 0, or -1
 * (see fleet_script_init()). */
int drains_init(struct fleet *f, unsigned drain_lease_s);

/* Once a second, and on a new connection: batches to move, leases to renew,
 * drains' ends Redis has not heard of yet. */
void drains_tick(struct fleet *f);

/* For a stopping worker: whether Redis has still to hear how a drain ended,
 * or to take entries the lists held when the worker began to stop. */
int drains_owed(struct fleet *f);

/* At exit, after fleet_stop(): frees the drains Redis was still to hear of
 * (their leases return the entries). */
void drains_free(struct fleet *f);

#endif
