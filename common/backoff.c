/*
 * common/backoff.c - delays that double, are capped, and are jittered as
 * their user asks; upstream retries also honour Retry-After.
 */
#include "backoff.h"

uint64_t backoff_delay(const struct backoff *b, unsigned n, uint32_t rnd)
{
    /* base << n would overflow long before it matters: past 2^31 the cap wins. */
    uint64_t ceiling = n >= 31 ? b->cap_ms : (uint64_t)b->base_ms << n;

    if (ceiling > b->cap_ms)
        ceiling = b->cap_ms;
    switch (b->jitter) {
    case BACKOFF_HALF: return ceiling / 2 + (uint64_t)rnd % (ceiling / 2 + 1);
    case BACKOFF_FULL: return (uint64_t)rnd % (ceiling + 1);
    default: return ceiling;
    }
}

uint64_t backoff_delay_ms(unsigned attempt, int64_t retry_after_ms, uint32_t rnd)
{
    static const struct backoff upstream = {BACKOFF_BASE_MS, BACKOFF_CAP_MS, BACKOFF_FULL};
    uint64_t delay = backoff_delay(&upstream, attempt, rnd);

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
