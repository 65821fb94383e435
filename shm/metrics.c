/*
 * shm/metrics.c - names and bucket bounds of the shared metrics.
 */
#include "metrics.h"

const char *const shm_cause_names[CAUSE_COUNT] = {
    "none",
    "network",
    "http_5xx",
    "http_429",
    "unavailable",
    "internal",
    "rate_limited",
    "token_refused",
    "malformed_response",
    "unauthorized",
    "bad_request",
    "invalid_argument",
    "third_party_auth",
    "message_rejected",
    "unexpected_status",
    "retries_exhausted",
    "spool_record",
    "not_configured",
    "queue_entry",
};

#define ENDPOINT_NAME(ID, NAME, LABEL, PATH, ENDPOINT, HINT) ENDPOINT,
const char *const shm_endpoint_names[EP_COUNT] = {
    FCMD_PROVIDERS(ENDPOINT_NAME) "report", "canonical", "notregistered", "metrics", "healthz", "readyz", "other",
};
#undef ENDPOINT_NAME

const int shm_http_statuses[HTTP_STATUS_COUNT - 1] = {200, 400, 401, 404, 405, 413, 431, 500, 503};

int shm_http_status_index(int status)
{
    for (int i = 0; i < HTTP_STATUS_COUNT - 1; i++)
        if (shm_http_statuses[i] == status)
            return i;
    return HTTP_STATUS_COUNT - 1;
}

/* 5 ms to 10 s: an upstream answers in 150-250 ms when it is well. */
const uint64_t shm_upstream_bounds_us[HIST_BUCKETS - 1] = {5000,   10000,   25000,   50000,   100000,  250000,
                                                           500000, 1000000, 2500000, 5000000, 10000000};
/* 50 us to 100 ms: /gcm/send only parses and queues. */
const uint64_t shm_send_bounds_us[HIST_BUCKETS - 1] = {50,   100,   250,   500,   1000,  2500,
                                                       5000, 10000, 25000, 50000, 100000};

void shm_histogram_observe(struct histogram *h, const uint64_t *bounds_us, uint64_t us)
{
    int i = 0;

    while (i < HIST_BUCKETS - 1 && us > bounds_us[i])
        i++;
    atomic_fetch_add_explicit(&h->buckets[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->count, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum_us, us, memory_order_relaxed);
}
