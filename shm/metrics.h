/*
 * shm/metrics.h - the labelled metrics every child keeps in its slot:
 * outcomes by cause, HTTP requests by endpoint and status, gauges, and
 * latency histograms.  Names live here so /metrics, Graphite and the
 * report print the same words.
 */
#ifndef FCMD_SHM_METRICS_H
#define FCMD_SHM_METRICS_H

#include <stdatomic.h>
#include <stdint.h>

#include "../common/providers.h"

/* Why a target failed or is retried. */
enum cause {
    CAUSE_NONE,
    CAUSE_NETWORK, /* no HTTP answer: connect, TLS, timeout */
    CAUSE_HTTP_5XX,
    CAUSE_HTTP_429,
    CAUSE_UNAVAILABLE,   /* Unavailable / UNAVAILABLE */
    CAUSE_INTERNAL,      /* InternalServerError / INTERNAL */
    CAUSE_RATE_LIMITED,  /* QUOTA_EXCEEDED, Device/TopicsMessageRateExceeded */
    CAUSE_TOKEN_REFUSED, /* FCM refused our access token (401) */
    CAUSE_MALFORMED_RESPONSE,
    CAUSE_UNAUTHORIZED,     /* the API key or service account was refused */
    CAUSE_BAD_REQUEST,      /* HTTP 400 for the whole request */
    CAUSE_INVALID_ARGUMENT, /* v1: FCM refused the message (not the token) */
    CAUSE_THIRD_PARTY_AUTH, /* v1: APNs or web push credentials of the project */
    CAUSE_MESSAGE_REJECTED, /* legacy: a per-token error that is not the token's death */
    CAUSE_UNEXPECTED_STATUS,
    CAUSE_RETRIES_EXHAUSTED, /* retryable, but out of retries */
    CAUSE_SPOOL_RECORD,      /* an adopted spool record intake would refuse */
    CAUSE_NOT_CONFIGURED,    /* a spooled push for an upstream this start has no credentials for */
    CAUSE_QUEUE_ENTRY,       /* an entry of the queue in Redis that is not a valid push (counts entries) */
    CAUSE_COUNT
};

extern const char *const shm_cause_names[CAUSE_COUNT];

/* The send endpoints first, one per provider in FCMD_PROVIDERS' order. */
#define SHM_SEND_ENDPOINT(ID, NAME, LABEL, PATH, ENDPOINT, HINT) EP_SEND_##ID,
enum endpoint {
    FCMD_PROVIDERS(SHM_SEND_ENDPOINT)
    EP_REPORT,
    EP_CANONICAL,
    EP_NOTREGISTERED,
    EP_METRICS,
    EP_HEALTHZ,
    EP_READYZ,
    EP_OTHER,
    EP_COUNT
};
#undef SHM_SEND_ENDPOINT

/* The send endpoint of upstream kind k, and whether ep is one. */
#define EP_SEND_OF(k) ((enum endpoint)(k))
#define EP_IS_SEND(ep) ((unsigned)(ep) < PROVIDERS)

extern const char *const shm_endpoint_names[EP_COUNT];

/* The statuses fcmd answers; anything else counts as "other". */
#define HTTP_STATUS_COUNT 10
extern const int shm_http_statuses[HTTP_STATUS_COUNT - 1];
int shm_http_status_index(int status);

#define HIST_BUCKETS 12 /* the last is +Inf */

struct histogram {
    _Atomic uint64_t buckets[HIST_BUCKETS]; /* not cumulative */
    _Atomic uint64_t count;
    _Atomic uint64_t sum_us;
};

/* Upper bounds in microseconds of the first HIST_BUCKETS - 1 buckets. */
extern const uint64_t shm_upstream_bounds_us[HIST_BUCKETS - 1];
extern const uint64_t shm_send_bounds_us[HIST_BUCKETS - 1];

void shm_histogram_observe(struct histogram *h, const uint64_t *bounds_us, uint64_t us);

#endif
