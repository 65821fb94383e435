/*
 * child/fleet/statuses.c - push statuses in Redis (statuses.h).
 *
 * The one idea: a worker never tells Redis a status, only what changed
 * (targets delivered, invalid, failed, and the errors) since its last
 * batch, and Redis adds it up.  So every worker of every instance that has
 * a part of a push (the one that accepted it, the ones that delivered it
 * from the queue in Redis, one that replayed it) writes to the same hash
 * without reading it first.  A batch whose reply is lost is not sent again:
 * the hash would count it twice; its changes are left out and logged.
 */
#include "statuses.h"
#include "fleet.h"
#include "script.h"
#include "../../common/log.h"
#include "../core/push_id.h"
#include "../../shm/region.h"

#include <errno.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * ARGV 1 the pending ttl (s), 2 the done ttl (s), 3 the errors a hash keeps,
 * then per push: id, targets, app, upstream, delivered, canonical, invalid,
 * failed (changes), n, then n pairs of token and reason.  The errors a hash
 * keeps are its first ones: tN and rN, N from 0, with "errors" their count.
 */
static const char flush_script[] =
    "local pttl, dttl, cap = ARGV[1], ARGV[2], tonumber(ARGV[3])\n"
    "local names = {'delivered', 'canonical', 'invalid', 'failed'}\n"
    "local i = 4\n"
    "while i + 8 <= #ARGV do\n"
    "  local k = 'fcmd:push:' .. ARGV[i]\n"
    "  local ne = tonumber(ARGV[i + 8]) or 0\n"
    "  local e = i + 9\n"
    "  if redis.call('EXISTS', k) == 0 then\n"
    /* The common case, a push begun and often finished within one batch:
     * one HSET of everything, nothing to read. */
    "    local f = {'targets', ARGV[i + 1], 'app', ARGV[i + 2], 'upstream', ARGV[i + 3]}\n"
    "    local done = 0\n"
    "    for j = 1, 4 do\n"
    "      local d = tonumber(ARGV[i + 3 + j]) or 0\n"
    "      if d > 0 then f[#f + 1] = names[j]; f[#f + 1] = d end\n"
    "      if j ~= 2 then done = done + d end\n"
    "    end\n"
    "    local n = math.min(ne, cap)\n"
    "    for j = 0, n - 1 do\n"
    "      f[#f + 1] = 't' .. j; f[#f + 1] = ARGV[e + 2 * j]\n"
    "      f[#f + 1] = 'r' .. j; f[#f + 1] = ARGV[e + 2 * j + 1]\n"
    "    end\n"
    "    if n > 0 then f[#f + 1] = 'errors'; f[#f + 1] = n end\n"
    "    redis.call('HSET', k, unpack(f))\n"
    "    redis.call('EXPIRE', k, done >= (tonumber(ARGV[i + 1]) or 1) and dttl or pttl)\n"
    "  else\n"
    "    redis.call('HSETNX', k, 'targets', ARGV[i + 1])\n"
    "    for j = 1, 4 do\n"
    "      local d = tonumber(ARGV[i + 3 + j])\n"
    "      if d and d > 0 then redis.call('HINCRBY', k, names[j], d) end\n"
    "    end\n"
    "    if ne > 0 then\n"
    "      local n = tonumber(redis.call('HGET', k, 'errors') or '0') or 0\n"
    "      for j = 0, ne - 1 do\n"
    "        if n < cap then\n"
    "          redis.call('HSET', k, 't' .. n, ARGV[e + 2 * j], 'r' .. n, ARGV[e + 2 * j + 1])\n"
    "          n = n + 1\n"
    "        end\n"
    "      end\n"
    "      redis.call('HSET', k, 'errors', n)\n"
    "    end\n"
    "    local v = redis.call('HMGET', k, 'targets', 'delivered', 'invalid', 'failed')\n"
    "    local done = (tonumber(v[2]) or 0) + (tonumber(v[3]) or 0) + (tonumber(v[4]) or 0)\n"
    "    redis.call('EXPIRE', k, done >= (tonumber(v[1]) or 1) and dttl or pttl)\n"
    "  end\n"
    "  i = e + 2 * ne\n"
    "end\n"
    "return 1\n";

/* KEYS 1 the hash: its known fields, none whose value is longer than any
 * fcmd writes (a foreign hash costs the reply no more than fcmd's own). */
static const char read_script[] =
    "local f = {'targets', 'delivered', 'canonical', 'invalid', 'failed', 'app', 'upstream'}\n"
    "for i = 0, 99 do f[#f + 1] = 't' .. i; f[#f + 1] = 'r' .. i end\n"
    "local v = redis.call('HMGET', KEYS[1], unpack(f))\n"
    "local out = {}\n"
    "for i = 1, #f do\n"
    "  if v[i] and #v[i] <= 4096 then out[#out + 1] = f[i]; out[#out + 1] = v[i] end\n"
    "end\n"
    "return out\n";

#define READ_REPLY_MAX (1u << 20)

struct rec {
    char id[PUSH_ID_MAX + 1];
    char app[APP_NAME_MAX + 1];
    unsigned upstream;
    uint32_t targets;
    uint32_t d[4];      /* delivered (canonical ones too), canonical, invalid, failed */
    uint32_t nerr;      /* errors in errs */
    uint64_t made_ms;   /* uv_now() when this change began */
    char *errs;         /* each: 2-byte token length, 2-byte reason length, the bytes */
    size_t errs_len;
};

/* A batch Redis has not answered yet. */
struct batch {
    struct fleet_statuses *fs;
    struct rec *recs;
    size_t n;
};

struct fleet_statuses {
    uv_loop_t *loop;
    struct fleet *f;
    const struct fcmd_options *o;
    struct shm_slot *slot;
    uv_timer_t timer;
    struct rec *recs;
    size_t n, cap;
    uint32_t *index; /* open addressing over recs: index + 1, 0 for none */
    size_t index_cap;
    size_t err_bytes; /* in recs' errs and in batches not answered */
    struct fleet_script flush_s, read_s;
    int inflight; /* a batch awaits its reply */
    unsigned gets; /* reads awaiting their replies */
    struct batch *sent;
    struct log_limit lost_log, full_log;
    int closed;
};

static uint64_t hash_id(const char *id)
{
    uint64_t h = 1469598103934665603ull;

    for (; *id; id++)
        h = (h ^ (unsigned char)*id) * 1099511628211ull;
    return h;
}

static void index_rebuild(struct fleet_statuses *fs)
{
    memset(fs->index, 0, fs->index_cap * sizeof(*fs->index));
    for (size_t i = 0; i < fs->n; i++) {
        size_t j = hash_id(fs->recs[i].id) & (fs->index_cap - 1);
        while (fs->index[j] != 0)
            j = (j + 1) & (fs->index_cap - 1);
        fs->index[j] = (uint32_t)i + 1;
    }
}

/* The changes of push id, made if need be; NULL when the worker holds too
 * many already (Redis unreachable for long) or memory ran out. */
static struct rec *rec_of(struct fleet_statuses *fs, const char *id, const char *app, unsigned upstream,
                          uint32_t targets)
{
    size_t j = hash_id(id) & (fs->index_cap - 1);
    struct rec *r;

    for (; fs->index[j] != 0; j = (j + 1) & (fs->index_cap - 1))
        if (strcmp(fs->recs[fs->index[j] - 1].id, id) == 0)
            return &fs->recs[fs->index[j] - 1];
    if (fs->n == FLEET_STATUS_MAX_PUSHES) {
        log_limited(&fs->full_log, LOG_WARN,
                    "redis: %d pushes' statuses wait for Redis; changes of others are left out of the fleet's statuses",
                    FLEET_STATUS_MAX_PUSHES);
        return NULL;
    }
    if (fs->n == fs->cap) {
        size_t cap = fs->cap ? fs->cap * 2 : 256;
        struct rec *n = realloc(fs->recs, cap * sizeof(*n));
        if (n == NULL)
            return NULL;
        fs->recs = n;
        fs->cap = cap;
    }
    r = &fs->recs[fs->n];
    memset(r, 0, sizeof(*r));
    snprintf(r->id, sizeof(r->id), "%s", id);
    snprintf(r->app, sizeof(r->app), "%s", app != NULL ? app : "");
    r->upstream = upstream;
    r->targets = targets;
    r->made_ms = uv_now(fs->loop);
    fs->index[j] = (uint32_t)++fs->n;
    return r;
}

static void add_error(struct fleet_statuses *fs, struct rec *r, const char *token, size_t tl, const char *reason)
{
    size_t rl = reason != NULL ? strnlen(reason, PUSH_STATUS_REASON_MAX) : 0;
    char *e;

    if (tl > FLEET_STATUS_TOKEN_MAX)
        tl = FLEET_STATUS_TOKEN_MAX;
    if (r->nerr >= PUSH_STATUS_ERRORS || fs->err_bytes + 4 + tl + rl > FLEET_STATUS_ERROR_BYTES ||
        (e = realloc(r->errs, r->errs_len + 4 + tl + rl)) == NULL)
        return; /* the counts still go; Redis keeps the first errors it gets */
    r->errs = e;
    e += r->errs_len;
    e[0] = (char)(tl & 0xff), e[1] = (char)(tl >> 8), e[2] = (char)(rl & 0xff), e[3] = (char)(rl >> 8);
    memcpy(e + 4, token, tl);
    memcpy(e + 4 + tl, reason, rl);
    r->errs_len += 4 + tl + rl;
    fs->err_bytes += 4 + tl + rl;
    r->nerr++;
}

static const char *upstream_name(unsigned u)
{
    return u < SHM_UPSTREAMS ? shm_upstream_names[u] : "";
}

static void on_flushed(struct fleet *f, void *arg, const redisReply *r);

static void free_recs(struct fleet_statuses *fs, struct rec *recs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        fs->err_bytes -= recs[i].errs_len;
        free(recs[i].errs);
    }
    free(recs);
}

/* Whether r's change goes in the next batch: it has an outcome, or its
 * push has waited FLEET_STATUS_BEGIN_HOLD_MS for one (or all goes now). */
static int due(const struct rec *r, uint64_t now, int all)
{
    return all || r->d[0] + r->d[2] + r->d[3] > 0 || now >= r->made_ms + FLEET_STATUS_BEGIN_HOLD_MS;
}

/* Moves the changes due, up to FLEET_STATUS_BATCH, from the table to out
 * (room for that many); returns how many.  One pass: the rest keep their
 * order. */
static size_t take_due(struct fleet_statuses *fs, struct rec *out, int all)
{
    uint64_t now = uv_now(fs->loop);
    size_t n = 0, kept = 0;

    for (size_t i = 0; i < fs->n; i++) {
        if (n < FLEET_STATUS_BATCH && due(&fs->recs[i], now, all))
            out[n++] = fs->recs[i];
        else
            fs->recs[kept++] = fs->recs[i];
    }
    fs->n = kept;
    if (n > 0)
        index_rebuild(fs);
    return n;
}

/* Puts a batch that could not go back at the table's end. */
static void untake(struct fleet_statuses *fs, const struct rec *recs, size_t n)
{
    memcpy(fs->recs + fs->n, recs, n * sizeof(*recs));
    fs->n += n;
    index_rebuild(fs);
}

/* Sends the changes due, up to FLEET_STATUS_BATCH pushes, in one script. */
static void flush(struct fleet_statuses *fs, int all)
{
    size_t n, argc = 6, k = 0, nerr = 0;
    struct batch *b;
    const char **argv = NULL;
    size_t *lens = NULL;
    char (*nums)[16] = NULL;
    char ttls[2][24];
    int rc;

    if (fs->n == 0 || fs->inflight || !fleet_connected(fs->f))
        return;
    if ((b = calloc(1, sizeof(*b))) == NULL ||
        (b->recs = malloc((fs->n < FLEET_STATUS_BATCH ? fs->n : FLEET_STATUS_BATCH) * sizeof(*b->recs))) == NULL) {
        free(b);
        return;
    }
    if ((n = take_due(fs, b->recs, all)) == 0)
        goto out;
    for (size_t i = 0; i < n; i++)
        nerr += b->recs[i].nerr;
    argc += 9 * n + 2 * nerr;
    argv = malloc(argc * sizeof(*argv));
    lens = malloc(argc * sizeof(*lens));
    nums = malloc(6 * n * sizeof(*nums));
    if (argv == NULL || lens == NULL || nums == NULL)
        goto out;
    snprintf(ttls[0], sizeof(ttls[0]), "%d", FLEET_STATUS_PENDING_TTL_S);
    snprintf(ttls[1], sizeof(ttls[1]), "%d", fs->o->push_status_ttl > 0 ? fs->o->push_status_ttl : 1);
    argv[2] = "0", argv[3] = ttls[0], argv[4] = ttls[1];
    argv[5] = "100";
    argc = 6;
    for (size_t i = 0; i < n; i++) {
        const struct rec *r = &b->recs[i];
        const char *e = r->errs;
        argv[argc++] = r->id;
        snprintf(nums[k], sizeof(nums[k]), "%" PRIu32, r->targets);
        argv[argc++] = nums[k++];
        argv[argc++] = r->app;
        argv[argc++] = upstream_name(r->upstream);
        for (int j = 0; j < 4; j++) {
            snprintf(nums[k], sizeof(nums[k]), "%" PRIu32, r->d[j]);
            argv[argc++] = nums[k++];
        }
        snprintf(nums[k], sizeof(nums[k]), "%" PRIu32, r->nerr);
        argv[argc++] = nums[k++];
        for (size_t j = argc - 9; j < argc; j++)
            lens[j] = strlen(argv[j]); /* every argument but the errors is a C string */
        for (uint32_t j = 0; j < r->nerr; j++) {
            size_t tl = (unsigned char)e[0] | (size_t)(unsigned char)e[1] << 8;
            size_t rl = (unsigned char)e[2] | (size_t)(unsigned char)e[3] << 8;
            lens[argc] = tl;
            argv[argc++] = e + 4;
            lens[argc] = rl;
            argv[argc++] = e + 4 + tl;
            e += 4 + tl + rl;
        }
    }
    for (size_t j = 2; j < 6; j++)
        lens[j] = strlen(argv[j]);
    rc = fleet_script_run(fs->f, &fs->flush_s, on_flushed, b, 4096, (int)argc, argv, lens); /* 1, or an error */
    if (rc != 0)
        goto out;
    /* Sent: the batch's changes wait for the reply. */
    b->n = n;
    b->fs = fs;
    fs->inflight = 1;
    fs->sent = b;
    b = NULL;
out:
    if (b != NULL) {
        untake(fs, b->recs, n);
        free(b->recs);
        free(b);
    }
    free(argv);
    free(lens);
    free(nums);
}

/* A batch that did not run (NOSCRIPT) goes back into the table. */
static void put_back(struct fleet_statuses *fs, struct batch *b)
{
    for (size_t i = 0; i < b->n; i++) {
        struct rec *o = &b->recs[i], *r = rec_of(fs, o->id, o->app, o->upstream, o->targets);
        const char *e = o->errs;
        if (r == NULL)
            continue;
        for (int j = 0; j < 4; j++)
            r->d[j] += o->d[j];
        for (uint32_t j = 0; j < o->nerr; j++) {
            size_t tl = (unsigned char)e[0] | (size_t)(unsigned char)e[1] << 8;
            size_t rl = (unsigned char)e[2] | (size_t)(unsigned char)e[3] << 8;
            char reason[PUSH_STATUS_REASON_MAX + 1];
            memcpy(reason, e + 4 + tl, rl);
            reason[rl] = '\0';
            add_error(fs, r, e + 4, tl, reason);
            e += 4 + tl + rl;
        }
    }
}

static void on_flushed(struct fleet *f, void *arg, const redisReply *r)
{
    struct batch *b = arg;
    struct fleet_statuses *fs = b->fs;

    (void)f;
    fs->inflight = 0;
    fs->sent = NULL;
    if (r != NULL && fleet_script_lost(fs->f, &fs->flush_s, r)) {
        if (!fs->closed)
            put_back(fs, b);
    } else if (r == NULL || r->type == REDIS_REPLY_ERROR) {
        uint64_t n = 0;
        for (size_t i = 0; i < b->n; i++)
            n += (uint64_t)b->recs[i].d[0] + b->recs[i].d[2] + b->recs[i].d[3];
        shm_add(fs->slot, SHM_FLEET_STATUS_LOST, n);
        log_limited(&fs->lost_log, LOG_WARN,
                    "redis: the statuses of %zu pushes may lack what this worker did (%s)", b->n,
                    r == NULL ? "the connection dropped before the reply" : r->str);
    }
    free_recs(fs, b->recs, b->n);
    free(b);
    if (!fs->closed && fs->n >= FLEET_STATUS_BATCH)
        flush(fs, 0); /* more than a batch waits: the next goes at once */
}

static void on_tick(uv_timer_t *t)
{
    flush(t->data, 0);
}

struct fleet_statuses *fleet_statuses_new(uv_loop_t *loop, struct fleet *f, const struct fcmd_options *o,
                                          struct shm_slot *slot)
{
    struct fleet_statuses *fs = calloc(1, sizeof(*fs));

    if (fs == NULL)
        return NULL;
    fs->loop = loop;
    fs->f = f;
    fs->o = o;
    fs->slot = slot;
    fs->index_cap = 2 * FLEET_STATUS_MAX_PUSHES;
    fs->lost_log = (struct log_limit)LOG_LIMIT_INIT(10000);
    fs->full_log = (struct log_limit)LOG_LIMIT_INIT(10000);
    if ((fs->index = calloc(fs->index_cap, sizeof(*fs->index))) == NULL ||
        fleet_script_init(&fs->flush_s, flush_script) != 0 || fleet_script_init(&fs->read_s, read_script) != 0 ||
        uv_timer_init(loop, &fs->timer) != 0) {
        free(fs->index);
        free(fs);
        return NULL;
    }
    fs->timer.data = fs;
    uv_timer_start(&fs->timer, on_tick, FLEET_STATUS_FLUSH_MS, FLEET_STATUS_FLUSH_MS);
    uv_unref((uv_handle_t *)&fs->timer);
    return fs;
}

void fleet_statuses_begin(struct fleet_statuses *fs, const char *id, const char *app, unsigned upstream,
                          uint32_t targets)
{
    if (fs != NULL)
        rec_of(fs, id, app, upstream, targets);
}

void fleet_statuses_outcome(struct fleet_statuses *fs, const char *id, const char *app, unsigned upstream,
                            uint32_t targets, enum push_outcome o, const char *token, size_t token_len,
                            const char *reason)
{
    struct rec *r;

    if (fs == NULL)
        return;
    if ((r = rec_of(fs, id, app, upstream, targets)) == NULL) {
        shm_add(fs->slot, SHM_FLEET_STATUS_LOST, 1);
        return;
    }
    switch (o) {
    case PUSH_CANONICAL: /* delivered, with a new token */
        r->d[0]++;
        r->d[1]++;
        break;
    case PUSH_DELIVERED:
        r->d[0]++;
        break;
    case PUSH_INVALID:
        r->d[2]++;
        add_error(fs, r, token, token_len, reason);
        break;
    case PUSH_FAILED:
        r->d[3]++;
        add_error(fs, r, token, token_len, reason);
        break;
    }
}

struct get {
    struct fleet_statuses *fs;
    fleet_status_fn *fn;
    void *arg;
    char key[16 + PUSH_ID_MAX];
    size_t key_len;
    int again; /* sent again after a NOSCRIPT */
};

static int send_get(struct get *g);

static void on_got(struct fleet *f, void *arg, const redisReply *r)
{
    struct get *g = arg;
    const char *str[2 * (7 + 2 * PUSH_STATUS_ERRORS)];
    size_t len[2 * (7 + 2 * PUSH_STATUS_ERRORS)], n = 0;
    struct status_record_errors e;
    struct push_status s;

    (void)f;
    if (r != NULL && fleet_script_lost(g->fs->f, &g->fs->read_s, r)) {
        if (!g->again && !g->fs->closed) {
            g->again = 1;
            if (send_get(g) == 0)
                return; /* the next call carries the script's body */
        }
        g->fn(g->arg, -1, NULL, NULL);
    } else if (r == NULL || r->type != REDIS_REPLY_ARRAY) {
        g->fn(g->arg, -1, NULL, NULL);
    } else {
        for (size_t i = 0; i < r->elements && n < sizeof(str) / sizeof(str[0]); i++) {
            const redisReply *x = r->element[i];
            str[n] = x->type == REDIS_REPLY_STRING ? x->str : NULL;
            len[n++] = x->type == REDIS_REPLY_STRING ? x->len : 0;
        }
        if (n > 0 && status_record_read(str, len, n, shm_upstream_names, SHM_UPSTREAMS, &s, &e) == 0)
            g->fn(g->arg, 1, &s, &e);
        else
            g->fn(g->arg, 0, NULL, NULL);
    }
    g->fs->gets--;
    free(g);
}

static int send_get(struct get *g)
{
    const char *argv[4];
    size_t lens[4];

    argv[2] = "1";
    lens[2] = 1;
    argv[3] = g->key;
    lens[3] = g->key_len;
    return fleet_script_run(g->fs->f, &g->fs->read_s, on_got, g, READ_REPLY_MAX, 4, argv, lens);
}

int fleet_statuses_get(struct fleet_statuses *fs, const char *id, size_t id_len, fleet_status_fn *fn, void *arg)
{
    struct get *g;
    int rc;

    if (fs == NULL || fs->closed || id_len > PUSH_ID_MAX)
        return -ENOTCONN;
    if (fs->gets >= FLEET_STATUS_GETS_MAX)
        return -EAGAIN;
    if ((g = calloc(1, sizeof(*g))) == NULL)
        return -ENOTCONN;
    g->fs = fs;
    g->fn = fn;
    g->arg = arg;
    g->key_len = (size_t)snprintf(g->key, sizeof(g->key), "fcmd:push:%.*s", (int)id_len, id);
    if ((rc = send_get(g)) != 0) {
        free(g);
        return rc == -EAGAIN ? -EAGAIN : -ENOTCONN;
    }
    fs->gets++;
    return 0;
}

size_t fleet_statuses_unsent(const struct fleet_statuses *fs)
{
    return fs != NULL ? fs->n : 0;
}

int fleet_statuses_settled(struct fleet_statuses *fs)
{
    if (fs == NULL || !fleet_connected(fs->f) || (fs->n == 0 && !fs->inflight))
        return 1;
    flush(fs, 1);
    return 0;
}

static void on_closed(uv_handle_t *h)
{
    struct fleet_statuses *fs = h->data;

    free_recs(fs, fs->recs, fs->n);
    free(fs->index);
    free(fs);
}

void fleet_statuses_free(struct fleet_statuses *fs)
{
    if (fs == NULL)
        return;
    fs->closed = 1;
    uv_close((uv_handle_t *)&fs->timer, on_closed);
}
