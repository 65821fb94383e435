/*
 * child/fleet/status_record.c - a push's status read back from its hash in
 * Redis.  Anyone who can write to Redis can write that hash, so every field
 * is checked here and anything unknown is left out; the reader never trusts
 * a count, a length or an index it was given.
 */
#include "status_record.h"

#include <stdint.h>
#include <string.h>

/* A decimal of at most UINT32_MAX, nothing else.  Returns 0 or -1. */
static int read_u32(const char *s, size_t n, uint32_t *out)
{
    uint64_t v = 0;

    if (n == 0 || n > 10)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    if (v > UINT32_MAX)
        return -1;
    *out = (uint32_t)v;
    return 0;
}

static int is(const char *s, size_t n, const char *name)
{
    return n == strlen(name) && memcmp(s, name, n) == 0;
}

/* An app's name as options accept it: letters, digits, '_', '.', '-'. */
static int app_ok(const char *s, size_t n)
{
    if (n > APP_NAME_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9') ||
              s[i] == '_' || s[i] == '.' || s[i] == '-'))
            return 0;
    return 1;
}

/* An error field, tN or rN: sets it in e. */
static void read_error(const char *f, size_t fn, const char *v, size_t vn, struct status_record_errors *e)
{
    uint32_t i;

    if (fn < 2 || (f[0] != 't' && f[0] != 'r') || (fn > 2 && f[1] == '0') || read_u32(f + 1, fn - 1, &i) != 0 ||
        i >= PUSH_STATUS_ERRORS)
        return;
    if (f[0] == 't') {
        e->token[i] = v;
        e->token_len[i] = vn;
    } else {
        e->reason[i] = v;
        e->reason_len[i] = vn;
    }
}

int status_record_read(const char *const *str, const size_t *len, size_t n, const char *const *upstreams,
                       unsigned nupstreams, struct push_status *out, struct status_record_errors *e)
{
    uint32_t *counts[] = {&out->targets, &out->delivered, &out->canonical, &out->invalid, &out->failed};
    static const char *const names[] = {"targets", "delivered", "canonical", "invalid", "failed"};
    int have_targets = 0;

    memset(out, 0, sizeof(*out));
    memset(e, 0, sizeof(*e));
    out->upstream = UINT32_MAX;
    for (size_t i = 0; i + 1 < n; i += 2) {
        const char *f = str[i], *v = str[i + 1];
        size_t fn = len[i], vn = len[i + 1];
        unsigned k;
        if (f == NULL || v == NULL)
            return -1;
        for (k = 0; k < sizeof(names) / sizeof(names[0]); k++)
            if (is(f, fn, names[k]))
                break;
        if (k < sizeof(names) / sizeof(names[0])) {
            if (read_u32(v, vn, counts[k]) != 0)
                return -1;
            have_targets |= k == 0;
        } else if (is(f, fn, "app")) {
            if (!app_ok(v, vn))
                return -1;
            memcpy(out->app, v, vn);
            out->app[vn] = '\0';
        } else if (is(f, fn, "upstream")) {
            for (unsigned u = 0; u < nupstreams; u++)
                if (upstreams[u] != NULL && is(v, vn, upstreams[u]))
                    out->upstream = u;
        } else {
            read_error(f, fn, v, vn, e);
        }
    }
    /* More outcomes than targets is a push delivered twice in part (a
     * replay, a claim): it is done, and its counts say so. */
    if (!have_targets || out->targets == 0 || out->canonical > out->delivered)
        return -1;
    while (out->errors < PUSH_STATUS_ERRORS && e->token[out->errors] != NULL && e->reason[out->errors] != NULL)
        out->errors++;
    return 0;
}

void status_record_each_error(const struct status_record_errors *e, uint32_t n,
                              void (*fn)(void *arg, const char *token, size_t token_len, const char *reason,
                                         size_t reason_len),
                              void *arg)
{
    for (uint32_t i = 0; i < n && i < PUSH_STATUS_ERRORS; i++)
        fn(arg, e->token[i], e->token_len[i], e->reason[i], e->reason_len[i]);
}
