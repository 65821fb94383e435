/*
 * child/fleet/counters.c - fleet mode's counters: a worker's counters in
 * Redis, the fleet's totals back.
 *
 * The one idea: a flush sends the slot's absolute counters, and a Lua script
 * adds to the fleet's totals only what exceeds the (instance, slot) mark it
 * keeps, so a flush resent after a lost reply, or sent again by a respawned
 * worker (or by another worker, for a slot left over), adds nothing twice.
 */
#include "fleet_internal.h"
#include "../../common/log.h"
#include "../../shm/drainlist.h"

#include <errno.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NARGS (3 + NKEYS + 5 + 3 * NTRIPLES)

/*
 * KEYS: 1 totals (hash), 2 this slot's marks, 3 this instance's drain-list
 * marks, 4 pending per live worker (hash), 5 live workers (zset, score =
 * expiry in ms of Redis' clock).  ARGV: 1 member "instance:slot", 2 its
 * pending, 3 heartbeat ms, 4 mark ttl s, 5 n slot fields, then (field,
 * value, base) triples: n for the slot, the rest for the instance.  A base is
 * what the worker knows Redis has already counted, should a mark expire.
 * Returns {totals as HGETALL, live instances, pending of live workers}.
 */
static const char flush_script[] =
    "local function add(mark, f, v, base)\n"
    "  local old = tonumber(redis.call('HGET', mark, f) or '0')\n"
    "  if base > old then old = base end\n"
    "  if v > old then\n"
    "    redis.call('HINCRBY', KEYS[1], f, v - old)\n"
    "    redis.call('HSET', mark, f, v)\n"
    "  end\n"
    "end\n"
    "local n, i = tonumber(ARGV[5]), 6\n"
    "while i + 2 <= #ARGV do\n"
    "  local mark = KEYS[2]\n"
    "  if (i - 6) / 3 >= n then mark = KEYS[3] end\n"
    "  add(mark, ARGV[i], tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2]))\n"
    "  i = i + 3\n"
    "end\n"
    "redis.call('EXPIRE', KEYS[2], ARGV[4])\n"
    "redis.call('EXPIRE', KEYS[3], ARGV[4])\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "redis.call('HSET', KEYS[4], ARGV[1], ARGV[2])\n"
    "redis.call('ZADD', KEYS[5], now + tonumber(ARGV[3]), ARGV[1])\n"
    "for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', now)) do\n"
    "  redis.call('HDEL', KEYS[4], m)\n"
    "end\n"
    "redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', now)\n"
    "local seen, instances, pending = {}, 0, 0\n"
    "for _, m in ipairs(redis.call('ZRANGE', KEYS[5], 0, -1)) do\n"
    "  local inst = string.match(m, '^([^:]+):')\n"
    "  if inst and not seen[inst] then seen[inst] = true; instances = instances + 1 end\n"
    "  pending = pending + tonumber(redis.call('HGET', KEYS[4], m) or '0')\n"
    "end\n"
    "return {redis.call('HGETALL', KEYS[1]), instances, pending}\n";

#define LOAD(x) atomic_load_explicit(&(x), memory_order_relaxed)

int counters_init(struct fleet *f)
{
    const char *names[NKEYS] = {"totals", NULL, NULL, "pending", "live"};

    for (unsigned i = 0; i < NKEYS; i++)
        snprintf(f->keys[i], sizeof(f->keys[i]), "fcmd:%s", names[i] ? names[i] : "");
    snprintf(f->keys[1], sizeof(f->keys[1]), "fcmd:mark:%s", f->member);
    snprintf(f->keys[2], sizeof(f->keys[2]), "fcmd:mark:%s:lists", f->shm->instance);
    if (fleet_script_init(&f->flush_s, flush_script) != 0)
        return -1;
    f->flush_s.by_link = 1;
    return 0;
}

/* ---- flushes ---- */

/* The values a flush carries now: the slot's counters, then the instance's drops. */
static void snapshot(const struct fleet *f, uint64_t v[NTRIPLES])
{
    for (unsigned i = 0; i < SHM_NCOUNTERS; i++)
        v[i] = LOAD(f->slot->counters[i]);
    v[SHM_NCOUNTERS + SHM_LIST_CANONICAL] = drainlist_dropped(f->shm->canonical);
    v[SHM_NCOUNTERS + SHM_LIST_NOTREGISTERED] = drainlist_dropped(f->shm->notregistered);
}

/* What Redis has confirmed counting of each value. */
static uint64_t base_of(const struct fleet *f, unsigned i)
{
    return i < SHM_NCOUNTERS ? LOAD(f->slot->fleet_base[i]) : LOAD(f->shm->fleet_dropped_base[i - SHM_NCOUNTERS]);
}

/* The field in Redis of each value: the counter table's names. */
static const char *name_of(unsigned i)
{
    return i < SHM_NCOUNTERS ? shm_counter_name((enum shm_counter)i)
                             : shm_dropped_name((enum shm_list)(i - SHM_NCOUNTERS));
}

static void on_flushed(struct fleet *f, void *arg, const redisReply *r);

static void flush(struct fleet *f)
{
    const char *argv[NARGS];
    char nums[4 + 2 * NTRIPLES][24];
    unsigned n = 2, k = 0; /* argv[0] and argv[1] are fleet_script_run()'s */

#define NUM(v) (snprintf(nums[k], sizeof(nums[k]), "%" PRIu64, (uint64_t)(v)), nums[k++])
    snapshot(f, f->sent);
    argv[n++] = "5";
    for (unsigned i = 0; i < NKEYS; i++)
        argv[n++] = f->keys[i];
    argv[n++] = f->member;
    argv[n++] = NUM(LOAD(f->slot->pending) > 0 ? LOAD(f->slot->pending) : 0);
    argv[n++] = NUM(FLEET_HEARTBEAT_MS);
    argv[n++] = NUM(FLEET_MARK_TTL_S);
    argv[n++] = NUM(SHM_NCOUNTERS);
    for (unsigned i = 0; i < NTRIPLES; i++) {
        argv[n++] = name_of(i);
        argv[n++] = NUM(f->sent[i]);
        argv[n++] = NUM(base_of(f, i));
    }
#undef NUM
    if (fleet_script_run(f, &f->flush_s, on_flushed, NULL, REPLY_MAX_BYTES, (int)n, argv, NULL) != 0)
        return;
    f->inflight = 1;
}

/*
 * A slot no worker runs in (its worker retired by a reload, or died and is
 * not respawned yet) can hold counts Redis never confirmed: its worker went
 * while Redis was unreachable.  A live worker of the instance sends them, the
 * slot's absolute counters under the slot's own mark, so they are added once
 * whoever sends them, and as soon as Redis takes them rather than when some
 * later worker runs in that slot.  A heartbeat of 0 ms keeps the slot out of
 * the live workers.  Returns the slot, or -1 when none needs it.
 */
static int unsettled_slot(const struct fleet *f)
{
    for (unsigned i = 0; i < SHM_MAX_SLOTS; i++) {
        const struct shm_slot *s = &f->shm->slots[i];
        if (s == f->slot || LOAD(s->pid) != 0)
            continue;
        for (unsigned c = 0; c < SHM_NCOUNTERS; c++)
            if (LOAD(s->counters[c]) > LOAD(s->fleet_base[c]))
                return (int)i;
    }
    return -1;
}

static void on_slot_settled(struct fleet *f, void *arg, const redisReply *r);

static void settle_slot(struct fleet *f, unsigned i)
{
    struct shm_slot *s = &f->shm->slots[i];
    const char *argv[NARGS];
    char nums[4 + 2 * SHM_NCOUNTERS][24], member[40], mark[64];
    uint64_t sent[SHM_NCOUNTERS];
    unsigned n = 2, k = 0; /* argv[0] and argv[1] are fleet_script_run()'s */

#define NUM(v) (snprintf(nums[k], sizeof(nums[k]), "%" PRIu64, (uint64_t)(v)), nums[k++])
    snprintf(member, sizeof(member), "%s:%u", f->shm->instance, i);
    snprintf(mark, sizeof(mark), "fcmd:mark:%s", member);
    argv[n++] = "5";
    argv[n++] = f->keys[0];
    argv[n++] = mark;
    for (unsigned j = 2; j < NKEYS; j++)
        argv[n++] = f->keys[j];
    argv[n++] = member;
    argv[n++] = "0"; /* pending: the master settled it when the worker went */
    argv[n++] = "0"; /* heartbeat: not a live worker */
    argv[n++] = NUM(FLEET_MARK_TTL_S);
    argv[n++] = NUM(SHM_NCOUNTERS);
    for (unsigned c = 0; c < SHM_NCOUNTERS; c++) {
        sent[c] = LOAD(s->counters[c]);
        argv[n++] = name_of(c);
        argv[n++] = NUM(sent[c]);
        argv[n++] = NUM(LOAD(s->fleet_base[c]));
    }
#undef NUM
    if (fleet_script_run(f, &f->flush_s, on_slot_settled, NULL, REPLY_MAX_BYTES, (int)n, argv, NULL) != 0)
        return;
    f->settling = 1;
    f->settle_slot = i;
    memcpy(f->settle_sent, sent, sizeof(sent));
}

/* A count Redis sent: a non-negative integer, or a string of digits only. */
static int reply_u64(const redisReply *r, uint64_t *out)
{
    char *end;

    if (r->type == REDIS_REPLY_INTEGER && r->integer >= 0) {
        *out = (uint64_t)r->integer;
        return 0;
    }
    if (r->type != REDIS_REPLY_STRING || r->len == 0 || r->len > 20 || strspn(r->str, "0123456789") != r->len)
        return -1;
    errno = 0;
    *out = strtoull(r->str, &end, 10);
    return errno == 0 && *end == '\0' ? 0 : -1;
}

/* Stores the value of the hash field named by k, if fcmd knows that name. */
static int read_field(const redisReply *k, const redisReply *v, struct fleet_totals *t)
{
    uint64_t n;

    if (k->type != REDIS_REPLY_STRING)
        return -1;
    for (unsigned c = 0; c < NTRIPLES; c++) {
        if (strcmp(k->str, name_of(c)) != 0)
            continue;
        if (reply_u64(v, &n) != 0)
            return -1;
        if (c < SHM_NCOUNTERS)
            t->sums.counters[c] = n;
        else
            t->sums.dropped[c - SHM_NCOUNTERS] = n;
    }
    return 0;
}

/* Reads {totals, instances, pending}.  Returns 0, or -1 when it is not that. */
static int read_totals(const redisReply *r, struct fleet_totals *t)
{
    const redisReply *h;
    uint64_t pending;

    if (r->type != REDIS_REPLY_ARRAY || r->elements != 3 || r->element[0]->type != REDIS_REPLY_ARRAY ||
        r->element[0]->elements % 2 != 0)
        return -1;
    memset(t, 0, sizeof(*t));
    h = r->element[0];
    for (size_t i = 0; i + 1 < h->elements; i += 2)
        if (read_field(h->element[i], h->element[i + 1], t) != 0)
            return -1;
    if (r->element[1]->type != REDIS_REPLY_INTEGER || r->element[2]->type != REDIS_REPLY_INTEGER ||
        reply_u64(r->element[1], &t->instances) != 0 || reply_u64(r->element[2], &pending) != 0 || pending > INT64_MAX)
        return -1;
    t->sums.pending = (int64_t)pending;
    return 0;
}

/* Redis counted what the flush carried: that is the new base. */
static void confirm(struct fleet *f)
{
    for (unsigned i = 0; i < SHM_NCOUNTERS; i++)
        atomic_store_explicit(&f->slot->fleet_base[i], f->sent[i], memory_order_relaxed);
    for (unsigned i = 0; i < SHM_NLISTS; i++) {
        _Atomic uint64_t *b = &f->shm->fleet_dropped_base[i];
        uint64_t old = LOAD(*b), v = f->sent[SHM_NCOUNTERS + i];
        /* Every worker of the instance sends the drops: keep the largest. */
        while (old < v && !atomic_compare_exchange_weak(b, &old, v))
            ;
    }
}

/* Redis refused the flush with an error that leaves the connection usable
 * (WRONGTYPE, OOM, MISCONF...; not NOSCRIPT or READONLY, see on_flushed()):
 * keep it, count as an outage meanwhile, try again after the back-off, and
 * log a refusal once until it changes or a flush succeeds. */
static void refused(struct fleet *f, const char *err)
{
    char why[sizeof(f->refusal)];

    snprintf(why, sizeof(why), "the flush was refused: %s", err);
    f->next_flush_at = uv_now(f->loop) + link_backoff_ms(f, f->refusals++);
    if (strcmp(why, f->refusal) == 0)
        return;
    if (f->outage)
        log_warn("redis: %s: %s; still counting locally", f->printable, why);
    link_outage_begins(f, why);
    memcpy(f->refusal, why, sizeof(why));
}

static void on_flushed(struct fleet *f, void *arg, const redisReply *r)
{
    int slot;

    (void)arg;
    f->inflight = 0;
    if (r == NULL)
        return;
    if (fleet_script_lost(f, &f->flush_s, r))
        return; /* loaded again: the next tick's flush finds it */
    if (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "READONLY", 8) == 0) {
        /* A replica now (a failover demoted it): reconnect, after the
         * back-off.  The new connection looks the name up again, so it
         * reaches the new primary if DNS or a proxy moved the name. */
        link_drop(f, r->str);
        return;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        refused(f, r->str);
        return;
    }
    if (read_totals(r, &f->totals) != 0) {
        link_drop_bad(f, "the flush script answered something unexpected");
        return;
    }
    confirm(f);
    f->refusals = 0;
    f->have_totals = 1;
    f->totals_at = uv_now(f->loop);
    if (f->probation > 0)
        f->probation--;
    if (!f->up && f->probation == 0)
        link_now_up(f);
    if (f->up && !f->settling && (slot = unsettled_slot(f)) >= 0)
        settle_slot(f, (unsigned)slot);
}

/* Redis counted the slot's counts: raise its base (its own worker, if one
 * has started there since, may have confirmed more already). */
static void on_slot_settled(struct fleet *f, void *arg, const redisReply *r)
{
    struct fleet_totals t;
    int next;

    (void)arg;
    f->settling = 0;
    if (r == NULL || r->type == REDIS_REPLY_ERROR)
        return; /* settled after a later flush, which meets any error too and deals with it */
    if (read_totals(r, &t) != 0) {
        link_drop_bad(f, "the flush script answered something unexpected");
        return;
    }
    for (unsigned c = 0; c < SHM_NCOUNTERS; c++) {
        _Atomic uint64_t *b = &f->shm->slots[f->settle_slot].fleet_base[c];
        uint64_t old = LOAD(*b);
        while (old < f->settle_sent[c] && !atomic_compare_exchange_weak(b, &old, f->settle_sent[c]))
            ;
    }
    /* The next one at once: a reload that lowered the worker count during
     * an outage leaves more such slots than workers to send them. */
    if (f->up && (next = unsettled_slot(f)) >= 0)
        settle_slot(f, (unsigned)next);
}

void counters_tick(struct fleet *f, uint64_t now)
{
    if (!f->inflight && now >= f->next_flush_at)
        flush(f);
}

void counters_connected(struct fleet *f)
{
    f->next_flush_at = 0;
    flush(f); /* at once: counters kept during an outage, and a fresh report */
}

int fleet_ready(const struct fleet *f)
{
    return f->up;
}

int fleet_totals(const struct fleet *f, struct fleet_totals *out)
{
    if (!f->up || !f->have_totals)
        return -1;
    *out = f->totals;
    out->age_ms = uv_now(f->loop) - f->totals_at;
    return 0;
}

/* Whether Redis has confirmed every count of this worker's slot and of the
 * instance's drops. */
static int counts_confirmed(const struct fleet *f)
{
    uint64_t now[NTRIPLES];

    snapshot(f, now);
    for (unsigned i = 0; i < NTRIPLES; i++)
        if (now[i] != base_of(f, i))
            return 0;
    return 1;
}

int fleet_flushed(struct fleet *f)
{
    int whole = atomic_load(&f->shm->stopping_all) != 0;
    /* The entries the lists held when the worker began to stop, and how
     * every drain ended, reach Redis too. */
    int waiting = drains_owed(f);

    /* When the whole instance stops, the counts of workers gone before
     * (retired by a reload while Redis was down) have no later worker to
     * send them: one of these does (a flush's answer settles them). */
    if (whole && unsettled_slot(f) >= 0)
        waiting = 1;
    if (!f->up) {
        /* A replaced worker's counts wait in its slot for the next workers.
         * A whole stop waits, within the deadline, for Redis to come back:
         * reconnecting goes on by itself. */
        if (!whole || (!waiting && counts_confirmed(f)))
            return 1;
        if (atomic_exchange(&f->shm->stop_wait_logged, 1) == 0)
            log_warn("redis: stopping while %s is unreachable: waiting, up to the shutdown timeout, for it "
                     "to take the counts and drain entries it has not confirmed",
                     f->printable);
        return 0;
    }
    if (waiting) {
        drains_tick(f);
        return 0;
    }
    if (counts_confirmed(f))
        return 1;
    if (!f->inflight)
        flush(f);
    return 0;
}
