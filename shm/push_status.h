/*
 * shm/push_status.h - what became of each push, for GET /push/{id}: its
 * counts by outcome and its first errors, kept in a ledger (ledger.h) that
 * every worker of the instance writes and reads.
 *
 * An entry is made when a push is accepted (or taken up again from the
 * spool or the queue in Redis, when it goes on with the counts it had) and
 * is kept until --push-status-ttl after its last target's outcome; the
 * ledger's size bounds it first, dropping the oldest.
 */
#ifndef FCMD_SHM_PUSH_STATUS_H
#define FCMD_SHM_PUSH_STATUS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "../common/options.h"
#include "ledger.h"

#define PUSH_STATUS_ERRORS 100     /* errors an entry keeps, the first ones */
#define PUSH_STATUS_REASON_MAX 200 /* bytes of an error's reason kept */

enum push_outcome { PUSH_DELIVERED, PUSH_CANONICAL, PUSH_INVALID, PUSH_FAILED };

struct push_status {
    uint32_t targets;
    uint32_t delivered; /* canonical ones included */
    uint32_t canonical;
    uint32_t invalid;
    uint32_t failed;
    uint32_t errors; /* kept, at most PUSH_STATUS_ERRORS */
    uint32_t upstream;
    char app[APP_NAME_MAX + 1]; /* "" for the default app */
};

static inline uint32_t push_status_pending(const struct push_status *s)
{
    uint64_t done = (uint64_t)s->delivered + s->invalid + s->failed;

    return done >= s->targets ? 0 : s->targets - (uint32_t)done;
}

/* The entry of push id, made with targets unless it is there already (a
 * push taken up again goes on where it was).  Returns a handle for
 * push_status_outcome: the entry's position + 1, or 0 when none could be
 * made. */
/* The least an entry of the statuses takes: ledger_init's min_entry. */
static inline size_t push_status_entry_min(void)
{
    return ledger_entry_size(sizeof(struct push_status), 1);
}

uint64_t push_status_begin(struct ledger *l, const char *id, size_t id_len, const char *app, unsigned upstream,
                           uint32_t targets, uint64_t now_ms);

/* push_status_begin for a push of the worker's app index app; app_name, when not
 * NULL, is the name it keeps for an app this worker does not have (APP_NONE). */
static inline uint64_t push_status_track(struct ledger *l, const struct fcmd_options *o, const char *id, unsigned app,
                                         const char *app_name, unsigned upstream, size_t targets)
{
    const char *name = app_name != NULL ? app_name : app == APP_DEFAULT ? "" : options_app_name(o, app);

    return push_status_begin(l, id, strlen(id), name, upstream, targets > UINT32_MAX ? UINT32_MAX : (uint32_t)targets,
                             ledger_now_ms());
}

/* One target of the push whose entry handle is h reached its outcome; an
 * invalid or failed one keeps token and reason among the first errors.  The
 * last target's outcome starts the entry's ttl_ms.  An entry dropped
 * meanwhile is left alone. */
void push_status_outcome(struct ledger *l, uint64_t h, enum push_outcome o, const char *token, size_t token_len,
                         const char *reason, uint64_t now_ms, uint64_t ttl_ms);

/* A number that changes whenever a status may have stopped being pending:
 * a push finished, or a status was dropped or lost.  A waiter that saw the
 * same number last time has nothing new to look for. */
static inline uint64_t push_status_changes(struct ledger *l)
{
    return atomic_load_explicit(&l->settled, memory_order_acquire) +
           atomic_load_explicit(&l->evicted, memory_order_relaxed) + atomic_load_explicit(&l->lost, memory_order_relaxed);
}

/* Whether the status of id (hash: ledger_hash of it) is there and pending. */
int push_status_still_pending(struct ledger *l, const char *id, size_t id_len, uint64_t hash, uint64_t now_ms);

/* Copies the entry of id into *out and calls each_error (unless NULL) for
 * its errors in order (under the ledger's lock: keep it short).  Returns 1, or 0 when no
 * entry is there (never made, dropped or expired). */
int push_status_read(struct ledger *l, const char *id, size_t id_len, uint64_t now_ms, struct push_status *out,
                     void (*each_error)(void *arg, const char *token, size_t token_len, const char *reason,
                                        size_t reason_len),
                     void *arg);

#endif
