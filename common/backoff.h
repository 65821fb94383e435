/*
 * common/backoff.h - how long to wait before trying again, for everything
 * that tries again: upstream retries, the OAuth2 token, the Redis link,
 * the Graphite reporter and the master's respawns.
 *
 * One shape: a delay that doubles from base_ms with each failure, capped
 * at cap_ms, with none, half or all of it drawn at random.
 */
#ifndef FCMD_COMMON_BACKOFF_H
#define FCMD_COMMON_BACKOFF_H

#include <stdint.h>

enum backoff_jitter {
    BACKOFF_EXACT, /* the ceiling itself */
    BACKOFF_HALF,  /* half the ceiling, plus a uniform pick in [0, half] */
    BACKOFF_FULL,  /* a uniform pick in [0, ceiling] */
};

struct backoff {
    uint32_t base_ms;
    uint32_t cap_ms;
    enum backoff_jitter jitter;
};

/* The wait after n failures (n = 0: the first): the ceiling
 * min(cap, base * 2^n) with b's jitter, rnd a random 32-bit value supplied
 * by the caller (backoff_random), which keeps this function pure. */
uint64_t backoff_delay(const struct backoff *b, unsigned n, uint32_t rnd);

/* Upstream retries: full jitter from BACKOFF_BASE_MS up to BACKOFF_CAP_MS,
 * but never sooner than the upstream's Retry-After (retry_after_ms < 0 when
 * it gave none). */
#define BACKOFF_BASE_MS 500
#define BACKOFF_CAP_MS 60000
uint64_t backoff_delay_ms(unsigned attempt, int64_t retry_after_ms, uint32_t rnd);

/* A small xorshift generator for the jitter; state must not be 0. */
uint32_t backoff_random(uint64_t *state);

#endif
