/*
 * child/observe/metrics.c - rendering the shared metrics.
 *
 * Scalar series come from one table, so /metrics and Graphite never
 * disagree; labelled families and histograms follow.  Prometheus names end
 * in _total for counters and use seconds for durations; Graphite gets the
 * same values under dotted names.
 */
#include "metrics.h"
#include "../../common/options.h"
#include "../../shm/region.h"

#include <inttypes.h>

enum kind { COUNTER, GAUGE };

struct series {
    const char *name;     /* Prometheus name, without the fcmd_ prefix */
    const char *graphite; /* Graphite leaf */
    enum kind kind;
    const char *help;
    int64_t value;
};

static size_t scalar_series(const struct shm_totals *t, const struct metrics_context *m, struct series *s)
{
    const uint64_t *c = t->counters;
    size_t n = 0;

#define ADD(nm, gr, k, h, v) (s[n++] = (struct series){nm, gr, k, h, (int64_t)(v)})
    ADD("accepted_targets_total", "accepted", COUNTER, "Targets accepted at /gcm/send.", c[SHM_ACCEPTED]);
    ADD("attempts_total", "attempts", COUNTER, "Targets sent upstream, every try counted.", c[SHM_ATTEMPTS]);
    ADD("successes_total", "successes", COUNTER, "Targets the upstream accepted.", c[SHM_SUCCESSES]);
    ADD("canonicals_total", "canonicals", COUNTER, "Canonical token replacements received.", c[SHM_CANONICALS]);
    ADD("notregistered_total", "notregistered", COUNTER, "Targets the upstream declared invalid for good.",
        c[SHM_NOTREGISTERED]);
    ADD("lost_total", "lost", COUNTER, "Pending targets of children that died or ran out of time.", c[SHM_LOST]);
    ADD("left_in_spool_total", "left_in_spool", COUNTER,
        "Pending targets of children that died or stopped, left in the spool for another to adopt.",
        c[SHM_LEFT_IN_SPOOL]);
    ADD("upstream_requests_total", "upstream_requests", COUNTER, "Upstream HTTP requests answered.",
        c[SHM_UPSTREAM_REQS]);
    ADD("upstream_errors_total", "upstream_errors", COUNTER, "Upstream requests that got no HTTP answer.",
        c[SHM_UPSTREAM_ERRS]);
    ADD("oauth_tokens_total", "oauth_tokens", COUNTER, "OAuth2 access tokens obtained.", c[SHM_OAUTH_TOKENS]);
    ADD("oauth_failures_total", "oauth_failures", COUNTER, "OAuth2 token requests that failed.", c[SHM_OAUTH_FAILURES]);
    ADD("pending", "pending", GAUGE, "Targets accepted and not yet finished.", t->pending);
    ADD("queue_depth", "queue_depth", GAUGE, "Targets waiting in the queues to be sent.", t->gauges[SHM_QUEUE_DEPTH]);
    ADD("queue_bytes", "queue_bytes", GAUGE, "Bytes the pending pushes hold in the queues.",
        t->gauges[SHM_QUEUE_BYTES]);
    ADD("retry_waiting", "retry_waiting", GAUGE, "Targets waiting for their next try.", t->gauges[SHM_RETRY_WAITING]);
    ADD("upstream_inflight", "upstream_inflight", GAUGE, "Upstream requests in flight.",
        t->gauges[SHM_UPSTREAM_INFLIGHT]);
    ADD("upstream_limit", "upstream_limit", GAUGE, "Upstream requests allowed in flight now (found by additive increase, multiplicative decrease).",
        t->gauges[SHM_UPSTREAM_LIMIT]);
    ADD("rate_limit", "rate_limit", GAUGE,
        "Messages a second this instance may send upstream: its share of --rate-limit (0: no limit).",
        t->gauges[SHM_RATE_SHARE]);
    ADD("upstream_connections", "upstream_connections", GAUGE, "Open upstream connections.",
        t->gauges[SHM_UPSTREAM_SOCKETS]);
    ADD("children", "children", GAUGE, "Child processes alive.", t->children);
    ADD("workers", "workers", GAUGE, "Child processes configured.", m->workers);
    ADD("waiting_for_token", "waiting_for_token", GAUGE, "Children without a usable OAuth2 access token.",
        t->waiting_for_token);
    ADD("uptime_seconds", "uptime_seconds", GAUGE, "Seconds since fcmd started.", m->uptime_seconds);
    ADD("replayed_total", "replayed", COUNTER, "Targets re-queued from the spool segments of dead children.",
        c[SHM_REPLAYED]);
    ADD("spool_bytes", "spool_bytes", GAUGE, "Bytes of spool segments.", t->gauges[SHM_SPOOL_BYTES]);
    ADD("spool_segments", "spool_segments", GAUGE, "Spool segment files.", t->gauges[SHM_SPOOL_SEGMENTS]);
    ADD("spool_syncs_total", "spool_syncs", COUNTER, "Spool fdatasync calls (batch and always).", c[SHM_SPOOL_SYNCS]);
#undef ADD
    return n;
}

#define MAX_SERIES 32

static void histogram(struct buf *b, const char *name, const char *help, const uint64_t *buckets,
                      const uint64_t *bounds_us, uint64_t count, uint64_t sum_us)
{
    uint64_t cumulative = 0;

    buf_addf(b, "# HELP fcmd_%s %s\n# TYPE fcmd_%s histogram\n", name, help, name);
    for (int i = 0; i < HIST_BUCKETS; i++) {
        cumulative += buckets[i];
        if (i < HIST_BUCKETS - 1)
            buf_addf(b, "fcmd_%s_bucket{le=\"%g\"} %" PRIu64 "\n", name, (double)bounds_us[i] / 1e6, cumulative);
        else
            buf_addf(b, "fcmd_%s_bucket{le=\"+Inf\"} %" PRIu64 "\n", name, cumulative);
    }
    buf_addf(b, "fcmd_%s_sum %.6f\nfcmd_%s_count %" PRIu64 "\n", name, (double)sum_us / 1e6, name, count);
}

static void by_cause(struct buf *b, const char *name, const char *help, const uint64_t *v)
{
    buf_addf(b, "# HELP fcmd_%s %s\n# TYPE fcmd_%s counter\n", name, help, name);
    for (int c = 1; c < CAUSE_COUNT; c++)
        buf_addf(b, "fcmd_%s{reason=\"%s\"} %" PRIu64 "\n", name, shm_cause_names[c], v[c]);
}

void metrics_prometheus(struct buf *b, const struct shm_totals *t, const struct metrics_context *m)
{
    struct series s[MAX_SERIES];
    size_t n = scalar_series(t, m, s);

    for (size_t i = 0; i < n; i++)
        buf_addf(b, "# HELP fcmd_%s %s\n# TYPE fcmd_%s %s\nfcmd_%s %" PRId64 "\n", s[i].name, s[i].help, s[i].name,
                 s[i].kind == COUNTER ? "counter" : "gauge", s[i].name, s[i].value);
    by_cause(b, "failures_total", "Targets given up on, by reason.", t->failures_by);
    by_cause(b, "retries_total", "Targets scheduled for another try, by reason.", t->retries_by);
    buf_adds(b, "# HELP fcmd_http_requests_total HTTP requests served, by endpoint and status.\n"
                "# TYPE fcmd_http_requests_total counter\n");
    for (int e = 0; e < EP_COUNT; e++)
        for (int k = 0; k < HTTP_STATUS_COUNT; k++)
            if ((t->http[e][k] > 0 || k == 0) && k < HTTP_STATUS_COUNT - 1)
                buf_addf(b, "fcmd_http_requests_total{endpoint=\"%s\",status=\"%d\"} %" PRIu64 "\n",
                         shm_endpoint_names[e], shm_http_statuses[k], t->http[e][k]);
            else if (t->http[e][k] > 0)
                buf_addf(b, "fcmd_http_requests_total{endpoint=\"%s\",status=\"other\"} %" PRIu64 "\n",
                         shm_endpoint_names[e], t->http[e][k]);
    buf_addf(b,
             "# HELP fcmd_drain_dropped_total Drain-list records dropped because the list was full.\n"
             "# TYPE fcmd_drain_dropped_total counter\n"
             "fcmd_drain_dropped_total{list=\"canonical\"} %" PRIu64 "\n"
             "fcmd_drain_dropped_total{list=\"notregistered\"} %" PRIu64 "\n",
             t->canonical_dropped, t->notregistered_dropped);
    buf_adds(b, "# HELP fcmd_upstream_targets_total Targets by upstream and outcome (the totals above are the sums).\n"
                "# TYPE fcmd_upstream_targets_total counter\n");
    for (int u = 0; u < SHM_UPSTREAMS; u++)
        for (int k = 0; k < SHM_UP_NCOUNTERS; k++)
            buf_addf(b, "fcmd_upstream_targets_total{upstream=\"%s\",outcome=\"%s\"} %" PRIu64 "\n",
                     shm_upstream_names[u], shm_upstream_counter_names[k], t->by_upstream[u][k]);
    buf_addf(b,
             "# HELP fcmd_apns_provider_tokens_total APNs provider tokens made (one at a time, for all workers).\n"
             "# TYPE fcmd_apns_provider_tokens_total counter\nfcmd_apns_provider_tokens_total %" PRIu64 "\n",
             t->apns_tokens_made);
    histogram(b, "upstream_request_seconds", "Upstream request duration, from curl.", t->upstream_latency,
              shm_upstream_bounds_us, t->upstream_latency_count, t->upstream_latency_sum_us);
    histogram(b, "send_handling_seconds", "Time to parse, check and queue a /gcm/send request.", t->send_latency,
              shm_send_bounds_us, t->send_latency_count, t->send_latency_sum_us);
    buf_addf(b,
             "# HELP fcmd_build_info fcmd's version and upstream.\n# TYPE fcmd_build_info gauge\n"
             "fcmd_build_info{version=\"%s\",upstream=\"%s\"} 1\n",
             FCMD_VERSION, m->upstream);
}

void metrics_graphite(struct buf *b, const struct shm_totals *t, const struct metrics_context *m, const char *prefix,
                      long long ts)
{
    struct series s[MAX_SERIES];
    size_t n = scalar_series(t, m, s);
    uint64_t failures = 0, retries = 0;

    for (size_t i = 0; i < n; i++)
        buf_addf(b, "%s.%s %" PRId64 " %lld\n", prefix, s[i].graphite, s[i].value, ts);
    for (int c = 1; c < CAUSE_COUNT; c++) {
        failures += t->failures_by[c];
        retries += t->retries_by[c];
        if (t->failures_by[c])
            buf_addf(b, "%s.failures_by.%s %" PRIu64 " %lld\n", prefix, shm_cause_names[c], t->failures_by[c], ts);
        if (t->retries_by[c])
            buf_addf(b, "%s.retries_by.%s %" PRIu64 " %lld\n", prefix, shm_cause_names[c], t->retries_by[c], ts);
    }
    buf_addf(b, "%s.failures %" PRIu64 " %lld\n%s.retries %" PRIu64 " %lld\n", prefix, failures, ts, prefix, retries,
             ts);
    for (int u = 0; u < SHM_UPSTREAMS; u++)
        for (int k = 0; k < SHM_UP_NCOUNTERS; k++)
            if (t->by_upstream[u][k])
                buf_addf(b, "%s.upstream.%s.%s %" PRIu64 " %lld\n", prefix, shm_upstream_names[u],
                         shm_upstream_counter_names[k], t->by_upstream[u][k], ts);
    buf_addf(b, "%s.upstream_request_seconds.count %" PRIu64 " %lld\n", prefix, t->upstream_latency_count, ts);
    buf_addf(b, "%s.upstream_request_seconds.sum %.6f %lld\n", prefix, (double)t->upstream_latency_sum_us / 1e6, ts);
}

/* One app's row: "app" label value and its counters. */
static void app_lines(struct buf *b, const char *name, const struct shm_app *a)
{
    for (int u = 0; u < SHM_UPSTREAMS; u++)
        for (int k = 0; k < SHM_UP_NCOUNTERS; k++)
            buf_addf(b, "fcmd_app_targets_total{app=\"%s\",upstream=\"%s\",outcome=\"%s\"} %" PRIu64 "\n", name,
                     shm_upstream_names[u], shm_upstream_counter_names[k],
                     atomic_load_explicit(&((struct shm_app *)a)->by_upstream[u][k], memory_order_relaxed));
}

void metrics_apps(struct buf *b, const struct shm_region *r, const struct fcmd_options *o)
{
    if (o->napps == 0)
        return;
    buf_adds(b, "# HELP fcmd_app_targets_total Targets by app, upstream and outcome (fcmd_upstream_targets_total "
                "is the sum over the apps).\n# TYPE fcmd_app_targets_total counter\n");
    app_lines(b, "default", &r->apps[0]);
    for (size_t i = 0; i < o->napps; i++)
        app_lines(b, o->apps[i].name, &r->apps[o->apps[i].shm]);
}
