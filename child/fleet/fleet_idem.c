/*
 * child/fleet/fleet_idem.c - Idempotency-Key in Redis (fleet_idem.h).
 *
 * The one idea: the claim is one SET NX, so of two requests with one key
 * sent to two instances at once exactly one is NEW; the other sees the
 * first's value: "P" (still being accepted: 409), or "A" with the first
 * push's id, and the fingerprint that tells a retry from another request.
 * A value is "S FINGERPRINT TARGETS ID", S being P or A.
 */
#include "fleet_idem.h"
#include "fleet.h"
#include "script.h"
#include "../../common/log.h"

#include <errno.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* KEYS 1 the key; ARGV 1 the claim's value, 2 its ttl (ms). */
static const char claim_script[] =
    "if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 0 end\n"
    "local v = redis.call('GET', KEYS[1])\n"
    "if v and #v > 512 then return 'X' end\n" /* not fcmd's: the reply stays small */
    "return v or 0\n";

/* KEYS 1 the key; ARGV 1 the claim's value, 2 '1' accepted or '0', 3 the ttl (s). */
static const char settle_script[] =
    "if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end\n"
    "if ARGV[2] == '1' then\n"
    "  redis.call('SET', KEYS[1], 'A' .. string.sub(ARGV[1], 2), 'EX', ARGV[3])\n"
    "else\n"
    "  redis.call('DEL', KEYS[1])\n"
    "end\n"
    "return 1\n";

#define KEY_MAX FLEET_IDEM_KEY_MAX
#define VALUE_MAX FLEET_IDEM_VALUE_MAX

struct settle {
    char key[KEY_MAX];
    size_t key_len;
    char value[VALUE_MAX];
    int accepted;
    unsigned ttl_s;
};

struct fleet_idem {
    struct fleet *f;
    struct fleet_script claim_s, settle_s;
    uv_timer_t timer; /* settles that could not go yet */
    struct settle *waiting;
    size_t nwaiting;
    struct log_limit lost_log;
};

struct claim {
    struct fleet_idem *fi;
    fleet_idem_fn *fn;
    void *arg;
    char key[KEY_MAX];
    size_t key_len;
    char value[VALUE_MAX];
    int again; /* sent again after a NOSCRIPT */
};

static int send_claim(struct claim *c);

size_t fleet_idem_key(char out[FLEET_IDEM_KEY_MAX], const char *app, const char *key, size_t key_len)
{
    return (size_t)snprintf(out, KEY_MAX, "fcmd:idem:%s:%.*s", app, (int)key_len, key);
}

void fleet_idem_value(char out[FLEET_IDEM_VALUE_MAX], const unsigned char fp[IDEM_FINGERPRINT], const char *id, uint32_t targets)
{
    char hex[2 * IDEM_FINGERPRINT + 1];

    for (unsigned i = 0; i < IDEM_FINGERPRINT; i++)
        snprintf(hex + 2 * i, 3, "%02x", fp[i]);
    snprintf(out, VALUE_MAX, "P %s %" PRIu32 " %s", hex, targets, id);
}

enum fleet_idem_result fleet_idem_judge(const char *ours, const char *v, size_t n, char id[IDEM_ID_MAX + 1],
                                        uint32_t *targets)
{
    size_t fpl = 2 * IDEM_FINGERPRINT, i;
    unsigned long long t = 0;

    if (n < 2 + fpl + 4 || (v[0] != 'P' && v[0] != 'A') || v[1] != ' ' || v[2 + fpl] != ' ')
        return FLEET_IDEM_UNREACHABLE;
    if (memcmp(v + 2, ours + 2, fpl) != 0)
        return FLEET_IDEM_MISMATCH;
    if (v[0] == 'P')
        return FLEET_IDEM_IN_PROGRESS;
    for (i = 3 + fpl; i < n && v[i] >= '0' && v[i] <= '9' && t <= UINT32_MAX; i++)
        t = t * 10 + (unsigned)(v[i] - '0');
    if (i == 3 + fpl || i >= n || v[i] != ' ' || t > UINT32_MAX || n - i - 1 == 0 || n - i - 1 > IDEM_ID_MAX)
        return FLEET_IDEM_UNREACHABLE;
    for (size_t j = i + 1; j < n; j++)
        if (!((v[j] >= 'a' && v[j] <= 'z') || (v[j] >= 'A' && v[j] <= 'Z') || (v[j] >= '0' && v[j] <= '9') ||
              v[j] == '_' || v[j] == '-'))
            return FLEET_IDEM_UNREACHABLE;
    memcpy(id, v + i + 1, n - i - 1);
    id[n - i - 1] = '\0';
    *targets = (uint32_t)t;
    return FLEET_IDEM_DUPLICATE;
}

static void on_claimed(struct fleet *f, void *arg, const redisReply *r)
{
    struct claim *c = arg;
    enum fleet_idem_result res = FLEET_IDEM_UNREACHABLE;
    char id[IDEM_ID_MAX + 1] = "";
    uint32_t targets = 0;

    (void)f;
    if (r != NULL && fleet_script_lost(c->fi->f, &c->fi->claim_s, r) && !c->again) {
        c->again = 1;
        if (send_claim(c) == 0)
            return; /* the next call carries the script's body */
    } else if (r != NULL && r->type != REDIS_REPLY_ERROR) {
        if (r->type == REDIS_REPLY_INTEGER && r->integer == 0)
            res = FLEET_IDEM_NEW;
        else if (r->type == REDIS_REPLY_STRING)
            res = fleet_idem_judge(c->value, r->str, r->len, id, &targets);
    }
    if (res == FLEET_IDEM_UNREACHABLE)
        log_limited(&c->fi->lost_log, LOG_WARN,
                    "redis: no answer for an Idempotency-Key (%s): this instance's ledger alone decides",
                    r == NULL ? "the connection dropped" : r->type == REDIS_REPLY_ERROR ? r->str : "a value fcmd never writes");
    c->fn(c->arg, res, id, targets);
    free(c);
}

int fleet_idem_claim(struct fleet_idem *fi, const char *app, const char *key, size_t key_len,
                     const unsigned char fp[IDEM_FINGERPRINT], const char *id, uint32_t targets, fleet_idem_fn *fn,
                     void *arg)
{
    struct claim *c;
    int rc;

    if (fi == NULL)
        return -ENOTCONN;
    if (!fleet_connected(fi->f) || (c = malloc(sizeof(*c))) == NULL) {
        log_limited(&fi->lost_log, LOG_WARN,
                    "redis: unreachable for an Idempotency-Key: this instance's ledger alone decides");
        return -ENOTCONN;
    }
    *c = (struct claim){.fi = fi, .fn = fn, .arg = arg};
    fleet_idem_value(c->value, fp, id, targets);
    c->key_len = fleet_idem_key(c->key, app, key, key_len);
    if ((rc = send_claim(c)) != 0)
        free(c);
    return rc == -EAGAIN ? -EAGAIN : rc != 0 ? -ENOTCONN : 0;
}

static int send_claim(struct claim *c)
{
    const char *argv[6];
    size_t lens[6];
    char ttl[24];

    snprintf(ttl, sizeof(ttl), "%d", IDEM_CLAIM_MS);
    argv[2] = "1", argv[3] = c->key, argv[4] = c->value, argv[5] = ttl;
    for (int i = 2; i < 6; i++)
        lens[i] = strlen(argv[i]);
    lens[3] = c->key_len;
    return fleet_script_run(c->fi->f, &c->fi->claim_s, on_claimed, c, 4096, 6, argv, lens);
}

static void on_settled(struct fleet *f, void *arg, const redisReply *r);

struct settle_call {
    struct fleet_idem *fi;
    struct settle s;
};

/* Returns 0 once sent. */
static int send_settle(struct fleet_idem *fi, const struct settle *s)
{
    struct settle_call *c;
    char ttl[24];
    const char *argv[7];
    size_t lens[7];

    if (!fleet_connected(fi->f) || (c = malloc(sizeof(*c))) == NULL)
        return -1;
    c->fi = fi;
    c->s = *s;
    snprintf(ttl, sizeof(ttl), "%u", s->ttl_s > 0 ? s->ttl_s : 1);
    argv[2] = "1", argv[3] = c->s.key, argv[4] = c->s.value, argv[5] = s->accepted ? "1" : "0", argv[6] = ttl;
    for (int i = 2; i < 7; i++)
        lens[i] = strlen(argv[i]);
    lens[3] = c->s.key_len;
    if (fleet_script_run(fi->f, &fi->settle_s, on_settled, c, 4096, 7, argv, lens) != 0) {
        free(c);
        return -1;
    }
    return 0;
}

/* Kept for the retry timer, which sends it once connected. */
static void keep(struct fleet_idem *fi, const struct settle *s)
{
    if (fi->nwaiting == FLEET_IDEM_SETTLES_MAX) {
        log_limited(&fi->lost_log, LOG_WARN,
                    "redis: too many Idempotency-Keys wait to be settled; one is left to expire");
        return;
    }
    fi->waiting[fi->nwaiting++] = *s;
}

/* A lost reply or a NOSCRIPT: the settle goes again, which changes nothing
 * if it ran (the value is no longer the claim's). */
static void on_settled(struct fleet *f, void *arg, const redisReply *r)
{
    struct settle_call *c = arg;

    (void)f;
    if (r == NULL || fleet_script_lost(c->fi->f, &c->fi->settle_s, r))
        keep(c->fi, &c->s);
    free(c);
}

static void on_retry(uv_timer_t *t)
{
    struct fleet_idem *fi = t->data;
    size_t kept = 0;

    for (size_t i = 0; i < fi->nwaiting; i++)
        if (send_settle(fi, &fi->waiting[i]) != 0)
            fi->waiting[kept++] = fi->waiting[i];
    fi->nwaiting = kept;
}

void fleet_idem_settle(struct fleet_idem *fi, const char *app, const char *key, size_t key_len,
                       const unsigned char fp[IDEM_FINGERPRINT], const char *id, uint32_t targets, int accepted,
                       unsigned ttl_s)
{
    struct settle s;

    if (fi == NULL)
        return;
    s.key_len = fleet_idem_key(s.key, app, key, key_len);
    fleet_idem_value(s.value, fp, id, targets);
    s.accepted = accepted;
    s.ttl_s = ttl_s;
    if (send_settle(fi, &s) != 0)
        keep(fi, &s);
}

struct fleet_idem *fleet_idem_new(uv_loop_t *loop, struct fleet *f)
{
    struct fleet_idem *fi = calloc(1, sizeof(*fi));

    if (fi == NULL)
        return NULL;
    fi->f = f;
    fi->lost_log = (struct log_limit)LOG_LIMIT_INIT(10000);
    if ((fi->waiting = malloc(FLEET_IDEM_SETTLES_MAX * sizeof(*fi->waiting))) == NULL ||
        fleet_script_init(&fi->claim_s, claim_script) != 0 || fleet_script_init(&fi->settle_s, settle_script) != 0 ||
        uv_timer_init(loop, &fi->timer) != 0) {
        free(fi->waiting);
        free(fi);
        return NULL;
    }
    fi->timer.data = fi;
    uv_timer_start(&fi->timer, on_retry, 250, 250);
    uv_unref((uv_handle_t *)&fi->timer);
    return fi;
}

static void on_closed(uv_handle_t *h)
{
    struct fleet_idem *fi = h->data;

    free(fi->waiting);
    free(fi);
}

void fleet_idem_free(struct fleet_idem *fi)
{
    if (fi != NULL)
        uv_close((uv_handle_t *)&fi->timer, on_closed);
}
