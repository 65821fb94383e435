/*
 * shm/idempotency.h - Idempotency-Key without Redis: which push a key (per
 * app) named first, in a ledger (ledger.h) every worker of the instance
 * shares, so a client's retry through any worker is not queued again.
 *
 * A key is claimed before its push is queued and settled once the push is
 * accepted (kept --idempotency-ttl from then) or refused (forgotten, so a
 * retry goes ahead).  A claim not settled within IDEM_CLAIM_MS (its worker
 * died) may be claimed again.
 */
#ifndef FCMD_SHM_IDEMPOTENCY_H
#define FCMD_SHM_IDEMPOTENCY_H

#include <stddef.h>
#include <stdint.h>

#include "../common/options.h"
#include "ledger.h"

#define IDEM_KEY_MAX 255      /* bytes of an Idempotency-Key */
#define IDEM_FINGERPRINT 32   /* a request's fingerprint: SHA-256 */
#define IDEM_ID_MAX 64        /* characters of a push id */
#define IDEM_CLAIM_MS 120000  /* a claim older than this, never settled, is given up */
/* The ledger's key: the app's name, a NUL, the request's key. */
#define IDEM_LEDGER_KEY_MAX (APP_NAME_MAX + 1 + IDEM_KEY_MAX)

enum idem_claim {
    IDEM_NEW,         /* claimed: queue the push, then settle */
    IDEM_DUPLICATE,   /* the key's push was accepted: *first says which */
    IDEM_MISMATCH,    /* the key came with another request first */
    IDEM_IN_PROGRESS, /* the key's first request is still being accepted */
    IDEM_UNAVAILABLE, /* the ledger could not be used: go ahead without */
};

struct idem_first {
    char id[IDEM_ID_MAX + 1];
    uint32_t targets;
};

/* The least an entry of the ledger takes: ledger_init's min_entry. */
size_t idempotency_entry_min(void);

/* Whether s[0..n) may be an Idempotency-Key: 1 to IDEM_KEY_MAX visible ASCII characters. */
int idempotency_key_ok(const char *s, size_t n);

/* Writes the ledger's key of (app, key) to out (IDEM_LEDGER_KEY_MAX bytes); returns its length. */
size_t idempotency_ledger_key(char *out, const char *app, const char *key, size_t key_len);

/* Claims lkey for the push id of targets whose request has fingerprint fp. */
enum idem_claim idempotency_claim(struct ledger *l, const char *lkey, size_t lkey_len,
                                  const unsigned char fp[IDEM_FINGERPRINT], const char *id, uint32_t targets,
                                  uint64_t now_ms, struct idem_first *first);

/* The push id claimed lkey: accepted (the key is kept ttl_ms) or not (it
 * is forgotten).  A claim another request took over meanwhile is left. */
void idempotency_settle(struct ledger *l, const char *lkey, size_t lkey_len, const char *id, int accepted,
                        uint64_t now_ms, uint64_t ttl_ms);

/* A push read back from the spool after a restart: its key names it again,
 * unless the key names another push already. */
void idempotency_restore(struct ledger *l, const char *lkey, size_t lkey_len, const unsigned char fp[IDEM_FINGERPRINT],
                         const char *id, uint32_t targets, uint64_t now_ms, uint64_t ttl_ms);

#endif
