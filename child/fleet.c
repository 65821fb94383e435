/*
 * child/fleet.c - fleet mode: a worker's counters in Redis, the fleet's totals back.
 *
 * The one idea: a flush sends the slot's absolute counters, and a Lua script
 * adds to the fleet's totals only what exceeds the (instance, slot) mark it
 * keeps, so a flush resent after a lost reply, or sent again by a respawned
 * worker, adds nothing twice.  One hiredis connection per worker, on the
 * worker's loop; nothing here ever waits for Redis.
 */
#include "fleet.h"
#include "../master/log.h"
#include "backoff.h"
#include "redis_url.h"

#include <hiredis/adapters/libuv.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
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

struct fleet {
    uv_loop_t *loop;
    struct shm_region *shm;
    struct shm_slot *slot;
    struct redis_url url;
    char printable[300];        /* the URL without its password, for the log */
    char member[40];            /* "instance:slot" */
    char keys[NKEYS][64];
    redisAsyncContext *ac;      /* NULL while not connected or connecting */
    uv_getaddrinfo_t resolver;
    int resolving;
    uv_timer_t tick;            /* flushes; also the connect and reply deadlines */
    uv_timer_t retry;           /* the reconnect back-off */
    char sha[41];               /* the loaded script */
    int up;                     /* connected, authenticated, script loaded */
    int ever_up;
    int outage;                 /* an outage is logged and not yet over */
    unsigned attempt;           /* failed connects since the last success */
    uint64_t rng;
    uint64_t connect_at, down_since, sent_at;
    int inflight;               /* a flush awaits its reply */
    uint64_t sent[NTRIPLES];    /* what that flush carried */
    struct fleet_totals totals;
    int have_totals;
    uint64_t totals_at;
};

static void connect_begin(struct fleet *f);

static void on_retry(uv_timer_t *t)
{
    connect_begin(t->data);
}

/* ---- outages ---- */

static void outage(struct fleet *f, const char *why)
{
    uint64_t delay = FLEET_RETRY_MIN_MS << (f->attempt < 6 ? f->attempt : 6);

    f->up = 0;
    f->inflight = 0;
    f->have_totals = 0;
    if (!f->outage) {
        f->outage = 1;
        f->down_since = uv_now(f->loop);
        if (f->ever_up)
            log_warn("redis: lost %s: %s; counting locally until it is back", f->printable, why);
        else
            log_warn("redis: cannot reach %s: %s; counting locally, retrying", f->printable, why);
    }
    if (delay > FLEET_RETRY_MAX_MS)
        delay = FLEET_RETRY_MAX_MS;
    /* Half fixed, half jitter, so a fleet's workers do not reconnect in step. */
    delay = delay / 2 + backoff_random(&f->rng) % (delay / 2 + 1);
    f->attempt++;
    uv_timer_start(&f->retry, on_retry, delay, 0);
}

/* Gives the connection up (its pending callbacks run with no reply) and
 * reconnects after the back-off. */
static void drop(struct fleet *f, const char *why)
{
    redisAsyncContext *ac = f->ac;

    f->ac = NULL; /* the callbacks this free runs see the context is gone */
    if (ac != NULL)
        redisAsyncFree(ac);
    outage(f, why);
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

static void on_flushed(redisAsyncContext *ac, void *reply, void *arg);

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
    if (redisAsyncCommandArgv(f->ac, on_flushed, NULL, (int)n, argv, NULL) != REDIS_OK) {
        drop(f, "cannot queue a command");
        return;
    }
    f->inflight = 1;
    f->sent_at = uv_now(f->loop);
}

static uint64_t reply_u64(const redisReply *r)
{
    if (r->type == REDIS_REPLY_INTEGER)
        return r->integer > 0 ? (uint64_t)r->integer : 0;
    if (r->type == REDIS_REPLY_STRING)
        return strtoull(r->str, NULL, 10);
    return 0;
}

/* Reads {totals, instances, pending}.  Returns 0, or -1 when it is not that. */
static int read_totals(const redisReply *r, struct fleet_totals *t)
{
    const redisReply *h;

    if (r->type != REDIS_REPLY_ARRAY || r->elements != 3 || r->element[0]->type != REDIS_REPLY_ARRAY ||
        r->element[1]->type != REDIS_REPLY_INTEGER || r->element[2]->type != REDIS_REPLY_INTEGER)
        return -1;
    memset(t, 0, sizeof(*t));
    h = r->element[0];
    for (size_t i = 0; i + 1 < h->elements; i += 2) {
        if (h->element[i]->type != REDIS_REPLY_STRING)
            return -1;
        for (unsigned c = 0; c < NTRIPLES; c++) {
            if (strcmp(h->element[i]->str, name_of(c)) != 0)
                continue;
            if (c < SHM_NCOUNTERS)
                t->counters[c] = reply_u64(h->element[i + 1]);
            else if (c == SHM_NCOUNTERS)
                t->canonical_dropped = reply_u64(h->element[i + 1]);
            else
                t->notregistered_dropped = reply_u64(h->element[i + 1]);
        }
    }
    t->instances = reply_u64(r->element[1]);
    t->pending = r->element[2]->integer;
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

static void on_flushed(redisAsyncContext *ac, void *reply, void *arg)
{
    struct fleet *f = ac->data;
    redisReply *r = reply;

    (void)arg;
    f->inflight = 0;
    if (r == NULL || f->ac != ac)
        return; /* the connection is going: outage() has it */
    if (r->type == REDIS_REPLY_ERROR) {
        drop(f, r->str); /* NOSCRIPT too: a new connection loads the script again */
        return;
    }
    if (read_totals(r, &f->totals) != 0) {
        drop(f, "the flush script answered something unexpected");
        return;
    }
    confirm(f);
    f->have_totals = 1;
    f->totals_at = uv_now(f->loop);
}

static void on_tick(uv_timer_t *t)
{
    struct fleet *f = t->data;
    uint64_t now = uv_now(f->loop);

    if (!f->up) {
        if (f->ac != NULL && now - f->connect_at >= FLEET_TIMEOUT_MS)
            drop(f, "no answer within 3 s");
        return;
    }
    if (f->inflight) {
        if (now - f->sent_at >= FLEET_TIMEOUT_MS)
            drop(f, "no reply within 3 s");
        return;
    }
    flush(f);
}

/* ---- connecting ---- */

static void on_handshake(redisAsyncContext *ac, void *reply, void *arg)
{
    struct fleet *f = ac->data;
    redisReply *r = reply;
    char why[300];

    if (r == NULL || f->ac != ac)
        return;
    if (r->type == REDIS_REPLY_ERROR) {
        snprintf(why, sizeof(why), "%s refused: %s", (const char *)arg, r->str);
        drop(f, why);
    }
}

static void on_loaded(redisAsyncContext *ac, void *reply, void *arg)
{
    struct fleet *f = ac->data;
    redisReply *r = reply;
    char why[300];

    (void)arg;
    if (r == NULL || f->ac != ac)
        return;
    if (r->type != REDIS_REPLY_STRING || r->len != 40) {
        snprintf(why, sizeof(why), "SCRIPT LOAD refused: %s", r->type == REDIS_REPLY_ERROR ? r->str : "?");
        drop(f, why);
        return;
    }
    memcpy(f->sha, r->str, 40);
    f->sha[40] = '\0';
    now_up(f);
    flush(f); /* at once: counters kept during an outage, and a fresh report */
}

/* AUTH, SELECT and SCRIPT LOAD go out as soon as the connection is made. */
static int handshake(struct fleet *f)
{
    redisAsyncContext *ac = f->ac;
    int rc = REDIS_OK;

    if (f->url.password[0] != '\0' && f->url.user[0] != '\0')
        rc = redisAsyncCommand(ac, on_handshake, "AUTH", "AUTH %s %s", f->url.user, f->url.password);
    else if (f->url.password[0] != '\0')
        rc = redisAsyncCommand(ac, on_handshake, "AUTH", "AUTH %s", f->url.password);
    if (rc == REDIS_OK && f->url.db != 0)
        rc = redisAsyncCommand(ac, on_handshake, "SELECT", "SELECT %d", f->url.db);
    if (rc == REDIS_OK)
        rc = redisAsyncCommand(ac, on_loaded, NULL, "SCRIPT LOAD %s", flush_script);
    return rc;
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    struct fleet *f = ac->data;

    if (status == REDIS_OK || f->ac != ac)
        return;
    f->ac = NULL; /* hiredis frees it after this callback */
    outage(f, ac->errstr[0] ? ac->errstr : "cannot connect");
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    struct fleet *f = ac->data;

    if (f->ac != ac)
        return;
    f->ac = NULL;
    outage(f, status == REDIS_OK || !ac->errstr[0] ? "connection closed" : ac->errstr);
}

static void open_context(struct fleet *f, const char *ip)
{
    redisAsyncContext *ac = ip ? redisAsyncConnect(ip, f->url.port) : redisAsyncConnectUnix(f->url.path);
    char why[400];

    if (ac == NULL) {
        outage(f, "out of memory");
        return;
    }
    if (ac->err) {
        snprintf(why, sizeof(why), "%s", ac->errstr);
        redisAsyncFree(ac);
        outage(f, why);
        return;
    }
    ac->data = f;
    if (redisLibuvAttach(ac, f->loop) != REDIS_OK) {
        redisAsyncFree(ac);
        outage(f, "cannot watch the socket");
        return;
    }
    f->ac = ac;
    if (redisAsyncSetConnectCallback(ac, on_connect) != REDIS_OK ||
        redisAsyncSetDisconnectCallback(ac, on_disconnect) != REDIS_OK || handshake(f) != REDIS_OK)
        drop(f, "cannot queue the handshake");
}

/* hiredis resolves names with a blocking getaddrinfo(): do it on libuv's
 * thread pool and hand hiredis the address. */
static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct fleet *f = req->data;
    char ip[INET6_ADDRSTRLEN] = "", why[400];

    f->resolving = 0;
    if (status != 0) {
        snprintf(why, sizeof(why), "cannot resolve %s: %s", f->url.host, uv_strerror(status));
        outage(f, why);
        return;
    }
    if (res->ai_family == AF_INET6)
        uv_ip6_name((const struct sockaddr_in6 *)res->ai_addr, ip, sizeof(ip));
    else
        uv_ip4_name((const struct sockaddr_in *)res->ai_addr, ip, sizeof(ip));
    uv_freeaddrinfo(res);
    open_context(f, ip);
}

static void connect_begin(struct fleet *f)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    int rc;
    char why[400];

    f->connect_at = uv_now(f->loop);
    if (f->url.is_unix) {
        open_context(f, NULL);
        return;
    }
    f->resolver.data = f;
    if ((rc = uv_getaddrinfo(f->loop, &f->resolver, on_resolved, f->url.host, NULL, &hints)) != 0) {
        snprintf(why, sizeof(why), "cannot resolve %s: %s", f->url.host, uv_strerror(rc));
        outage(f, why);
        return;
    }
    f->resolving = 1;
}

/* ---- the interface ---- */

struct fleet *fleet_start(uv_loop_t *loop, const char *url, struct shm_region *shm, unsigned slot)
{
    struct fleet *f = calloc(1, sizeof(*f));
    const char *pw = getenv("FCMD_REDIS_PASSWORD");
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
    if (f->url.password[0] == '\0' && pw != NULL && strlen(pw) < sizeof(f->url.password))
        strcpy(f->url.password, pw);
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
        uv_timer_start(&f->tick, on_tick, FLEET_FLUSH_MS, FLEET_FLUSH_MS) != 0) {
        log_error("redis: cannot start its timers");
        free(f);
        return NULL;
    }
    f->tick.data = f->retry.data = f;
    uv_unref((uv_handle_t *)&f->tick);
    uv_unref((uv_handle_t *)&f->retry);
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
