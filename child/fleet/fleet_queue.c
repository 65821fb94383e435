/*
 * child/fleet/fleet_queue.c - the queue in Redis: one stream, one consumer group.
 *
 * Intake: a push accepted at /gcm/send is encoded as a spool record and
 * waits here; once per loop turn (a uv_check handle) the waiting pushes go
 * to Redis as one script that checks the stream's length against
 * --redis-queue-max and adds each with XADD.  Only its answer lets
 * /gcm/send say 200; a push Redis has not taken within FQ_DEADLINE_MS is
 * answered 503, and if Redis takes it afterwards a second script takes it
 * back unless a consumer already holds it.
 *
 * Delivery: while the local queue has little ready, the worker reads new
 * entries (XREADGROUP in a script, never blocking: the connection is
 * shared) and feeds them to the sender as pushes; an entry is read exactly
 * as a replayed spool record is checked.  The script hands back only each
 * entry's id and its field p, so a foreign entry (thousands of fields, a
 * huge field, a huge p) costs a skipped entry, never the connection.
 * When a push's last target has its final outcome its entry is
 * acknowledged and deleted (one script per loop turn); with a webhook, the
 * same script first adds the events waiting in the outbox of
 * fleet_events.c, so a push never leaves the stream before its events.
 * While it works on entries the worker refreshes their idle time every
 * third of --redis-claim-after, so only the entries of a worker that went
 * silent grow idle enough for XAUTOCLAIM, which every worker runs now and
 * then.  Consumers that hold nothing and were idle long are removed.
 */
#include "fleet_queue.h"
#include "../../common/log.h"
#include "../../common/options.h"
#include "../../shm/metrics.h"
#include "../../shm/push_status.h"
#include "../core/buf.h"
#include "fleet.h"
#include "fleet_events.h"
#include "script.h"
#include "../core/queue.h"
#include "../store/record.h"
#include "../store/spool_replay.h"

#include <errno.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_BATCH 256                 /* pushes per add script */
#define MAX_BATCH_BYTES (8u << 20)    /* ...and their bytes */
#define MAX_FLYING 8                  /* add scripts awaiting their answer */
#define MAX_IDS 1000                  /* entry ids per acknowledgement or refresh */
#define MAX_ACKS_FLYING 4
#define READ_COUNT 64                 /* entries per read, at most */
#define READY_LOW 512                 /* read while fewer targets than this wait to be sent */
#define HOLD_MAX 8000                 /* ...and it holds fewer entries than this (refreshes stay few) */
#define CLEAN_EVERY_MS 60000          /* how often idle consumers are looked for */
#define MAX_DELIVERIES 5              /* an entry taken this often and never finished is given up */
#define UNSERVED_CLAIMS 10            /* an entry no instance served for this many --redis-claim-after fails */
#define LEFT_RECENT 1024              /* entries a worker remembers leaving, so it does not count them twice */
#define CLAIM_EVERY_MAX_MS 2000       /* a capable worker finds a left entry at least this soon */
/* The largest entry any fcmd may accept (a record's bound, beyond every
 * instance's limits): a p larger than this is skipped, never left. */
#define ENTRY_HARD_MAX ((size_t)RECORD_HEADER + RECORD_MAX_PAYLOAD)
#define HEAD_LEN RECORD_HEADER        /* of a p too large to read: what tells a push from garbage */
#define ID_LEN 44                     /* "ms-seq" */

/* KEYS[1] the stream.  ARGV[1] the bound in entries, then one record each.
 * Returns one entry id per record, or false for a record that did not fit. */
static const char add_script[] =
    "local room = tonumber(ARGV[1]) - redis.call('XLEN', KEYS[1])\n"
    "local ids = {}\n"
    "for i = 2, #ARGV do\n"
    "  if i - 1 > room then ids[i - 1] = false\n"
    "  else ids[i - 1] = redis.call('XADD', KEYS[1], '*', 'p', ARGV[i]) end\n"
    "end\n"
    "return ids\n";

#define HEAD_LUA "16" /* HEAD_LEN, for the script's text */
_Static_assert(HEAD_LEN == 16, "HEAD_LUA is HEAD_LEN");

/* What the read and claim scripts make of the entries Redis gave them
 * (e; most, the most bytes of a push within this instance's limits; cut, the
 * add time in ms before which an entry has waited too long; hard,
 * ENTRY_HARD_MAX): per entry {id, p}, with p false when the entry has no
 * field p and {} when the entry was deleted meanwhile; a p larger than most
 * comes as {id, its length, its first HEAD_LEN bytes} (a push for an
 * instance with larger limits, or garbage), except that one such p of an
 * entry older than cut that begins as a push record comes whole: this
 * instance fails it (UNSERVED_CLAIMS).  An entry without even an id (a
 * claim on Redis 6.2 of a deleted one) is left out.  Nothing else of an
 * entry leaves Redis, so a reply is bounded by the count, most and hard. */
#define PICK_LUA                                                                                                       \
    "local function pick(e, most, cut, hard)\n"                                                                        \
    "  local out, full = {}, false\n"                                                                                  \
    "  most, cut, hard = tonumber(most), tonumber(cut), tonumber(hard)\n"                                              \
    "  for _, x in ipairs(e) do\n"                                                                                     \
    "    if type(x) == 'table' then\n"                                                                                 \
    "      local p, y = false, {x[1]}\n"                                                                               \
    "      if type(x[2]) ~= 'table' then p = {}\n"                                                                     \
    "      else\n"                                                                                                     \
    "        for j = 1, #x[2] - 1, 2 do if x[2][j] == 'p' then p = x[2][j + 1] end end\n"                              \
    "        if type(p) ~= 'string' then p = false\n"                                                                  \
    "        elseif #p > most then\n"                                                                                  \
    "          local ms = tonumber(string.match(x[1], '^%d+')) or cut\n"                                               \
    "          if not full and ms < cut and #p <= hard and string.sub(p, 1, 4) == 'FCSP' then full = true\n"           \
    "          else y[3] = string.sub(p, 1, " HEAD_LUA "); p = #p end\n"                                               \
    "        end\n"                                                                                                    \
    "      end\n"                                                                                                      \
    "      y[2] = p\n"                                                                                                 \
    "      out[#out + 1] = y\n"                                                                                        \
    "    end\n"                                                                                                        \
    "  end\n"                                                                                                          \
    "  return out\n"                                                                                                   \
    "end\n"

/* Reads new entries.  KEYS[1] the stream; ARGV[1] the group, ARGV[2] the
 * consumer, ARGV[3] the count, ARGV[4] the most bytes of a push, ARGV[5]
 * the cut and ARGV[6] the hard bound (pick).  Returns the picked entries.
 * Errors (NOGROUP...) come back as they are: pcall keeps their text first. */
static const char read_script[] =
    PICK_LUA
    "local r = redis.pcall('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', ARGV[3], 'STREAMS', KEYS[1], '>')\n"
    "if type(r) == 'table' and r.err then return r end\n"
    "if not r then return {} end\n"
    "return pick(r[1][2], ARGV[4], ARGV[5], ARGV[6])\n";

/* Claims the entries of silent consumers, and those other workers left.
 * KEYS[1] the stream; ARGV[1] the group, ARGV[2] the consumer, ARGV[3] the
 * count, ARGV[4] the most bytes of a push, ARGV[5] the idle time in ms,
 * ARGV[6] the cursor, ARGV[7] the cut and ARGV[8] the hard bound (pick).
 * Returns {next cursor, picked entries}.  The ids Redis 7 lists as deleted
 * are left out: Redis has already removed them from the pending list. */
static const char claim_script[] =
    PICK_LUA
    "local r = redis.pcall('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[5], ARGV[6], 'COUNT', ARGV[3])\n"
    "if r.err then return r end\n"
    "return {r[1], pick(r[2], ARGV[4], ARGV[7], ARGV[8])}\n";

/* Takes back entries added after /gcm/send had answered 503: each that no
 * consumer holds yet is deleted (1); one already read, or finished, stays (0).
 * KEYS[1] the stream; ARGV[1] the group, then the ids. */
static const char cancel_script[] =
    "local out = {}\n"
    "for i = 2, #ARGV do\n"
    "  local held = #redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1) > 0\n"
    "  if not held and redis.call('XDEL', KEYS[1], ARGV[i]) == 1 then out[i - 1] = 1 else out[i - 1] = 0 end\n"
    "end\n"
    "return out\n";

/* KEYS[1] the stream, KEYS[2] the webhook's events; ARGV[1] the group,
 * ARGV[2] the bound on events, ARGV[3] how many ids, then the ids, then
 * (app, at, text) per event.  The events go in first: a push leaves the
 * queue only once the events told of it are in Redis (fleet_events.h).
 * Returns {entries deleted, events dropped over the bound}. */
static const char ack_script[] =
    "local n = tonumber(ARGV[3])\n"
    "local dropped, room = 0, 0\n"
    "if #ARGV > 3 + n then room = tonumber(ARGV[2]) - redis.call('XLEN', KEYS[2]) end\n"
    "for i = 4 + n, #ARGV - 2, 3 do\n"
    "  if room > 0 then\n"
    "    redis.call('XADD', KEYS[2], '*', 'a', ARGV[i], 't', ARGV[i + 1], 'e', ARGV[i + 2])\n"
    "    room = room - 1\n"
    "  else dropped = dropped + 1 end\n"
    "end\n"
    "local del = 0\n"
    "if n > 0 then\n"
    "  redis.call('XACK', KEYS[1], ARGV[1], unpack(ARGV, 4, 3 + n))\n"
    "  del = redis.call('XDEL', KEYS[1], unpack(ARGV, 4, 3 + n))\n"
    "end\n"
    "return {del, dropped}\n";

/* Gives up the entries that consumers took ARGV[3] times or more and that
 * are idle again (each holder died or was cut off before finishing it): an
 * entry that breaks every reader, or a push that kills every worker that
 * tries it, must not go round the fleet for ever.  KEYS[1] the stream;
 * ARGV[1] the group, ARGV[2] the idle time in ms, ARGV[4] how many to look at.
 * Returns their ids. */
static const char reap_script[] =
    "local out = {}\n"
    "for _, p in ipairs(redis.call('XPENDING', KEYS[1], ARGV[1], 'IDLE', tonumber(ARGV[2]), '-', '+',\n"
    "                               tonumber(ARGV[4]))) do\n"
    "  if p[4] >= tonumber(ARGV[3]) then\n"
    "    redis.call('XACK', KEYS[1], ARGV[1], p[1])\n"
    "    redis.call('XDEL', KEYS[1], p[1])\n"
    "    out[#out + 1] = p[1]\n"
    "  end\n"
    "end\n"
    "return out\n";

/* Leaves entries this consumer holds and cannot serve to the others: each
 * is made idle for ARGV[3] ms (--redis-claim-after), so the next claim of
 * any worker takes it, and its delivery count goes back to what it was
 * before this consumer took it, so leaving it never counts as a holder
 * that died (reap_script).  KEYS[1] the stream; ARGV[1] the group, ARGV[2]
 * the consumer, then the ids.  Returns how many it left. */
static const char leave_script[] =
    "local n = 0\n"
    "for i = 4, #ARGV do\n"
    "  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)\n"
    "  if #p > 0 and p[1][2] == ARGV[2] then\n"
    "    local count = p[1][4] - 1\n"
    "    if count < 0 then count = 0 end\n"
    "    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'IDLE', ARGV[3], 'RETRYCOUNT', count, 'JUSTID')\n"
    "    n = n + 1\n"
    "  end\n"
    "end\n"
    "return n\n";

struct fq_id {
    uint64_t ms, seq;
};

/* An entry this worker left, and when. */
struct fq_left {
    struct fq_id id;
    uint64_t at; /* uv_now */
};

/* One add script on its way: the pushes it carries, in order. */
struct batch {
    struct fleet_queue *fq;
    struct fq_waiter *head;
    size_t n;
    int answered;     /* the deadline passed: the waiters were told 503 */
    uint32_t *counts; /* ...and how many targets each push had, or NULL */
    struct batch *next;
};

/* Ids a command carries, to be sent again if it fails. */
struct idcmd {
    struct fleet_queue *fq;
    size_t n;
    uint32_t *counts; /* targets per id, for a cancel */
    struct fq_id ids[];
};

struct fleet_queue {
    uv_loop_t *loop;
    struct fleet *f;
    struct shm_slot *slot;
    struct ledger *statuses; /* the instance's push statuses */
    struct queue *q;
    void (*taken)(void *arg); /* after a read brought entries: the worker sends them */
    void *taken_arg;
    const struct request_limits *limits;
    const struct fcmd_options *opts; /* the apps a push may name */
    int (*serves)(void *arg, unsigned app, int upstream); /* whether this worker can send it, or NULL: all */
    void *serves_arg;
    long max;             /* --redis-queue-max */
    uint64_t claim_ms;    /* --redis-claim-after */
    size_t entry_max;     /* the most bytes of an entry's push (p) within this instance's limits */
    uint64_t unserved_ms; /* an entry no instance served for this long fails: UNSERVED_CLAIMS x claim_ms */
    char consumer[80];
    uv_check_t check;     /* the adds and acknowledgements of a loop turn */
    uv_timer_t timer;     /* deadlines, reads, refreshes, claims */
    struct fq_waiter *waiting, **waiting_tail; /* not yet sent */
    struct batch *flying, **flying_tail;       /* sent, in order */
    unsigned nflying;
    int group_ready, group_asked;
    int reading, claiming, cleaning, reaping;
    struct fleet_script read_s, claim_s, leave_s; /* the reads, claims and leaves go by digest (script.h) */
    struct fq_id *leaving; /* entries to leave to other instances, in the next leave script */
    size_t nleaving, leaving_cap;
    int leave_flying;
    struct fq_left left[LEFT_RECENT]; /* the entries it left lately, a ring */
    size_t nleft;                     /* how many were ever put in it */
    int stopping;
    unsigned closing; /* handles fleet_queue_free() closes that libuv has not closed yet */
    int slow;       /* a deadline passed; until Redis answers again */
    int slow_logged; /* ...said once, until a push is taken in time again */
    struct push *held; /* pushes read from the stream and not finished */
    size_t nheld;
    struct fq_id *acks; /* finished pushes whose entries are still to acknowledge */
    size_t nacks, acks_cap;
    unsigned acks_flying;
    char cursor[ID_LEN]; /* XAUTOCLAIM's */
    uint64_t next_refresh, next_claim, next_clean;
    char refusal[160];
    struct log_limit bad_log, oom_log, left_log, unserved_log;
    struct fleet_events *fe; /* with a webhook: its events go in with the acknowledgements */
};

#define LOAD(x) atomic_load_explicit(&(x), memory_order_relaxed)

static void on_check(uv_check_t *h);

/* The adds, acknowledgements and reads go out at the end of the loop turn. */
static void kick(struct fleet_queue *fq)
{
    uv_check_start(&fq->check, on_check);
}

/* ---- ids ---- */

static int parse_id(const char *s, size_t len, struct fq_id *id)
{
    char buf[ID_LEN], *dash, *end;

    if (len == 0 || len >= sizeof(buf))
        return -1;
    memcpy(buf, s, len);
    buf[len] = '\0';
    if ((dash = strchr(buf, '-')) == NULL || dash == buf || strspn(buf, "0123456789") != (size_t)(dash - buf) ||
        dash[1] == '\0' || strspn(dash + 1, "0123456789") != strlen(dash + 1))
        return -1;
    errno = 0;
    id->ms = strtoull(buf, &end, 10);
    id->seq = strtoull(dash + 1, &end, 10);
    /* No entry is 0-0 (Redis never gives it out), and a push marks with it
     * that it did not come from the stream: an entry claiming it is refused. */
    return errno == 0 && (id->ms != 0 || id->seq != 0) ? 0 : -1;
}

static void format_id(const struct fq_id *id, char out[ID_LEN])
{
    snprintf(out, ID_LEN, "%" PRIu64 "-%" PRIu64, id->ms, id->seq);
}

static int add_ack(struct fleet_queue *fq, struct fq_id id)
{
    if (fq->nacks == fq->acks_cap) {
        size_t cap = fq->acks_cap ? 2 * fq->acks_cap : 256;
        struct fq_id *v = realloc(fq->acks, cap * sizeof(*v));
        if (v == NULL)
            return -1; /* the entry stays pending: delivered once more, later */
        fq->acks = v;
        fq->acks_cap = cap;
    }
    fq->acks[fq->nacks++] = id;
    return 0;
}

/* Sends cmd (a script) with the ids as its last arguments.  Returns what
 * fleet_command returns, or -ENOMEM. */
static int send_ids(struct fleet_queue *fq, fleet_reply_fn fn, void *arg, size_t cap, const char *const *head,
                    int nhead, const struct fq_id *ids, size_t n)
{
    const char **argv = malloc((nhead + n) * sizeof(*argv));
    char(*text)[ID_LEN] = malloc(n * sizeof(*text));
    int rc = -ENOMEM;

    if (argv != NULL && text != NULL) {
        for (int i = 0; i < nhead; i++)
            argv[i] = head[i];
        for (size_t i = 0; i < n; i++) {
            format_id(&ids[i], text[i]);
            argv[nhead + i] = text[i];
        }
        rc = fleet_command(fq->f, fn, arg, cap, (int)(nhead + n), argv, NULL);
    }
    free(argv);
    free(text);
    return rc;
}

/* ---- intake ---- */

static void answer(struct fq_waiter *w, enum fq_status st)
{
    free(w->record);
    w->record = NULL;
    w->done(w->arg, st, w->ntargets);
}

static void refused(struct fleet_queue *fq, const char *what, const char *err)
{
    char why[sizeof(fq->refusal)];

    snprintf(why, sizeof(why), "%s: %.120s", what, err);
    if (strcmp(why, fq->refusal) != 0)
        log_warn("redis queue: %s", why);
    memcpy(fq->refusal, why, sizeof(why));
}

static void on_cancelled(struct fleet *f, void *arg, const redisReply *r)
{
    struct idcmd *c = arg;
    size_t kept = 0;

    (void)f;
    /* An entry that stays will be delivered: count it as accepted, or the
     * fleet's totals would not add up. */
    if (r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements == c->n)
        for (size_t i = 0; i < r->elements; i++)
            if (r->element[i]->type == REDIS_REPLY_INTEGER && r->element[i]->integer == 0) {
                shm_add(c->fq->slot, SHM_ACCEPTED, c->counts[i]);
                kept++;
            }
    if (kept > 0)
        log_warn("redis queue: %zu pushes answered 503 reached Redis late and are delivered anyway", kept);
    free(c->counts);
    free(c);
}

/* Entries Redis added after their waiters were told 503: take them back.
 * Should that fail (the connection lost meanwhile), they are delivered
 * without being counted as accepted. */
static void cancel(struct fleet_queue *fq, struct batch *b, const redisReply *r)
{
    const char *head[5] = {"EVAL", cancel_script, "1", FQ_STREAM, FQ_GROUP};
    struct idcmd *c = malloc(sizeof(*c) + r->elements * sizeof(c->ids[0]));

    if (c == NULL || b->counts == NULL) {
        free(c);
        return;
    }
    c->fq = fq;
    c->n = 0;
    c->counts = b->counts;
    b->counts = NULL;
    for (size_t i = 0; i < r->elements; i++)
        if (r->element[i]->type == REDIS_REPLY_STRING &&
            parse_id(r->element[i]->str, r->element[i]->len, &c->ids[c->n]) == 0)
            c->counts[c->n++] = c->counts[i];
    if (c->n == 0 || send_ids(fq, on_cancelled, c, 64 + 16 * c->n, head, 5, c->ids, c->n) != 0) {
        free(c->counts);
        free(c);
    }
}

static void on_added(struct fleet *f, void *arg, const redisReply *r)
{
    struct batch *b = arg, **pp;
    struct fleet_queue *fq = b->fq;
    struct fq_waiter *w, *next;
    size_t i = 0;
    int ok_array;

    (void)f;
    for (pp = &fq->flying; *pp != b; pp = &(*pp)->next)
        ;
    *pp = b->next;
    if (fq->flying_tail == &b->next)
        fq->flying_tail = pp;
    fq->nflying--;
    ok_array = r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements == b->n;
    if (r != NULL)
        fq->slow = 0;
    if (r != NULL && r->type == REDIS_REPLY_ERROR)
        refused(fq, "an add was refused", r->str);
    else if (r != NULL && !ok_array)
        refused(fq, "an add was answered", "something unexpected");
    if (b->answered) {
        if (ok_array)
            cancel(fq, b, r);
    } else {
        for (w = b->head; w != NULL; w = next, i++) {
            enum fq_status st = r == NULL ? FQ_DOWN : !ok_array ? FQ_REFUSED
                                : r->element[i]->type == REDIS_REPLY_STRING ? FQ_OK
                                : r->element[i]->type == REDIS_REPLY_NIL    ? FQ_FULL
                                                                            : FQ_REFUSED;
            next = w->next;
            answer(w, st);
        }
    }
    if (ok_array)
        fq->refusal[0] = '\0';
    if (ok_array && !b->answered)
        fq->slow_logged = 0;
    free(b->counts);
    free(b);
    kick(fq);
}

/* Sends the waiting pushes, a batch at a time. */
static void send_adds(struct fleet_queue *fq)
{
    char max[24];

    snprintf(max, sizeof(max), "%ld", fq->max);
    while (fq->waiting != NULL && fq->nflying < MAX_FLYING && fleet_connected(fq->f)) {
        const char *argv[5 + MAX_BATCH];
        size_t argvlen[5 + MAX_BATCH], n = 0, bytes = 0;
        struct batch *b = calloc(1, sizeof(*b));
        struct fq_waiter *w, **tail;
        if (b == NULL)
            return; /* tried again next turn; the deadline answers meanwhile */
        argv[0] = "EVAL", argv[1] = add_script, argv[2] = "1", argv[3] = FQ_STREAM, argv[4] = max;
        for (int i = 0; i < 5; i++)
            argvlen[i] = strlen(argv[i]);
        for (w = fq->waiting; w != NULL && n < MAX_BATCH && (n == 0 || bytes + w->len <= MAX_BATCH_BYTES);
             w = w->next) {
            argv[5 + n] = w->record;
            argvlen[5 + n] = w->len;
            bytes += w->len;
            n++;
        }
        b->fq = fq;
        b->n = n;
        if (fleet_command(fq->f, on_added, b, 64 + 64 * n, (int)(5 + n), argv, argvlen) != 0) {
            free(b);
            return;
        }
        /* The first n waiting go with it. */
        b->head = fq->waiting;
        for (tail = &b->head, n = 0; n < b->n; n++)
            tail = &(*tail)->next;
        fq->waiting = *tail;
        *tail = NULL;
        if (fq->waiting == NULL)
            fq->waiting_tail = &fq->waiting;
        *fq->flying_tail = b;
        fq->flying_tail = &b->next;
        fq->nflying++;
    }
}

enum fq_status fleet_queue_add(struct fleet_queue *fq, const struct send_request *r, struct fq_waiter *w,
                               void (*done)(void *arg, enum fq_status st, size_t ntargets), void *arg)
{
    struct buf b = BUF_INIT;

    if (!fleet_queue_ready(fq))
        return FQ_DOWN;
    record_encode_push(&b, 0, r);
    /* The read script hands a larger entry back as too large, and it would
     * be skipped: a push within the limits never is (its bytes come from
     * the body, plus a few a target), so this only guards that sum. */
    if (!b.failed && b.len > fq->entry_max)
        log_error("redis queue: a push of %zu bytes is over the %zu an entry may be; refused", b.len, fq->entry_max);
    if (b.failed || b.len > fq->entry_max) {
        buf_free(&b);
        return FQ_REFUSED;
    }
    *w = (struct fq_waiter){NULL, done, arg, b.data, b.len, r->ntargets, uv_now(fq->loop)};
    *fq->waiting_tail = w;
    fq->waiting_tail = &w->next;
    kick(fq);
    return FQ_OK;
}

int fleet_queue_ready(const struct fleet_queue *fq)
{
    return fleet_connected(fq->f) && !fq->slow;
}

/* Pushes Redis has not taken within the deadline are answered 503, and so
 * are those not yet sent when the connection is known to be gone. */
static void deadlines(struct fleet_queue *fq, uint64_t now)
{
    int late = 0, down = !fleet_connected(fq->f);

    while (fq->waiting != NULL && (down || now - fq->waiting->at >= FQ_DEADLINE_MS)) {
        struct fq_waiter *w = fq->waiting;
        fq->waiting = w->next;
        if (fq->waiting == NULL)
            fq->waiting_tail = &fq->waiting;
        answer(w, FQ_DOWN);
        late = !down;
    }
    for (struct batch *b = fq->flying; b != NULL; b = b->next) {
        size_t i = 0;
        if (b->answered || now - b->head->at < FQ_DEADLINE_MS)
            continue;
        b->counts = malloc(b->n * sizeof(*b->counts));
        for (struct fq_waiter *w = b->head, *next; w != NULL; w = next, i++) {
            next = w->next;
            if (b->counts != NULL)
                b->counts[i] = (uint32_t)w->ntargets;
            answer(w, FQ_DOWN);
        }
        b->answered = 1;
        late = 1;
    }
    if (late && fleet_connected(fq->f)) {
        if (!fq->slow_logged)
            log_warn("redis queue: Redis did not take pushes within %d ms; answering 503 until it answers again",
                     FQ_DEADLINE_MS);
        fq->slow = fq->slow_logged = 1;
    }
}

/* ---- delivery ---- */

static void hold(struct fleet_queue *fq, struct push *p)
{
    p->fq_prev = NULL;
    p->fq_next = fq->held;
    if (fq->held != NULL)
        fq->held->fq_prev = p;
    fq->held = p;
    fq->nheld++;
}

static void unhold(struct fleet_queue *fq, struct push *p)
{
    if (p->fq_prev != NULL)
        p->fq_prev->fq_next = p->fq_next;
    else
        fq->held = p->fq_next;
    if (p->fq_next != NULL)
        p->fq_next->fq_prev = p->fq_prev;
    fq->nheld--;
}

/* Whether this worker already has the entry (a claim of its own entry). */
static int have(const struct fleet_queue *fq, struct fq_id id)
{
    for (const struct push *p = fq->held; p != NULL; p = p->fq_next)
        if (p->fq_ms == id.ms && p->fq_seq == id.seq)
            return 1;
    for (size_t i = 0; i < fq->nacks; i++)
        if (fq->acks[i].ms == id.ms && fq->acks[i].seq == id.seq)
            return 1;
    return 0;
}

/* ---- entries this instance cannot serve ---- */

static uint64_t wall_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Whether this worker left the entry lately (and did not forget it). */
static int left_lately(const struct fleet_queue *fq, struct fq_id id, uint64_t now)
{
    size_t n = fq->nleft < LEFT_RECENT ? fq->nleft : LEFT_RECENT;

    for (size_t i = 0; i < n; i++)
        if (fq->left[i].id.ms == id.ms && fq->left[i].id.seq == id.seq && now - fq->left[i].at < fq->unserved_ms)
            return 1;
    return 0;
}

/* The entry goes into the next leave script; without memory for it, it
 * stays with this consumer, unrefreshed, and grows idle for a claim. */
static void leave(struct fleet_queue *fq, struct fq_id id)
{
    if (fq->nleaving == fq->leaving_cap) {
        size_t cap = fq->leaving_cap ? 2 * fq->leaving_cap : 64;
        struct fq_id *v = realloc(fq->leaving, cap * sizeof(*v));
        if (v == NULL)
            return;
        fq->leaving = v;
        fq->leaving_cap = cap;
    }
    fq->leaving[fq->nleaving++] = id;
}

static void on_left(struct fleet *f, void *arg, const redisReply *r)
{
    struct fleet_queue *fq = arg;

    fq->leave_flying = 0;
    if (r != NULL && fleet_script_lost(f, &fq->leave_s, r))
        return; /* those ids grow idle where they are: claimed all the same, a little later */
    if (r != NULL && r->type == REDIS_REPLY_ERROR)
        refused(fq, "leaving entries was refused", r->str);
}

/* One leave script a loop turn, for up to MAX_IDS entries. */
static void send_leaves(struct fleet_queue *fq)
{
    char idle[24];
    size_t n = fq->nleaving < MAX_IDS ? fq->nleaving : MAX_IDS;
    const char **argv;
    char(*text)[ID_LEN];

    if (n == 0 || fq->leave_flying || !fleet_connected(fq->f))
        return;
    argv = malloc((7 + n) * sizeof(*argv));
    text = malloc(n * sizeof(*text));
    if (argv != NULL && text != NULL) {
        snprintf(idle, sizeof(idle), "%" PRIu64, fq->claim_ms);
        argv[2] = "1", argv[3] = FQ_STREAM, argv[4] = FQ_GROUP, argv[5] = fq->consumer, argv[6] = idle;
        for (size_t i = 0; i < n; i++) {
            format_id(&fq->leaving[fq->nleaving - n + i], text[i]);
            argv[7 + i] = text[i];
        }
        if (fleet_script_run(fq->f, &fq->leave_s, on_left, fq, 1024, (int)(7 + n), argv, NULL) == 0) {
            fq->leave_flying = 1;
            fq->nleaving -= n;
        }
    }
    free(argv);
    free(text);
}

/* Why this instance cannot serve a push it can read (rec_len bytes of
 * record): larger than its limits, an app it does not know, a provider
 * the app has no credentials for here; NULL when it can.  *app gets the
 * app's index (APP_NONE for an unknown one). */
static const char *unservable(const struct fleet_queue *fq, const struct send_request *req, size_t rec_len,
                              unsigned *app)
{
    int a = options_app_find(fq->opts, req->app, req->app_len);

    *app = a < 0 ? APP_NONE : (unsigned)a;
    if (rec_len > fq->entry_max || req->ntargets > fq->limits->max_tokens ||
        (req->msg.payload != NULL && req->msg.payload_len > fq->limits->max_payload))
        return "larger than this instance's limits";
    if (a < 0)
        return "its app is not known here";
    if (fq->serves != NULL && !fq->serves(fq->serves_arg, (unsigned)a, (int)req->upstream))
        return "its provider is not configured for its app here";
    return NULL;
}

/* An entry this instance cannot serve (why): left to the others while it
 * is younger than unserved_ms, counted and logged once per worker. */
static void leave_entry(struct fleet_queue *fq, struct fq_id id, const char *text, const char *why, uint64_t now)
{
    if (!left_lately(fq, id, now)) {
        log_limited(&fq->left_log, LOG_WARN,
                    "redis queue: entry %s left to another instance: %s (it fails if none serves it within %" PRIu64
                    " s)",
                    text, why, fq->unserved_ms / 1000);
        shm_add(fq->slot, SHM_QUEUE_LEFT, 1);
        fq->left[fq->nleft++ % LEFT_RECENT] = (struct fq_left){id, now};
    }
    leave(fq, id);
}

static struct push *stage(struct fleet_queue *fq, struct send_request *req, unsigned app)
{
    req->app_index = app;
    return queue_stage(fq->q, req);
}

/* One entry as the scripts pick it, [id, p] or [id, length, head]: a push
 * for the sender; left to another instance (one this instance cannot
 * serve); failed (one no instance served in time); skipped (no p, a p
 * that is not a push or larger than any fcmd's); or nothing (deleted).
 * Returns 1 when it was more than an entry this worker had just left. */
static int take_entry(struct fleet_queue *fq, const redisReply *e, int claimed)
{
    const redisReply *rec;
    struct send_request req;
    struct request_limits relaxed = *fq->limits;
    uint32_t *index = NULL;
    struct fq_id id;
    struct push *p;
    const char *why = NULL, *unserved = NULL;
    char err[256];
    uint64_t now = uv_now(fq->loop), wall = wall_ms();
    unsigned app = APP_NONE;
    int late;

    if (e->type != REDIS_REPLY_ARRAY || (e->elements != 2 && e->elements != 3) ||
        e->element[0]->type != REDIS_REPLY_STRING || parse_id(e->element[0]->str, e->element[0]->len, &id) != 0) {
        log_limited(&fq->bad_log, LOG_WARN, "redis queue: an entry without a readable id skipped");
        return 1;
    }
    rec = e->element[1];
    if (rec->type == REDIS_REPLY_ARRAY) { /* deleted meanwhile: nothing to deliver */
        add_ack(fq, id);
        return 1;
    }
    if (claimed && have(fq, id))
        return 0;
    late = wall >= id.ms && wall - id.ms >= fq->unserved_ms;
    if (!late && left_lately(fq, id, now)) { /* its claim came back to this worker: leave it again, quietly */
        leave(fq, id);
        return 0;
    }
    if (rec->type == REDIS_REPLY_INTEGER) {
        const redisReply *head = e->elements == 3 ? e->element[2] : NULL;
        if (rec->integer > 0 && (size_t)rec->integer <= ENTRY_HARD_MAX && head != NULL &&
            head->type == REDIS_REPLY_STRING &&
            record_head_is_push((const unsigned char *)head->str, head->len, (size_t)rec->integer)) {
            /* Past the bound it comes whole, one a reply: until then, left. */
            leave_entry(fq, id, e->element[0]->str, "larger than this instance's limits", now);
            return 1;
        }
        snprintf(err, sizeof(err), "its push is %lld bytes, over the %zu this instance reads, and not a push",
                 rec->integer, fq->entry_max);
        why = err;
    } else if (rec->type != REDIS_REPLY_STRING) {
        why = "it holds no push";
    } else if ((why = spool_replay_one((const unsigned char *)rec->str, rec->len, &req, &index)) == NULL) {
        /* Checked as intake checks a push, but against any instance's
         * limits: one beyond this instance's is another's to serve. */
        relaxed.max_body = relaxed.max_tokens = relaxed.max_payload = SIZE_MAX;
        if (request_check(&req, &relaxed, err, sizeof(err)) != 0)
            why = err;
        else
            unserved = unservable(fq, &req, rec->len, &app);
    }
    if (why != NULL) {
        log_limited(&fq->bad_log, LOG_WARN, "redis queue: entry %s skipped: %s", e->element[0]->str, why);
        atomic_fetch_add_explicit(&fq->slot->failures_by[CAUSE_QUEUE_ENTRY], 1, memory_order_relaxed);
        add_ack(fq, id);
    } else if (unserved != NULL && !late) {
        leave_entry(fq, id, e->element[0]->str, unserved, now);
    } else if ((p = stage(fq, &req, app)) == NULL) {
        /* It stays pending in the group: claimed again later. */
        log_limited(&fq->oom_log, LOG_ERROR, "redis queue: out of memory queueing entry %s", e->element[0]->str);
    } else {
        /* No instance served it in time: its targets fail, with the reason,
         * as any failure does (counts, status, webhook), and it is
         * acknowledged once they have. */
        if (unserved != NULL) {
            log_limited(&fq->unserved_log, LOG_ERROR,
                        "redis queue: entry %s failed: no instance served it within %" PRIu64 " s: %s",
                        e->element[0]->str, fq->unserved_ms / 1000, unserved);
            shm_add(fq->slot, SHM_QUEUE_UNSERVED, 1);
            p->unserved = unserved;
        }
        p->fq_ms = id.ms;
        p->fq_seq = id.seq;
        p->status = push_status_track(fq->statuses, fq->opts, p->id, p->app, p->app_name, (unsigned)p->upstream, p->ntargets);
        queue_commit(fq->q, p);
        hold(fq, p);
        shm_pending_add(fq->slot, (int64_t)p->ntargets);
    }
    if (rec->type == REDIS_REPLY_STRING) {
        request_free(&req);
        free(index);
    }
    return 1;
}

/* Returns how many entries were more than ones this worker had just left. */
static size_t take_entries(struct fleet_queue *fq, const redisReply *v, int claimed)
{
    size_t fresh = 0;

    /* An empty read must not start another at once: an idle worker looks
     * again at its next tick. */
    if (v->elements == 0)
        return 0;
    for (size_t i = 0; i < v->elements; i++)
        fresh += (size_t)take_entry(fq, v->element[i], claimed);
    fq->taken(fq->taken_arg);
    kick(fq); /* acknowledgements of skipped entries, and the leaves */
    return fresh;
}

/* Reads while the sender has little ready and the queue has room. */
static size_t read_count(const struct fleet_queue *fq)
{
    size_t n = READ_COUNT, room;

    if (fq->stopping || !fq->group_ready || fq->q->ready >= READY_LOW || fq->nheld >= HOLD_MAX ||
        fq->q->pending >= fq->q->capacity || fq->q->bytes >= fq->q->max_bytes / 2)
        return 0;
    room = (fq->q->max_bytes / 2 - fq->q->bytes) / fq->entry_max;
    return room < 1 ? 1 : room < n ? room : n;
}

static void on_group(struct fleet *f, void *arg, const redisReply *r);

static void group_lost(struct fleet_queue *fq, const redisReply *r)
{
    if (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOGROUP", 7) == 0) {
        fq->group_ready = 0; /* the stream went (FLUSHDB...): make the group again */
        fq->group_asked = 0;
    }
}

/* The largest reply a read or claim of n entries may bring: the scripts
 * return an id and at most entry_max bytes of p per entry, whatever the
 * entries hold, but for one p of at most ENTRY_HARD_MAX bytes that waited
 * too long (pick). */
static size_t read_cap(const struct fleet_queue *fq, size_t n)
{
    return 4096 + n * (fq->entry_max + 2 * ID_LEN + HEAD_LEN + 64) + ENTRY_HARD_MAX;
}

static void on_read(struct fleet *f, void *arg, const redisReply *r)
{
    struct fleet_queue *fq = arg;

    fq->reading = 0;
    if (r == NULL)
        return;
    fq->slow = 0;
    if (fleet_script_lost(f, &fq->read_s, r))
        return; /* again at the next tick, with the body */
    if (r->type == REDIS_REPLY_ERROR) {
        group_lost(fq, r);
        refused(fq, "a read was refused", r->str);
        return;
    }
    /* [entries] */
    if (r->type != REDIS_REPLY_ARRAY) {
        refused(fq, "a read was answered", "something unexpected");
        return;
    }
    take_entries(fq, r, 0);
}

static void read_entries(struct fleet_queue *fq)
{
    char count[24], most[24], cut[24], hard[24];
    size_t n = read_count(fq);
    const char *argv[] = {NULL, NULL, "1", FQ_STREAM, FQ_GROUP, fq->consumer, count, most, cut, hard};

    if (n == 0 || fq->reading || !fleet_connected(fq->f))
        return;
    snprintf(count, sizeof(count), "%zu", n);
    snprintf(most, sizeof(most), "%zu", fq->entry_max);
    snprintf(cut, sizeof(cut), "%" PRIu64, wall_ms() - fq->unserved_ms);
    snprintf(hard, sizeof(hard), "%zu", ENTRY_HARD_MAX);
    if (fleet_script_run(fq->f, &fq->read_s, on_read, fq, read_cap(fq, n), 10, argv, NULL) == 0)
        fq->reading = 1;
}

static void on_claimed(struct fleet *f, void *arg, const redisReply *r)
{
    struct fleet_queue *fq = arg;
    size_t fresh;

    fq->claiming = 0;
    if (r == NULL)
        return;
    if (fleet_script_lost(f, &fq->claim_s, r)) {
        fq->next_claim = 0; /* again at the next tick, with the body */
        return;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        group_lost(fq, r);
        refused(fq, "a claim was refused", r->str);
        return;
    }
    /* [next cursor, [entries]] */
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 || r->element[0]->type != REDIS_REPLY_STRING ||
        r->element[0]->len >= sizeof(fq->cursor) || r->element[1]->type != REDIS_REPLY_ARRAY) {
        refused(fq, "a claim was answered", "something unexpected");
        return;
    }
    memcpy(fq->cursor, r->element[0]->str, r->element[0]->len);
    fq->cursor[r->element[0]->len] = '\0';
    if (strcmp(fq->cursor, "0-0") != 0 && parse_id(fq->cursor, strlen(fq->cursor), &(struct fq_id){0, 0}) != 0)
        snprintf(fq->cursor, sizeof(fq->cursor), "0-0"); /* not an id: the next claim starts over */
    /* The entries this worker left itself come back to it too; only the
     * others are news (and worth going on at once for). */
    if ((fresh = take_entries(fq, r->element[1], 1)) > 0)
        log_info("redis queue: took over %zu pushes of a silent consumer, or left by another instance", fresh);
    if (strcmp(fq->cursor, "0-0") != 0 && fresh > 0)
        fq->next_claim = 0; /* more to look at: go on at the next tick */
}

static void on_reaped(struct fleet *f, void *arg, const redisReply *r)
{
    struct fleet_queue *fq = arg;

    (void)f;
    fq->reaping = 0;
    if (r == NULL || r->type != REDIS_REPLY_ARRAY)
        return;
    for (size_t i = 0; i < r->elements; i++)
        if (r->element[i]->type == REDIS_REPLY_STRING) {
            log_limited(&fq->bad_log, LOG_ERROR,
                        "redis queue: entry %s given up: taken %d times and never finished (it breaks its "
                        "readers, or the workers that send it)",
                        r->element[i]->str, MAX_DELIVERIES);
            atomic_fetch_add_explicit(&fq->slot->failures_by[CAUSE_QUEUE_ENTRY], 1, memory_order_relaxed);
        }
}

static void reap(struct fleet_queue *fq)
{
    char idle[24], most[24], count[24];
    const char *argv[] = {"EVAL", reap_script, "1", FQ_STREAM, FQ_GROUP, idle, most, count};

    if (fq->reaping || fq->stopping)
        return;
    snprintf(idle, sizeof(idle), "%" PRIu64, fq->claim_ms);
    snprintf(most, sizeof(most), "%d", MAX_DELIVERIES);
    snprintf(count, sizeof(count), "%d", READ_COUNT);
    if (fleet_command(fq->f, on_reaped, fq, 4096 + 64 * READ_COUNT, 8, argv, NULL) == 0)
        fq->reaping = 1;
}

static void claim(struct fleet_queue *fq)
{
    char idle[24], count[24], most[24], cut[24], hard[24];
    size_t n = read_count(fq);
    const char *argv[] = {NULL, NULL, "1",  FQ_STREAM, FQ_GROUP, fq->consumer,
                          count, most, idle, fq->cursor, cut, hard};

    if (n == 0 || fq->claiming || !fleet_connected(fq->f))
        return;
    snprintf(idle, sizeof(idle), "%" PRIu64, fq->claim_ms);
    snprintf(count, sizeof(count), "%zu", n);
    snprintf(most, sizeof(most), "%zu", fq->entry_max);
    snprintf(cut, sizeof(cut), "%" PRIu64, wall_ms() - fq->unserved_ms);
    snprintf(hard, sizeof(hard), "%zu", ENTRY_HARD_MAX);
    if (fleet_script_run(fq->f, &fq->claim_s, on_claimed, fq, read_cap(fq, n), 12, argv, NULL) == 0)
        fq->claiming = 1;
}

/* Entries still worked on are claimed again by their holder, which resets
 * their idle time: only a silent worker's entries grow idle. */
static void on_refreshed(struct fleet *f, void *arg, const redisReply *r)
{
    (void)f;
    (void)arg;
    (void)r;
}

static void refresh(struct fleet_queue *fq)
{
    const char *head[] = {"XCLAIM", FQ_STREAM, FQ_GROUP, fq->consumer, "0"};
    const char *justid = "JUSTID";
    struct fq_id ids[MAX_IDS];
    size_t n = 0;
    const struct push *p = fq->held;

    for (size_t a = 0; p != NULL || a < fq->nacks;) {
        if (p != NULL) {
            ids[n++] = (struct fq_id){p->fq_ms, p->fq_seq};
            p = p->fq_next;
        } else {
            ids[n++] = fq->acks[a++];
        }
        if (n == MAX_IDS || (p == NULL && a >= fq->nacks)) {
            /* JUSTID goes last: it is sent as one more "id" position. */
            const char **argv = malloc((5 + n + 1) * sizeof(*argv));
            char(*text)[ID_LEN] = malloc(n * sizeof(*text));
            if (argv != NULL && text != NULL) {
                memcpy(argv, head, sizeof(head));
                for (size_t i = 0; i < n; i++) {
                    format_id(&ids[i], text[i]);
                    argv[5 + i] = text[i];
                }
                argv[5 + n] = justid;
                fleet_command(fq->f, on_refreshed, NULL, 1024 + 48 * n, (int)(6 + n), argv, NULL);
            }
            free(argv);
            free(text);
            n = 0;
        }
    }
}

static void on_cleaned(struct fleet *f, void *arg, const redisReply *r)
{
    struct fleet_queue *fq = arg;

    (void)f;
    fq->cleaning = 0;
    if (r != NULL && r->type == REDIS_REPLY_INTEGER && r->integer > 0)
        log_info("redis queue: removed %lld consumers that were idle and held nothing", r->integer);
}

static void clean(struct fleet_queue *fq)
{
    char idle[24];
    const char *argv[] = {"EVAL", fleet_clean_script, "1", FQ_STREAM, FQ_GROUP, idle, fq->consumer};
    uint64_t ms = fq->claim_ms * 10 > 60000 ? fq->claim_ms * 10 : 60000;

    if (fq->cleaning || !fq->group_ready)
        return;
    snprintf(idle, sizeof(idle), "%" PRIu64, ms);
    if (fleet_command(fq->f, on_cleaned, fq, 4096, 7, argv, NULL) == 0)
        fq->cleaning = 1;
}

/* ---- acknowledgements ---- */

#define MAX_EVENTS 1000               /* webhook events per acknowledgement */
#define MAX_EVENT_BYTES (4u << 20)    /* ...and their bytes */

/* An acknowledgement on its way: its ids, and the events it carries. */
struct ackcmd {
    struct fleet_queue *fq;
    struct fe_batch events;
    size_t n;
    struct fq_id ids[];
};

static void on_acked(struct fleet *f, void *arg, const redisReply *r)
{
    struct ackcmd *c = arg;
    struct fleet_queue *fq = c->fq;
    int ok = r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
             r->element[1]->type == REDIS_REPLY_INTEGER && r->element[1]->integer >= 0;

    (void)f;
    fq->acks_flying--;
    if (!ok) {
        /* Sent again: acknowledging twice does nothing, and an event added
         * twice has one event_id (the receiver dedupes). */
        for (size_t i = 0; i < c->n; i++)
            add_ack(fq, c->ids[i]);
        if (r != NULL && r->type == REDIS_REPLY_ERROR)
            refused(fq, "an acknowledgement was refused", r->str);
        else if (r != NULL)
            refused(fq, "an acknowledgement was answered", "something unexpected");
    } else {
        fq->slow = 0;
    }
    if (fq->fe != NULL)
        fleet_events_taken(fq->fe, &c->events, ok, ok ? (size_t)r->element[1]->integer : 0);
    free(c); /* what failed goes again at the next tick, not at once against a refusing Redis */
}

/* One call at a time while webhook events go along: were a call with
 * events refused and a later one with their push's ids taken, the push
 * would leave the queue with its events nowhere. */
static unsigned acks_flying_max(const struct fleet_queue *fq)
{
    return fq->fe != NULL ? 1 : MAX_ACKS_FLYING;
}

/* One acknowledgement script: the outbox's events, at most MAX_EVENTS of
 * them, and the finished pushes' ids only if every event waiting goes with
 * them (an id in fq->acks came after its push's events reached the outbox:
 * a push whose events did not all fit waits for the next call). */
static int send_ack(struct fleet_queue *fq)
{
    size_t n = 0, ne = 0, argc;
    struct fe_batch events = {NULL, 0, 0};
    const char **argv = malloc((8 + MAX_IDS + 3 * MAX_EVENTS) * sizeof(*argv));
    size_t *argvlen = malloc((8 + MAX_IDS + 3 * MAX_EVENTS) * sizeof(*argvlen));
    const char **evargv = malloc(3 * MAX_EVENTS * sizeof(*evargv));
    size_t *evlen = malloc(3 * MAX_EVENTS * sizeof(*evlen));
    char(*text)[ID_LEN] = malloc(MAX_IDS * sizeof(*text));
    char(*at)[24] = malloc(MAX_EVENTS * sizeof(*at));
    struct ackcmd *c = malloc(sizeof(*c) + MAX_IDS * sizeof(c->ids[0]));
    char count[24], max[24];
    int rc = -1;

    if (c == NULL || argv == NULL || argvlen == NULL || evargv == NULL || evlen == NULL || text == NULL || at == NULL)
        goto out;
    if (fq->fe != NULL)
        ne = fleet_events_take(fq->fe, &events, MAX_EVENTS, MAX_EVENT_BYTES, evargv, evlen, at);
    if (fq->fe == NULL || fleet_events_outbox_empty(fq->fe))
        n = fq->nacks < MAX_IDS ? fq->nacks : MAX_IDS;
    if (n == 0 && ne == 0)
        goto out;
    c->fq = fq;
    c->n = n;
    c->events = events;
    if (n > 0) /* fq->acks is NULL until a push finished */
        memcpy(c->ids, fq->acks + fq->nacks - n, n * sizeof(c->ids[0]));
    snprintf(count, sizeof(count), "%zu", n);
    snprintf(max, sizeof(max), "%ld", fq->max);
    argv[0] = "EVAL", argv[1] = ack_script, argv[2] = "2", argv[3] = FQ_STREAM, argv[4] = FE_STREAM;
    argv[5] = FQ_GROUP, argv[6] = max, argv[7] = count;
    for (size_t i = 0; i < 8; i++)
        argvlen[i] = strlen(argv[i]);
    for (size_t i = 0; i < n; i++) {
        format_id(&c->ids[i], text[i]);
        argv[8 + i] = text[i];
        argvlen[8 + i] = strlen(text[i]);
    }
    argc = 8 + n;
    memcpy(argv + argc, evargv, 3 * ne * sizeof(*argv));
    memcpy(argvlen + argc, evlen, 3 * ne * sizeof(*argvlen));
    argc += 3 * ne;
    if (fleet_command(fq->f, on_acked, c, 1024, (int)argc, argv, argvlen) != 0)
        goto out;
    c = NULL;
    events.n = 0; /* the command's now */
    fq->nacks -= n;
    fq->acks_flying++;
    rc = 0;
out:
    if (fq->fe != NULL && events.n > 0)
        fleet_events_taken(fq->fe, &events, 0, 0); /* back to the outbox's head */
    free(c);
    free(argv);
    free(argvlen);
    free(evargv);
    free(evlen);
    free(text);
    free(at);
    return rc;
}

static void send_acks(struct fleet_queue *fq)
{
    while ((fq->nacks > 0 || (fq->fe != NULL && !fleet_events_outbox_empty(fq->fe))) &&
           fq->acks_flying < acks_flying_max(fq) && fleet_connected(fq->f))
        if (send_ack(fq) != 0)
            return;
}

void fleet_queue_push_done(struct fleet_queue *fq, struct push *p)
{
    if (p->fq_ms == 0 && p->fq_seq == 0)
        return;
    unhold(fq, p);
    add_ack(fq, (struct fq_id){p->fq_ms, p->fq_seq});
    kick(fq);
}

/* ---- the loop ---- */

static void on_group(struct fleet *f, void *arg, const redisReply *r)
{
    struct fleet_queue *fq = arg;

    (void)f;
    fq->group_asked = 0;
    if (r == NULL)
        return;
    fq->slow = 0;
    if (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "BUSYGROUP", 9) != 0) {
        refused(fq, "the consumer group cannot be made", r->str);
        return;
    }
    fq->group_ready = 1;
    read_entries(fq);
}

static void make_group(struct fleet_queue *fq)
{
    const char *argv[] = {"XGROUP", "CREATE", FQ_STREAM, FQ_GROUP, "0", "MKSTREAM"};

    if (fq->group_ready || fq->group_asked)
        return;
    if (fleet_command(fq->f, on_group, fq, 1024, 6, argv, NULL) == 0)
        fq->group_asked = 1;
}

static void on_connect(void *arg)
{
    struct fleet_queue *fq = arg;

    fq->group_ready = 0;
    fq->group_asked = 0;
    fq->reading = fq->claiming = fq->cleaning = fq->reaping = fq->leave_flying = 0;
    fq->read_s.loaded = fq->claim_s.loaded = fq->leave_s.loaded = 0; /* perhaps another server: it may not have them */
    fq->slow = 0; /* a new connection: pushes are taken again, under the deadline */
    make_group(fq);
    fleet_events_connected(fq->fe);
    fq->next_refresh = 0; /* what it holds may have grown idle during the outage */
    kick(fq);
}

static void on_check(uv_check_t *h)
{
    struct fleet_queue *fq = h->data;

    uv_check_stop(h);
    if (!fleet_connected(fq->f)) {
        deadlines(fq, uv_now(fq->loop));
        return;
    }
    send_adds(fq);
    send_acks(fq);
    send_leaves(fq);
    read_entries(fq);
}

/* Half of --redis-claim-after, at least 0.5 s: a silent worker's entries
 * are taken soon after they are idle enough; at most CLAIM_EVERY_MAX_MS,
 * so an entry another instance left is found soon whatever the setting. */
static uint64_t claim_every(const struct fleet_queue *fq)
{
    uint64_t ms = fq->claim_ms / 2;

    return ms < 500 ? 500 : ms > CLAIM_EVERY_MAX_MS ? CLAIM_EVERY_MAX_MS : ms;
}

static void on_tick(uv_timer_t *t)
{
    struct fleet_queue *fq = t->data;
    uint64_t now = uv_now(fq->loop);

    deadlines(fq, now);
    if (!fleet_connected(fq->f))
        return;
    make_group(fq);
    send_adds(fq);
    send_acks(fq);
    send_leaves(fq);
    read_entries(fq);
    if (now >= fq->next_refresh && (fq->held != NULL || fq->nacks > 0)) {
        refresh(fq);
        fq->next_refresh = now + fq->claim_ms / 3;
    }
    if (now >= fq->next_claim && fq->group_ready) {
        reap(fq);
        claim(fq);
        fq->next_claim = now + claim_every(fq);
    }
    if (now >= fq->next_clean) {
        clean(fq);
        fq->next_clean = now + CLEAN_EVERY_MS;
    }
}

struct fleet_queue *fleet_queue_start(uv_loop_t *loop, struct fleet *f, const struct fcmd_options *o,
                                      struct shm_region *shm, unsigned slot, struct queue *q,
                                      void (*taken)(void *arg), void *arg, const struct request_limits *limits)
{
    struct fleet_queue *fq = calloc(1, sizeof(*fq));
    uint64_t rnd = uv_hrtime() ^ ((uint64_t)getpid() << 32);

    if (fq == NULL)
        return NULL;
    fq->loop = loop;
    fq->f = f;
    fq->slot = &shm->slots[slot];
    fq->statuses = shm->push_status;
    fq->q = q;
    fq->taken = taken;
    fq->taken_arg = arg;
    fq->limits = limits;
    fq->opts = o;
    fq->max = o->redis_queue_max;
    fq->claim_ms = (uint64_t)o->redis_claim_after * 1000;
    fq->entry_max = (size_t)o->max_body_bytes + 8 * (size_t)o->max_tokens + 4096;
    fq->unserved_ms = fq->claim_ms * UNSERVED_CLAIMS;
    fq->waiting_tail = &fq->waiting;
    fq->flying_tail = &fq->flying;
    fq->bad_log = (struct log_limit)LOG_LIMIT_INIT(1000);
    fq->oom_log = (struct log_limit)LOG_LIMIT_INIT(1000);
    fq->left_log = (struct log_limit)LOG_LIMIT_INIT(1000);
    fq->unserved_log = (struct log_limit)LOG_LIMIT_INIT(1000);
    snprintf(fq->cursor, sizeof(fq->cursor), "0-0");
    if (fleet_script_init(&fq->read_s, read_script) != 0 || fleet_script_init(&fq->claim_s, claim_script) != 0 ||
        fleet_script_init(&fq->leave_s, leave_script) != 0) {
        free(fq);
        return NULL;
    }
    /* Unique per process life: a respawned worker never inherits a dead
     * one's entries unnoticed, it claims them like any other worker. */
    snprintf(fq->consumer, sizeof(fq->consumer), "%s:%u:%08" PRIx32, shm->instance, slot,
             (uint32_t)(rnd ^ (rnd >> 32)));
    if (uv_check_init(loop, &fq->check) != 0 || uv_timer_init(loop, &fq->timer) != 0 ||
        uv_timer_start(&fq->timer, on_tick, FQ_POLL_MS, FQ_POLL_MS) != 0) {
        free(fq);
        return NULL;
    }
    fq->check.data = fq->timer.data = fq;
    uv_unref((uv_handle_t *)&fq->check);
    uv_unref((uv_handle_t *)&fq->timer);
    fleet_on_connect(f, on_connect, fq);
    if (fleet_connected(f))
        on_connect(fq);
    return fq;
}

static void kick_for_events(void *arg)
{
    kick(arg);
}

void fleet_queue_use_events(struct fleet_queue *fq, struct fleet_events *fe)
{
    fq->fe = fe;
    fleet_events_on_outbox(fe, kick_for_events, fq);
    if (fleet_connected(fq->f))
        fleet_events_connected(fe);
}

void fleet_queue_serves(struct fleet_queue *fq, int (*serves)(void *arg, unsigned app, int upstream), void *arg)
{
    fq->serves = serves;
    fq->serves_arg = arg;
}

void fleet_queue_stop(struct fleet_queue *fq)
{
    fq->stopping = 1;
}

int fleet_queue_settled(struct fleet_queue *fq)
{
    if (!fleet_connected(fq->f))
        return 1;
    int events = fq->fe == NULL || fleet_events_outbox_empty(fq->fe);

    if (fq->nacks > 0 || !events)
        kick(fq);
    return fq->nacks == 0 && fq->acks_flying == 0 && events;
}

static void on_fq_closed(uv_handle_t *h)
{
    struct fleet_queue *fq = h->data;

    if (--fq->closing == 0)
        free(fq);
}

void fleet_queue_free(struct fleet_queue *fq)
{
    if (fq == NULL)
        return;
    fq->stopping = 1;
    while (fq->waiting != NULL) {
        struct fq_waiter *w = fq->waiting;
        fq->waiting = w->next;
        answer(w, FQ_DOWN);
    }
    fq->waiting_tail = &fq->waiting;
    /* fleet_stop() has told every add on its way that no reply comes, so
     * none should fly; one that did would be answered the same way. */
    while (fq->flying != NULL) {
        struct batch *b = fq->flying;
        fq->flying = b->next;
        for (struct fq_waiter *w = b->answered ? NULL : b->head, *next; w != NULL; w = next) {
            next = w->next;
            answer(w, FQ_DOWN);
        }
        free(b->counts);
        free(b);
    }
    fq->held = NULL;
    free(fq->acks);
    free(fq->leaving);
    fq->closing = 2;
    uv_close((uv_handle_t *)&fq->check, on_fq_closed);
    uv_close((uv_handle_t *)&fq->timer, on_fq_closed);
}
