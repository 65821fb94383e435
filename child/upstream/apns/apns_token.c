/*
 * child/upstream/apns/apns_token.c - ES256 provider tokens, shared through the region.
 *
 * A worker keeps a copy of the shared token and its generation; while the
 * shared generation is unchanged and the token is young enough it uses the
 * copy without locking.  Otherwise it takes the robust lock and, still
 * under it, either copies a token another worker made or makes one: the
 * decision and the replacement are one critical section, so one expired or
 * aged token is replaced once, whoever notices first.  The lock is only
 * ever tried: a worker stopped while it holds it (SIGSTOP) leaves the others
 * going on with their copies while those are young enough for Apple, and
 * else setting their sends aside for a moment, never waiting in their loop.
 */
#include "apns_token.h"
#include "../../../common/log.h"
#include "../../../shm/provider_token.h"
#include "../jwt.h"

#include <errno.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stdlib.h>
#include <string.h>

#define HEADER_PREFIX "authorization: bearer "

struct apns_token {
    struct provider_token *shared;
    EVP_PKEY *key;
    const char *key_id, *team_id;
    unsigned char signer[32];
    uint64_t gen;    /* of the copy below; 0 for none */
    int64_t made_ms; /* when the copy was made */
    char header[sizeof(HEADER_PREFIX) + PROVIDER_TOKEN_MAX];
};

int apns_token_sign(EVP_PKEY *key, const char *key_id, const char *team_id, time_t iat, struct buf *out)
{
    const struct jwt_header h = {.alg = JWT_ES256, .kid = key_id};
    struct buf claims = BUF_INIT;
    int rc;

    /* The ids were checked at start: upper-case letters and digits only. */
    buf_addf(&claims, "{\"iss\":\"%s\",\"iat\":%lld}", team_id, (long long)iat);
    rc = claims.failed ? -1 : jwt_sign(key, &h, claims.data, claims.len, out);
    buf_free(&claims);
    return rc;
}

/* Names the credentials, so a reload with another key replaces the token. */
static int fingerprint(EVP_PKEY *key, const char *key_id, const char *team_id, unsigned char out[32])
{
    unsigned char *der = NULL;
    int n = i2d_PUBKEY(key, &der);
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    int ok;

    ok = n > 0 && c != NULL && EVP_DigestInit_ex(c, EVP_sha256(), NULL) == 1 &&
         EVP_DigestUpdate(c, der, (size_t)n) == 1 && EVP_DigestUpdate(c, key_id, strlen(key_id) + 1) == 1 &&
         EVP_DigestUpdate(c, team_id, strlen(team_id) + 1) == 1 && EVP_DigestFinal_ex(c, out, NULL) == 1;
    EVP_MD_CTX_free(c);
    OPENSSL_free(der);
    return ok ? 0 : -1;
}

int64_t apns_token_clock_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

struct apns_token *apns_token_create(struct provider_token *shared, EVP_PKEY *key, const char *key_id,
                                     const char *team_id)
{
    struct apns_token *t = calloc(1, sizeof(*t));

    if (t == NULL)
        return NULL;
    if (fingerprint(key, key_id, team_id, t->signer) != 0) {
        free(t);
        return NULL;
    }
    t->shared = shared;
    t->key = key;
    t->key_id = key_id;
    t->team_id = team_id;
    return t;
}

void apns_token_free(struct apns_token *t)
{
    if (t == NULL)
        return;
    explicit_bzero(t, sizeof(*t)); /* the copy of the provider token is a credential */
    free(t);
}

static int too_old(int64_t made_ms, int64_t now_ms)
{
    return now_ms - made_ms >= (int64_t)APNS_TOKEN_RENEW_S * 1000;
}

/* Under the lock: signs a new shared token. */
static int make_shared(struct apns_token *t, int64_t now_ms, time_t wall)
{
    struct provider_token *s = t->shared;
    struct buf jwt = BUF_INIT;

    if (apns_token_sign(t->key, t->key_id, t->team_id, wall, &jwt) != 0 || jwt.len >= PROVIDER_TOKEN_MAX) {
        buf_free(&jwt);
        return -1;
    }
    memcpy(s->text, jwt.data, jwt.len);
    s->len = (uint32_t)jwt.len;
    s->made_ms = now_ms;
    memcpy(s->signer, t->signer, sizeof(s->signer));
    atomic_store(&s->want, 0); /* in fleet mode, what it wanted: the fleet publishes it */
    atomic_fetch_add(&s->made, 1);
    atomic_fetch_add_explicit(&s->gen, 1, memory_order_release);
    buf_free(&jwt);
    return 0;
}

/* Under the lock: takes the shared token as this worker's copy. */
static void copy_shared(struct apns_token *t)
{
    struct provider_token *s = t->shared;

    memcpy(t->header, HEADER_PREFIX, sizeof(HEADER_PREFIX) - 1);
    memcpy(t->header + sizeof(HEADER_PREFIX) - 1, s->text, s->len);
    t->header[sizeof(HEADER_PREFIX) - 1 + s->len] = '\0';
    t->gen = atomic_load_explicit(&s->gen, memory_order_relaxed);
    t->made_ms = s->made_ms;
}

/* Under the lock: whether the fleet brings the token now, rather than this
 * worker signing it.  A grant (Redis' lock is this instance's) is used once,
 * and only for the key it was asked for (a reload may have workers of two
 * keys on one app's token for a while). */
static int fleet_brings(struct provider_token *s, const struct apns_token *t, int64_t now_ms)
{
    if (atomic_load(&s->fleet_until) <= now_ms)
        return 0;
    if (atomic_load(&s->grant_until) > now_ms && memcmp(s->granted, t->signer, sizeof(s->granted)) == 0) {
        atomic_store(&s->grant_until, 0);
        return 0;
    }
    return 1;
}

static int shared_usable(const struct apns_token *t, int64_t now_ms)
{
    struct provider_token *s = t->shared;
    uint64_t gen = atomic_load(&s->gen);

    return s->len > 0 && gen != 0 && gen != atomic_load(&s->refused) &&
           memcmp(s->signer, t->signer, sizeof(t->signer)) == 0 && !too_old(s->made_ms, now_ms);
}

/* Whether this worker may go on with its copy while it cannot have a new
 * token: young enough for Apple, and not the one Apple refused. */
static int copy_usable(const struct apns_token *t, int64_t now_ms)
{
    return t->gen != 0 && t->gen != atomic_load(&t->shared->refused) &&
           now_ms - t->made_ms < (int64_t)APNS_TOKEN_USABLE_S * 1000;
}

const char *apns_token_header(struct apns_token *t, int64_t now_ms, time_t wall, uint64_t *gen, int *busy)
{
    struct provider_token *s = t->shared;
    int rc = 0;

    *busy = 0;
    if (t->gen != 0 && t->gen == atomic_load_explicit(&s->gen, memory_order_acquire) && !too_old(t->made_ms, now_ms) &&
        t->gen != atomic_load(&s->refused)) {
        *gen = t->gen;
        return t->header;
    }
    if ((rc = provider_token_trylock(s)) == -EBUSY) {
        if (copy_usable(t, now_ms)) {
            *gen = t->gen;
            return t->header;
        }
        *busy = 1;
        return NULL;
    }
    if (rc != 0)
        return NULL;
    if (!shared_usable(t, now_ms) && fleet_brings(s, t, now_ms)) {
        /* The fleet brings one (or lets this instance make it) within a
         * tick or two: until then the copy, or a second's wait. */
        memcpy(s->wanted, t->signer, sizeof(s->wanted));
        atomic_store(&s->want, 1);
        provider_token_unlock(s);
        if (copy_usable(t, now_ms)) {
            *gen = t->gen;
            return t->header;
        }
        *busy = 1;
        return NULL;
    }
    if (!shared_usable(t, now_ms)) {
        rc = make_shared(t, now_ms, wall);
        if (rc == 0)
            log_info("apns: new provider token (key id %s, team %s)", t->key_id, t->team_id);
    }
    if (rc == 0)
        copy_shared(t);
    provider_token_unlock(s);
    if (rc != 0) {
        log_error("apns: cannot sign a provider token");
        return NULL;
    }
    *gen = t->gen;
    return t->header;
}

int apns_token_expired(struct apns_token *t, uint64_t gen, int64_t now_ms, time_t wall)
{
    struct provider_token *s = t->shared;
    int rc = 0;

    if ((rc = provider_token_trylock(s)) == -EBUSY) {
        /* The holder may be stopped: the refusal is kept, so no worker goes
         * on with that token, and the first to take the lock replaces it. */
        if (atomic_load(&s->gen) == gen)
            atomic_store(&s->refused, gen);
        return 0;
    }
    if (rc != 0)
        return -1;
    if (atomic_load(&s->gen) == gen && atomic_load(&s->refused) == gen && atomic_load(&s->fleet_until) > now_ms) {
        /* Told already, and the fleet is on it: said once, not once per answer. */
        copy_shared(t);
        provider_token_unlock(s);
        return 0;
    }
    if ((atomic_load(&s->gen) == gen || s->len == 0) && fleet_brings(s, t, now_ms)) {
        /* The fleet replaces it for every instance: Redis is told which
         * token Apple refused, and nobody uses it meanwhile. */
        atomic_store(&s->refused, gen);
        memcpy(s->wanted, t->signer, sizeof(s->wanted));
        atomic_store(&s->want, 1);
        log_warn("apns: Apple called the provider token expired after %ld s (it allows an hour: check this "
                 "host's clock); the fleet replaces it",
                 (long)((now_ms - s->made_ms) / 1000));
    } else if (atomic_load(&s->gen) == gen || s->len == 0) {
        long age = (long)((now_ms - s->made_ms) / 1000);
        rc = make_shared(t, now_ms, wall) == 0 ? 1 : -1;
        if (rc == 1)
            log_warn("apns: Apple called the provider token expired after %ld s (it allows an hour: check this "
                     "host's clock); made a new one",
                     age);
    }
    if (rc >= 0 && s->len > 0)
        copy_shared(t);
    provider_token_unlock(s);
    return rc;
}
