/*
 * child/fleet/link.c - fleet mode: a worker's counters in Redis, the fleet's totals back.
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
#include "../../common/log.h"
#include "../../common/backoff.h"
#include "../../common/redis_url.h"

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
#include <unistd.h>

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

/*
 * The drain lists (docs/FLEET.md, "Drains").  KEYS: 1 the list, 2 its
 * in-flight set (zset: drain key -> lease end, ms of Redis' clock), 3 the
 * instance's move mark (move) or one drain's key (the others).  ARGV[1] is
 * the operation.  Records travel as the shared-memory lists hold them: a
 * two-byte little-endian length, then the bytes.  Every call first returns
 * a few in-flight batches whose lease has run out to the list's head.
 *   move  ARGV 2 batch number, 3 records, 4 mark ttl s: appends them unless
 *         this instance's batch of that number was appended already
 *   take  ARGV 2 budget in bytes, 3 lease ms: pops up to the budget (one
 *         record at least), keeps them under KEYS[3], returns them
 *   renew ARGV 2 lease ms: 1, or 0 when the lease had run out already
 *   done  the answer was written: 1, or 0 when the lease had run out
 *   back  the answer was not written: the records return to the head
 */
static const char lists_script[] =
    "local function records(blob)\n"
    "  local out, i, n = {}, 1, #blob\n"
    "  while i + 1 <= n do\n"
    "    local len = string.byte(blob, i) + 256 * string.byte(blob, i + 1)\n"
    "    if i + 1 + len > n then break end\n"
    "    out[#out + 1] = string.sub(blob, i + 2, i + 1 + len)\n"
    "    i = i + 2 + len\n"
    "  end\n"
    "  return out\n"
    "end\n"
    "local function back(key)\n"
    "  if redis.call('ZREM', KEYS[2], key) == 0 then return 0 end\n"
    "  local blob = redis.call('GET', key)\n"
    "  redis.call('DEL', key)\n"
    "  if not blob then return 0 end\n"
    "  local r = records(blob)\n"
    "  for j = #r, 1, -1 do redis.call('LPUSH', KEYS[1], r[j]) end\n"
    "  return #r\n"
    "end\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "for _, k in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, 16)) do back(k) end\n"
    "local op = ARGV[1]\n"
    "if op == 'move' then\n"
    "  if tonumber(ARGV[2]) > tonumber(redis.call('GET', KEYS[3]) or '0') then\n"
    "    for _, e in ipairs(records(ARGV[3])) do redis.call('RPUSH', KEYS[1], e) end\n"
    "    redis.call('SET', KEYS[3], ARGV[2])\n"
    "  end\n"
    "  redis.call('EXPIRE', KEYS[3], ARGV[4])\n"
    "  return redis.call('LLEN', KEYS[1])\n"
    "elseif op == 'take' then\n"
    "  local budget, out, used = tonumber(ARGV[2]), {}, 0\n"
    "  while true do\n"
    "    local e = redis.call('LINDEX', KEYS[1], 0)\n"
    "    if not e then break end\n"
    "    if #e <= 65535 then\n"
    "      if used > 0 and used + 2 + #e > budget then break end\n"
    "      out[#out + 1] = string.char(#e % 256, math.floor(#e / 256)) .. e\n"
    "      used = used + 2 + #e\n"
    "    end\n"
    "    redis.call('LPOP', KEYS[1])\n"
    "  end\n"
    "  local blob = table.concat(out)\n"
    "  if #blob > 0 then\n"
    "    redis.call('SET', KEYS[3], blob)\n"
    "    redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), KEYS[3])\n"
    "  end\n"
    "  return blob\n"
    "elseif op == 'renew' then\n"
    "  if not redis.call('ZSCORE', KEYS[2], KEYS[3]) then return 0 end\n"
    "  redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), KEYS[3])\n"
    "  return 1\n"
    "elseif op == 'done' then\n"
    "  local held = redis.call('ZREM', KEYS[2], KEYS[3])\n"
    "  redis.call('DEL', KEYS[3])\n"
    "  return held\n"
    "elseif op == 'back' then\n"
    "  back(KEYS[3])\n"
    "  return 1\n"
    "end\n"
    "return redis.error_reply('unknown operation')\n";

static const char *const list_names[FLEET_NLISTS] = {"canonical", "notregistered"};

#define MOVE_MAX_BYTES (256 * 1024) /* records per move command */
#define MOVE_LEASE_MS 5000          /* a mover not heard from this long: another sends its batch */

/* A drain answered from Redis (see fleet.h). */
enum drain_state {
    DRAIN_TAKING,    /* the take is sent, its reply awaited */
    DRAIN_ANSWERING, /* the records are taken and being written; renewed each tick */
    DRAIN_DONE,      /* written: Redis is to forget them (op "done") */
    DRAIN_BACK,      /* not written, or unknown: Redis is to return them (op "back") */
};

struct fleet_drain {
    struct fleet_drain *next;
    struct fleet *f;
    enum drain_state state;
    int list;
    int busy;      /* a command about it awaits its reply */
    int cancelled; /* the caller went away while the take was under way */
    fleet_taken_fn cb;
    void *arg;
    char key[112];
};

#define NKEYS 5
#define NTRIPLES (SHM_NCOUNTERS + 2)
#define NARGS (3 + NKEYS + 5 + 3 * NTRIPLES)
#define NWANT 64 /* replies a connection can await at once */

/* The largest reply most commands can bring (the totals hash, an error) is
 * a few KiB: anything far larger is not an answer to them.  A command that
 * expects more says so. */
#define REPLY_MAX_BYTES (256 * 1024)
#define REPLY_MAX_ELEMENTS 4096

/* Handles the reply to one command; r is NULL when the connection was
 * dropped before that reply came (the command may or may not have run). */
typedef fleet_reply_fn reply_fn;

/* A reply the connection awaits, in the order the commands went. */
struct want {
    reply_fn fn;
    void *arg;
    size_t cap;       /* bytes: a larger reply drops the connection */
    uint64_t sent_at; /* for the reply deadline */
};

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
    uint64_t fed;                               /* bytes fed to the reader */
    uint64_t boundary;                          /* ...up to the end of the last complete reply */
    struct want want[NWANT];
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
    char lists_sha[41];                  /* the drain lists' script, likewise */
    char list_keys[FLEET_NLISTS][3][80]; /* the list, its in-flight set, this instance's move mark */
    int moving[FLEET_NLISTS];            /* a move awaits its reply */
    uint64_t move_seq[FLEET_NLISTS];     /* ...of this batch */
    char list_refusal[160];              /* the last refusal of a drain-list command logged */
    struct fleet_drain *drains;          /* drains not yet settled with Redis */
    uint64_t drain_lease_ms;
    uint64_t nonce, ndrains;            /* names this worker's drain keys */
    int stopping;                       /* fleet_flushed() was called: the worker stops */
    uint64_t stop_target[FLEET_NLISTS]; /* records put into each list before it began to */
    int up;           /* a flush succeeded on this connection and none failed since */
    int ever_up;
    int outage;         /* an outage is logged and not yet over */
    unsigned attempt;   /* failed connects since the last success */
    unsigned probation; /* clean flushes still needed before a server that broke
                           the protocol counts as reachable again */
    unsigned refusals;  /* flushes refused in a row on this connection */
    char refusal[160];  /* the last refusal logged, "" when none */
    uint64_t rng;
    uint64_t connect_at, down_since, next_flush_at;
    int inflight;            /* a flush awaits its reply */
    int settling;            /* a settle (see settle()) awaits its reply */
    int reloading;           /* SCRIPT LOADs after a NOSCRIPT await their replies */
    unsigned settle_slot;
    uint64_t settle_sent[SHM_NCOUNTERS];
    uint64_t sent[NTRIPLES]; /* what that flush carried */
    struct fleet_totals totals;
    int have_totals;
    uint64_t totals_at;
    void (*on_connect)(void *arg); /* fleet_on_connect() */
    void *on_connect_arg;
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
    static const struct backoff retry = {FLEET_RETRY_MIN_MS, FLEET_RETRY_MAX_MS, BACKOFF_HALF};

    return backoff_delay(&retry, n, backoff_random(&f->rng));
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
    f->inflight = f->settling = f->reloading = 0;
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
    f->lists_sha[0] = '\0';
    f->refusals = 0;
    outage(f, why);
    if (l == NULL)
        return;
    uv_close(&l->u.handle, link_closed);
    /* Whoever awaits a reply on it learns it will not come. */
    while (l->nwant > 0) {
        struct want w = l->want[l->first];
        l->first = (l->first + 1) % NWANT;
        l->nwant--;
        w.fn(f, w.arg, NULL);
    }
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

/* Sends one command (argvlen NULL: C strings) and notes that fn handles its
 * reply, of at most cap bytes.  Returns 0; 1 when too many replies are
 * awaited already (nothing sent, the connection kept); -1 with the
 * connection dropped. */
static int send_command(struct fleet *f, reply_fn fn, void *arg, size_t cap, int argc, const char **argv,
                        const size_t *argvlen)
{
    struct link *l = f->link;
    struct out *o;
    long long n;
    int rc;

    if (l->nwant == NWANT)
        return 1;
    if ((o = malloc(sizeof(*o))) == NULL) {
        drop(f, "out of memory");
        return -1;
    }
    if ((n = redisFormatCommandArgv(&o->cmd, argc, argv, argvlen)) < 0) {
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
    l->want[(l->first + l->nwant++) % NWANT] = (struct want){fn, arg, cap, uv_now(f->loop)};
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
    return i < SHM_NCOUNTERS ? shm_counter_names[i] : dropped_names[i - SHM_NCOUNTERS];
}

static void on_flushed(struct fleet *f, void *arg, const redisReply *r);

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
    if (send_command(f, on_flushed, NULL, REPLY_MAX_BYTES, (int)n, argv, NULL) != 0)
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
        argv[n++] = shm_counter_names[c];
        argv[n++] = NUM(sent[c]);
        argv[n++] = NUM(LOAD(s->fleet_base[c]));
    }
#undef NUM
    if (send_command(f, on_slot_settled, NULL, REPLY_MAX_BYTES, (int)n, argv, NULL) != 0)
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

/* A SCRIPT LOAD after a NOSCRIPT: the server answers the digest fcmd already
 * uses (arg), or it is not a Redis fcmd can talk to. */
static void on_reloaded(struct fleet *f, void *arg, const redisReply *r)
{
    const char *sha = arg;

    f->reloading = 0;
    if (r == NULL)
        return;
    if (r->type != REDIS_REPLY_STRING || r->len != 40 || memcmp(r->str, sha, 40) != 0)
        drop_bad(f, "SCRIPT LOAD answered something unexpected");
}

/* Redis forgot the scripts (SCRIPT FLUSH, a restart without them): load them
 * again on this connection.  Commands after the loads find them; those
 * already refused are sent again by their ticks. */
static void reload_scripts(struct fleet *f)
{
    const char *load[3] = {"SCRIPT", "LOAD", flush_script}, *load_lists[3] = {"SCRIPT", "LOAD", lists_script};

    if (f->reloading || f->link == NULL)
        return;
    log_info("redis: %s forgot fcmd's scripts (NOSCRIPT): loading them again", f->printable);
    if (send_command(f, on_reloaded, f->sha, REPLY_MAX_BYTES, 3, load, NULL) == 0 &&
        send_command(f, on_reloaded, f->lists_sha, REPLY_MAX_BYTES, 3, load_lists, NULL) == 0)
        f->reloading = 1;
}

static void on_flushed(struct fleet *f, void *arg, const redisReply *r)
{
    int slot;

    (void)arg;
    f->inflight = 0;
    if (r == NULL)
        return;
    if (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOSCRIPT", 8) == 0) {
        reload_scripts(f); /* the next tick's flush finds it */
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
    /* The next one at once: a reload that lowered the worker count during
     * an outage leaves more such slots than workers to send them. */
    if (f->up && (next = unsettled_slot(f)) >= 0)
        settle_slot(f, (unsigned)next);
}

/* ---- the drain lists ---- */

static uint64_t mono_ms(void)
{
    return uv_hrtime() / 1000000;
}

static struct drainlist *list_of(const struct fleet *f, int i)
{
    return i == FLEET_CANONICAL ? f->shm->canonical : f->shm->notregistered;
}

/* Redis refused a drain-list command (OOM, READONLY...): what it concerns
 * stays where it is and is tried again; each distinct refusal is logged once. */
static void lists_refused(struct fleet *f, const char *what, const char *err)
{
    char why[sizeof(f->list_refusal)];

    if (strncmp(err, "NOSCRIPT", 8) == 0) {
        reload_scripts(f);
        return;
    }
    snprintf(why, sizeof(why), "%s was refused: %.100s", what, err);
    if (strcmp(why, f->list_refusal) == 0)
        return;
    memcpy(f->list_refusal, why, sizeof(why));
    log_warn("redis: %s: %s; the entries stay where they are", f->printable, why);
}

static int lists_usable(const struct fleet *f)
{
    return f->link != NULL && f->lists_sha[0] != '\0';
}

/* Sends the lists script: op on list i, KEYS[3] = key3, then extra ARGV. */
static int lists_command(struct fleet *f, reply_fn fn, void *arg, size_t cap, int i, const char *key3, const char *op,
                         int nextra, const char **extra, const size_t *extralen)
{
    const char *argv[12] = {"EVALSHA", f->lists_sha, "3", f->list_keys[i][0], f->list_keys[i][1], key3, op};
    size_t lens[12];
    int n = 7;

    for (int k = 0; k < n; k++)
        lens[k] = strlen(argv[k]);
    for (int k = 0; k < nextra; k++, n++) {
        argv[n] = extra[k];
        lens[n] = extralen != NULL ? extralen[k] : strlen(extra[k]);
    }
    return send_command(f, fn, arg, cap, n, argv, lens);
}

static void move(struct fleet *f, int i);

static void on_moved(struct fleet *f, void *arg, const redisReply *r)
{
    int i = (int)(intptr_t)arg;

    f->moving[i] = 0;
    if (r == NULL) /* the batch stays reserved, sent again on the next connection */
        return;
    if (r->type == REDIS_REPLY_ERROR) {
        lists_refused(f, "moving entries to Redis", r->str);
        return;
    }
    if (r->type != REDIS_REPLY_INTEGER) {
        drop_bad(f, "the lists script answered something unexpected");
        return;
    }
    f->list_refusal[0] = '\0';
    drainlist_commit(list_of(f, i), f->move_seq[i]);
    move(f, i); /* what came meanwhile, at once */
}

/* Sends the next batch of list i to Redis, if there is one and no other
 * worker of the instance is sending it. */
static void move(struct fleet *f, int i)
{
    unsigned char *recs;
    size_t len;
    uint64_t count, seq;
    char nseq[24], ttl[24];
    const char *extra[3] = {nseq, NULL, ttl};
    size_t lens[3];

    if (f->moving[i] || !lists_usable(f))
        return;
    if (drainlist_reserve(list_of(f, i), (uint32_t)(f->slot - f->shm->slots) + 1, MOVE_MAX_BYTES, mono_ms(),
                          MOVE_LEASE_MS, &recs, &len, &count, &seq) != 0 ||
        recs == NULL)
        return;
    snprintf(nseq, sizeof(nseq), "%" PRIu64, seq);
    snprintf(ttl, sizeof(ttl), "%d", FLEET_MARK_TTL_S);
    extra[1] = (const char *)recs;
    lens[0] = strlen(nseq);
    lens[1] = len;
    lens[2] = strlen(ttl);
    if (lists_command(f, on_moved, (void *)(intptr_t)i, REPLY_MAX_BYTES, i, f->list_keys[i][2], "move", 3, extra,
                      lens) == 0) {
        f->moving[i] = 1;
        f->move_seq[i] = seq;
    }
    free(recs);
}

static void drain_free(struct fleet_drain *d)
{
    struct fleet_drain **p = &d->f->drains;

    while (*p != d)
        p = &(*p)->next;
    *p = d->next;
    free(d);
}

static void settle(struct fleet_drain *d);

/* After a reply about d: what it must still tell Redis, if anything. */
static void drain_replied(struct fleet_drain *d)
{
    d->busy = 0;
    if (d->state == DRAIN_DONE || d->state == DRAIN_BACK)
        settle(d);
}

static void on_settled(struct fleet *f, void *arg, const redisReply *r)
{
    struct fleet_drain *d = arg;

    d->busy = 0;
    if (r == NULL) /* told again on the next connection */
        return;
    if (r->type == REDIS_REPLY_ERROR) {
        lists_refused(f, "a drain's end", r->str); /* told again on the next tick */
        return;
    }
    if (r->type != REDIS_REPLY_INTEGER) {
        drop_bad(f, "the lists script answered something unexpected");
        return;
    }
    if (d->state == DRAIN_DONE && r->integer == 0)
        log_warn("drain: an answer was written after its lease ran out: its entries went back to the list and may "
                 "be handed out again");
    drain_free(d);
}

/* Tells Redis a drain's end: "done" (forget the records) or "back". */
static void settle(struct fleet_drain *d)
{
    struct fleet *f = d->f;

    if (d->busy || !lists_usable(f))
        return;
    if (lists_command(f, on_settled, d, REPLY_MAX_BYTES, d->list, d->key, d->state == DRAIN_DONE ? "done" : "back", 0,
                      NULL, NULL) == 0)
        d->busy = 1;
}

static void on_renewed(struct fleet *f, void *arg, const redisReply *r)
{
    struct fleet_drain *d = arg;

    if (r != NULL && r->type != REDIS_REPLY_INTEGER && r->type != REDIS_REPLY_ERROR) {
        d->busy = 0;
        drop_bad(f, "the lists script answered something unexpected");
        return;
    }
    drain_replied(d);
}

static void renew(struct fleet_drain *d)
{
    struct fleet *f = d->f;
    char lease[24];
    const char *extra[1] = {lease};

    snprintf(lease, sizeof(lease), "%" PRIu64, f->drain_lease_ms);
    if (!d->busy && lists_usable(f) &&
        lists_command(f, on_renewed, d, REPLY_MAX_BYTES, d->list, d->key, "renew", 1, extra, NULL) == 0)
        d->busy = 1;
}

/* Whether buf is whole records and nothing else. */
static int whole_records(const unsigned char *buf, size_t len)
{
    size_t pos = 0, rlen;

    while (drainlist_next(buf, len, &pos, &rlen) != NULL)
        ;
    return pos == len;
}

/* The take failed or its outcome is unknown: whatever it took returns. */
static void take_failed(struct fleet_drain *d, const char *why)
{
    d->state = DRAIN_BACK;
    if (!d->cancelled) {
        d->cancelled = 1;
        d->cb(d->arg, NULL, 0, why);
    }
    settle(d);
}

static void on_taken(struct fleet *f, void *arg, const redisReply *r)
{
    struct fleet_drain *d = arg;

    d->busy = 0;
    if (r == NULL) {
        take_failed(d, "redis became unreachable during the drain");
        return;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        lists_refused(f, "a drain", r->str);
        take_failed(d, "redis refused the drain");
        return;
    }
    if (r->type != REDIS_REPLY_STRING || !whole_records((const unsigned char *)r->str, r->len)) {
        drop_bad(f, "the lists script answered something unexpected");
        take_failed(d, "redis answered the drain with something unexpected"); /* told on the next connection */
        return;
    }
    if (r->len == 0) { /* nothing was taken */
        if (!d->cancelled)
            d->cb(d->arg, NULL, 0, NULL);
        drain_free(d);
        return;
    }
    if (d->cancelled) { /* the client went away meanwhile */
        d->state = DRAIN_BACK;
        settle(d);
        return;
    }
    d->state = DRAIN_ANSWERING;
    d->cb(d->arg, (const unsigned char *)r->str, r->len, NULL);
}

struct fleet_drain *fleet_drain_take(struct fleet *f, int list, size_t budget, fleet_taken_fn cb, void *arg)
{
    struct fleet_drain *d;
    char nbudget[24], lease[24];
    const char *extra[2] = {nbudget, lease};

    if (!f->up || !lists_usable(f) || (d = calloc(1, sizeof(*d))) == NULL)
        return NULL;
    /* This instance's entries not yet moved go first: Redis runs a
     * connection's commands in order, so the take sees them. */
    move(f, list);
    if (!lists_usable(f)) { /* the move dropped the connection */
        free(d);
        return NULL;
    }
    *d = (struct fleet_drain){.f = f, .state = DRAIN_TAKING, .list = list, .cb = cb, .arg = arg};
    snprintf(d->key, sizeof(d->key), "fcmd:drain:%s:%s:%016" PRIx64 ":%" PRIu64, list_names[list], f->member, f->nonce,
             ++f->ndrains);
    snprintf(nbudget, sizeof(nbudget), "%zu", budget);
    snprintf(lease, sizeof(lease), "%" PRIu64, f->drain_lease_ms);
    /* The reply: the budget, one record past it at most, and RESP's framing. */
    if (lists_command(f, on_taken, d, budget + DRAINLIST_MAX_RECORD + 1024, list, d->key, "take", 2, extra, NULL) !=
        0) {
        free(d);
        return NULL;
    }
    d->busy = 1;
    d->next = f->drains;
    f->drains = d;
    return d;
}

void fleet_drain_finish(struct fleet_drain *d, int written)
{
    if (d->state == DRAIN_TAKING) {
        d->cancelled = 1; /* its reply gives the records back */
        return;
    }
    if (d->state != DRAIN_ANSWERING)
        return;
    d->state = written ? DRAIN_DONE : DRAIN_BACK;
    settle(d);
}

/* Once a second, and on a new connection: batches to move, leases to renew,
 * drains' ends Redis has not heard of yet. */
static void lists_tick(struct fleet *f)
{
    struct fleet_drain *d, *next;

    if (!lists_usable(f))
        return;
    for (d = f->drains; d != NULL && f->link != NULL; d = next) {
        next = d->next; /* settling never frees at once: a reply does */
        if (d->state == DRAIN_ANSWERING)
            renew(d);
        else if (d->state != DRAIN_TAKING)
            settle(d);
    }
    for (int i = 0; i < FLEET_NLISTS; i++)
        move(f, i);
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
    if (f->link->nwant > 0 && now - f->link->want[f->link->first].sent_at >= FLEET_TIMEOUT_MS) {
        drop(f, "no reply within 3 s");
        return;
    }
    if (!f->inflight && now >= f->next_flush_at)
        flush(f);
    lists_tick(f);
}

/* ---- replies ---- */

/* arg: the command's name. */
static void on_handshake(struct fleet *f, void *arg, const redisReply *r)
{
    char why[300];

    if (r != NULL && r->type == REDIS_REPLY_ERROR) {
        snprintf(why, sizeof(why), "%s refused: %.200s", (const char *)arg, r->str);
        drop(f, why);
    }
}

/* A SCRIPT LOAD's answer: the script's SHA1 into sha.  Returns 0, or -1
 * with the connection dropped (or gone). */
static int take_sha(struct fleet *f, const redisReply *r, char sha[41])
{
    char why[300];

    if (r == NULL)
        return -1;
    if (r->type != REDIS_REPLY_STRING || r->len != 40) {
        snprintf(why, sizeof(why), "SCRIPT LOAD refused: %.200s", r->type == REDIS_REPLY_ERROR ? r->str : "?");
        drop(f, why);
        return -1;
    }
    memcpy(sha, r->str, 40);
    sha[40] = '\0';
    return 0;
}

static void on_loaded(struct fleet *f, void *arg, const redisReply *r)
{
    (void)arg;
    if (take_sha(f, r, f->sha) != 0)
        return;
    f->next_flush_at = 0;
    flush(f); /* at once: counters kept during an outage, and a fresh report */
    if (f->on_connect != NULL && f->link != NULL)
        f->on_connect(f->on_connect_arg);
}

static void on_lists_loaded(struct fleet *f, void *arg, const redisReply *r)
{
    (void)arg;
    if (take_sha(f, r, f->lists_sha) != 0)
        return;
    lists_tick(f); /* at once: drains' ends kept during an outage first */
}

/* Hands a reply to what awaits it; one nobody awaits drops the connection. */
static void dispatch(struct fleet *f, struct link *l, const redisReply *r)
{
    struct want w;

    if (l->nwant == 0) {
        drop_bad(f, "a reply to no command");
        return;
    }
    w = l->want[l->first];
    l->first = (l->first + 1) % NWANT;
    l->nwant--;
    w.fn(f, w.arg, r);
}

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
    l->fed += n;
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
        /* What the reader holds unread belongs to the replies after this one. */
        l->boundary = l->fed - (l->reader->len - l->reader->pos);
        dispatch(f, l, reply);
        freeReplyObject(reply);
        if (f->link != l)
            return;
    }
    /* The reply being read is capped by the command it answers. */
    if (l->fed - l->boundary > (l->nwant > 0 ? l->want[l->first].cap : REPLY_MAX_BYTES))
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
    const char *auth[3] = {"AUTH"}, *load[3] = {"SCRIPT", "LOAD", flush_script},
               *load_lists[3] = {"SCRIPT", "LOAD", lists_script};
    char db[16];
    const char *select[2] = {"SELECT", db};
    int n = 1;

    snprintf(db, sizeof(db), "%d", f->url.db);
    if (f->url.user[0] != '\0')
        auth[n++] = f->url.user;
    auth[n++] = f->url.password;
    if (f->url.password[0] != '\0' && send_command(f, on_handshake, "AUTH", REPLY_MAX_BYTES, n, auth, NULL) != 0)
        return;
    if (f->url.db != 0 && send_command(f, on_handshake, "SELECT", REPLY_MAX_BYTES, 2, select, NULL) != 0)
        return;
    if (send_command(f, on_loaded, NULL, REPLY_MAX_BYTES, 3, load, NULL) != 0)
        return;
    send_command(f, on_lists_loaded, NULL, REPLY_MAX_BYTES, 3, load_lists, NULL);
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

struct fleet *fleet_start(uv_loop_t *loop, const char *url, const char *password, struct shm_region *shm, unsigned slot,
                          unsigned drain_lease_s)
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
    log_url_any_at(url, f->printable, sizeof(f->printable));
    f->loop = loop;
    f->shm = shm;
    f->slot = &shm->slots[slot];
    f->rng = uv_hrtime() | 1;
    snprintf(f->member, sizeof(f->member), "%s:%u", shm->instance, slot);
    for (unsigned i = 0; i < NKEYS; i++)
        snprintf(f->keys[i], sizeof(f->keys[i]), "fcmd:%s", names[i] ? names[i] : "");
    snprintf(f->keys[1], sizeof(f->keys[1]), "fcmd:mark:%s", f->member);
    snprintf(f->keys[2], sizeof(f->keys[2]), "fcmd:mark:%s:lists", shm->instance);
    for (int i = 0; i < FLEET_NLISTS; i++) {
        snprintf(f->list_keys[i][0], sizeof(f->list_keys[i][0]), "fcmd:list:%s", list_names[i]);
        snprintf(f->list_keys[i][1], sizeof(f->list_keys[i][1]), "fcmd:inflight:%s", list_names[i]);
        snprintf(f->list_keys[i][2], sizeof(f->list_keys[i][2]), "fcmd:moved:%s:%s", shm->instance, list_names[i]);
    }
    f->drain_lease_ms = (uint64_t)drain_lease_s * 1000;
    f->nonce = backoff_random(&f->rng) ^ ((uint64_t)getpid() << 32);
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

int fleet_connected(const struct fleet *f)
{
    return f->link != NULL && f->sha[0] != '\0';
}

int fleet_command(struct fleet *f, fleet_reply_fn fn, void *arg, size_t cap, int argc, const char **argv,
                  const size_t *argvlen)
{
    if (!fleet_connected(f))
        return -1;
    return send_command(f, fn, arg, cap, argc, argv, argvlen);
}

void fleet_on_connect(struct fleet *f, void (*fn)(void *arg), void *arg)
{
    f->on_connect = fn;
    f->on_connect_arg = arg;
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
    int waiting = f->drains != NULL;

    /* The entries the lists held when the worker began to stop reach Redis
     * too (moved by any worker of the instance): its shared memory goes with
     * its last worker.  And Redis hears how every drain ended, rather than
     * waiting for the leases. */
    for (int i = 0; i < FLEET_NLISTS; i++) {
        uint64_t added, removed;

        drainlist_progress(list_of(f, i), &added, &removed);
        if (!f->stopping)
            f->stop_target[i] = added;
        waiting |= removed < f->stop_target[i];
    }
    f->stopping = 1;
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
        lists_tick(f);
        return 0;
    }
    if (counts_confirmed(f))
        return 1;
    if (!f->inflight)
        flush(f);
    return 0;
}
