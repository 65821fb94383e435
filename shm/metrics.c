/*
 * shm/metrics.c - the counter table, and the names and bucket bounds of the
 * labelled metrics.
 */
#include "metrics.h"
#include "region.h"

#include <string.h>

/* Offsets in struct shm_totals. */
#define TOTAL(f) offsetof(struct shm_totals, f)
#define COUNTER(c) (TOTAL(counters) + (size_t)(c) * sizeof(uint64_t))
#define GAUGE(g) (TOTAL(gauges) + (size_t)(g) * sizeof(int64_t))
#define DROPPED(l) (TOTAL(dropped) + (size_t)(l) * sizeof(uint64_t))
#define IN_REPORTS (SHM_REPORT | SHM_FLEET)

/*
 * The counter table: one row per value fcmd shows.  /metrics and Graphite
 * print the rows in this order: first the unlabelled ones, then those by
 * reason, (HTTP requests,) those by list, (targets by upstream,) those of
 * APNs.  /gcm/report prints its keys in the order of .report: GoCM's five
 * first, in GoCM's order.  Adding a counter: its enum value (and where a
 * child counts it), and one row here.
 */
/* clang-format off */
const struct shm_metric shm_metrics[] = {
    /* {name, kind, value (where it is in struct shm_totals), place in the report, where it shows,
     *  .help, and what more it has} */
    {"accepted",              SHM_COUNTER, COUNTER(SHM_ACCEPTED),           8,  IN_REPORTS | SHM_SERIES,
     .help = "Targets accepted at /gcm/send.", .prometheus = "accepted_targets_total"},
    {"attempts",              SHM_COUNTER, COUNTER(SHM_ATTEMPTS),           1,  IN_REPORTS | SHM_SERIES,
     .help = "Targets sent upstream, every try counted."},
    {"successes",             SHM_COUNTER, COUNTER(SHM_SUCCESSES),          6,  IN_REPORTS | SHM_SERIES,
     .help = "Targets the upstream accepted."},
    {"canonicals",            SHM_COUNTER, COUNTER(SHM_CANONICALS),         4,  IN_REPORTS | SHM_SERIES,
     .help = "Canonical token replacements received."},
    {"notregistered",         SHM_COUNTER, COUNTER(SHM_NOTREGISTERED),      5,  IN_REPORTS | SHM_SERIES,
     .help = "Targets the upstream declared invalid for good."},
    {"lost",                  SHM_COUNTER, COUNTER(SHM_LOST),               9,  IN_REPORTS | SHM_SERIES,
     .help = "Pending targets of children that died or ran out of time."},
    {"left_in_spool",         SHM_COUNTER, COUNTER(SHM_LEFT_IN_SPOOL),      10, SHM_WITH_SPOOL | SHM_FLEET | SHM_SERIES,
     .help = "Pending targets of children that died or stopped, left in the spool for another to adopt."},
    {"upstream_requests",     SHM_COUNTER, COUNTER(SHM_UPSTREAM_REQS),      0,  SHM_SERIES,
     .help = "Upstream HTTP requests answered."},
    {"upstream_errors",       SHM_COUNTER, COUNTER(SHM_UPSTREAM_ERRS),      0,  SHM_SERIES,
     .help = "Upstream requests that got no HTTP answer."},
    {"oauth_tokens",          SHM_COUNTER, COUNTER(SHM_OAUTH_TOKENS),       17, SHM_WITH_SA | SHM_SERIES,
     .help = "OAuth2 access tokens obtained."},
    {"oauth_failures",        SHM_COUNTER, COUNTER(SHM_OAUTH_FAILURES),     18, SHM_WITH_SA | SHM_SERIES,
     .help = "OAuth2 token requests that failed."},
    {"pending",               SHM_GAUGE,   TOTAL(pending),                  3,  IN_REPORTS | SHM_SERIES,
     .help = "Targets accepted and not yet finished."},
    {"queue_depth",           SHM_GAUGE,   GAUGE(SHM_QUEUE_DEPTH),          22, SHM_REPORT | SHM_SERIES,
     .help = "Targets waiting in the queues to be sent."},
    {"queue_bytes",           SHM_GAUGE,   GAUGE(SHM_QUEUE_BYTES),          23, SHM_REPORT | SHM_SERIES,
     .help = "Bytes the pending pushes hold in the queues."},
    {"queue_capacity",        SHM_GAUGE,   GAUGE(SHM_QUEUE_CAPACITY),       24, SHM_REPORT | SHM_SERIES,
     .help = "Targets the workers alive may hold pending before /gcm/send answers 503: --queue-size times the workers."},
    {"queue_max_bytes",       SHM_GAUGE,   GAUGE(SHM_QUEUE_MAX_BYTES),      25, SHM_REPORT | SHM_SERIES,
     .help = "Bytes the pending pushes of the workers alive may hold before 503: --queue-max-bytes times the workers."},
    {"retry_waiting",         SHM_GAUGE,   GAUGE(SHM_RETRY_WAITING),        0,  SHM_SERIES,
     .help = "Targets waiting for their next try."},
    {"upstream_inflight",     SHM_GAUGE,   GAUGE(SHM_UPSTREAM_INFLIGHT),    0,  SHM_SERIES,
     .help = "Upstream requests in flight."},
    {"upstream_limit",        SHM_GAUGE,   GAUGE(SHM_UPSTREAM_LIMIT),       0,  SHM_SERIES,
     .help = "Upstream requests allowed in flight now (found by additive increase, multiplicative decrease)."},
    {"rate_limit",            SHM_GAUGE,   GAUGE(SHM_RATE_SHARE),           0,  SHM_SERIES,
     .help = "Messages a second this instance may send upstream: its share of --rate-limit (0: no limit)."},
    {"upstream_connections",  SHM_GAUGE,   GAUGE(SHM_UPSTREAM_SOCKETS),     0,  SHM_SERIES,
     .help = "Open upstream connections."},
    {"children",              SHM_GAUGE,   TOTAL(children),                 0,  SHM_SERIES,
     .help = "Child processes alive."},
    {"workers",               SHM_GAUGE,   TOTAL(workers),                  20, SHM_REPORT | SHM_CLOSING | SHM_SERIES,
     .help = "Child processes configured."},
    {"waiting_for_token",     SHM_GAUGE,   TOTAL(waiting_for_token),        19, SHM_WITH_SA | SHM_SERIES,
     .help = "Children without a usable OAuth2 access token."},
    {"redis_unreachable",     SHM_GAUGE,   GAUGE(SHM_REDIS_DOWN),           0,  SHM_SERIES,
     .help = "Children whose counts do not reach Redis now (--redis; /readyz answers 503 meanwhile)."},
    {"uptime_seconds",        SHM_GAUGE,   TOTAL(uptime_seconds),           21, SHM_REPORT | SHM_CLOSING | SHM_SERIES,
     .help = "Seconds since fcmd started."},
    {"replayed",              SHM_COUNTER, COUNTER(SHM_REPLAYED),           16, SHM_WITH_SPOOL | SHM_FLEET | SHM_SERIES,
     .help = "Targets re-queued from the spool segments of dead children."},
    {"spool_bytes",           SHM_GAUGE,   GAUGE(SHM_SPOOL_BYTES),          14, SHM_WITH_SPOOL | SHM_SERIES,
     .help = "Bytes of spool segments."},
    {"spool_segments",        SHM_GAUGE,   GAUGE(SHM_SPOOL_SEGMENTS),       15, SHM_WITH_SPOOL | SHM_SERIES,
     .help = "Spool segment files."},
    {"spool_max_bytes",       SHM_GAUGE,   GAUGE(SHM_SPOOL_MAX_BYTES),      26, SHM_WITH_SPOOL | SHM_SERIES,
     .help = "Bytes of spool segments beyond which /gcm/send answers 503 (--spool-max-bytes; 0 without --spool)."},
    {"spool_syncs",           SHM_COUNTER, COUNTER(SHM_SPOOL_SYNCS),        0,  SHM_SERIES,
     .help = "Spool fdatasync calls (batch and always)."},
    {"idempotent_duplicates", SHM_COUNTER, COUNTER(SHM_IDEM_DUPLICATES),    35, IN_REPORTS | SHM_SERIES,
     .help = "Sends not queued again: their Idempotency-Key named a push accepted before."},
    {"fleet_status_lost",     SHM_COUNTER, COUNTER(SHM_FLEET_STATUS_LOST),  42, SHM_FLEET | SHM_SERIES,
     .help = "Target outcomes left out of the fleet's push statuses in Redis (--redis): a batch's reply lost, or "
             "too many pushes waiting for Redis."},
    {"idempotency_fallbacks", SHM_COUNTER, COUNTER(SHM_IDEM_FALLBACKS),     43, SHM_FLEET | SHM_SERIES,
     .help = "Sends with an Idempotency-Key that this instance's ledger alone judged, Redis not answering (--redis)."},
    {"queue_left",            SHM_COUNTER, COUNTER(SHM_QUEUE_LEFT),         44, SHM_FLEET | SHM_SERIES,
     .help = "Pushes of the queue in Redis this instance left to another (--redis-queue): an app it does not know, a "
             "provider it has no credentials for, or larger than its limits."},
    {"queue_unserved",        SHM_COUNTER, COUNTER(SHM_QUEUE_UNSERVED),     45, SHM_FLEET | SHM_SERIES,
     .help = "Pushes of the queue in Redis that no instance served within 10 times --redis-claim-after: failed."},
    {"push_statuses",         SHM_GAUGE,   TOTAL(push_statuses),            32, SHM_REPORT | SHM_SERIES,
     .help = "Push statuses kept for GET /push/{id}."},
    {"push_waiters",          SHM_GAUGE,   GAUGE(SHM_PUSH_WAITERS),         0,  SHM_SERIES,
     .help = "GET /push/{id}?wait= requests waiting for their push."},
    {"push_status_evicted",   SHM_COUNTER, TOTAL(push_status_evicted),      33, SHM_REPORT | SHM_SERIES,
     .help = "Push statuses dropped for room (--push-status-max-bytes) before their --push-status-ttl was over."},
    {"push_status_lost",      SHM_COUNTER, TOTAL(push_status_lost),         34, SHM_REPORT | SHM_SERIES,
     .help = "Push statuses forgotten because a process died while it wrote them."},
    {"webhook_events",        SHM_COUNTER, TOTAL(webhook[SHM_WEBHOOK_SENT]),    36, SHM_WITH_WEBHOOK | SHM_SERIES,
     .help = "Webhook events the receivers acknowledged.", .prometheus = "webhook_events_total"},
    {"webhook_failed_attempts", SHM_COUNTER, TOTAL(webhook[SHM_WEBHOOK_FAILED]), 37, SHM_WITH_WEBHOOK | SHM_SERIES,
     .help = "Webhook POSTs not acknowledged (an answer not 2xx, no answer in 10 s, no connection): retried."},
    {"webhook_dropped",       SHM_COUNTER, TOTAL(webhook[SHM_WEBHOOK_DROPPED]), 38, SHM_WITH_WEBHOOK | SHM_SERIES,
     .help = "Webhook events dropped: past --webhook-max-age, over --webhook-queue-bytes, or held by a worker that "
             "stopped or died."},
    {"webhook_pending",       SHM_GAUGE,   GAUGE(SHM_WEBHOOK_PENDING),      39, SHM_WITH_WEBHOOK | SHM_SERIES,
     .help = "Webhook events waiting for a receiver's acknowledgement."},
    {"webhook_queue_bytes",   SHM_GAUGE,   GAUGE(SHM_WEBHOOK_BYTES),        40, SHM_WITH_WEBHOOK | SHM_SERIES,
     .help = "Bytes the webhook events waiting hold, against --webhook-queue-bytes."},
    {"webhook_oldest_seconds", SHM_GAUGE,  TOTAL(webhook_oldest_seconds),   41, SHM_WITH_WEBHOOK | SHM_SERIES,
     .help = "Age of the oldest webhook event waiting (0 when none waits): the receiver's lag."},
    /* By reason: in Graphite NAME_by.REASON each, and NAME their sum. */
    {"failures",              SHM_COUNTER, COUNTER(SHM_FAILURES),           2,  IN_REPORTS | SHM_SERIES,
     .help = "Targets given up on, by reason.", .labels = SHM_BY_REASON, .by = TOTAL(failures_by)},
    {"retries",               SHM_COUNTER, COUNTER(SHM_RETRIES),            7,  IN_REPORTS | SHM_SERIES,
     .help = "Targets scheduled for another try, by reason.", .labels = SHM_BY_REASON, .by = TOTAL(retries_by)},
    /* By list: the report has their sum and each list's. */
    {"dropped",               SHM_COUNTER, SHM_AT_SUM,                      11, IN_REPORTS | SHM_METRICS,
     .help = "Drain-list records dropped because the list was full.",
     .prometheus = "drain_dropped_total", .labels = SHM_BY_LIST, .by = TOTAL(dropped)},
    {"canonical_dropped",     SHM_COUNTER, DROPPED(SHM_LIST_CANONICAL),     12, IN_REPORTS,
     .help = "Records the canonical list dropped."},
    {"notregistered_dropped", SHM_COUNTER, DROPPED(SHM_LIST_NOTREGISTERED), 13, IN_REPORTS,
     .help = "Records the notregistered list dropped."},
    /* What the drain lists hold now, read without draining: in the report
     * by list, in /metrics labelled. */
    {"drain_records",         SHM_GAUGE,   SHM_AT_SUM,                      0,  SHM_METRICS,
     .help = "Records a drain list holds now, waiting for a drain.", .labels = SHM_BY_LIST, .by = TOTAL(list_records)},
    {"drain_bytes",           SHM_GAUGE,   SHM_AT_SUM,                      0,  SHM_METRICS,
     .help = "Bytes the records of a drain list take, of fcmd_drain_list_bytes.", .labels = SHM_BY_LIST,
     .by = TOTAL(list_bytes)},
    {"canonical_records",     SHM_GAUGE,   TOTAL(list_records[SHM_LIST_CANONICAL]),     27, SHM_REPORT,
     .help = "Records the canonical list holds now."},
    {"notregistered_records", SHM_GAUGE,   TOTAL(list_records[SHM_LIST_NOTREGISTERED]), 28, SHM_REPORT,
     .help = "Records the notregistered list holds now."},
    {"canonical_bytes",       SHM_GAUGE,   TOTAL(list_bytes[SHM_LIST_CANONICAL]),       29, SHM_REPORT,
     .help = "Bytes the canonical list's records take."},
    {"notregistered_bytes",   SHM_GAUGE,   TOTAL(list_bytes[SHM_LIST_NOTREGISTERED]),   30, SHM_REPORT,
     .help = "Bytes the notregistered list's records take."},
    {"drain_list_bytes",      SHM_GAUGE,   TOTAL(list_capacity),            31, SHM_REPORT | SHM_SERIES,
     .help = "Bytes each drain list holds before it drops records (--drain-list-bytes)."},
    /* APNs' own. */
    {"provider_tokens",       SHM_COUNTER, TOTAL(apns_tokens_made),         0,  SHM_APNS | SHM_METRICS,
     .help = "APNs provider tokens made (one at a time, for all workers).", .prometheus = "apns_provider_tokens_total"},
};
/* clang-format on */
const size_t shm_nmetrics = sizeof(shm_metrics) / sizeof(shm_metrics[0]);

const char *const shm_list_names[SHM_NLISTS] = {"canonical", "notregistered"};

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
    "address_refused",
    "unserved",
};

const struct shm_labelling shm_labellings[] = {
    [SHM_BY_REASON] = {"reason", shm_cause_names, CAUSE_NONE + 1, CAUSE_COUNT},
    [SHM_BY_LIST] = {"list", shm_list_names, 0, SHM_NLISTS},
};

/* The table reads every value as 64 bits. */
#define WIDE(f) (sizeof(((struct shm_totals *)0)->f) == sizeof(uint64_t))
_Static_assert(WIDE(counters[0]) && WIDE(gauges[0]) && WIDE(pending) && WIDE(children) && WIDE(workers) &&
                   WIDE(waiting_for_token) && WIDE(uptime_seconds) && WIDE(apns_tokens_made) && WIDE(dropped[0]) &&
                   WIDE(failures_by[0]) && WIDE(retries_by[0]) && WIDE(list_records[0]) && WIDE(list_bytes[0]) &&
                   WIDE(list_capacity),
               "the counter table reads 64-bit values");

static uint64_t value_at(const struct shm_totals *t, size_t at)
{
    uint64_t v;

    memcpy(&v, (const char *)t + at, sizeof(v));
    return v;
}

uint64_t shm_metric_value_by(const struct shm_metric *m, const struct shm_totals *t, unsigned i)
{
    return value_at(t, m->by + i * sizeof(uint64_t));
}

uint64_t shm_metric_value(const struct shm_metric *m, const struct shm_totals *t)
{
    const struct shm_labelling *l = &shm_labellings[m->labels];
    uint64_t sum = 0;

    if (m->at != SHM_AT_SUM)
        return value_at(t, m->at);
    for (unsigned i = l->first; i < l->count; i++)
        sum += shm_metric_value_by(m, t, i);
    return sum;
}

const struct shm_metric *shm_metric_at(size_t at)
{
    for (size_t i = 0; i < shm_nmetrics; i++)
        if (shm_metrics[i].at == at)
            return &shm_metrics[i];
    return NULL;
}

const char *shm_counter_name(enum shm_counter c)
{
    return shm_metric_at(COUNTER(c))->name;
}

const char *shm_dropped_name(enum shm_list l)
{
    return shm_metric_at(DROPPED(l))->name;
}

#define ENDPOINT_NAME(ID, NAME, LABEL, PATH, ENDPOINT, HINT) ENDPOINT,
const char *const shm_endpoint_names[EP_COUNT] = {
    FCMD_PROVIDERS(ENDPOINT_NAME) "report", "canonical", "notregistered", "metrics", "healthz", "readyz", "push", "status",
    "other",
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
