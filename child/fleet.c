/*
 * child/fleet.c - fleet mode: a worker's counters in Redis, the fleet's totals back.
 *
 * The one idea: a flush sends the slot's absolute counters, and a Lua script
 * adds to the fleet's totals only what exceeds the (instance, slot) mark it
 * keeps, so a flush resent after a lost reply, or sent again by a respawned
 * worker, adds nothing twice.  One connection per worker, on the worker's
 * loop, that fcmd owns: a libuv socket, hiredis' reply parser, and a queue of
 * the replies it awaits.  A reply it did not ask for, or larger than any it
 * asks for, is never parsed further: the connection is dropped and made
 * again after a back-off.  Nothing here waits for Redis or aborts on it.
 */
#include "fleet.h"
#include "../master/log.h"
#include "backoff.h"
#include "redis_url.h"

#include <errno.h>
#include <hiredis/hiredis.h>
#include <hiredis/read.h>
#include <inttypes.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Field names in Redis, one per shm counter. */
static const char *const counter_names[SHM_NCOUNTERS] = {
    [SHM_ACCEPTED] = "accepted",           [SHM_ATTEMPTS] = "attempts",
    [SHM_SUCCESSES] = "successes",         [SHM_FAILURES] = "failures",
    [SHM_RETRIES] = "retries",             [SHM_CANONICALS] = "canonicals",
    [SHM_NOTREGISTERED] = "notregistered", [SHM_LOST] = "lost",
    [SHM_LEFT_IN_SPOOL] = "left_in_spool", [SHM_UPSTREAM_REQS] = "upstream_requests",
    [SHM_UPSTREAM_ERRS] = "upstream_errors", [SHM_OAUTH_TOKENS] = "oauth_tokens",
    [SHM_OAUTH_FAILURES] = "oauth_failures", [SHM_REPLAYED] = "replayed",
    [SHM_SPOOL_SYNCS] = "spool_syncs",
};
static const char *const dropped_names[2] = {"canonical_dropped", "notregistered_dropped"};

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

#define NKEYS 5
#define NTRIPLES (SHM_NCOUNTERS + 2)
#define NARGS (3 + NKEYS + 5 + 3 * NTRIPLES)
#define NWANT 8 /* replies a connection can await: AUTH, SELECT, SCRIPT LOAD, a flush */

/* What a reply on the connection answers, in the order the commands went. */
enum want { WANT_AUTH, WANT_SELECT, WANT_LOAD, WANT_FLUSH, WANT_SETTLE };

/* One connection: the socket, its reply parser and the replies it awaits.
 * Freed when libuv has closed the socket, so a late callback finds it. */
struct link {
    union {
        uv_handle_t handle;
        uv_stream_t stream;
        uv_tcp_t tcp;
        uv_pipe_t pipe;
    } u;
    uv_connect_t connect;
    struct fleet *f;
    redisReader *reader;
    redisReplyObjectFunctions fn;               /* hiredis' own, with arrays capped */
    void *(*array)(const redisReadTask *, int); /* hiredis' own array maker */
    size_t unparsed;                            /* bytes fed since the reader last held no partial reply */
    unsigned char want[NWANT];
    unsigned nwant, first;
};

/* A command on its way out; wiped (AUTH carries the password) and freed by
 * its write callback. */
struct out {
    uv_write_t req;
    char *cmd;
    size_t len;
};

static void out_free(struct out *o)
{
    explicit_bzero(o->cmd, o->len);
    redisFreeCommand(o->cmd);
    free(o);
}

struct fleet {
    uv_loop_t *loop;
    struct shm_region *shm;
    struct shm_slot *slot;
    struct redis_url url;
    char printable[300]; /* the URL without its password, for the log */
    char member[40];     /* "instance:slot" */
    char keys[NKEYS][64];
    struct link *link;     /* NULL while not connected or connecting */
    struct lookup *lookup; /* the name lookup under way, NULL when none */
    uv_async_t looked_up;  /* its thread wakes the loop through this */
    int resolving;         /* a lookup is under way */
    int resolve_late;      /* ...and its answer, past the deadline, is to be ignored */
    uv_timer_t tick;       /* flushes; also the resolve, connect and reply deadlines */
    uv_timer_t retry;      /* the reconnect back-off */
    char sha[41];          /* the loaded script, "" until SCRIPT LOAD answered */
    int up;                /* a flush succeeded on this connection and none failed since */
    int ever_up;
    int outage;         /* an outage is logged and not yet over */
    unsigned attempt;   /* failed connects since the last success */
    unsigned probation; /* clean flushes still needed before a server that broke
                           the protocol counts as reachable again */
    unsigned refusals;  /* flushes refused in a row on this connection */
    char refusal[160];  /* the last refusal logged, "" when none */
    uint64_t rng;
    uint64_t connect_at, down_since, sent_at, next_flush_at;
    int inflight;            /* a flush awaits its reply */
    int settling;            /* a settle (see settle()) awaits its reply */
    unsigned settle_slot;
    uint64_t settle_sent[SHM_NCOUNTERS];
    uint64_t sent[NTRIPLES]; /* what that flush carried */
    struct fleet_totals totals;
    int have_totals;
    uint64_t totals_at;
    char rbuf[64 * 1024]; /* libuv reads into this; the reader copies it */
};

static void connect_begin(struct fleet *f);

static void on_retry(uv_timer_t *t)
{
    connect_begin(t->data);
}

/* Back-off from FLEET_RETRY_MIN_MS doubling to FLEET_RETRY_MAX_MS, half of it
 * jitter so a fleet's workers do not retry in step. */
static uint64_t backoff_ms(struct fleet *f, unsigned n)
{
    uint64_t delay = (uint64_t)FLEET_RETRY_MIN_MS << (n < 6 ? n : 6);

    if (delay > FLEET_RETRY_MAX_MS)
        delay = FLEET_RETRY_MAX_MS;
    return delay / 2 + backoff_random(&f->rng) % (delay / 2 + 1);
}

/* ---- outages ---- */

/* Logs the start of an outage once; the line after it is now_up()'s. */
static void outage_begins(struct fleet *f, const char *why)
{
    f->up = 0;
    f->have_totals = 0;
    if (f->outage)
        return;
    f->outage = 1;
    f->down_since = uv_now(f->loop);
    if (f->ever_up)
        log_warn("redis: lost %s: %.200s; counting locally until it is back", f->printable, why);
    else
        log_warn("redis: cannot reach %s: %.200s; counting locally, retrying", f->printable, why);
}

static void outage(struct fleet *f, const char *why)
{
    outage_begins(f, why);
    f->inflight = f->settling = 0;
    uv_timer_start(&f->retry, on_retry, backoff_ms(f, f->attempt++), 0);
}

static void link_closed(uv_handle_t *h)
{
    struct link *l = h->data;

    if (l->reader != NULL)
        redisReaderFree(l->reader);
    free(l);
}

/* Gives the connection up and reconnects after the back-off.  Callbacks of
 * the old connection still to come see it is no longer f->link. */
static void drop(struct fleet *f, const char *why)
{
    struct link *l = f->link;

    f->link = NULL;
    f->sha[0] = '\0';
    f->refusals = 0;
    if (l != NULL)
        uv_close(&l->u.handle, link_closed);
    outage(f, why);
}

/* The server sent what no Redis would: every connection to it is likely to
 * end the same way, so it stays an outage (one log line, growing back-off)
 * until a connection to it has carried a few clean flushes. */
static void drop_bad(struct fleet *f, const char *why)
{
    f->probation = FLEET_PROBATION_FLUSHES;
    drop(f, why);
}

static void now_up(struct fleet *f)
{
    f->up = 1;
    f->attempt = 0;
    if (f->outage)
        log_info("redis: %s reachable again after %.1f s; sending the counters kept meanwhile", f->printable,
                 (double)(uv_now(f->loop) - f->down_since) / 1000);
    else if (!f->ever_up)
        log_info("redis: connected to %s as instance %s", f->printable, f->shm->instance);
    f->outage = 0;
    f->ever_up = 1;
    f->refusal[0] = '\0';
}

/* ---- the transport ---- */

static void on_written(uv_write_t *req, int status)
{
    struct out *o = (struct out *)req;
    struct link *l = req->data;

    out_free(o);
    if (status != 0 && status != UV_ECANCELED && l->f->link == l)
        drop(l->f, uv_strerror(status));
}

/* Sends one command and notes the reply it awaits.  Returns 0, or -1 with
 * the connection dropped. */
static int send_command(struct fleet *f, enum want w, int argc, const char **argv)
{
    struct link *l = f->link;
    struct out *o = malloc(sizeof(*o));
    long long n;
    int rc;

    if (l->nwant == NWANT || o == NULL) {
        free(o);
        drop(f, l->nwant == NWANT ? "too many commands awaiting replies" : "out of memory");
        return -1;
    }
    if ((n = redisFormatCommandArgv(&o->cmd, argc, argv, NULL)) < 0) {
        free(o);
        drop(f, "cannot format a command: out of memory");
        return -1;
    }
    o->len = (size_t)n;
    uv_buf_t buf = uv_buf_init(o->cmd, (unsigned)n);
    o->req.data = l;
    if ((rc = uv_write(&o->req, &l->u.stream, &buf, 1, on_written)) != 0) {
        out_free(o);
        drop(f, uv_strerror(rc));
        return -1;
    }
    l->want[(l->first + l->nwant++) % NWANT] = (unsigned char)w;
    return 0;
}

/* ---- flushes ---- */

#define LOAD(x) atomic_load_explicit(&(x), memory_order_relaxed)

/* The values a flush carries now: the slot's counters, then the instance's drops. */
static void snapshot(const struct fleet *f, uint64_t v[NTRIPLES])
{
    for (unsigned i = 0; i < SHM_NCOUNTERS; i++)
        v[i] = LOAD(f->slot->counters[i]);
    v[SHM_NCOUNTERS] = drainlist_dropped(f->shm->canonical);
    v[SHM_NCOUNTERS + 1] = drainlist_dropped(f->shm->notregistered);
}

/* What Redis has confirmed counting of each value. */
static uint64_t base_of(const struct fleet *f, unsigned i)
{
    return i < SHM_NCOUNTERS ? LOAD(f->slot->fleet_base[i]) : LOAD(f->shm->fleet_dropped_base[i - SHM_NCOUNTERS]);
}

static const char *name_of(unsigned i)
{
    return i < SHM_NCOUNTERS ? counter_names[i] : dropped_names[i - SHM_NCOUNTERS];
}

static void flush(struct fleet *f)
{
    const char *argv[NARGS];
    char nums[4 + 2 * NTRIPLES][24];
    unsigned n = 0, k = 0;

#define NUM(v) (snprintf(nums[k], sizeof(nums[k]), "%" PRIu64, (uint64_t)(v)), nums[k++])
    snapshot(f, f->sent);
    argv[n++] = "EVALSHA";
    argv[n++] = f->sha;
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
    if (send_command(f, WANT_FLUSH, (int)n, argv) != 0)
        return;
    f->inflight = 1;
    f->sent_at = uv_now(f->loop);
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

static void settle(struct fleet *f, unsigned i)
{
    struct shm_slot *s = &f->shm->slots[i];
    const char *argv[NARGS];
    char nums[4 + 2 * SHM_NCOUNTERS][24], member[40], mark[64];
    uint64_t sent[SHM_NCOUNTERS];
    unsigned n = 0, k = 0;

#define NUM(v) (snprintf(nums[k], sizeof(nums[k]), "%" PRIu64, (uint64_t)(v)), nums[k++])
    snprintf(member, sizeof(member), "%s:%u", f->shm->instance, i);
    snprintf(mark, sizeof(mark), "fcmd:mark:%s", member);
    argv[n++] = "EVALSHA";
    argv[n++] = f->sha;
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
        argv[n++] = counter_names[c];
        argv[n++] = NUM(sent[c]);
        argv[n++] = NUM(LOAD(s->fleet_base[c]));
    }
#undef NUM
    if (send_command(f, WANT_SETTLE, (int)n, argv) != 0)
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
            t->counters[c] = n;
        else if (c == SHM_NCOUNTERS)
            t->canonical_dropped = n;
        else
            t->notregistered_dropped = n;
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
    t->pending = (int64_t)pending;
    return 0;
}

/* Redis counted what the flush carried: that is the new base. */
static void confirm(struct fleet *f)
{
    for (unsigned i = 0; i < SHM_NCOUNTERS; i++)
        atomic_store_explicit(&f->slot->fleet_base[i], f->sent[i], memory_order_relaxed);
    for (unsigned i = 0; i < 2; i++) {
        _Atomic uint64_t *b = &f->shm->fleet_dropped_base[i];
        uint64_t old = LOAD(*b), v = f->sent[SHM_NCOUNTERS + i];
        /* Every worker of the instance sends the drops: keep the largest. */
        while (old < v && !atomic_compare_exchange_weak(b, &old, v))
            ;
    }
}

/* Redis refused the flush but the connection is fine (WRONGTYPE, OOM,
 * READONLY...): keep it, try again after the back-off, and log a refusal
 * once until it changes or a flush succeeds. */
static void refused(struct fleet *f, const char *err)
{
    char why[sizeof(f->refusal)];

    snprintf(why, sizeof(why), "the flush was refused: %s", err);
    f->next_flush_at = uv_now(f->loop) + backoff_ms(f, f->refusals++);
    if (strcmp(why, f->refusal) == 0)
        return;
    if (f->outage)
        log_warn("redis: %s: %s; still counting locally", f->printable, why);
    outage_begins(f, why);
    memcpy(f->refusal, why, sizeof(why));
}

static void on_flushed(struct fleet *f, const redisReply *r)
{
    int slot;

    f->inflight = 0;
    if (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOSCRIPT", 8) == 0) {
        drop(f, r->str); /* a new connection loads the script again */
        return;
    }
    if (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "READONLY", 8) == 0) {
        /* A replica now (a failover demoted it): a new connection looks the
         * name up again and finds the new primary, if a proxy or DNS moved. */
        drop(f, r->str);
        return;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        refused(f, r->str);
        return;
    }
    if (read_totals(r, &f->totals) != 0) {
        drop_bad(f, "the flush script answered something unexpected");
        return;
    }
    confirm(f);
    f->refusals = 0;
    f->have_totals = 1;
    f->totals_at = uv_now(f->loop);
    if (f->probation > 0)
        f->probation--;
    if (!f->up && f->probation == 0)
        now_up(f);
    if (f->up && !f->settling && (slot = unsettled_slot(f)) >= 0)
        settle(f, (unsigned)slot);
}

/* Redis counted the slot's counts: raise its base (its own worker, if one
 * has started there since, may have confirmed more already). */
static void on_settled(struct fleet *f, const redisReply *r)
{
    struct fleet_totals t;

    f->settling = 0;
    if (r->type == REDIS_REPLY_ERROR)
        return; /* the flush meets the same refusal, and says so */
    if (read_totals(r, &t) != 0) {
        drop_bad(f, "the flush script answered something unexpected");
        return;
    }
    for (unsigned c = 0; c < SHM_NCOUNTERS; c++) {
        _Atomic uint64_t *b = &f->shm->slots[f->settle_slot].fleet_base[c];
        uint64_t old = LOAD(*b);
        while (old < f->settle_sent[c] && !atomic_compare_exchange_weak(b, &old, f->settle_sent[c]))
            ;
    }
}

static void on_tick(uv_timer_t *t)
{
    struct fleet *f = t->data;
    uint64_t now = uv_now(f->loop);

    if (f->resolving && !f->resolve_late && now - f->connect_at >= FLEET_TIMEOUT_MS) {
        f->resolve_late = 1; /* libuv cannot take the lookup back: its answer is ignored */
        outage(f, "no address for the host within 3 s");
        return;
    }
    if (f->link == NULL)
        return;
    if (f->sha[0] == '\0') {
        if (now - f->connect_at >= FLEET_TIMEOUT_MS)
            drop(f, "no answer within 3 s");
        return;
    }
    if (f->inflight) {
        if (now - f->sent_at >= FLEET_TIMEOUT_MS)
            drop(f, "no reply within 3 s");
        return;
    }
    if (now >= f->next_flush_at)
        flush(f);
}

/* ---- replies ---- */

static void on_handshake(struct fleet *f, enum want w, const redisReply *r)
{
    char why[300];

    if (r->type == REDIS_REPLY_ERROR) {
        snprintf(why, sizeof(why), "%s refused: %.200s", w == WANT_AUTH ? "AUTH" : "SELECT", r->str);
        drop(f, why);
    }
}

static void on_loaded(struct fleet *f, const redisReply *r)
{
    char why[300];

    if (r->type != REDIS_REPLY_STRING || r->len != 40) {
        snprintf(why, sizeof(why), "SCRIPT LOAD refused: %.200s", r->type == REDIS_REPLY_ERROR ? r->str : "?");
        drop(f, why);
        return;
    }
    memcpy(f->sha, r->str, 40);
    f->sha[40] = '\0';
    f->next_flush_at = 0;
    flush(f); /* at once: counters kept during an outage, and a fresh report */
}

/* Hands a reply to what awaits it; one nobody awaits drops the connection. */
static void dispatch(struct fleet *f, struct link *l, const redisReply *r)
{
    enum want w;

    if (l->nwant == 0) {
        drop_bad(f, "a reply to no command");
        return;
    }
    w = (enum want)l->want[l->first];
    l->first = (l->first + 1) % NWANT;
    l->nwant--;
    if (w == WANT_FLUSH)
        on_flushed(f, r);
    else if (w == WANT_SETTLE)
        on_settled(f, r);
    else if (w == WANT_LOAD)
        on_loaded(f, r);
    else
        on_handshake(f, w, r);
}

/* The largest reply fcmd's commands can bring (the totals hash, an error)
 * is a few KiB: anything far larger is not an answer to them. */
#define REPLY_MAX_BYTES (256 * 1024)
#define REPLY_MAX_ELEMENTS 4096

static void *capped_array(const redisReadTask *task, int n)
{
    struct link *l = task->privdata;

    return n > REPLY_MAX_ELEMENTS ? NULL : l->array(task, n);
}

/* Feeds what was read to the parser and hands out every complete reply. */
static void parse(struct fleet *f, struct link *l, const char *buf, size_t n)
{
    void *reply;
    char why[200];

    if (redisReaderFeed(l->reader, buf, n) != REDIS_OK) {
        drop(f, "out of memory for a reply");
        return;
    }
    l->unparsed += n;
    for (;;) {
        if (redisReaderGetReply(l->reader, &reply) != REDIS_OK) {
            /* The only "out of memory" a capped reply can cause is an array over the cap. */
            snprintf(why, sizeof(why), "an unreadable reply: %s",
                     l->reader->err == REDIS_ERR_OOM ? "an array larger than any fcmd asks for" : l->reader->errstr);
            drop_bad(f, why);
            return;
        }
        if (reply == NULL)
            break;
        dispatch(f, l, reply);
        freeReplyObject(reply);
        if (f->link != l)
            return;
    }
    if (l->reader->ridx < 0 && l->reader->pos == l->reader->len)
        l->unparsed = 0;
    else if (l->unparsed > REPLY_MAX_BYTES)
        drop_bad(f, "a reply larger than any fcmd asks for");
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    struct link *l = h->data;

    (void)hint;
    *buf = uv_buf_init(l->f->rbuf, sizeof(l->f->rbuf));
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct link *l = s->data;

    if (l->f->link != l || n == 0)
        return;
    if (n < 0)
        drop(l->f, n == UV_EOF ? "connection closed" : uv_strerror((int)n));
    else
        parse(l->f, l, buf->base, (size_t)n);
}

/* ---- connecting ---- */

/* AUTH, SELECT and SCRIPT LOAD go out as soon as the connection is made. */
static void handshake(struct fleet *f)
{
    const char *auth[3] = {"AUTH"}, *load[3] = {"SCRIPT", "LOAD", flush_script};
    char db[16];
    const char *select[2] = {"SELECT", db};
    int n = 1;

    snprintf(db, sizeof(db), "%d", f->url.db);
    if (f->url.user[0] != '\0')
        auth[n++] = f->url.user;
    auth[n++] = f->url.password;
    if (f->url.password[0] != '\0' && send_command(f, WANT_AUTH, n, auth) != 0)
        return;
    if (f->url.db != 0 && send_command(f, WANT_SELECT, 2, select) != 0)
        return;
    send_command(f, WANT_LOAD, 3, load);
}

static void on_connected(uv_connect_t *req, int status)
{
    struct link *l = req->data;
    struct fleet *f = l->f;
    int rc;

    if (f->link != l)
        return;
    if (status != 0) {
        drop(f, uv_strerror(status));
        return;
    }
    if ((rc = uv_read_start(&l->u.stream, on_alloc, on_read)) != 0) {
        drop(f, uv_strerror(rc));
        return;
    }
    handshake(f);
}

/* A parser whose arrays are capped: hiredis' own reply objects otherwise. */
static int link_reader(struct link *l)
{
    if ((l->reader = redisReaderCreate()) == NULL)
        return -1;
    l->fn = *l->reader->fn;
    l->array = l->fn.createArray;
    l->fn.createArray = capped_array;
    l->reader->fn = &l->fn;
    l->reader->privdata = l;
    return 0;
}

/* Opens a socket to addr (TCP) or to the URL's path (UNIX) and starts connecting. */
static void open_link(struct fleet *f, const struct sockaddr *addr)
{
    struct link *l = calloc(1, sizeof(*l));
    int rc;

    if (l == NULL || link_reader(l) != 0) {
        free(l);
        outage(f, "out of memory");
        return;
    }
    l->f = f;
    rc = addr ? uv_tcp_init(f->loop, &l->u.tcp) : uv_pipe_init(f->loop, &l->u.pipe, 0);
    if (rc != 0) {
        redisReaderFree(l->reader);
        free(l);
        outage(f, uv_strerror(rc));
        return;
    }
    l->u.handle.data = l->connect.data = l;
    f->link = l;
    if (addr == NULL)
        uv_pipe_connect(&l->connect, &l->u.pipe, f->url.path, on_connected);
    else if ((rc = uv_tcp_connect(&l->connect, &l->u.tcp, addr, on_connected)) != 0)
        drop(f, uv_strerror(rc));
}

/*
 * Names are resolved on a detached thread of fcmd's own, one lookup at a time
 * per worker: the loop never waits, and neither does the worker's exit.  On
 * libuv's thread pool (uv_getaddrinfo) a lookup that never returns - a
 * resolver that does not answer - would hold the exit up, as libuv joins its
 * threads when the process exits.
 */
struct lookup {
    char host[sizeof(((struct redis_url *)0)->host)];
    uv_async_t *wake;
    int status; /* getaddrinfo()'s */
    int family;
    struct sockaddr_storage addr;
    _Atomic int done;
};

static void *lookup_run(void *arg)
{
    struct lookup *q = arg;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
    uv_async_t *wake = q->wake; /* q is the loop's to free once done is set */

    if ((q->status = getaddrinfo(q->host, NULL, &hints, &res)) == 0) {
        q->family = res->ai_family;
        memcpy(&q->addr, res->ai_addr, res->ai_addrlen < sizeof(q->addr) ? res->ai_addrlen : sizeof(q->addr));
        freeaddrinfo(res);
    }
    atomic_store_explicit(&q->done, 1, memory_order_release);
    uv_async_send(wake);
    return NULL;
}

/* Starts a lookup of the URL's host.  Returns 0, or an errno value. */
static int lookup_start(struct fleet *f)
{
    struct lookup *q = calloc(1, sizeof(*q));
    pthread_attr_t attr;
    pthread_t thread;
    sigset_t all, old;
    int rc;

    if (q == NULL)
        return ENOMEM;
    memcpy(q->host, f->url.host, sizeof(q->host));
    q->wake = &f->looked_up;
    if ((rc = pthread_attr_init(&attr)) != 0) {
        free(q);
        return rc;
    }
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    /* The worker's signals stay with its loop's thread. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    rc = pthread_create(&thread, &attr, lookup_run, q);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        free(q);
        return rc;
    }
    f->lookup = q;
    return 0;
}

static void on_resolved(uv_async_t *a)
{
    struct fleet *f = a->data;
    struct lookup *q = f->lookup;
    struct sockaddr_storage addr;
    char why[400];

    if (q == NULL || !atomic_load_explicit(&q->done, memory_order_acquire))
        return;
    f->lookup = NULL;
    f->resolving = 0;
    if (f->resolve_late) {
        f->resolve_late = 0; /* the retry timer, already started, tries again */
        free(q);
        return;
    }
    if (q->status != 0) {
        snprintf(why, sizeof(why), "cannot resolve %s: %s", f->url.host, gai_strerror(q->status));
        free(q);
        outage(f, why);
        return;
    }
    addr = q->addr;
    if (q->family == AF_INET6)
        ((struct sockaddr_in6 *)&addr)->sin6_port = htons((uint16_t)f->url.port);
    else
        ((struct sockaddr_in *)&addr)->sin_port = htons((uint16_t)f->url.port);
    free(q);
    open_link(f, (const struct sockaddr *)&addr);
}

static void connect_begin(struct fleet *f)
{
    int rc;
    char why[400];

    if (f->resolving) { /* a lookup past its deadline still runs: wait for it */
        outage(f, "no address for the host within 3 s");
        return;
    }
    f->connect_at = uv_now(f->loop);
    if (f->url.is_unix) {
        open_link(f, NULL);
        return;
    }
    if ((rc = lookup_start(f)) != 0) {
        snprintf(why, sizeof(why), "cannot resolve %s: %s", f->url.host, strerror(rc));
        outage(f, why);
        return;
    }
    f->resolving = 1;
}

/* ---- the interface ---- */

struct fleet *fleet_start(uv_loop_t *loop, const char *url, const char *password, struct shm_region *shm, unsigned slot)
{
    struct fleet *f = calloc(1, sizeof(*f));
    char err[200];
    const char *names[NKEYS] = {"totals", NULL, NULL, "pending", "live"};

    if (f == NULL) {
        log_error("redis: out of memory");
        return NULL;
    }
    if (redis_url_parse(url, &f->url, err, sizeof(err)) != 0) {
        log_error("redis: %s", err);
        free(f);
        return NULL;
    }
    if (f->url.password[0] == '\0' && password != NULL &&
        snprintf(f->url.password, sizeof(f->url.password), "%s", password) >= (int)sizeof(f->url.password)) {
        log_error("redis: the password is longer than %zu bytes", sizeof(f->url.password) - 1);
        free(f);
        return NULL;
    }
    redis_url_printable(url, f->printable, sizeof(f->printable));
    f->loop = loop;
    f->shm = shm;
    f->slot = &shm->slots[slot];
    f->rng = uv_hrtime() | 1;
    snprintf(f->member, sizeof(f->member), "%s:%u", shm->instance, slot);
    for (unsigned i = 0; i < NKEYS; i++)
        snprintf(f->keys[i], sizeof(f->keys[i]), "fcmd:%s", names[i] ? names[i] : "");
    snprintf(f->keys[1], sizeof(f->keys[1]), "fcmd:mark:%s", f->member);
    snprintf(f->keys[2], sizeof(f->keys[2]), "fcmd:mark:%s:lists", shm->instance);
    if (uv_timer_init(loop, &f->tick) != 0 || uv_timer_init(loop, &f->retry) != 0 ||
        uv_async_init(loop, &f->looked_up, on_resolved) != 0 ||
        uv_timer_start(&f->tick, on_tick, FLEET_FLUSH_MS, FLEET_FLUSH_MS) != 0) {
        log_error("redis: cannot start its timers");
        free(f);
        return NULL;
    }
    f->tick.data = f->retry.data = f->looked_up.data = f;
    uv_unref((uv_handle_t *)&f->tick);
    uv_unref((uv_handle_t *)&f->retry);
    uv_unref((uv_handle_t *)&f->looked_up);
    connect_begin(f);
    return f;
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

int fleet_flushed(struct fleet *f)
{
    uint64_t now[NTRIPLES];

    if (!f->up)
        return 1;
    snapshot(f, now);
    for (unsigned i = 0; i < NTRIPLES; i++)
        if (now[i] != base_of(f, i))
            goto unsent;
    return 1;
unsent:
    if (!f->inflight)
        flush(f);
    return 0;
}

void fleet_log_unconfirmed(const struct shm_region *shm)
{
    char line[600];
    size_t len = 0;

    for (unsigned c = 0; c < SHM_NCOUNTERS; c++) {
        uint64_t n = 0;
        for (unsigned i = 0; i < SHM_MAX_SLOTS; i++) {
            uint64_t v = LOAD(shm->slots[i].counters[c]), base = LOAD(shm->slots[i].fleet_base[c]);
            n += v > base ? v - base : 0;
        }
        if (n > 0 && len < sizeof(line))
            len +=
                (size_t)snprintf(line + len, sizeof(line) - len, "%s%s %" PRIu64, len ? ", " : "", counter_names[c], n);
    }
    if (len > 0)
        log_warn("redis: stopping with counts Redis has not confirmed (%s): they stay out of the fleet's totals", line);
}
