/*
 * shm/push_status.c - the push statuses (push_status.h).
 *
 * An error is a note of its entry: the token's length and the reason's (two
 * bytes each), then the token, then the reason.
 */
#include "push_status.h"

#include <stdio.h>
#include <string.h>

uint64_t push_status_begin(struct ledger *l, const char *id, size_t id_len, const char *app, unsigned upstream,
                           uint32_t targets, uint64_t now_ms)
{
    struct ledger_ref ref;
    uint64_t h = 0, hash = ledger_hash(l, id, id_len); /* outside the lock */

    if (ledger_lock(l) != 0)
        return 0;
    if (ledger_find_hashed(l, id, id_len, hash, now_ms, &ref)) {
        h = ref.pos + 1;
    } else if (ledger_add_hashed(l, id, id_len, hash, sizeof(struct push_status), LEDGER_NEVER, now_ms, &ref)) {
        struct push_status *s = ref.body;
        s->targets = targets;
        s->upstream = upstream;
        if (app != NULL)
            snprintf(s->app, sizeof(s->app), "%s", app);
        h = ref.pos + 1;
    }
    ledger_unlock(l);
    return h;
}

static void keep_error(struct ledger *l, struct ledger_ref *ref, const char *token, size_t token_len,
                       const char *reason, uint64_t now_ms)
{
    unsigned char note[LEDGER_MAX_NOTE];
    size_t rlen = reason != NULL ? strnlen(reason, PUSH_STATUS_REASON_MAX) : 0;
    uint16_t tl, rl = (uint16_t)rlen;

    if (token_len > LEDGER_MAX_NOTE - 4 - PUSH_STATUS_REASON_MAX)
        token_len = LEDGER_MAX_NOTE - 4 - PUSH_STATUS_REASON_MAX;
    tl = (uint16_t)token_len;
    memcpy(note, &tl, 2);
    memcpy(note + 2, &rl, 2);
    memcpy(note + 4, token, token_len);
    memcpy(note + 4 + token_len, reason, rlen);
    if (ledger_note(l, ref, note, 4 + token_len + rlen, now_ms) && ledger_get(l, ref))
        ((struct push_status *)ref->body)->errors++;
}

void push_status_outcome(struct ledger *l, uint64_t h, enum push_outcome o, const char *token, size_t token_len,
                         const char *reason, uint64_t now_ms, uint64_t ttl_ms)
{
    struct ledger_ref ref = {.pos = h - 1};
    struct push_status *s;

    if (h == 0 || ledger_lock(l) != 0)
        return;
    if (!ledger_get(l, &ref) || ref.body_len != sizeof(*s) || push_status_pending(s = ref.body) == 0) {
        ledger_unlock(l); /* dropped, or every target counted already (a push delivered again after a death) */
        return;
    }
    switch (o) {
    case PUSH_CANONICAL: /* delivered, to a token that has a new name */
        s->canonical++;
        s->delivered++;
        break;
    case PUSH_DELIVERED:
        s->delivered++;
        break;
    case PUSH_INVALID:
        s->invalid++;
        break;
    case PUSH_FAILED:
        s->failed++;
        break;
    }
    if (push_status_pending(s) == 0) {
        ledger_set_expiry(l, &ref, now_ms + ttl_ms);
        atomic_fetch_add_explicit(&l->settled, 1, memory_order_release);
    }
    if ((o == PUSH_INVALID || o == PUSH_FAILED) && s->errors < PUSH_STATUS_ERRORS)
        keep_error(l, &ref, token, token_len, reason, now_ms);
    ledger_unlock(l);
}

int push_status_still_pending(struct ledger *l, const char *id, size_t id_len, uint64_t hash, uint64_t now_ms)
{
    struct ledger_ref ref;
    int pending = 0;

    if (ledger_lock(l) != 0)
        return 0;
    if (ledger_find_hashed(l, id, id_len, hash, now_ms, &ref) && ref.body_len == sizeof(struct push_status))
        pending = push_status_pending(ref.body) > 0;
    ledger_unlock(l);
    return pending;
}

int push_status_read(struct ledger *l, const char *id, size_t id_len, uint64_t now_ms, struct push_status *out,
                     void (*each_error)(void *arg, const char *token, size_t token_len, const char *reason,
                                        size_t reason_len),
                     void *arg)
{
    struct ledger_ref ref;
    uint64_t cursor = 0;
    const unsigned char *n;
    size_t len;
    int found = 0;

    if (ledger_lock(l) != 0)
        return 0;
    if (ledger_find(l, id, id_len, now_ms, &ref) && ref.body_len == sizeof(*out)) {
        found = 1;
        memcpy(out, ref.body, sizeof(*out));
        out->app[sizeof(out->app) - 1] = '\0';
        while (each_error != NULL && (n = ledger_next_note(l, &ref, &cursor, &len)) != NULL) {
            uint16_t tl, rl;
            if (len < 4)
                break;
            memcpy(&tl, n, 2);
            memcpy(&rl, n + 2, 2);
            if ((size_t)4 + tl + rl > len)
                break;
            each_error(arg, (const char *)n + 4, tl, (const char *)n + 4 + tl, rl);
        }
    }
    ledger_unlock(l);
    return found;
}
