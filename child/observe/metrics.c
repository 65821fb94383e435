/*
 * child/observe/metrics.c - rendering the shared metrics.
 *
 * The counters and gauges come from the counter table (shm/metrics.h), so
 * /metrics, Graphite and the report never disagree; labelled families and
 * histograms follow.  Prometheus names end in _total for counters and use
 * seconds for durations; Graphite gets the same values under dotted names.
 */
#include "metrics.h"
#include "../../common/options.h"
#include "../../shm/region.h"

#include <inttypes.h>
#include <stdio.h>

/* The row's /metrics name, without the fcmd_ prefix. */
static const char *prometheus_name(const struct shm_metric *m, char *out, size_t size)
{
    if (m->prometheus != NULL)
        return m->prometheus;
    snprintf(out, size, "%s%s", m->name, m->kind == SHM_COUNTER ? "_total" : "");
    return out;
}

/* A value as text: a gauge's signed. */
static const char *value_text(const struct shm_metric *m, uint64_t v, char out[24])
{
    if (m->kind == SHM_GAUGE)
        snprintf(out, 24, "%" PRId64, (int64_t)v);
    else
        snprintf(out, 24, "%" PRIu64, v);
    return out;
}

/* A row's lines: HELP, TYPE, and its value or its values by label. */
static void series(struct buf *b, const struct shm_metric *m, const struct shm_totals *t)
{
    const struct shm_labelling *l = &shm_labellings[m->labels];
    char buf[64], v[24];
    const char *name = prometheus_name(m, buf, sizeof(buf));

    buf_addf(b, "# HELP fcmd_%s %s\n# TYPE fcmd_%s %s\n", name, m->help, name,
             m->kind == SHM_COUNTER ? "counter" : "gauge");
    if (m->labels == SHM_UNLABELLED)
        buf_addf(b, "fcmd_%s %s\n", name, value_text(m, shm_metric_value(m, t), v));
    else
        for (unsigned i = l->first; i < l->count; i++)
            buf_addf(b, "fcmd_%s{%s=\"%s\"} %s\n", name, l->key, l->names[i],
                     value_text(m, shm_metric_value_by(m, t, i), v));
}

/* The rows of /metrics labelled so, and of APNs or not, in table order. */
static void rows(struct buf *b, const struct shm_totals *t, enum shm_labels labels, unsigned apns)
{
    for (size_t i = 0; i < shm_nmetrics; i++) {
        const struct shm_metric *m = &shm_metrics[i];
        if ((m->shows & SHM_METRICS) && m->labels == labels && (m->shows & SHM_APNS) == apns)
            series(b, m, t);
    }
}

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

void metrics_prometheus(struct buf *b, const struct shm_totals *t, const char *upstream)
{
    rows(b, t, SHM_UNLABELLED, 0);
    rows(b, t, SHM_BY_REASON, 0);
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
    rows(b, t, SHM_BY_LIST, 0);
    buf_adds(b, "# HELP fcmd_upstream_targets_total Targets by upstream and outcome (the totals above are the sums).\n"
                "# TYPE fcmd_upstream_targets_total counter\n");
    for (int u = 0; u < SHM_UPSTREAMS; u++)
        for (int k = 0; k < SHM_UP_NCOUNTERS; k++)
            buf_addf(b, "fcmd_upstream_targets_total{upstream=\"%s\",outcome=\"%s\"} %" PRIu64 "\n",
                     shm_upstream_names[u], shm_counter_name((enum shm_counter)k), t->by_upstream[u][k]);
    rows(b, t, SHM_UNLABELLED, SHM_APNS);
    histogram(b, "upstream_request_seconds", "Upstream request duration, from curl.", t->upstream_latency,
              shm_upstream_bounds_us, t->upstream_latency_count, t->upstream_latency_sum_us);
    histogram(b, "send_handling_seconds", "Time to parse, check and queue a /gcm/send request.", t->send_latency,
              shm_send_bounds_us, t->send_latency_count, t->send_latency_sum_us);
    buf_addf(b,
             "# HELP fcmd_build_info fcmd's version and upstream.\n# TYPE fcmd_build_info gauge\n"
             "fcmd_build_info{version=\"%s\",upstream=\"%s\"} 1\n",
             FCMD_VERSION, upstream);
}

/* Graphite: the unlabelled rows, the rows by reason (NAME_by.REASON when not
 * 0, then NAME, their sum), the targets by upstream when not 0, and the
 * upstream requests' count and time. */
void metrics_graphite(struct buf *b, const struct shm_totals *t, const char *prefix, long long ts)
{
    const struct shm_labelling *reasons = &shm_labellings[SHM_BY_REASON];
    const struct shm_metric *m;
    char v[24];

    for (m = shm_metrics; m < shm_metrics + shm_nmetrics; m++)
        if ((m->shows & SHM_GRAPHITE) && m->labels == SHM_UNLABELLED)
            buf_addf(b, "%s.%s %s %lld\n", prefix, m->name, value_text(m, shm_metric_value(m, t), v), ts);
    for (unsigned c = reasons->first; c < reasons->count; c++)
        for (m = shm_metrics; m < shm_metrics + shm_nmetrics; m++)
            if ((m->shows & SHM_GRAPHITE) && m->labels == SHM_BY_REASON && shm_metric_value_by(m, t, c) != 0)
                buf_addf(b, "%s.%s_by.%s %" PRIu64 " %lld\n", prefix, m->name, reasons->names[c],
                         shm_metric_value_by(m, t, c), ts);
    for (m = shm_metrics; m < shm_metrics + shm_nmetrics; m++)
        if ((m->shows & SHM_GRAPHITE) && m->labels == SHM_BY_REASON) {
            uint64_t sum = 0;
            for (unsigned c = reasons->first; c < reasons->count; c++)
                sum += shm_metric_value_by(m, t, c);
            buf_addf(b, "%s.%s %" PRIu64 " %lld\n", prefix, m->name, sum, ts);
        }
    for (int u = 0; u < SHM_UPSTREAMS; u++)
        for (int k = 0; k < SHM_UP_NCOUNTERS; k++)
            if (t->by_upstream[u][k])
                buf_addf(b, "%s.upstream.%s.%s %" PRIu64 " %lld\n", prefix, shm_upstream_names[u],
                         shm_counter_name((enum shm_counter)k), t->by_upstream[u][k], ts);
    buf_addf(b, "%s.upstream_request_seconds.count %" PRIu64 " %lld\n", prefix, t->upstream_latency_count, ts);
    buf_addf(b, "%s.upstream_request_seconds.sum %.6f %lld\n", prefix, (double)t->upstream_latency_sum_us / 1e6, ts);
}

/* One app's row: "app" label value and its counters. */
static void app_lines(struct buf *b, const char *name, const struct shm_app *a)
{
    for (int u = 0; u < SHM_UPSTREAMS; u++)
        for (int k = 0; k < SHM_UP_NCOUNTERS; k++)
            buf_addf(b, "fcmd_app_targets_total{app=\"%s\",upstream=\"%s\",outcome=\"%s\"} %" PRIu64 "\n", name,
                     shm_upstream_names[u], shm_counter_name((enum shm_counter)k),
                     atomic_load_explicit(&((struct shm_app *)a)->by_upstream[u][k], memory_order_relaxed));
}

void metrics_apps(struct buf *b, const struct shm_region *r, const struct fcmd_options *o, int protected_too)
{
    if (o->napps == 0)
        return;
    buf_adds(b, "# HELP fcmd_app_targets_total Targets by app, upstream and outcome (fcmd_upstream_targets_total "
                "is the sum over the apps).\n# TYPE fcmd_app_targets_total counter\n");
    app_lines(b, "default", &r->apps[0]);
    for (size_t i = 0; i < o->napps; i++)
        if (protected_too || o->apps[i].o.auth_token == NULL)
            app_lines(b, o->apps[i].name, &r->apps[o->apps[i].shm]);
}
