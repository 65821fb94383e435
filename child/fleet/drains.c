/*
 * child/fleet/drains.c - the drain lists in Redis (docs/FLEET.md, "Drains").
 *
 * Each instance moves what its shared-memory lists collect to one list per
 * kind in Redis, in numbered batches Redis appends once; a drain takes
 * entries under a lease this worker renews, and is settled in Redis ("done"
 * or "back") even across reconnects, so an entry is handed out once.
 */
#include "fleet_internal.h"
#include "../../common/log.h"
#include "../../shm/drainlist.h"
#include "../../common/backoff.h"

#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/*
 * The drain lists (docs/FLEET.md, "Drains").  KEYS: 1 the default app's list
 * (an app's is KEYS[1] .. ':' .. its name), 2 the in-flight set (zset:
 * drain key -> lease end, ms of Redis' clock), 3 the instance's move mark
 * (move) or one drain's key (the others), 4 the set of the app names that
 * have a list.  ARGV[1] is the operation.  Records travel with a two-byte
 * little-endian length; a move's and a held drain's record is its app's
 * name (a length byte, then the name, "" for the default app) and the
 * entry, a take's reply a zero byte and the entry.  Every call first returns
 * a few in-flight drains whose lease has run out to their lists' heads.
 *   move  ARGV 2 batch number, 3 records, 4 mark ttl s: appends each to its
 *         app's list unless this instance's batch of that number was
 *         appended already
 *   take  ARGV 2 budget in bytes, 3 lease ms, 4 all, only or except, 5...
 *         app names: pops from every app's list, the named apps' only, or
 *         every app's but the named, up to the budget (one record at least),
 *         keeps them under KEYS[3], returns them
 *   renew ARGV 2 lease ms: 1, or 0 when the lease had run out already
 *   done  the answer was written: 1, or 0 when the lease had run out
 *   back  the answer was not written: the records return to their heads
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
    "local function split(r)\n"
    "  local nl = string.byte(r, 1) or 0\n"
    "  return string.sub(r, 2, 1 + nl), string.sub(r, 2 + nl)\n"
    "end\n"
    "local function list_of(app)\n"
    "  if app == '' then return KEYS[1] end\n"
    "  return KEYS[1] .. ':' .. app\n"
    "end\n"
    "local function rec(s)\n"
    "  return string.char(#s % 256, math.floor(#s / 256)) .. s\n"
    "end\n"
    "local function back(key)\n"
    "  if redis.call('ZREM', KEYS[2], key) == 0 then return 0 end\n"
    "  local blob = redis.call('GET', key)\n"
    "  redis.call('DEL', key)\n"
    "  if not blob then return 0 end\n"
    "  local r = records(blob)\n"
    "  for j = #r, 1, -1 do\n"
    "    local app, e = split(r[j])\n"
    "    redis.call('LPUSH', list_of(app), e)\n"
    "  end\n"
    "  return #r\n"
    "end\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "for _, k in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, 16)) do back(k) end\n"
    "local op = ARGV[1]\n"
    "if op == 'move' then\n"
    "  if tonumber(ARGV[2]) > tonumber(redis.call('GET', KEYS[3]) or '0') then\n"
    "    for _, r in ipairs(records(ARGV[3])) do\n"
    "      local app, e = split(r)\n"
    "      redis.call('RPUSH', list_of(app), e)\n"
    "      if app ~= '' then redis.call('SADD', KEYS[4], app) end\n"
    "    end\n"
    "    redis.call('SET', KEYS[3], ARGV[2])\n"
    "  end\n"
    "  redis.call('EXPIRE', KEYS[3], ARGV[4])\n"
    "  return 1\n"
    "elseif op == 'take' then\n"
    "  local budget, out, held, used = tonumber(ARGV[2]), {}, {}, 0\n"
    "  local named, apps = {}, {}\n"
    "  for j = 5, #ARGV do named[ARGV[j]] = true end\n"
    "  if ARGV[4] == 'only' then\n"
    "    for j = 5, #ARGV do apps[#apps + 1] = ARGV[j] end\n"
    "  else\n"
    "    local all = redis.call('SMEMBERS', KEYS[4])\n"
    "    table.sort(all)\n"
    "    table.insert(all, 1, '')\n"
    "    for _, a in ipairs(all) do\n"
    "      if ARGV[4] == 'all' or not named[a] then apps[#apps + 1] = a end\n"
    "    end\n"
    "  end\n"
    "  local full = false\n"
    "  for _, app in ipairs(apps) do\n"
    "    local key = list_of(app)\n"
    "    while true do\n"
    "      local e = redis.call('LINDEX', key, 0)\n"
    "      if not e then break end\n"
    "      if #e + 1 <= 65535 and #app + #e + 1 <= 65535 then\n"
    "        if used > 0 and used + 3 + #e > budget then full = true break end\n"
    "        out[#out + 1] = rec(string.char(0) .. e)\n"
    "        held[#held + 1] = rec(string.char(#app) .. app .. e)\n"
    "        used = used + 3 + #e\n"
    "      end\n"
    "      redis.call('LPOP', key)\n"
    "    end\n"
    "    if full then break end\n"
    "  end\n"
    "  local blob = table.concat(out)\n"
    "  if #blob > 0 then\n"
    "    redis.call('SET', KEYS[3], table.concat(held))\n"
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

int drains_init(struct fleet *f, unsigned drain_lease_s)
{
    for (int i = 0; i < FLEET_NLISTS; i++) {
        snprintf(f->list_keys[i][0], sizeof(f->list_keys[i][0]), "fcmd:list:%s", list_names[i]);
        snprintf(f->list_keys[i][1], sizeof(f->list_keys[i][1]), "fcmd:inflight:%s", list_names[i]);
        snprintf(f->list_keys[i][2], sizeof(f->list_keys[i][2]), "fcmd:moved:%s:%s", f->shm->instance, list_names[i]);
        snprintf(f->list_keys[i][3], sizeof(f->list_keys[i][3]), "fcmd:listapps:%s", list_names[i]);
    }
    f->drain_lease_ms = (uint64_t)drain_lease_s * 1000;
    f->nonce = backoff_random(&f->rng) ^ ((uint64_t)getpid() << 32);
    if (fleet_script_init(&f->lists_s, lists_script) != 0)
        return -1;
    f->lists_s.by_link = 1;
    return 0;
}

static uint64_t mono_ms(void)
{
    return uv_hrtime() / 1000000;
}

static struct drainlist *list_of(const struct fleet *f, int i)
{
    return i == FLEET_CANONICAL ? f->shm->canonical : f->shm->notregistered;
}

/* Redis refused a drain-list command.  NOSCRIPT: the scripts are loaded
 * again.  Any other error (OOM, MISCONF, READONLY...) keeps the connection
 * (a READONLY server is left when the next flush meets it): what the
 * command concerns stays where it is and is tried again, and each distinct
 * refusal is logged once. */
static void lists_refused(struct fleet *f, const char *what, const redisReply *r)
{
    char why[sizeof(f->list_refusal)];

    if (fleet_script_lost(f, &f->lists_s, r))
        return; /* loaded again: tried again like any refusal */
    snprintf(why, sizeof(why), "%s was refused: %.100s", what, r->str);
    if (strcmp(why, f->list_refusal) == 0)
        return;
    memcpy(f->list_refusal, why, sizeof(why));
    log_warn("redis: %s: %s; the entries stay where they are", f->printable, why);
}

static int lists_usable(const struct fleet *f)
{
    return f->link != NULL && f->lists_s.loaded;
}

/* Sends the lists script: op on list i, KEYS[3] = key3, then extra ARGV
 * (at most LISTS_EXTRA_MAX). */
#define LISTS_EXTRA_MAX (APPS_MAX + 4)
static int lists_command(struct fleet *f, fleet_reply_fn fn, void *arg, size_t cap, int i, const char *key3,
                         const char *op, int nextra, const char **extra, const size_t *extralen)
{
    /* argv[0] and argv[1] are fleet_script_run()'s. */
    const char *argv[8 + LISTS_EXTRA_MAX] = {NULL, NULL, "4", f->list_keys[i][0], f->list_keys[i][1], key3,
                                             f->list_keys[i][3], op};
    size_t lens[8 + LISTS_EXTRA_MAX];
    int n = 8;

    if (nextra > LISTS_EXTRA_MAX)
        return -1;
    for (int k = 2; k < n; k++)
        lens[k] = strlen(argv[k]);
    for (int k = 0; k < nextra; k++, n++) {
        argv[n] = extra[k];
        lens[n] = extralen != NULL ? extralen[k] : strlen(extra[k]);
    }
    return fleet_script_run(f, &f->lists_s, fn, arg, cap, n, argv, lens);
}

static void move(struct fleet *f, int i);

static void on_moved(struct fleet *f, void *arg, const redisReply *r)
{
    int i = (int)(intptr_t)arg;

    f->moving[i] = 0;
    if (r == NULL) /* the batch stays reserved, sent again on the next connection */
        return;
    if (r->type == REDIS_REPLY_ERROR) {
        lists_refused(f, "moving entries to Redis", r);
        return;
    }
    if (r->type != REDIS_REPLY_INTEGER) {
        link_drop_bad(f, "the lists script answered something unexpected");
        return;
    }
    f->list_refusal[0] = '\0';
    drainlist_commit(list_of(f, i), f->move_seq[i]);
    move(f, i); /* what came meanwhile, at once */
}

/* A batch as Redis takes it: each live record's app name (a length byte,
 * then the name of the app whose row its tag is, "" for the default app)
 * before its entry.  A malloc'd buffer, or NULL (out of memory, or nothing
 * live); its length in *out_len. */
static unsigned char *named_records(const struct fleet *f, const unsigned char *recs, size_t len, size_t *out_len)
{
    const unsigned char *r;
    size_t pos = 0, rlen, n = 0, cap = 0;
    unsigned char *out;

    while ((r = drainlist_next(recs, len, &pos, &rlen)) != NULL)
        cap += 2 + 1 + APP_NAME_MAX + rlen;
    if (cap == 0 || (out = malloc(cap)) == NULL)
        return NULL;
    for (pos = 0; (r = drainlist_next(recs, len, &pos, &rlen)) != NULL;) {
        const char *name = "";
        size_t nl, total;
        if (rlen == 0 || r[0] == DRAINLIST_TAKEN)
            continue;
        if (r[0] > 0 && r[0] < SHM_APPS)
            name = f->shm->apps[r[0]].name;
        nl = strnlen(name, APP_NAME_MAX);
        if ((total = 1 + nl + rlen - 1) > DRAINLIST_MAX_RECORD)
            continue; /* a name and an entry no longer than a record: never, with fcmd's own entries */
        out[n] = (unsigned char)(total & 0xff);
        out[n + 1] = (unsigned char)(total >> 8);
        out[n + 2] = (unsigned char)nl;
        memcpy(out + n + 3, name, nl);
        memcpy(out + n + 3 + nl, r + 1, rlen - 1);
        n += 2 + total;
    }
    *out_len = n;
    return out;
}

/* Sends the next batch of list i to Redis, if there is one and no other
 * worker of the instance is sending it. */
static void move(struct fleet *f, int i)
{
    unsigned char *recs, *named;
    size_t len, named_len = 0;
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
    if ((named = named_records(f, recs, len, &named_len)) == NULL) {
        free(recs);
        if (count == 0) /* only entries a drain took: nothing for Redis, the batch is done */
            drainlist_commit(list_of(f, i), seq);
        return;
    }
    free(recs);
    recs = named;
    snprintf(nseq, sizeof(nseq), "%" PRIu64, seq);
    snprintf(ttl, sizeof(ttl), "%d", FLEET_MARK_TTL_S);
    extra[1] = (const char *)recs;
    lens[0] = strlen(nseq);
    lens[1] = named_len;
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
        lists_refused(f, "a drain's end", r); /* told again on the next tick */
        return;
    }
    if (r->type != REDIS_REPLY_INTEGER) {
        link_drop_bad(f, "the lists script answered something unexpected");
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
        link_drop_bad(f, "the lists script answered something unexpected");
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
        lists_refused(f, "a drain", r);
        take_failed(d, "redis refused the drain");
        return;
    }
    if (r->type != REDIS_REPLY_STRING || !whole_records((const unsigned char *)r->str, r->len)) {
        link_drop_bad(f, "the lists script answered something unexpected");
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

struct fleet_drain *fleet_drain_take(struct fleet *f, int list, size_t budget, const struct fleet_drain_apps *apps,
                                     fleet_taken_fn cb, void *arg)
{
    static const char *const modes[] = {"all", "only", "except"};
    struct fleet_drain *d;
    char nbudget[24], lease[24];
    const char *extra[LISTS_EXTRA_MAX] = {nbudget, lease, modes[apps->mode]};
    int nextra = 3;

    if (apps->n > APPS_MAX + 1)
        return NULL;
    for (size_t k = 0; k < apps->n; k++)
        extra[nextra++] = apps->names[k];
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
    if (lists_command(f, on_taken, d, budget + DRAINLIST_MAX_RECORD + 1024, list, d->key, "take", nextra, extra,
                      NULL) != 0) {
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
void drains_tick(struct fleet *f)
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


int drains_owed(struct fleet *f)
{
    int owed = f->drains != NULL;

    /* The entries the lists held when the worker began to stop reach Redis
     * too (moved by any worker of the instance): its shared memory goes with
     * its last worker.  And Redis hears how every drain ended, rather than
     * waiting for the leases. */
    for (int i = 0; i < FLEET_NLISTS; i++) {
        uint64_t added, removed;

        drainlist_progress(list_of(f, i), &added, &removed);
        if (!f->stopping)
            f->stop_target[i] = added;
        owed |= removed < f->stop_target[i];
    }
    f->stopping = 1;
    return owed;
}

void drains_free(struct fleet *f)
{
    while (f->drains != NULL) {
        struct fleet_drain *d = f->drains;
        f->drains = d->next;
        free(d);
    }
}
