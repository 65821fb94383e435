/*
 * tests/unit/test_counter_table.c - the counter table against a list of its
 * own: totals whose every value differs are rendered as /gcm/report's keys,
 * /metrics and Graphite, and each name must show there with its own value
 * (a row pointing at another counter shows another number), the report's
 * keys in their order, and Redis' fields and the per-upstream outcomes
 * named as the totals are; and shm_sum adds the workers' bounds up but for
 * the spool's.  The expected names and where each value lies are written
 * here again, not read from the table.
 */
#include "cmocka_all.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../child/core/buf.h"
#include "../../child/http/endpoints.h"
#include "../../child/observe/metrics.h"
#include "../../shm/drainlist.h"
#include "../../shm/region.h"

/* Totals in which every 64-bit word holds its own number. */
static void fill(struct shm_totals *t)
{
    uint64_t w[sizeof(*t) / sizeof(uint64_t)];

    assert_int_equal(sizeof(*t) % sizeof(uint64_t), 0);
    for (size_t i = 0; i < sizeof(w) / sizeof(w[0]); i++)
        w[i] = 1000 + 37 * i;
    memcpy(t, w, sizeof(*t));
}

static uint64_t sum_by_reason(const uint64_t *v)
{
    uint64_t n = 0;

    for (int c = CAUSE_NONE + 1; c < CAUSE_COUNT; c++)
        n += v[c];
    return n;
}

/* Where a name shows, as this test knows it. */
#define LOCAL 1     /* /gcm/report, always */
#define SPOOL 2     /* /gcm/report with --spool */
#define SA 4        /* /gcm/report with a service account */
#define FLEET 8     /* the fleet's report */
#define GRAPHITE 16 /* a Graphite leaf of its name */
#define REASONS 32  /* /metrics by reason, Graphite NAME_by.REASON and NAME their sum */
#define LISTS 64    /* /metrics by drain list */
#define APNS 128    /* in the report's "apns" object */
#define WEBHOOK 256 /* /gcm/report with a webhook */

struct want {
    const char *name;
    const char *series; /* in /metrics, without fcmd_ */
    const char *type;   /* counter or gauge */
    uint64_t value;
    unsigned where;
    const uint64_t *by; /* REASONS, LISTS: the values by label */
};

/* Every name, in the order of /metrics' unlabelled series (then the others). */
static size_t wants(const struct shm_totals *t, struct want *w)
{
    const uint64_t *c = t->counters;
    const int64_t *g = t->gauges;
    size_t n = 0;

#define W(nm, se, ty, v, wh) (w[n++] = (struct want){.name = nm, .series = se, .type = ty, .value = v, .where = wh})
#define WBY(nm, se, ty, v, wh, b)                                                                                      \
    (w[n++] = (struct want){.name = nm, .series = se, .type = ty, .value = v, .where = wh, .by = b})
    W("accepted", "accepted_targets_total", "counter", c[SHM_ACCEPTED], LOCAL | FLEET | GRAPHITE);
    W("attempts", "attempts_total", "counter", c[SHM_ATTEMPTS], LOCAL | FLEET | GRAPHITE);
    W("successes", "successes_total", "counter", c[SHM_SUCCESSES], LOCAL | FLEET | GRAPHITE);
    W("canonicals", "canonicals_total", "counter", c[SHM_CANONICALS], LOCAL | FLEET | GRAPHITE);
    W("notregistered", "notregistered_total", "counter", c[SHM_NOTREGISTERED], LOCAL | FLEET | GRAPHITE);
    W("lost", "lost_total", "counter", c[SHM_LOST], LOCAL | FLEET | GRAPHITE);
    W("left_in_spool", "left_in_spool_total", "counter", c[SHM_LEFT_IN_SPOOL], SPOOL | FLEET | GRAPHITE);
    W("upstream_requests", "upstream_requests_total", "counter", c[SHM_UPSTREAM_REQS], GRAPHITE);
    W("upstream_errors", "upstream_errors_total", "counter", c[SHM_UPSTREAM_ERRS], GRAPHITE);
    W("oauth_tokens", "oauth_tokens_total", "counter", c[SHM_OAUTH_TOKENS], SA | GRAPHITE);
    W("oauth_failures", "oauth_failures_total", "counter", c[SHM_OAUTH_FAILURES], SA | GRAPHITE);
    W("pending", "pending", "gauge", (uint64_t)t->pending, LOCAL | FLEET | GRAPHITE);
    W("queue_depth", "queue_depth", "gauge", (uint64_t)g[SHM_QUEUE_DEPTH], LOCAL | GRAPHITE);
    W("queue_bytes", "queue_bytes", "gauge", (uint64_t)g[SHM_QUEUE_BYTES], LOCAL | GRAPHITE);
    W("queue_capacity", "queue_capacity", "gauge", (uint64_t)g[SHM_QUEUE_CAPACITY], LOCAL | GRAPHITE);
    W("queue_max_bytes", "queue_max_bytes", "gauge", (uint64_t)g[SHM_QUEUE_MAX_BYTES], LOCAL | GRAPHITE);
    W("retry_waiting", "retry_waiting", "gauge", (uint64_t)g[SHM_RETRY_WAITING], GRAPHITE);
    W("upstream_inflight", "upstream_inflight", "gauge", (uint64_t)g[SHM_UPSTREAM_INFLIGHT], GRAPHITE);
    W("upstream_limit", "upstream_limit", "gauge", (uint64_t)g[SHM_UPSTREAM_LIMIT], GRAPHITE);
    W("rate_limit", "rate_limit", "gauge", (uint64_t)g[SHM_RATE_SHARE], GRAPHITE);
    W("upstream_connections", "upstream_connections", "gauge", (uint64_t)g[SHM_UPSTREAM_SOCKETS], GRAPHITE);
    W("children", "children", "gauge", t->children, GRAPHITE);
    W("workers", "workers", "gauge", t->workers, LOCAL | GRAPHITE);
    W("waiting_for_token", "waiting_for_token", "gauge", t->waiting_for_token, SA | GRAPHITE);
    W("redis_unreachable", "redis_unreachable", "gauge", (uint64_t)g[SHM_REDIS_DOWN], GRAPHITE);
    W("uptime_seconds", "uptime_seconds", "gauge", t->uptime_seconds, LOCAL | GRAPHITE);
    W("replayed", "replayed_total", "counter", c[SHM_REPLAYED], SPOOL | FLEET | GRAPHITE);
    W("spool_bytes", "spool_bytes", "gauge", (uint64_t)g[SHM_SPOOL_BYTES], SPOOL | GRAPHITE);
    W("spool_segments", "spool_segments", "gauge", (uint64_t)g[SHM_SPOOL_SEGMENTS], SPOOL | GRAPHITE);
    W("spool_max_bytes", "spool_max_bytes", "gauge", (uint64_t)g[SHM_SPOOL_MAX_BYTES], SPOOL | GRAPHITE);
    W("spool_syncs", "spool_syncs_total", "counter", c[SHM_SPOOL_SYNCS], GRAPHITE);
    W("idempotent_duplicates", "idempotent_duplicates_total", "counter", c[SHM_IDEM_DUPLICATES],
      LOCAL | FLEET | GRAPHITE);
    W("fleet_status_lost", "fleet_status_lost_total", "counter", c[SHM_FLEET_STATUS_LOST], FLEET | GRAPHITE);
    W("idempotency_fallbacks", "idempotency_fallbacks_total", "counter", c[SHM_IDEM_FALLBACKS], FLEET | GRAPHITE);
    W("queue_left", "queue_left_total", "counter", c[SHM_QUEUE_LEFT], FLEET | GRAPHITE);
    W("queue_unserved", "queue_unserved_total", "counter", c[SHM_QUEUE_UNSERVED], FLEET | GRAPHITE);
    W("push_statuses", "push_statuses", "gauge", t->push_statuses, LOCAL | GRAPHITE);
    W("push_waiters", "push_waiters", "gauge", (uint64_t)g[SHM_PUSH_WAITERS], GRAPHITE);
    W("push_status_evicted", "push_status_evicted_total", "counter", t->push_status_evicted, LOCAL | GRAPHITE);
    W("push_status_lost", "push_status_lost_total", "counter", t->push_status_lost, LOCAL | GRAPHITE);
    W("webhook_events", "webhook_events_total", "counter", t->webhook[SHM_WEBHOOK_SENT], WEBHOOK | GRAPHITE);
    W("webhook_failed_attempts", "webhook_failed_attempts_total", "counter", t->webhook[SHM_WEBHOOK_FAILED],
      WEBHOOK | GRAPHITE);
    W("webhook_dropped", "webhook_dropped_total", "counter", t->webhook[SHM_WEBHOOK_DROPPED], WEBHOOK | GRAPHITE);
    W("webhook_pending", "webhook_pending", "gauge", (uint64_t)g[SHM_WEBHOOK_PENDING], WEBHOOK | GRAPHITE);
    W("webhook_queue_bytes", "webhook_queue_bytes", "gauge", (uint64_t)g[SHM_WEBHOOK_BYTES], WEBHOOK | GRAPHITE);
    W("webhook_oldest_seconds", "webhook_oldest_seconds", "gauge", t->webhook_oldest_seconds, WEBHOOK | GRAPHITE);
    WBY("failures", "failures_total", "counter", c[SHM_FAILURES], LOCAL | FLEET | GRAPHITE | REASONS, t->failures_by);
    WBY("retries", "retries_total", "counter", c[SHM_RETRIES], LOCAL | FLEET | GRAPHITE | REASONS, t->retries_by);
    WBY("dropped", "drain_dropped_total", "counter", t->dropped[0] + t->dropped[1], LOCAL | FLEET | LISTS, t->dropped);
    W("canonical_dropped", NULL, "counter", t->dropped[0], LOCAL | FLEET);
    W("notregistered_dropped", NULL, "counter", t->dropped[1], LOCAL | FLEET);
    WBY("drain_records", "drain_records", "gauge", t->list_records[0] + t->list_records[1], LISTS, t->list_records);
    WBY("drain_bytes", "drain_bytes", "gauge", t->list_bytes[0] + t->list_bytes[1], LISTS, t->list_bytes);
    W("canonical_records", NULL, "gauge", t->list_records[0], LOCAL);
    W("notregistered_records", NULL, "gauge", t->list_records[1], LOCAL);
    W("canonical_bytes", NULL, "gauge", t->list_bytes[0], LOCAL);
    W("notregistered_bytes", NULL, "gauge", t->list_bytes[1], LOCAL);
    W("drain_list_bytes", "drain_list_bytes", "gauge", t->list_capacity, LOCAL | GRAPHITE);
    W("provider_tokens", "apns_provider_tokens_total", "counter", t->apns_tokens_made, APNS);
#undef W
#undef WBY
    return n;
}

static const struct want *find(const struct want *w, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(w[i].name, name) == 0)
            return &w[i];
    return NULL;
}

static void every_row_is_known_and_every_name_has_a_row(void **state)
{
    struct shm_totals t;
    struct want w[80];
    size_t n;

    (void)state;
    fill(&t);
    n = wants(&t, w);
    assert_int_equal(shm_nmetrics, n);
    for (size_t i = 0; i < shm_nmetrics; i++) {
        if (find(w, n, shm_metrics[i].name) == NULL)
            fail_msg("the table's row %s is not in this test's list", shm_metrics[i].name);
        for (size_t k = 0; k < i; k++)
            if (strcmp(shm_metrics[k].name, shm_metrics[i].name) == 0)
                fail_msg("two rows named %s", shm_metrics[i].name);
    }
}

/* Where text has a line starting with start and ending there (whole) or
 * going on, or NULL. */
static const char *line_from(const char *text, const char *start, int whole)
{
    size_t n = strlen(start);

    for (const char *p = strstr(text, start); p != NULL; p = strstr(p + 1, start))
        if ((p == text || p[-1] == '\n') && (!whole || p[n] == '\n'))
            return p;
    return NULL;
}

static const char *line_at(const char *text, const char *line)
{
    return line_from(text, line, 1);
}

static void expect_line(const char *text, const char *what, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void expect_line(const char *text, const char *what, const char *fmt, ...)
{
    char line[256];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (line_at(text, line) == NULL)
        fail_msg("%s has no line \"%s\":\n%s", what, line, text);
}

static void prometheus_shows_each_series_with_its_value(void **state)
{
    struct shm_totals t;
    struct want w[80];
    struct buf b = BUF_INIT;
    const char *last = NULL;
    size_t n;

    (void)state;
    fill(&t);
    n = wants(&t, w);
    metrics_prometheus(&b, &t, "legacy");
    assert_false(b.failed);
    for (size_t i = 0; i < n; i++) {
        char type[128];
        if (w[i].series == NULL)
            continue;
        snprintf(type, sizeof(type), "# TYPE fcmd_%s %s", w[i].series, w[i].type);
        if (line_at(b.data, type) == NULL)
            fail_msg("no \"%s\"", type);
        if (w[i].where & REASONS)
            for (int c = CAUSE_NONE + 1; c < CAUSE_COUNT; c++)
                expect_line(b.data, "/metrics", "fcmd_%s{reason=\"%s\"} %" PRIu64, w[i].series, shm_cause_names[c],
                            w[i].by[c]);
        else if (w[i].where & LISTS) {
            expect_line(b.data, "/metrics", "fcmd_%s{list=\"canonical\"} %" PRIu64, w[i].series, w[i].by[0]);
            expect_line(b.data, "/metrics", "fcmd_%s{list=\"notregistered\"} %" PRIu64, w[i].series, w[i].by[1]);
        } else {
            char line[128];
            const char *at;
            snprintf(line, sizeof(line), "fcmd_%s %" PRIu64, w[i].series, w[i].value);
            if ((at = line_at(b.data, line)) == NULL)
                fail_msg("/metrics has no line \"%s\"", line);
            /* The unlabelled series but APNs' keep this test's order. */
            if (!(w[i].where & APNS)) {
                if (last != NULL && at < last)
                    fail_msg("%s comes too early in /metrics", w[i].series);
                last = at;
            }
        }
    }
    /* The outcomes by upstream are the totals' names. */
    expect_line(b.data, "/metrics", "fcmd_upstream_targets_total{upstream=\"fcm\",outcome=\"accepted\"} %" PRIu64,
                t.by_upstream[0][SHM_UP_ACCEPTED]);
    expect_line(b.data, "/metrics", "fcmd_upstream_targets_total{upstream=\"apns\",outcome=\"notregistered\"} %" PRIu64,
                t.by_upstream[1][SHM_UP_NOTREGISTERED]);
    buf_free(&b);
}

static void graphite_shows_each_leaf_with_its_value(void **state)
{
    struct shm_totals t;
    struct want w[80];
    struct buf b = BUF_INIT;
    size_t n;

    (void)state;
    fill(&t);
    n = wants(&t, w);
    metrics_graphite(&b, &t, "fcmd", 42);
    assert_false(b.failed);
    for (size_t i = 0; i < n; i++) {
        char leaf[64];
        snprintf(leaf, sizeof(leaf), "fcmd.%s ", w[i].name);
        if (!(w[i].where & GRAPHITE)) {
            if (line_from(b.data, leaf, 0) != NULL)
                fail_msg("Graphite has %s, which it should not", w[i].name);
            continue;
        }
        if (w[i].where & REASONS) {
            expect_line(b.data, "Graphite", "fcmd.%s %" PRIu64 " 42", w[i].name, sum_by_reason(w[i].by));
            for (int c = CAUSE_NONE + 1; c < CAUSE_COUNT; c++)
                expect_line(b.data, "Graphite", "fcmd.%s_by.%s %" PRIu64 " 42", w[i].name, shm_cause_names[c],
                            w[i].by[c]);
        } else {
            expect_line(b.data, "Graphite", "fcmd.%s %" PRIu64 " 42", w[i].name, w[i].value);
        }
    }
    expect_line(b.data, "Graphite", "fcmd.upstream.apns.canonicals %" PRIu64 " 42",
                t.by_upstream[1][SHM_UP_CANONICALS]);
    buf_free(&b);
}

/* The report's keys as this test expects them: names in order, each with its value. */
static void expect_keys(const struct want *w, size_t n, const char *const *order, const char *sep, const char *got)
{
    struct buf b = BUF_INIT;

    for (size_t i = 0; order[i] != NULL; i++) {
        const struct want *k = find(w, n, order[i]);
        assert_non_null(k);
        buf_addf(&b, "%s\"%s\":%" PRIu64, i ? "," : sep, k->name, k->value);
    }
    assert_string_equal(got, b.data ? b.data : "");
    buf_free(&b);
}

static void report_keys_come_in_gocm_order_with_their_values(void **state)
{
    /* GoCM's five first, in GoCM's order. */
    static const char *const plain[] = {"attempts",
                                        "failures",
                                        "pending",
                                        "canonicals",
                                        "notregistered",
                                        "successes",
                                        "retries",
                                        "accepted",
                                        "lost",
                                        "dropped",
                                        "canonical_dropped",
                                        "notregistered_dropped",
                                        "queue_depth",
                                        "queue_bytes",
                                        "queue_capacity",
                                        "queue_max_bytes",
                                        "canonical_records",
                                        "notregistered_records",
                                        "canonical_bytes",
                                        "notregistered_bytes",
                                        "drain_list_bytes",
                                        "push_statuses", "push_status_evicted", "push_status_lost", "idempotent_duplicates", NULL};
    static const char *const every[] = {"attempts",
                                        "failures",
                                        "pending",
                                        "canonicals",
                                        "notregistered",
                                        "successes",
                                        "retries",
                                        "accepted",
                                        "lost",
                                        "left_in_spool",
                                        "dropped",
                                        "canonical_dropped",
                                        "notregistered_dropped",
                                        "spool_bytes",
                                        "spool_segments",
                                        "replayed",
                                        "oauth_tokens",
                                        "oauth_failures",
                                        "waiting_for_token",
                                        "queue_depth",
                                        "queue_bytes",
                                        "queue_capacity",
                                        "queue_max_bytes",
                                        "spool_max_bytes",
                                        "canonical_records",
                                        "notregistered_records",
                                        "canonical_bytes",
                                        "notregistered_bytes",
                                        "drain_list_bytes",
                                        "push_statuses", "push_status_evicted", "push_status_lost", "idempotent_duplicates", NULL};
    static const char *const with_sa[] = {"attempts",
                                          "failures",
                                          "pending",
                                          "canonicals",
                                          "notregistered",
                                          "successes",
                                          "retries",
                                          "accepted",
                                          "lost",
                                          "dropped",
                                          "canonical_dropped",
                                          "notregistered_dropped",
                                          "oauth_tokens",
                                          "oauth_failures",
                                          "waiting_for_token",
                                          "queue_depth",
                                          "queue_bytes",
                                          "queue_capacity",
                                          "queue_max_bytes",
                                          "canonical_records",
                                          "notregistered_records",
                                          "canonical_bytes",
                                          "notregistered_bytes",
                                          "drain_list_bytes",
                                          "push_statuses", "push_status_evicted", "push_status_lost", "idempotent_duplicates", NULL};
    static const char *const fleet[] = {"attempts",
                                        "failures",
                                        "pending",
                                        "canonicals",
                                        "notregistered",
                                        "successes",
                                        "retries",
                                        "accepted",
                                        "lost",
                                        "left_in_spool",
                                        "dropped",
                                        "canonical_dropped",
                                        "notregistered_dropped",
                                        "replayed",
                                        "idempotent_duplicates",
                                        "fleet_status_lost",
                                        "idempotency_fallbacks",
                                        "queue_left",
                                        "queue_unserved",
                                        NULL};
    static const char *const with_webhook[] = {"attempts", "failures", "pending", "canonicals", "notregistered",
                                               "successes", "retries", "accepted", "lost", "dropped",
                                               "canonical_dropped", "notregistered_dropped", "queue_depth",
                                               "queue_bytes", "queue_capacity", "queue_max_bytes",
                                               "canonical_records", "notregistered_records", "canonical_bytes",
                                               "notregistered_bytes", "drain_list_bytes", "push_statuses",
                                               "push_status_evicted", "push_status_lost", "idempotent_duplicates",
                                               "webhook_events", "webhook_failed_attempts", "webhook_dropped",
                                               "webhook_pending", "webhook_queue_bytes", "webhook_oldest_seconds",
                                               NULL};
    static const char *const closing[] = {"workers", "uptime_seconds", NULL};
    struct shm_totals t;
    struct want w[80];
    struct buf b = BUF_INIT;
    size_t n;

    (void)state;
    fill(&t);
    n = wants(&t, w);
#define KEYS(want, last, sep, order)                                                                                   \
    do {                                                                                                               \
        buf_reset(&b);                                                                                                 \
        buf_adds(&b, "");                                                                                              \
        http_report_keys(&b, &t, want, last, sep);                                                                     \
        expect_keys(w, n, order, sep, b.data);                                                                         \
    } while (0)
    KEYS(SHM_REPORT, 0, "", plain);
    KEYS(SHM_REPORT | SHM_WITH_SPOOL | SHM_WITH_SA, 0, "", every);
    KEYS(SHM_REPORT | SHM_WITH_SA, 0, "", with_sa);
    KEYS(SHM_REPORT | SHM_WITH_WEBHOOK, 0, "", with_webhook);
    KEYS(SHM_FLEET, 0, "", fleet);
    KEYS(SHM_REPORT, 1, ",", closing);
    KEYS(SHM_REPORT | SHM_WITH_SPOOL | SHM_WITH_SA, 1, ",", closing);
#undef KEYS
    buf_free(&b);
}

static void upstreams_and_redis_use_the_totals_names(void **state)
{
    static const char *const counters[SHM_NCOUNTERS] = {
        [SHM_ACCEPTED] = "accepted",
        [SHM_ATTEMPTS] = "attempts",
        [SHM_SUCCESSES] = "successes",
        [SHM_FAILURES] = "failures",
        [SHM_RETRIES] = "retries",
        [SHM_CANONICALS] = "canonicals",
        [SHM_NOTREGISTERED] = "notregistered",
        [SHM_LOST] = "lost",
        [SHM_LEFT_IN_SPOOL] = "left_in_spool",
        [SHM_UPSTREAM_REQS] = "upstream_requests",
        [SHM_UPSTREAM_ERRS] = "upstream_errors",
        [SHM_OAUTH_TOKENS] = "oauth_tokens",
        [SHM_OAUTH_FAILURES] = "oauth_failures",
        [SHM_REPLAYED] = "replayed",
        [SHM_SPOOL_SYNCS] = "spool_syncs",
        [SHM_IDEM_DUPLICATES] = "idempotent_duplicates",
        [SHM_FLEET_STATUS_LOST] = "fleet_status_lost",
        [SHM_IDEM_FALLBACKS] = "idempotency_fallbacks",
        [SHM_QUEUE_LEFT] = "queue_left",
        [SHM_QUEUE_UNSERVED] = "queue_unserved",
    };
    struct shm_totals t;
    struct buf b = BUF_INIT, want = BUF_INIT;

    (void)state;
    /* Redis' fields and the master's log. */
    for (int c = 0; c < SHM_NCOUNTERS; c++)
        assert_string_equal(shm_counter_name((enum shm_counter)c), counters[c]);
    assert_string_equal(shm_dropped_name(SHM_LIST_CANONICAL), "canonical_dropped");
    assert_string_equal(shm_dropped_name(SHM_LIST_NOTREGISTERED), "notregistered_dropped");
    /* The report's objects per upstream. */
    fill(&t);
    http_report_upstreams(&b, &t);
    for (int u = 0; u < SHM_UPSTREAMS; u++) {
        static const char *const names[] = {"fcm", "apns", "webpush"};
        _Static_assert(sizeof(names) / sizeof(names[0]) == SHM_UPSTREAMS, "a name per upstream");
        buf_addf(&want, ",\"%s\":{", names[u]);
        for (int k = 0; k < SHM_UP_NCOUNTERS; k++)
            buf_addf(&want, "%s\"%s\":%" PRIu64, k ? "," : "", counters[k], t.by_upstream[u][k]);
        if (u == 1)
            buf_addf(&want, ",\"provider_tokens\":%" PRIu64, t.apns_tokens_made);
        buf_adds(&want, "}");
    }
    assert_string_equal(b.data, want.data);
    buf_free(&b);
    buf_free(&want);
}

/* The queue's bounds are each worker's, so the instance's is their sum, as
 * its fill is; the spool's is one for the whole instance, which every worker
 * holds: the totals show it once (the largest, while a reload's two
 * generations may disagree), not once per worker. */
static void bounds_sum_per_worker_and_the_spool_bound_once(void **state)
{
    struct shm_region *r = shm_region_create(1024, 1 << 16, 1 << 16);
    struct shm_totals t;

    (void)state;
    assert_non_null(r);
    for (unsigned i = 0; i < 3; i++) {
        shm_gauge_set(&r->slots[i], SHM_QUEUE_CAPACITY, 500);
        shm_gauge_set(&r->slots[i], SHM_QUEUE_MAX_BYTES, 1 << 20);
        shm_gauge_set(&r->slots[i], SHM_SPOOL_BYTES, 100);
        shm_gauge_set(&r->slots[i], SHM_SPOOL_MAX_BYTES, i == 1 ? 8192 : 4096);
        shm_gauge_set(&r->slots[i], SHM_REDIS_DOWN, i != 0);
    }
    shm_sum(r, &t);
    assert_int_equal(t.gauges[SHM_QUEUE_CAPACITY], 1500);
    assert_int_equal(t.gauges[SHM_QUEUE_MAX_BYTES], 3 << 20);
    assert_int_equal(t.gauges[SHM_SPOOL_BYTES], 300);
    assert_int_equal(t.gauges[SHM_SPOOL_MAX_BYTES], 8192);
    assert_int_equal(t.gauges[SHM_REDIS_DOWN], 2);
    /* A dead worker's bounds go with it. */
    shm_settle_slot(r, 1, SHM_SETTLE_LOST);
    shm_sum(r, &t);
    assert_int_equal(t.gauges[SHM_QUEUE_CAPACITY], 1000);
    assert_int_equal(t.gauges[SHM_SPOOL_MAX_BYTES], 4096);
    assert_int_equal(t.gauges[SHM_REDIS_DOWN], 1);
    shm_region_destroy(r);
}

/* The drain lists' sizes are what they hold now: an append shows in the
 * totals, reading the totals takes nothing, and a drain empties them. */
static void drain_lists_show_what_they_hold_without_draining(void **state)
{
    struct shm_region *r = shm_region_create(4096, 1 << 16, 1 << 16);
    struct shm_totals t;
    unsigned char *out;
    size_t len;
    uint64_t count;

    (void)state;
    assert_non_null(r);
    assert_int_equal(drainlist_append(r->notregistered, 0, "dead-1", 6, NULL, 0), 0);
    assert_int_equal(drainlist_append(r->notregistered, 0, "dead-22", 7, NULL, 0), 0);
    assert_int_equal(drainlist_append(r->canonical, 0, "old", 4, "new", 3), 0);
    for (int i = 0; i < 2; i++) { /* twice: reading changes nothing */
        shm_sum(r, &t);
        assert_int_equal(t.list_records[SHM_LIST_NOTREGISTERED], 2);
        assert_int_equal(t.list_bytes[SHM_LIST_NOTREGISTERED], 3 + 6 + 3 + 7); /* each record has a 2-byte length and a tag */
        assert_int_equal(t.list_records[SHM_LIST_CANONICAL], 1);
        assert_int_equal(t.list_bytes[SHM_LIST_CANONICAL], 3 + 7);
        assert_int_equal(t.list_capacity, 4096);
    }
    assert_int_equal(drainlist_drain(r->notregistered, DRAINLIST_ALL, &out, &len, &count), 0);
    assert_int_equal(count, 2);
    free(out);
    shm_sum(r, &t);
    assert_int_equal(t.list_records[SHM_LIST_NOTREGISTERED], 0);
    assert_int_equal(t.list_bytes[SHM_LIST_NOTREGISTERED], 0);
    assert_int_equal(t.list_records[SHM_LIST_CANONICAL], 1);
    shm_region_destroy(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_row_is_known_and_every_name_has_a_row),
        cmocka_unit_test(prometheus_shows_each_series_with_its_value),
        cmocka_unit_test(graphite_shows_each_leaf_with_its_value),
        cmocka_unit_test(report_keys_come_in_gocm_order_with_their_values),
        cmocka_unit_test(upstreams_and_redis_use_the_totals_names),
        cmocka_unit_test(bounds_sum_per_worker_and_the_spool_bound_once),
        cmocka_unit_test(drain_lists_show_what_they_hold_without_draining),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
