/*
 * child/core/backoff.c - retry delays: exponential, fully jittered, capped, and
 * never shorter than what the upstream asked for.
 */
#include "backoff.h"

uint64_t backoff_delay_ms(unsigned attempt, int64_t retry_after_ms, uint32_t rnd)
{
    uint64_t ceiling = attempt >= 20 ? BACKOFF_CAP_MS : (uint64_t)BACKOFF_BASE_MS << attempt;
    uint64_t delay;

    if (ceiling > BACKOFF_CAP_MS)
        ceiling = BACKOFF_CAP_MS;
    delay = (uint64_t)rnd % (ceiling + 1);
    if (retry_after_ms >= 0 && (uint64_t)retry_after_ms > delay)
        delay = (uint64_t)retry_after_ms;
    return delay;
}

uint32_t backoff_random(uint64_t *state)
{
    uint64_t x = *state;

    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    return (uint32_t)(x >> 32);
}
