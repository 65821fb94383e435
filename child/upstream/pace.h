/*
 * child/upstream/pace.h - how fast a worker sends upstream: how many requests it
 * keeps in flight, and how many messages a second it may start.
 *
 * Concurrency finds the rate by additive increase and multiplicative
 * decrease: while targets wait and every request allowed is in flight, each
 * window of requests that finish (as many as the limit) raises the limit by
 * a step, up to the ceiling; an upstream that answers 429 (FCM's
 * QUOTA_EXCEEDED, a throttled project) halves it, at most once a window,
 * down to the floor.  The rate (--rate-limit) is a token bucket of a tenth
 * of a second's messages; a worker's share is the instance's rate divided by
 * its workers, and with --redis the fleet's rate by the live instances too.
 * Pure arithmetic on times the caller gives, so it is tested on its own.
 */
#ifndef FCMD_CHILD_UPSTREAM_PACE_H
#define FCMD_CHILD_UPSTREAM_PACE_H

#include <stddef.h>
#include <stdint.h>

struct pace {
    size_t limit;   /* requests allowed in flight now */
    size_t floor;   /* the least it falls to */
    size_t ceiling; /* the most it grows to */
    size_t step;    /* added per window while saturated */
    size_t window;  /* requests finished since the limit last changed */
    size_t busy;    /* ...of which finished while saturated */
    int cut;        /* halved in this window: no more halving, no growth, until it ends */
    /* The rate: 0 for none. */
    double rate;       /* messages per second for this worker */
    double tokens;     /* messages that may start now */
    double burst;      /* the most tokens held */
    uint64_t filled_at; /* ms of the last refill */
};

/* Starts at start requests in flight, between floor and ceiling (clamped;
 * a floor above the ceiling is lowered to it); no rate. */
void pace_init(struct pace *p, size_t floor, size_t start, size_t ceiling);

/* Sets this worker's share of the rate in messages per second (0: none), at
 * time now_ms.  Tokens held beyond the new burst are dropped. */
void pace_set_rate(struct pace *p, double per_second, uint64_t now_ms);

/* How many messages may start now (SIZE_MAX without a rate). */
size_t pace_messages(struct pace *p, uint64_t now_ms);

/* Messages started: spends their tokens. */
void pace_spend(struct pace *p, size_t n);

/* Milliseconds until a message may start, 0 if one may now. */
uint64_t pace_wait_ms(struct pace *p, uint64_t now_ms);

/* A request finished.  throttled: the upstream answered 429; saturated:
 * targets were waiting while every request allowed was in flight.  Returns
 * 1 if the limit changed. */
int pace_finished(struct pace *p, int throttled, int saturated);

#endif
