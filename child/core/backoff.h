/*
 * child/core/backoff.h - how long to wait before retrying.
 */
#ifndef FCMD_CHILD_CORE_BACKOFF_H
#define FCMD_CHILD_CORE_BACKOFF_H

#include <stdint.h>

#define BACKOFF_BASE_MS 500
#define BACKOFF_CAP_MS 60000

/* Exponential back-off with full jitter: a uniform pick in
 * [0, min(cap, base * 2^attempt)], but never sooner than the upstream's
 * Retry-After (retry_after_ms < 0 when it gave none).  rnd is a random
 * 32-bit value supplied by the caller, which keeps this function pure. */
uint64_t backoff_delay_ms(unsigned attempt, int64_t retry_after_ms, uint32_t rnd);

/* A small xorshift generator for the jitter; state must not be 0. */
uint32_t backoff_random(uint64_t *state);

#endif
