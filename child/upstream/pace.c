/*
 * child/upstream/pace.c - a worker's upstream concurrency (additive increase,
 * multiplicative decrease) and its share of --rate-limit (a token bucket).
 */
#include "pace.h"

/* The bucket holds this part of a second's messages, so a worker never
 * starts more than its rate over any tenth of a second plus one message. */
#define PACE_BURST_PER_SECOND 10

void pace_init(struct pace *p, size_t floor, size_t start, size_t ceiling)
{
    *p = (struct pace){0};
    p->ceiling = ceiling > 0 ? ceiling : 1;
    p->floor = floor == 0 ? 1 : floor > p->ceiling ? p->ceiling : floor; /* the ceiling is the user's */
    p->limit = start < p->floor ? p->floor : start > p->ceiling ? p->ceiling : start;
    p->step = p->limit / 4 > 0 ? p->limit / 4 : 1;
}

void pace_set_rate(struct pace *p, double per_second, uint64_t now_ms)
{
    if (!(per_second > 0)) { /* also NaN */
        p->rate = 0;
        return;
    }
    if (p->rate == 0) {
        p->tokens = 0;
        p->filled_at = now_ms;
    }
    p->rate = per_second;
    p->burst = per_second / PACE_BURST_PER_SECOND;
    if (p->burst < 1)
        p->burst = 1;
    if (p->tokens > p->burst)
        p->tokens = p->burst;
}

static void refill(struct pace *p, uint64_t now_ms)
{
    if (now_ms > p->filled_at) {
        p->tokens += (double)(now_ms - p->filled_at) * p->rate / 1000;
        if (p->tokens > p->burst)
            p->tokens = p->burst;
        p->filled_at = now_ms;
    }
}

size_t pace_messages(struct pace *p, uint64_t now_ms)
{
    if (p->rate == 0)
        return SIZE_MAX;
    refill(p, now_ms);
    return p->tokens >= 1 ? (size_t)p->tokens : 0;
}

void pace_spend(struct pace *p, size_t n)
{
    if (p->rate != 0)
        p->tokens = (double)n > p->tokens ? 0 : p->tokens - (double)n;
}

uint64_t pace_wait_ms(struct pace *p, uint64_t now_ms)
{
    double ms;

    if (p->rate == 0)
        return 0;
    refill(p, now_ms);
    if (p->tokens >= 1)
        return 0;
    ms = (1 - p->tokens) * 1000 / p->rate;
    return ms < 1 ? 1 : (uint64_t)ms + 1;
}

int pace_finished(struct pace *p, int throttled, int saturated)
{
    size_t old = p->limit;

    if (throttled && !p->cut) {
        /* Once a window: the requests in flight when the upstream began
         * refusing come back refused too, and must not halve it again. */
        p->limit = p->limit / 2 > p->floor ? p->limit / 2 : p->floor;
        p->cut = 1;
        p->window = p->busy = 0;
        return p->limit != old;
    }
    p->window++;
    p->busy += saturated && !throttled;
    if (p->window >= p->limit) {
        if (!p->cut && p->busy >= p->limit && p->limit < p->ceiling)
            p->limit = p->ceiling - p->limit > p->step ? p->limit + p->step : p->ceiling;
        p->window = p->busy = 0;
        p->cut = 0;
    }
    return p->limit != old;
}
