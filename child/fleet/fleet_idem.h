/*
 * child/fleet/fleet_idem.h - Idempotency-Key across the fleet (--redis): a
 * key (per app) names its first push in Redis, fcmd:idem:APP:KEY, so that a
 * client's retry through any instance is not queued again.
 *
 * As in the instance's ledger (shm/idempotency.h), a key is claimed before
 * its push is queued ("P", kept IDEM_CLAIM_MS) and settled once the push is
 * accepted ("A", kept --idempotency-ttl) or refused (deleted).  The value
 * holds the request's fingerprint, so the same key with another body is
 * told apart.  While Redis cannot answer, sends fall back to the
 * instance's ledger alone (docs/FLEET.md says what holds then).
 */
#ifndef FCMD_CHILD_FLEET_FLEET_IDEM_H
#define FCMD_CHILD_FLEET_FLEET_IDEM_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "../../shm/idempotency.h"

#define FLEET_IDEM_SETTLES_MAX 4096 /* settles waiting for a connection, per worker */

struct fleet;
struct fleet_idem;

enum fleet_idem_result {
    FLEET_IDEM_NEW,         /* claimed in Redis: queue the push, then settle */
    FLEET_IDEM_DUPLICATE,   /* the key's push was accepted: first_id says which */
    FLEET_IDEM_MISMATCH,    /* the key came with another request first */
    FLEET_IDEM_IN_PROGRESS, /* the key's first request is still being accepted */
    FLEET_IDEM_UNREACHABLE, /* Redis did not answer, or answered what fcmd never writes */
};

typedef void fleet_idem_fn(void *arg, enum fleet_idem_result res, const char *first_id, uint32_t first_targets);

struct fleet_idem *fleet_idem_new(uv_loop_t *loop, struct fleet *f);

/* Claims (app, key) for push id of targets, whose request has fingerprint
 * fp; fn gets Redis' answer (always, FLEET_IDEM_UNREACHABLE when the
 * connection drops first).  Returns 0; -ENOTCONN when Redis cannot be asked
 * (fn is not called: fall back); -EAGAIN when the connection has too many
 * commands under way (try later). */
int fleet_idem_claim(struct fleet_idem *fi, const char *app, const char *key, size_t key_len,
                     const unsigned char fp[IDEM_FINGERPRINT], const char *id, uint32_t targets, fleet_idem_fn *fn,
                     void *arg);

/* The claim of id was accepted (the key is kept ttl_s) or refused (the key
 * is forgotten); sent again once connected if it cannot go now. */
void fleet_idem_settle(struct fleet_idem *fi, const char *app, const char *key, size_t key_len,
                       const unsigned char fp[IDEM_FINGERPRINT], const char *id, uint32_t targets, int accepted,
                       unsigned ttl_s);

/* The key in Redis of (app, key): fcmd:idem:APP:KEY; returns its length. */
#define FLEET_IDEM_KEY_MAX (16 + APP_NAME_MAX + IDEM_KEY_MAX)
size_t fleet_idem_key(char out[FLEET_IDEM_KEY_MAX], const char *app, const char *key, size_t key_len);

/* A claim's value, "P FINGERPRINT TARGETS ID" (the fingerprint in hex). */
#define FLEET_IDEM_VALUE_MAX (4 + 2 * IDEM_FINGERPRINT + 12 + IDEM_ID_MAX)
void fleet_idem_value(char out[FLEET_IDEM_VALUE_MAX], const unsigned char fp[IDEM_FINGERPRINT], const char *id,
                      uint32_t targets);

/* What the value v (n bytes, from Redis: anything) says to a claim whose
 * own value is ours: a duplicate (with the first push's id and targets), a
 * mismatch, in progress, or FLEET_IDEM_UNREACHABLE for what fcmd never
 * writes. */
enum fleet_idem_result fleet_idem_judge(const char *ours, const char *v, size_t n, char id[IDEM_ID_MAX + 1],
                                        uint32_t *targets);

/* At exit, after fleet_stop(). */
void fleet_idem_free(struct fleet_idem *fi);

#endif
