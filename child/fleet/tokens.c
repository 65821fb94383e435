/*
 * child/fleet/tokens.c - one APNs provider token per key across the fleet.
 *
 * Apple answers 429 TooManyProviderTokenUpdates to a team whose token
 * changes too often, and every instance signing its own does just that.
 * With --redis the token of each key lives in Redis, under a name made
 * from the key's fingerprint (the signer the workers compute), with the
 * Redis time it was made; the token in the shared region stays each
 * instance's cache (shm/provider_token.h says how the workers defer).
 *
 * Each tick, while connected, a worker renews the lease of every app's
 * token (the workers do not sign while it is ahead), publishes a token its
 * instance made that Redis has not got (one made while Redis was away, or
 * after Apple called the last one expired), and for a token the workers
 * want runs one script that answers the token Redis holds while it is
 * young enough, or else takes the making lock (SET NX with a TTL) and
 * answers "make", or answers "wait" while another instance makes it.  A
 * token from Redis is checked to be a JWT's characters and size before it
 * goes into the region.  One command per app at a time; the scripts are
 * small and run about once in 40 minutes, so they go as EVAL.
 */
#include "fleet_internal.h"
#include "../../common/log.h"

#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LEASE_MS (3 * FLEET_FLUSH_MS)  /* the workers defer to the fleet this long after a tick */
#define GRANT_MS 5000                  /* a "make" answer is this instance's to use this long... */
#define LOCK_MS "10000"                /* ...within the lock's TTL in Redis */
#define TOKEN_TTL_MS "3300000"         /* Redis forgets a token after 55 min, short of Apple's hour */
#define FRESH_MS "2100000"             /* a token is handed out while younger than 35 min: short of the
                                          40 min renewal, so one handed out is not renewed at once */
#define REPLY_CAP (PROVIDER_TOKEN_MAX + 256)
#define REFUSED_MS 60000               /* after a refusal, the workers sign their own this long */

/* KEYS[1] the token, KEYS[2] the making lock; ARGV[1] how young a token
 * must be, ARGV[2] the lock's owner, ARGV[3] its TTL, ARGV[4] the longest
 * token fcmd takes (a longer value is not one of its tokens), ARGV[5] the
 * token Apple refused ("" for none), which is never handed out.  A token
 * made in the future (a clock stepped, a foreign value) is not taken, and a
 * lock without a TTL (a foreign write) gets one.  {"token", age ms, jwt},
 * {"make"} or {"wait"}. */
static const char sync_script[] =
    "local t = redis.call('TIME')\n"
    "local now = t[1] * 1000 + math.floor(t[2] / 1000)\n"
    "local v = redis.call('GET', KEYS[1])\n"
    "if v then\n"
    "  local made, jwt = string.match(v, '^(%d+) (.+)$')\n"
    "  made = tonumber(made)\n"
    "  if made and jwt and #jwt <= tonumber(ARGV[4]) and made <= now + 1000 and now - made < tonumber(ARGV[1])\n"
    "     and jwt ~= ARGV[5] then\n"
    "    return {'token', tostring(math.max(now - made, 0)), jwt}\n"
    "  end\n"
    "end\n"
    "if redis.call('PTTL', KEYS[2]) == -1 then redis.call('PEXPIRE', KEYS[2], ARGV[3]) end\n"
    "if redis.call('SET', KEYS[2], ARGV[2], 'NX', 'PX', ARGV[3]) or redis.call('GET', KEYS[2]) == ARGV[2] then\n"
    "  return {'make'}\n"
    "end\n"
    "return {'wait'}\n";

/* KEYS[1] the token, KEYS[2] the making lock; ARGV[1] the jwt, ARGV[2] its
 * age in ms, ARGV[3] the lock's owner, ARGV[4] the token's TTL.  Keeps a
 * token Redis has that is younger.  1 when stored, 0 when kept. */
static const char publish_script[] =
    "local t = redis.call('TIME')\n"
    "local now = t[1] * 1000 + math.floor(t[2] / 1000)\n"
    "local made = now - tonumber(ARGV[2])\n"
    "if redis.call('GET', KEYS[2]) == ARGV[3] then redis.call('DEL', KEYS[2]) end\n"
    "local v = redis.call('GET', KEYS[1])\n"
    "local there = v and tonumber(string.match(v, '^(%d+) '))\n"
    "if there and there >= made then return 0 end\n"
    "redis.call('SET', KEYS[1], tostring(made) .. ' ' .. ARGV[1], 'PX', ARGV[4])\n"
    "return 1\n";

/* One app's token, as this worker's fleet sees it. */
struct share {
    struct fleet *f;
    unsigned app;
    int busy;         /* a script awaits its reply */
    uint64_t gen;     /* the generation a publish carries */
    unsigned char signer[32];
};

struct fleet_tokens {
    struct share share[SHM_APPS];
    int64_t refused_at; /* the last refusal: no lease for REFUSED_MS after it */
    int refused_logged;
};

static int64_t mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void key_names(const unsigned char signer[32], char token[80], char lock[80])
{
    char hex[33];

    for (int i = 0; i < 16; i++)
        snprintf(hex + 2 * i, 3, "%02x", signer[i]);
    snprintf(token, 80, "fcmd:apns:token:%s", hex);
    snprintf(lock, 80, "fcmd:apns:lock:%s", hex);
}

/* A token as Redis gave it: a JWT's characters (base64url and dots), and
 * room for it. */
static int token_ok(const char *s, size_t n)
{
    if (n == 0 || n >= PROVIDER_TOKEN_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
              c == '.'))
            return 0;
    }
    return 1;
}

static int64_t mono_ms(void);

/* Logged once per worker; for a minute the workers sign their own. */
static void refused(struct fleet *f, const char *what, const redisReply *r)
{
    f->tokens->refused_at = mono_ms();
    if (f->tokens->refused_logged++ == 0)
        log_warn("redis: the APNs provider token's %s was refused: %.200s; this instance signs its own for a "
                 "minute after each refusal",
                 what, r != NULL && r->type == REDIS_REPLY_ERROR ? r->str : "an unexpected reply");
}

/* The token another instance made, into the region: unless the region
 * holds one at least as young for the same key already. */
static void take(struct share *sh, const char *jwt, size_t n, long long age_ms)
{
    struct provider_token *s = &sh->f->shm->apps[sh->app].apns_token;
    int64_t now = mono_ms();

    if (provider_token_trylock(s) != 0)
        return; /* held: the next tick asks again */
    if (s->len > 0 && memcmp(s->signer, sh->signer, sizeof(s->signer)) == 0 &&
        atomic_load(&s->refused) != atomic_load(&s->gen) &&
        (s->len == n && memcmp(s->text, jwt, n) == 0 ? 1 : now - s->made_ms <= age_ms)) {
        atomic_store(&s->published, atomic_load(&s->gen));
    } else {
        memcpy(s->text, jwt, n);
        s->len = (uint32_t)n;
        s->made_ms = now - age_ms;
        memcpy(s->signer, sh->signer, sizeof(s->signer));
        atomic_store(&s->published, atomic_load(&s->gen) + 1);
        atomic_fetch_add_explicit(&s->gen, 1, memory_order_release);
    }
    if (memcmp(s->wanted, sh->signer, sizeof(s->wanted)) == 0)
        atomic_store(&s->want, 0);
    provider_token_unlock(s);
}

static void on_synced(struct fleet *f, void *arg, const redisReply *r)
{
    struct share *sh = arg;
    struct provider_token *s;
    char *end;
    long long age;

    sh->busy = 0;
    if (r == NULL)
        return;
    s = &f->shm->apps[sh->app].apns_token;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 3 && r->element[0]->type == REDIS_REPLY_STRING &&
        strcmp(r->element[0]->str, "token") == 0 && r->element[1]->type == REDIS_REPLY_STRING &&
        r->element[2]->type == REDIS_REPLY_STRING) {
        age = strtoll(r->element[1]->str, &end, 10);
        if (end == r->element[1]->str || *end != '\0' || age < 0 || age > 3600000 || !token_ok(r->element[2]->str, r->element[2]->len)) {
            refused(f, "read", NULL);
            return;
        }
        take(sh, r->element[2]->str, r->element[2]->len, age);
        return;
    }
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 1 && r->element[0]->type == REDIS_REPLY_STRING) {
        if (strcmp(r->element[0]->str, "make") == 0) {
            /* For the key it was asked for; held, the lock in Redis is still
             * this worker's and the next tick's answer grants it again. */
            if (provider_token_trylock(s) == 0) {
                memcpy(s->granted, sh->signer, sizeof(s->granted));
                atomic_store(&s->grant_until, mono_ms() + GRANT_MS);
                provider_token_unlock(s);
            }
            return;
        }
        if (strcmp(r->element[0]->str, "wait") == 0)
            return;
    }
    refused(f, "read", r);
}

static void on_published(struct fleet *f, void *arg, const redisReply *r)
{
    struct share *sh = arg;

    sh->busy = 0;
    if (r == NULL)
        return;
    struct provider_token *s = &f->shm->apps[sh->app].apns_token;
    uint64_t was;

    if (r->type != REDIS_REPLY_INTEGER) {
        refused(f, "publication", r);
        return;
    }
    was = atomic_load(&s->published);
    while (was < sh->gen && !atomic_compare_exchange_weak(&s->published, &was, sh->gen))
        ;
    if (r->integer == 0 && provider_token_trylock(s) == 0) {
        /* Redis has a younger one (made while this instance could not reach
         * it): the fleet's, taken at the next tick, so the fleet uses one. */
        memcpy(s->wanted, sh->signer, sizeof(s->wanted));
        atomic_store(&s->want, 1);
        provider_token_unlock(s);
    }
}

/* A token this instance made that Redis has not got: sent, with its age. */
static void publish(struct fleet *f, struct share *sh, struct provider_token *s, int64_t now)
{
    char token[PROVIDER_TOKEN_MAX], age[24], tkey[80], lkey[80];
    const char *argv[9] = {"EVAL", publish_script, "2", tkey, lkey, token, age, f->member, TOKEN_TTL_MS};
    size_t n;

    if (provider_token_trylock(s) != 0)
        return;
    if (s->len == 0 || atomic_load(&s->refused) == atomic_load(&s->gen)) {
        /* Nothing Redis should have: no token (a holder died), or the one
         * Apple refused. */
        atomic_store(&s->published, atomic_load(&s->gen));
        provider_token_unlock(s);
        return;
    }
    n = s->len;
    sh->gen = atomic_load(&s->gen);
    memcpy(sh->signer, s->signer, sizeof(sh->signer));
    memcpy(token, s->text, n);
    snprintf(age, sizeof(age), "%" PRId64, now - s->made_ms);
    provider_token_unlock(s);
    if (n == 0 || n >= sizeof(token) || !token_ok(token, n))
        return;
    token[n] = '\0';
    key_names(sh->signer, tkey, lkey);
    if (fleet_command(f, on_published, sh, REPLY_MAX_BYTES, 9, argv, NULL) == 0)
        sh->busy = 1;
    explicit_bzero(token, sizeof(token));
}

static void sync_wanted(struct fleet *f, struct share *sh, struct provider_token *s)
{
    char tkey[80], lkey[80], most[16], stale[PROVIDER_TOKEN_MAX] = "";
    const char *argv[10] = {"EVAL", sync_script, "2", tkey, lkey, FRESH_MS, f->member, LOCK_MS, most, stale};

    if (provider_token_trylock(s) != 0)
        return;
    memcpy(sh->signer, s->wanted, sizeof(sh->signer));
    if (s->len > 0 && s->len < sizeof(stale) && atomic_load(&s->refused) == atomic_load(&s->gen)) {
        memcpy(stale, s->text, s->len);
        stale[s->len] = '\0';
    }
    provider_token_unlock(s);
    key_names(sh->signer, tkey, lkey);
    snprintf(most, sizeof(most), "%d", PROVIDER_TOKEN_MAX - 1);
    if (fleet_command(f, on_synced, sh, REPLY_CAP, 10, argv, NULL) == 0)
        sh->busy = 1;
    explicit_bzero(stale, sizeof(stale));
}

int tokens_init(struct fleet *f)
{
    int64_t now = mono_ms();

    if ((f->tokens = calloc(1, sizeof(*f->tokens))) == NULL)
        return -1;
    for (unsigned a = 0; a < SHM_APPS; a++) {
        f->tokens->share[a] = (struct share){.f = f, .app = a};
        /* The first connection has its deadline to come: a send before it
         * waits for the fleet's token rather than signing one of its own. */
        atomic_store(&f->shm->apps[a].apns_token.fleet_until, now + FLEET_TIMEOUT_MS);
    }
    return 0;
}

void tokens_tick(struct fleet *f)
{
    int64_t now = mono_ms();

    if (f->tokens == NULL || !f->up || !fleet_connected(f))
        return; /* the leases run out: the workers sign their own */
    for (unsigned a = 0; a < SHM_APPS; a++) {
        struct provider_token *s = &f->shm->apps[a].apns_token;
        struct share *sh = &f->tokens->share[a];
        uint64_t gen = atomic_load(&s->gen);
        if (f->tokens->refused_at == 0 || now - f->tokens->refused_at >= REFUSED_MS)
            atomic_store(&s->fleet_until, now + LEASE_MS);
        if (sh->busy)
            continue;
        if (gen != 0 && gen != atomic_load(&s->published))
            publish(f, sh, s, now);
        else if (atomic_load(&s->want))
            sync_wanted(f, sh, s);
    }
}

void tokens_free(struct fleet *f)
{
    free(f->tokens);
    f->tokens = NULL;
}
