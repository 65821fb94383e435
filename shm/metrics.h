/*
 * shm/metrics.h - what every child counts in its slot, and the counter
 * table that names it.
 *
 * The counters and gauges below are numbered by enums; the counter table
 * (shm_metrics[], shm/metrics.c) has one row for each value fcmd shows,
 * which says, once: its name (its key in /gcm/report, its field in Redis,
 * its Graphite leaf), where its value is in struct shm_totals, its kind and
 * help for /metrics, and where it shows.  /gcm/report, /metrics, Graphite,
 * the fleet's hash in Redis and the master's log all take their words from
 * it.  Besides the counters, the labelled metrics: outcomes by cause, HTTP
 * requests by endpoint and status, and latency histograms.
 */
#ifndef FCMD_SHM_METRICS_H
#define FCMD_SHM_METRICS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "../common/providers.h"

/* One child's running totals.  Counts are of targets unless said otherwise. */
enum shm_counter {
    SHM_ACCEPTED,       /* targets answered 200 at /gcm/send */
    SHM_ATTEMPTS,       /* targets sent upstream, every try counted */
    SHM_SUCCESSES,      /* targets the upstream accepted */
    SHM_FAILURES,       /* targets given up on (not counting notregistered) */
    SHM_RETRIES,        /* targets scheduled for another try */
    SHM_CANONICALS,     /* canonical replacements received */
    SHM_NOTREGISTERED,  /* targets the upstream declared dead */
    SHM_LOST,           /* pending targets of a child that died */
    SHM_LEFT_IN_SPOOL,  /* the same with --spool: left in its segments for adoption */
    SHM_UPSTREAM_REQS,  /* upstream HTTP requests completed */
    SHM_UPSTREAM_ERRS,  /* upstream requests that got no HTTP answer */
    SHM_OAUTH_TOKENS,   /* access tokens obtained */
    SHM_OAUTH_FAILURES, /* token requests that failed */
    SHM_REPLAYED,       /* targets re-queued from an orphaned spool segment */
    SHM_SPOOL_SYNCS,    /* spool syncs (batch, always) completed, failed ones too */
    SHM_IDEM_DUPLICATES, /* sends answered with the push their Idempotency-Key named first */
    SHM_FLEET_STATUS_LOST, /* target outcomes that never reached the fleet's push statuses in Redis */
    SHM_IDEM_FALLBACKS,    /* sends whose Idempotency-Key the instance alone judged: Redis did not answer */
    SHM_QUEUE_LEFT,        /* entries of the queue in Redis left to other instances (pushes, not targets) */
    SHM_QUEUE_UNSERVED,    /* pushes failed because no instance served their entry in time (pushes) */
    SHM_NCOUNTERS
};

/* The first seven counters again, per upstream and per app: each has the
 * number of its total, so it has that total's row (and name) too. */
enum shm_upstream_counter {
    SHM_UP_ACCEPTED = SHM_ACCEPTED,
    SHM_UP_ATTEMPTS = SHM_ATTEMPTS,
    SHM_UP_SUCCESSES = SHM_SUCCESSES,
    SHM_UP_FAILURES = SHM_FAILURES,
    SHM_UP_RETRIES = SHM_RETRIES,
    SHM_UP_CANONICALS = SHM_CANONICALS,
    SHM_UP_NOTREGISTERED = SHM_NOTREGISTERED,
    SHM_UP_NCOUNTERS
};
_Static_assert(SHM_UP_ACCEPTED == 0 && SHM_UP_NCOUNTERS == 7, "the per-upstream counters are the first seven");

/* Gauges a child sets to its current value. */
enum shm_gauge {
    SHM_QUEUE_DEPTH,       /* targets waiting in the queue */
    SHM_QUEUE_BYTES,       /* bytes the pending pushes hold, against queue_max_bytes */
    SHM_RETRY_WAITING,     /* targets waiting for their next try */
    SHM_UPSTREAM_INFLIGHT, /* upstream requests in flight */
    SHM_UPSTREAM_SOCKETS,  /* open upstream connections */
    SHM_UPSTREAM_LIMIT,    /* upstream requests allowed in flight now */
    SHM_RATE_SHARE,        /* messages a second this child may send (--rate-limit), 0 without a limit */
    SHM_SPOOL_BYTES,       /* bytes of the spool segments the child holds */
    SHM_SPOOL_SEGMENTS,    /* spool segments the child holds */
    SHM_QUEUE_CAPACITY,    /* the child's bound on pending targets (queue_size) */
    SHM_QUEUE_MAX_BYTES,   /* the child's bound on the bytes they hold (queue_max_bytes) */
    SHM_SPOOL_MAX_BYTES,   /* spool_max_bytes, a bound of the whole instance: summed, it is the largest (shm_sum) */
    SHM_REDIS_DOWN,        /* 1 while the child's counts do not reach Redis (fleet_ready() is 0) */
    SHM_PUSH_WAITERS,      /* GET /push/{id}?wait= requests waiting */
    SHM_WEBHOOK_PENDING,   /* webhook events waiting to be acknowledged */
    SHM_WEBHOOK_BYTES,     /* the memory they hold, against webhook_queue_bytes */
    SHM_WEBHOOK_OLDEST_AT, /* when the oldest of them was made, Unix ms; 0 for none (the oldest is the least) */
    SHM_NGAUGES
};

/* What the webhook counts, kept apart from the counters above, which the
 * fleet's hash in Redis mirrors one for one. */
enum shm_webhook_counter {
    SHM_WEBHOOK_SENT,     /* events a receiver acknowledged */
    SHM_WEBHOOK_FAILED,   /* POSTs of a batch that were not acknowledged */
    SHM_WEBHOOK_DROPPED,  /* events dropped: past --webhook-max-age, over --webhook-queue-bytes, or at exit */
    SHM_WEBHOOK_NCOUNTERS
};

/* The two drain lists, whose drops are counted by list. */
enum shm_list { SHM_LIST_CANONICAL, SHM_LIST_NOTREGISTERED, SHM_NLISTS };

extern const char *const shm_list_names[SHM_NLISTS];

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
    CAUSE_ADDRESS_REFUSED,   /* Web Push: the endpoint's address is internal and --webpush-allow does not name it */
    CAUSE_UNSERVED,          /* an entry of the queue in Redis that no instance could serve in time */
    CAUSE_COUNT
};

extern const char *const shm_cause_names[CAUSE_COUNT];

/* ---- the counter table ---- */

enum shm_kind { SHM_COUNTER, SHM_GAUGE };

/* How /metrics labels a row's values (and Graphite names them). */
enum shm_labels {
    SHM_UNLABELLED,
    SHM_BY_REASON, /* reason="...", a value per cause but CAUSE_NONE */
    SHM_BY_LIST,   /* list="...", a value per drain list */
};

/* Where a row shows (struct shm_metric.shows). */
#define SHM_REPORT (1u << 0)     /* /gcm/report */
#define SHM_WITH_SPOOL (1u << 1) /* /gcm/report when --spool is set */
#define SHM_WITH_SA (1u << 2)    /* /gcm/report when the default app has a service account */
#define SHM_FLEET (1u << 3)      /* the fleet's /gcm/report, from Redis */
#define SHM_CLOSING (1u << 4)    /* in /gcm/report after the upstreams and the apps */
#define SHM_APNS (1u << 5)       /* in the report's "apns" object; in /metrics after the targets by upstream */
#define SHM_METRICS (1u << 6)    /* /metrics */
#define SHM_GRAPHITE (1u << 7)   /* Graphite */
#define SHM_WITH_WEBHOOK (1u << 8) /* /gcm/report when a webhook is configured */
#define SHM_SERIES (SHM_METRICS | SHM_GRAPHITE)

/* Where a row's value is: "at" is its offset in struct shm_totals, or
 * SHM_AT_SUM for the sum of its labelled values. */
#define SHM_AT_SUM ((size_t)-1)

struct shm_metric {
    const char *name;       /* its key in /gcm/report, its field in Redis, its Graphite leaf */
    enum shm_kind kind;     /* SHM_COUNTER or SHM_GAUGE */
    size_t at;              /* where its value is (above) */
    unsigned report;        /* its place among /gcm/report's keys: 1, 2... (no more than rows); 0 for none */
    unsigned shows;         /* SHM_REPORT ... */
    const char *help;       /* for /metrics */
    const char *prometheus; /* its /metrics name after "fcmd_"; NULL: name, with "_total" for a counter */
    enum shm_labels labels; /* SHM_UNLABELLED, or how its values at "by" are labelled */
    size_t by;              /* labelled: the offset in struct shm_totals of its values by label */
};

extern const struct shm_metric shm_metrics[];
extern const size_t shm_nmetrics;

/* A labelled row's labels: key="names[i]" for i from first to count - 1. */
struct shm_labelling {
    const char *key;
    const char *const *names;
    unsigned first, count;
};

extern const struct shm_labelling shm_labellings[];

struct shm_totals;

/* A row's value in t (a gauge's as its two's complement), and its value
 * labelled i (for i of its labelling). */
uint64_t shm_metric_value(const struct shm_metric *m, const struct shm_totals *t);
uint64_t shm_metric_value_by(const struct shm_metric *m, const struct shm_totals *t, unsigned i);

/* The row whose value is at offset at of struct shm_totals, or NULL. */
const struct shm_metric *shm_metric_at(size_t at);

/* The name of counter c, and of the drops of drain list l. */
const char *shm_counter_name(enum shm_counter c);
const char *shm_dropped_name(enum shm_list l);

/* ---- labelled metrics ---- */

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
    EP_PUSH,
    EP_STATUS, /* the status page, at / and /status */
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
