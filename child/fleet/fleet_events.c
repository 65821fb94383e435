/*
 * child/fleet/fleet_events.c - the webhook's events in Redis: an outbox the
 * queue's acknowledgement script empties, and a stream read by a group.
 *
 * The one idea: an event reaches Redis no later than its push leaves the
 * queue (fleet_queue.c carries the outbox in its acknowledgement script),
 * and leaves Redis only once its receiver said 2xx or it grew too old.
 * Reading is as the queue reads: a script around XREADGROUP or XAUTOCLAIM
 * that hands back only each entry's id and its fields a, t and e (bounded),
 * so a foreign or huge entry costs a skipped entry, never the connection;
 * the held events' idle time is refreshed every third of
 * --redis-claim-after, so only a silent worker's grow idle enough to claim.
 */
#include "fleet_events.h"
#include "../../common/json.h"
#include "../../common/log.h"
#include "../../common/options.h"
#include "fleet.h"
#include "script.h"

#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define POLL_MS 100     /* an idle worker looks for new events this often */
#define READ_COUNT 200  /* events per read, at most */
#define MAX_IDS 1000    /* ids per acknowledgement or refresh */
#define HOLD_MAX 8000  /* events held at once, at most (refreshes stay a few commands) */
#define CLEAN_EVERY_MS 60000 /* how often idle consumers are looked for */
#define EVENT_ROOM (16u << 10) /* the room a read counts for each event it may bring */

struct fe_out {
    struct fe_out *next;
    int64_t at_ms;
    uint32_t app_len, len;
    char data[]; /* the app's name, then the text */
};

struct fleet_events {
    uv_loop_t *loop;
    struct fleet *f;
    struct shm_slot *slot;
    struct fe_sink sink;
    uint64_t claim_ms;
    char consumer[80];
    uv_timer_t timer;
    struct fe_out *out, **out_tail; /* the outbox */
    size_t nout;
    void (*kick)(void *arg);
    void *kick_arg;
    struct fe_held *held; /* read, not yet done */
    size_t nheld;
    char (*acks)[FE_ID_LEN]; /* done, still to acknowledge */
    size_t nacks, acks_cap;
    unsigned acks_flying;
    int group_ready, group_asked, reading, claiming, cleaning, stopping;
    int released;             /* a stopping worker's held events were made claimable */
    unsigned releases_flying; /* ...and Redis has not answered all of that yet */
    char cursor[FE_ID_LEN];
    uint64_t next_refresh, next_claim, next_clean;
    struct fleet_script read_s, claim_s;
    char refusal[160];
    struct log_limit bad_log;
};

/* Per entry {id, a, t, e}: e false when missing or not a string, its
 * length when over ARGV[m]; a false when missing or over FE_APP_MAX; the
 * whole entry {id} when it was deleted meanwhile. */
#define PICK_EVENTS_LUA                                                                                                \
    "local function pick(e, m)\n"                                                                                      \
    "  local out, most = {}, tonumber(ARGV[m])\n"                                                                      \
    "  for _, x in ipairs(e) do\n"                                                                                     \
    "    if type(x) == 'table' and type(x[1]) == 'string' then\n"                                                      \
    "      if type(x[2]) ~= 'table' then out[#out + 1] = {x[1]}\n"                                                     \
    "      else\n"                                                                                                     \
    "        local f = {}\n"                                                                                           \
    "        for j = 1, #x[2] - 1, 2 do\n"                                                                             \
    "          local k = x[2][j]\n"                                                                                    \
    "          if k == 'a' or k == 't' or k == 'e' then f[k] = x[2][j + 1] end\n"                                      \
    "        end\n"                                                                                                    \
    "        local a, t, ev = f['a'], f['t'], f['e']\n"                                                                \
    "        if type(a) ~= 'string' or #a > 64 then a = false end\n"                                                   \
    "        if type(t) ~= 'string' or #t > 20 then t = false end\n"                                                   \
    "        if type(ev) ~= 'string' then ev = false elseif #ev > most then ev = #ev end\n"                            \
    "        out[#out + 1] = {x[1], a, t, ev}\n"                                                                       \
    "      end\n"                                                                                                      \
    "    end\n"                                                                                                        \
    "  end\n"                                                                                                          \
    "  return out\n"                                                                                                   \
    "end\n"

/* KEYS[1] the stream; ARGV[1] the group, ARGV[2] the consumer, ARGV[3] the
 * count, ARGV[4] the most bytes of an event. */
static const char read_script[] =
    PICK_EVENTS_LUA
    "local r = redis.pcall('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', ARGV[3], 'STREAMS', KEYS[1], '>')\n"
    "if type(r) == 'table' and r.err then return r end\n"
    "if not r then return {} end\n"
    "return pick(r[1][2], 4)\n";

/* ...and ARGV[5] the idle time in ms, ARGV[6] the cursor: {next cursor, picked}. */
static const char claim_script[] =
    PICK_EVENTS_LUA
    "local r = redis.pcall('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[5], ARGV[6], 'COUNT', ARGV[3])\n"
    "if r.err then return r end\n"
    "return {r[1], pick(r[2], 4)}\n";

/* KEYS[1] the stream; ARGV[1] the group, then the ids: acknowledged, deleted. */
static const char ack_script[] =
    "redis.call('XACK', KEYS[1], ARGV[1], unpack(ARGV, 2))\n"
    "return redis.call('XDEL', KEYS[1], unpack(ARGV, 2))\n";

static void refused(struct fleet_events *fe, const char *what, const char *err)
{
    char why[sizeof(fe->refusal)];

    snprintf(why, sizeof(why), "%s: %.120s", what, err);
    if (strcmp(why, fe->refusal) != 0)
        log_warn("redis webhook events: %s", why);
    memcpy(fe->refusal, why, sizeof(why));
}

static int valid_id(const char *s, size_t len)
{
    const char *dash = memchr(s, '-', len);

    return len > 0 && len < FE_ID_LEN && dash != NULL && dash > s && (size_t)(dash - s) + 1 < len &&
           strspn(s, "0123456789") == (size_t)(dash - s) &&
           strspn(dash + 1, "0123456789") == len - (size_t)(dash - s) - 1;
}

/* ---- the outbox ---- */

int fleet_events_add(struct fleet_events *fe, const char *app, size_t app_len, int64_t at_ms, const char *text,
                     size_t len)
{
    struct fe_out *o;

    if (app_len > FE_APP_MAX || len > UINT32_MAX || (o = malloc(sizeof(*o) + app_len + len)) == NULL)
        return -1;
    o->next = NULL;
    o->at_ms = at_ms;
    o->app_len = (uint32_t)app_len;
    o->len = (uint32_t)len;
    memcpy(o->data, app, app_len);
    memcpy(o->data + app_len, text, len);
    *fe->out_tail = o;
    fe->out_tail = &o->next;
    fe->nout++;
    if (fe->kick != NULL)
        fe->kick(fe->kick_arg);
    return 0;
}

size_t fleet_events_take(struct fleet_events *fe, struct fe_batch *b, size_t max, size_t max_bytes, const char **argv,
                         size_t *argvlen, char (*at)[24])
{
    struct fe_out **tail = &fe->out;
    size_t n = 0, bytes = 0;

    for (struct fe_out *o = fe->out; o != NULL && n < max && (n == 0 || bytes + o->len <= max_bytes); o = o->next) {
        snprintf(at[n], sizeof(at[n]), "%" PRId64, o->at_ms);
        argv[3 * n] = o->data;
        argvlen[3 * n] = o->app_len;
        argv[3 * n + 1] = at[n];
        argvlen[3 * n + 1] = strlen(at[n]);
        argv[3 * n + 2] = o->data + o->app_len;
        argvlen[3 * n + 2] = o->len;
        bytes += o->len;
        n++;
        tail = &o->next;
    }
    b->head = n > 0 ? fe->out : NULL;
    b->n = n;
    b->bytes = bytes;
    fe->out = *tail;
    *tail = NULL;
    if (fe->out == NULL)
        fe->out_tail = &fe->out;
    fe->nout -= n;
    return n;
}

void fleet_events_taken(struct fleet_events *fe, struct fe_batch *b, int stored, size_t dropped)
{
    struct fe_out *o, *next, **tail;

    if (b->n == 0)
        return;
    if (!stored) { /* back to the head, in order, to go again */
        for (tail = &b->head; *tail != NULL; tail = &(*tail)->next)
            ;
        *tail = fe->out;
        if (fe->out == NULL)
            fe->out_tail = tail;
        fe->out = b->head;
        fe->nout += b->n;
        b->head = NULL;
        return;
    }
    for (o = b->head; o != NULL; o = next) {
        next = o->next;
        free(o);
    }
    b->head = NULL;
    if (dropped > 0)
        log_limited(&fe->bad_log, LOG_WARN,
                    "redis webhook events: %zu events dropped: the stream holds --redis-queue-max entries", dropped);
    fe->sink.stored(fe->sink.arg, b->n, b->bytes, dropped);
}

int fleet_events_outbox_empty(const struct fleet_events *fe)
{
    return fe->out == NULL;
}

void fleet_events_on_outbox(struct fleet_events *fe, void (*kick)(void *arg), void *arg)
{
    fe->kick = kick;
    fe->kick_arg = arg;
}

/* ---- acknowledgements ---- */

static void add_ack(struct fleet_events *fe, const char *id)
{
    if (fe->nacks == fe->acks_cap) {
        size_t cap = fe->acks_cap ? 2 * fe->acks_cap : 256;
        char(*v)[FE_ID_LEN] = realloc(fe->acks, cap * sizeof(*v));
        if (v == NULL)
            return; /* it stays pending: claimed and sent once more, later */
        fe->acks = v;
        fe->acks_cap = cap;
    }
    memcpy(fe->acks[fe->nacks++], id, FE_ID_LEN);
}

struct ackcmd {
    struct fleet_events *fe;
    size_t n;
    char ids[][FE_ID_LEN];
};

static void on_acked(struct fleet *f, void *arg, const redisReply *r)
{
    struct ackcmd *c = arg;

    (void)f;
    c->fe->acks_flying--;
    if (r == NULL || r->type == REDIS_REPLY_ERROR) {
        for (size_t i = 0; i < c->n; i++)
            add_ack(c->fe, c->ids[i]); /* acknowledging twice does nothing */
        if (r != NULL)
            refused(c->fe, "an acknowledgement was refused", r->str);
    }
    free(c);
}

static void send_acks(struct fleet_events *fe)
{
    while (fe->nacks > 0 && fe->acks_flying < 4 && fleet_connected(fe->f)) {
        size_t n = fe->nacks < MAX_IDS ? fe->nacks : MAX_IDS;
        struct ackcmd *c = malloc(sizeof(*c) + n * FE_ID_LEN);
        const char **argv = malloc((5 + n) * sizeof(*argv));
        int rc = -1;
        if (c != NULL && argv != NULL) {
            c->fe = fe;
            c->n = n;
            memcpy(c->ids, fe->acks + fe->nacks - n, n * FE_ID_LEN);
            argv[0] = "EVAL", argv[1] = ack_script, argv[2] = "1", argv[3] = FE_STREAM, argv[4] = FE_GROUP;
            for (size_t i = 0; i < n; i++)
                argv[5 + i] = c->ids[i];
            rc = fleet_command(fe->f, on_acked, c, 1024, (int)(5 + n), argv, NULL);
        }
        free(argv);
        if (rc != 0) {
            free(c);
            return;
        }
        fe->nacks -= n;
        fe->acks_flying++;
    }
}

static void unhold(struct fleet_events *fe, struct fe_held *h)
{
    if (h->prev != NULL)
        h->prev->next = h->next;
    else
        fe->held = h->next;
    if (h->next != NULL)
        h->next->prev = h->prev;
    fe->nheld--;
}

void fleet_events_done(struct fleet_events *fe, void *const *h, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        struct fe_held *x = h[i];
        unhold(fe, x);
        add_ack(fe, x->id);
        free(x);
    }
    send_acks(fe);
}

/* ---- reading ---- */

static int have(const struct fleet_events *fe, const char *id)
{
    for (const struct fe_held *h = fe->held; h != NULL; h = h->next)
        if (strcmp(h->id, id) == 0)
            return 1;
    return 0;
}

/* Whether an event's text is what fcmd writes: one JSON object whose first
 * member is an event_id of [A-Za-z0-9_.-], so a batch made of such texts
 * is a well-formed body whatever else was written to the stream. */
static int event_ok(const char *text, size_t len)
{
    static const char head[] = "{\"event_id\":\"";
    struct json_doc d;
    size_t id;
    int ok;

    if (len < sizeof(head) || memcmp(text, head, sizeof(head) - 1) != 0)
        return 0;
    id = strspn(text + sizeof(head) - 1, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-");
    if (id == 0 || id > 255 || sizeof(head) - 1 + id >= len || text[sizeof(head) - 1 + id] != '"')
        return 0;
    if (json_parse(&d, text, len) != 0)
        return 0;
    ok = d.ntok > 0 && d.tok[0].type == JSMN_OBJECT && d.tok[0].start == 0 && (size_t)d.tok[0].end == len;
    json_free(&d);
    return ok;
}

/* One picked entry: {id} deleted meanwhile, or {id, a, t, e}. */
static void take_entry(struct fleet_events *fe, const redisReply *e, int claimed)
{
    const redisReply *a, *t, *ev;
    struct fe_held *h;
    char id[FE_ID_LEN], at[24], *end;
    const char *why = NULL;
    long long at_ms = 0;

    if (e->type != REDIS_REPLY_ARRAY || (e->elements != 1 && e->elements != 4) ||
        e->element[0]->type != REDIS_REPLY_STRING || !valid_id(e->element[0]->str, e->element[0]->len)) {
        log_limited(&fe->bad_log, LOG_WARN, "redis webhook events: an entry without a readable id skipped");
        return;
    }
    memcpy(id, e->element[0]->str, e->element[0]->len);
    id[e->element[0]->len] = '\0';
    if (e->elements == 1) { /* deleted meanwhile */
        add_ack(fe, id);
        return;
    }
    if (claimed && have(fe, id))
        return;
    a = e->element[1], t = e->element[2], ev = e->element[3];
    if (t->type == REDIS_REPLY_STRING && t->len < sizeof(at)) {
        memcpy(at, t->str, t->len);
        at[t->len] = '\0';
        at_ms = strtoll(at, &end, 10);
        if (end == at || *end != '\0' || at_ms <= 0)
            why = "its time is not a number";
    } else {
        why = "it has no time";
    }
    if (why == NULL && a->type != REDIS_REPLY_STRING)
        why = "it names no app";
    if (why == NULL && ev->type == REDIS_REPLY_INTEGER)
        why = "it is over the most bytes an event may be";
    else if (why == NULL && (ev->type != REDIS_REPLY_STRING || !event_ok(ev->str, ev->len)))
        why = "it holds no event";
    if (why == NULL && (h = calloc(1, sizeof(*h))) == NULL)
        return; /* stays pending: claimed again later */
    if (why == NULL) {
        memcpy(h->id, id, sizeof(id));
        h->next = fe->held;
        if (fe->held != NULL)
            fe->held->prev = h;
        fe->held = h;
        fe->nheld++;
        if (fe->sink.take(fe->sink.arg, h, a->str, a->len, at_ms, ev->str, ev->len))
            return;
        unhold(fe, h);
        free(h);
        why = "no webhook here takes its app";
    }
    log_limited(&fe->bad_log, LOG_WARN, "redis webhook events: entry %s dropped: %s", id, why);
    atomic_fetch_add_explicit(&fe->slot->webhook[SHM_WEBHOOK_DROPPED], 1, memory_order_relaxed);
    add_ack(fe, id);
}

static void take_entries(struct fleet_events *fe, const redisReply *v, int claimed)
{
    for (size_t i = 0; i < v->elements; i++)
        take_entry(fe, v->element[i], claimed);
    send_acks(fe);
}

/* How many to read now: as many as the webhook's room takes at
 * EVENT_ROOM bytes each, which an event fcmd makes exceeds only with a
 * token near its 4 KiB limit made of characters JSON must escape. */
static size_t read_count(const struct fleet_events *fe)
{
    size_t room;

    if (fe->stopping || !fe->group_ready || fe->nheld >= HOLD_MAX)
        return 0;
    room = fe->sink.room(fe->sink.arg) / EVENT_ROOM;
    return room == 0 ? 0 : room < READ_COUNT ? room : READ_COUNT;
}

static size_t read_cap(size_t n)
{
    return 4096 + n * (FE_EVENT_MAX + FE_APP_MAX + 2 * FE_ID_LEN + 128);
}

static void group_lost(struct fleet_events *fe, const redisReply *r)
{
    if (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOGROUP", 7) == 0)
        fe->group_ready = fe->group_asked = 0;
}

static void read_events(struct fleet_events *fe);

static void on_read(struct fleet *f, void *arg, const redisReply *r)
{
    struct fleet_events *fe = arg;

    fe->reading = 0;
    if (r == NULL || fleet_script_lost(f, &fe->read_s, r))
        return;
    if (r->type == REDIS_REPLY_ERROR) {
        group_lost(fe, r);
        refused(fe, "a read was refused", r->str);
        return;
    }
    if (r->type != REDIS_REPLY_ARRAY) {
        refused(fe, "a read was answered", "something unexpected");
        return;
    }
    take_entries(fe, r, 0);
    /* More may wait: read on while the room lasts, not a read a tick.  An
     * empty read waits for the next tick. */
    if (r->elements > 0)
        read_events(fe);
}

static void read_events(struct fleet_events *fe)
{
    char count[24], most[24];
    size_t n = read_count(fe);
    const char *argv[] = {NULL, NULL, "1", FE_STREAM, FE_GROUP, fe->consumer, count, most};

    if (n == 0 || fe->reading || !fleet_connected(fe->f))
        return;
    snprintf(count, sizeof(count), "%zu", n);
    snprintf(most, sizeof(most), "%u", FE_EVENT_MAX);
    if (fleet_script_run(fe->f, &fe->read_s, on_read, fe, read_cap(n), 8, argv, NULL) == 0)
        fe->reading = 1;
}

static void on_claimed(struct fleet *f, void *arg, const redisReply *r)
{
    struct fleet_events *fe = arg;
    const redisReply *c;

    fe->claiming = 0;
    if (r == NULL)
        return;
    if (fleet_script_lost(f, &fe->claim_s, r)) {
        fe->next_claim = 0;
        return;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        group_lost(fe, r);
        refused(fe, "a claim was refused", r->str);
        return;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 || (c = r->element[0])->type != REDIS_REPLY_STRING ||
        c->len >= sizeof(fe->cursor) || r->element[1]->type != REDIS_REPLY_ARRAY) {
        refused(fe, "a claim was answered", "something unexpected");
        return;
    }
    if (valid_id(c->str, c->len)) {
        memcpy(fe->cursor, c->str, c->len);
        fe->cursor[c->len] = '\0';
    } else {
        snprintf(fe->cursor, sizeof(fe->cursor), "0-0");
    }
    if (r->element[1]->elements > 0)
        log_info("redis webhook events: took over %zu events of a silent consumer", r->element[1]->elements);
    take_entries(fe, r->element[1], 1);
    if (strcmp(fe->cursor, "0-0") != 0)
        fe->next_claim = 0; /* more to look at */
}

static void claim(struct fleet_events *fe)
{
    char idle[24], count[24], most[24];
    size_t n = read_count(fe);
    const char *argv[] = {NULL, NULL, "1", FE_STREAM, FE_GROUP, fe->consumer, count, most, idle, fe->cursor};

    if (n == 0 || fe->claiming || !fleet_connected(fe->f))
        return;
    snprintf(idle, sizeof(idle), "%" PRIu64, fe->claim_ms);
    snprintf(count, sizeof(count), "%zu", n);
    snprintf(most, sizeof(most), "%u", FE_EVENT_MAX);
    if (fleet_script_run(fe->f, &fe->claim_s, on_claimed, fe, read_cap(n), 10, argv, NULL) == 0)
        fe->claiming = 1;
}

static void on_refreshed(struct fleet *f, void *arg, const redisReply *r)
{
    (void)f, (void)arg, (void)r;
}

/* The held events are claimed again by their holder, which resets their
 * idle time. */
static void refresh(struct fleet_events *fe)
{
    const char *argv[6 + MAX_IDS];
    const struct fe_held *h = fe->held;

    argv[0] = "XCLAIM", argv[1] = FE_STREAM, argv[2] = FE_GROUP, argv[3] = fe->consumer, argv[4] = "0";
    while (h != NULL) {
        size_t n = 0;
        for (; h != NULL && n < MAX_IDS; h = h->next)
            argv[5 + n++] = h->id;
        argv[5 + n] = "JUSTID";
        fleet_command(fe->f, on_refreshed, NULL, 1024 + 64 * n, (int)(6 + n), argv, NULL);
    }
}

static void on_cleaned(struct fleet *f, void *arg, const redisReply *r)
{
    struct fleet_events *fe = arg;

    (void)f;
    fe->cleaning = 0;
    if (r != NULL && r->type == REDIS_REPLY_INTEGER && r->integer > 0)
        log_info("redis webhook events: removed %lld consumers that were idle and held nothing", r->integer);
}

/* Every worker's life adds a consumer: those that hold nothing and were
 * idle long go, as the queue's do. */
static void clean(struct fleet_events *fe)
{
    char idle[24];
    const char *argv[] = {"EVAL", fleet_clean_script, "1", FE_STREAM, FE_GROUP, idle, fe->consumer};
    uint64_t ms = fe->claim_ms * 10 > 60000 ? fe->claim_ms * 10 : 60000;

    if (fe->cleaning || !fe->group_ready)
        return;
    snprintf(idle, sizeof(idle), "%" PRIu64, ms);
    if (fleet_command(fe->f, on_cleaned, fe, 4096, 7, argv, NULL) == 0)
        fe->cleaning = 1;
}

static void on_group(struct fleet *f, void *arg, const redisReply *r)
{
    struct fleet_events *fe = arg;

    (void)f;
    fe->group_asked = 0;
    if (r == NULL)
        return;
    if (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "BUSYGROUP", 9) != 0) {
        refused(fe, "the consumer group cannot be made", r->str);
        return;
    }
    fe->group_ready = 1;
    read_events(fe);
}

static void make_group(struct fleet_events *fe)
{
    const char *argv[] = {"XGROUP", "CREATE", FE_STREAM, FE_GROUP, "0", "MKSTREAM"};

    if (fe->group_ready || fe->group_asked)
        return;
    if (fleet_command(fe->f, on_group, fe, 1024, 6, argv, NULL) == 0)
        fe->group_asked = 1;
}

void fleet_events_connected(struct fleet_events *fe)
{
    if (fe == NULL)
        return;
    fe->group_ready = fe->group_asked = 0;
    fe->reading = fe->claiming = fe->cleaning = 0;
    fe->read_s.loaded = fe->claim_s.loaded = 0;
    fe->next_refresh = 0;
    make_group(fe);
}

static void on_tick(uv_timer_t *t)
{
    struct fleet_events *fe = t->data;
    uint64_t now = uv_now(fe->loop);

    if (!fleet_connected(fe->f))
        return;
    make_group(fe);
    send_acks(fe);
    read_events(fe);
    if (now >= fe->next_refresh && fe->held != NULL && !fe->released) { /* a refresh would undo the release */
        refresh(fe);
        fe->next_refresh = now + fe->claim_ms / 3;
    }
    if (now >= fe->next_claim && fe->group_ready) {
        claim(fe);
        fe->next_claim = now + (fe->claim_ms / 2 > 500 ? fe->claim_ms / 2 : 500);
    }
    if (now >= fe->next_clean && fe->group_ready) {
        clean(fe);
        fe->next_clean = now + CLEAN_EVERY_MS;
    }
}

struct fleet_events *fleet_events_start(uv_loop_t *loop, struct fleet *f, const struct fcmd_options *o,
                                        struct shm_region *shm, unsigned slot, const struct fe_sink *sink)
{
    struct fleet_events *fe = calloc(1, sizeof(*fe));
    uint64_t rnd = uv_hrtime() ^ ((uint64_t)getpid() << 32);

    if (fe == NULL)
        return NULL;
    fe->loop = loop;
    fe->f = f;
    fe->slot = &shm->slots[slot];
    fe->sink = *sink;
    fe->claim_ms = (uint64_t)o->redis_claim_after * 1000;
    fe->out_tail = &fe->out;
    fe->bad_log = (struct log_limit)LOG_LIMIT_INIT(1000);
    snprintf(fe->cursor, sizeof(fe->cursor), "0-0");
    /* Unique per process life, as the queue's consumers are. */
    snprintf(fe->consumer, sizeof(fe->consumer), "%s:%u:%08" PRIx32, shm->instance, slot,
             (uint32_t)(rnd ^ (rnd >> 32)));
    if (fleet_script_init(&fe->read_s, read_script) != 0 || fleet_script_init(&fe->claim_s, claim_script) != 0 ||
        uv_timer_init(loop, &fe->timer) != 0) {
        free(fe);
        return NULL;
    }
    fe->timer.data = fe;
    if (uv_timer_start(&fe->timer, on_tick, POLL_MS, POLL_MS) != 0) {
        uv_close((uv_handle_t *)&fe->timer, NULL);
        return NULL; /* fe is lost with the loop's failure: the worker exits */
    }
    uv_unref((uv_handle_t *)&fe->timer);
    if (fleet_connected(f))
        fleet_events_connected(fe);
    return fe;
}

void fleet_events_stop(struct fleet_events *fe)
{
    if (fe != NULL)
        fe->stopping = 1;
}

static void on_released(struct fleet *f, void *arg, const redisReply *r)
{
    struct fleet_events *fe = arg;

    (void)f, (void)r;
    fe->releases_flying--;
}

/* A stopping worker will send its held events no more: they are claimed
 * again by itself with an idle time of --redis-claim-after, so the others'
 * next XAUTOCLAIM takes them at once instead of after that long. */
static void release_held(struct fleet_events *fe)
{
    const char *argv[8 + MAX_IDS];
    char idle[24];
    const struct fe_held *h = fe->held;

    snprintf(idle, sizeof(idle), "%" PRIu64, fe->claim_ms);
    argv[0] = "XCLAIM", argv[1] = FE_STREAM, argv[2] = FE_GROUP, argv[3] = fe->consumer, argv[4] = "0";
    while (h != NULL) {
        size_t n = 0;
        for (; h != NULL && n < MAX_IDS; h = h->next)
            argv[5 + n++] = h->id;
        argv[5 + n] = "IDLE", argv[6 + n] = idle, argv[7 + n] = "JUSTID";
        if (fleet_command(fe->f, on_released, fe, 1024 + 64 * n, (int)(8 + n), argv, NULL) == 0)
            fe->releases_flying++;
    }
}

int fleet_events_settled(struct fleet_events *fe)
{
    if (fe == NULL || !fleet_connected(fe->f))
        return 1;
    send_acks(fe);
    if (fe->stopping && !fe->released) {
        release_held(fe);
        fe->released = 1;
    }
    return fe->nacks == 0 && fe->acks_flying == 0 && fe->releases_flying == 0;
}

static void on_fe_closed(uv_handle_t *h)
{
    free(h->data);
}

void fleet_events_free(struct fleet_events *fe)
{
    size_t n = 0, bytes = 0;

    if (fe == NULL)
        return;
    for (struct fe_out *o = fe->out, *next; o != NULL; o = next) {
        next = o->next;
        n++;
        bytes += o->len;
        free(o);
    }
    if (n > 0) {
        log_warn("redis webhook events: %zu events never reached Redis before the exit: dropped", n);
        fe->sink.stored(fe->sink.arg, n, bytes, n);
    }
    for (struct fe_held *h = fe->held, *next; h != NULL; h = next) {
        next = h->next;
        free(h);
    }
    free(fe->acks);
    uv_close((uv_handle_t *)&fe->timer, on_fe_closed);
}
