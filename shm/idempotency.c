/*
 * shm/idempotency.c - the Idempotency-Keys of an instance (idempotency.h).
 */
#include "idempotency.h"

#include <stdio.h>
#include <string.h>

enum { CLAIMED = 1, ACCEPTED };

struct idem {
    uint32_t state;
    uint32_t targets;
    uint64_t claimed_ms;
    unsigned char fp[IDEM_FINGERPRINT];
    char id[IDEM_ID_MAX + 1];
};

size_t idempotency_entry_min(void)
{
    return ledger_entry_size(sizeof(struct idem), 2); /* "app:key": the separator and a key's one byte at least */
}

int idempotency_key_ok(const char *s, size_t n)
{
    if (n == 0 || n > IDEM_KEY_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] < 0x21 || s[i] > 0x7e)
            return 0;
    return 1;
}

size_t idempotency_ledger_key(char *out, const char *app, const char *key, size_t key_len)
{
    size_t a = app != NULL ? strnlen(app, APP_NAME_MAX) : 0;

    if (key_len > IDEM_KEY_MAX)
        key_len = IDEM_KEY_MAX;
    memcpy(out, app, a);
    out[a] = '\0';
    memcpy(out + a + 1, key, key_len);
    return a + 1 + key_len;
}

static void fill(struct idem *e, uint32_t state, const unsigned char *fp, const char *id, uint32_t targets,
                 uint64_t now_ms)
{
    e->state = state;
    e->targets = targets;
    e->claimed_ms = now_ms;
    memcpy(e->fp, fp, IDEM_FINGERPRINT);
    snprintf(e->id, sizeof(e->id), "%s", id);
}

enum idem_claim idempotency_claim(struct ledger *l, const char *lkey, size_t lkey_len,
                                  const unsigned char fp[IDEM_FINGERPRINT], const char *id, uint32_t targets,
                                  uint64_t now_ms, struct idem_first *first)
{
    struct ledger_ref ref;
    enum idem_claim rc = IDEM_NEW;

    if (ledger_lock(l) != 0)
        return IDEM_UNAVAILABLE;
    if (ledger_find(l, lkey, lkey_len, now_ms, &ref) && ref.body_len == sizeof(struct idem)) {
        struct idem *e = ref.body;
        if (memcmp(e->fp, fp, IDEM_FINGERPRINT) != 0)
            rc = IDEM_MISMATCH;
        else if (e->state == ACCEPTED)
            rc = IDEM_DUPLICATE;
        else if (now_ms - e->claimed_ms < IDEM_CLAIM_MS)
            rc = IDEM_IN_PROGRESS;
        if (rc == IDEM_DUPLICATE) {
            memcpy(first->id, e->id, sizeof(first->id));
            first->id[sizeof(first->id) - 1] = '\0';
            first->targets = e->targets;
        }
    }
    if (rc == IDEM_NEW) {
        /* Until settled, kept as long as a claim may take. */
        if (ledger_add(l, lkey, lkey_len, sizeof(struct idem), now_ms + IDEM_CLAIM_MS, now_ms, &ref))
            fill(ref.body, CLAIMED, fp, id, targets, now_ms);
        else
            rc = IDEM_UNAVAILABLE;
    }
    ledger_unlock(l);
    return rc;
}

void idempotency_settle(struct ledger *l, const char *lkey, size_t lkey_len, const char *id, int accepted,
                        uint64_t now_ms, uint64_t ttl_ms)
{
    struct ledger_ref ref;

    if (ledger_lock(l) != 0)
        return;
    if (ledger_find(l, lkey, lkey_len, now_ms, &ref) && ref.body_len == sizeof(struct idem)) {
        struct idem *e = ref.body;
        if (e->state == CLAIMED && strncmp(e->id, id, sizeof(e->id)) == 0) {
            if (accepted) {
                e->state = ACCEPTED;
                ledger_set_expiry(l, &ref, now_ms + ttl_ms);
            } else {
                ledger_set_expiry(l, &ref, 0); /* found no more */
            }
        }
    }
    ledger_unlock(l);
}

void idempotency_restore(struct ledger *l, const char *lkey, size_t lkey_len, const unsigned char fp[IDEM_FINGERPRINT],
                         const char *id, uint32_t targets, uint64_t now_ms, uint64_t ttl_ms)
{
    struct ledger_ref ref;

    if (ledger_lock(l) != 0)
        return;
    if (ledger_find(l, lkey, lkey_len, now_ms, &ref) && ref.body_len == sizeof(struct idem)) {
        struct idem *e = ref.body;
        if (e->state == CLAIMED && strncmp(e->id, id, sizeof(e->id)) == 0) { /* its worker died before settling */
            e->state = ACCEPTED;
            ledger_set_expiry(l, &ref, now_ms + ttl_ms);
        }
    } else if (ledger_add(l, lkey, lkey_len, sizeof(struct idem), now_ms + ttl_ms, now_ms, &ref)) {
        fill(ref.body, ACCEPTED, fp, id, targets, now_ms);
    }
    ledger_unlock(l);
}
